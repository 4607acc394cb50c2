//! What a run measured, medians over runs, and the one Markdown table: a line per metric,
//! a column per proxy, tether's ratio to the better peer and whether the proxy core was
//! saturated.
//!
//! Knows nothing of how the numbers were taken.

use crate::proxies::Kind;

/// How a metric is printed.
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    /// Events per second.
    PerSec,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Bytes.
    Bytes,
    /// A plain count.
    Count,
    /// Percent of one core.
    Percent,
}

/// One number a scenario reports.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// What it is, as the row's label says it.
    pub name: &'static str,
    /// How to print it.
    pub unit: Unit,
    /// Which way is better (sets the "better peer" and the arrow in the label).
    pub higher_is_better: bool,
}

/// What one run of one scenario on one proxy measured: a value per metric, and the proxy's
/// CPU use over the measured window in percent of one core (if the scenario loads it).
#[derive(Clone, Debug)]
pub struct Sample {
    /// In the order of the scenario's metrics.
    pub values: Vec<f64>,
    /// Proxy CPU over the window, % of one core.
    pub cpu_pct: Option<f64>,
    /// Busy % of the proxy core and of the client core over the window, whoever used them
    /// (the kernel's loopback work included).
    pub cores: Option<[f64; 2]>,
}

/// One proxy's column of one scenario.
#[derive(Clone, Debug)]
pub enum Cell {
    /// The proxy cannot do this (nginx OSS and sticky cookies).
    NotApplicable(&'static str),
    /// Some run failed; the reason is printed under the table.
    Failed(String),
    /// Every run's sample.
    Measured(Vec<Sample>),
}

impl Cell {
    fn median(&self, metric: usize) -> Option<f64> {
        match self {
            Cell::Measured(samples) => median(samples.iter().map(|s| s.values[metric]).collect()),
            _ => None,
        }
    }

    fn cpu(&self) -> Option<f64> {
        match self {
            Cell::Measured(samples) => median(samples.iter().filter_map(|s| s.cpu_pct).collect()),
            _ => None,
        }
    }

    fn core(&self, core: usize) -> Option<f64> {
        match self {
            Cell::Measured(samples) => median(
                samples
                    .iter()
                    .filter_map(|s| Some(s.cores?[core]))
                    .collect(),
            ),
            _ => None,
        }
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// A scenario's results: its title, metrics, and a cell per proxy in [`Kind::ALL`] order.
pub struct Scenario {
    /// The row label's first part.
    pub title: String,
    /// Its metrics.
    pub metrics: &'static [Metric],
    /// tether, nginx, HAProxy.
    pub cells: Vec<Cell>,
    /// The busiest either core was in the moment before a run started, with no proxy and no
    /// load of ours running: anything well above 0 is someone else's work on the machine,
    /// and the row's numbers are suspect.
    pub background_pct: f64,
}

/// The proxy core counts as saturated at or above this CPU use.
const SATURATED_PCT: f64 = 90.0;
/// A core this busy between runs means someone else is using the machine.
const BACKGROUND_WARN_PCT: f64 = 15.0;

/// Renders every scenario as lines of one Markdown table, then the failures as notes.
pub fn render(scenarios: &[Scenario]) -> String {
    let mut out = String::from(
        "| row | tether | nginx | HAProxy | tether / better peer | proxy core saturated? |\n\
         |---|---:|---:|---:|---:|---|\n",
    );
    let mut notes = Vec::new();
    for scenario in scenarios {
        let saturation = saturation(&scenario.cells);
        for (index, metric) in scenario.metrics.iter().enumerate() {
            let arrow = if metric.higher_is_better {
                "↑"
            } else {
                "↓"
            };
            let mut line = format!("| {}: {} {arrow} |", scenario.title, metric.name);
            for (kind, cell) in Kind::ALL.iter().zip(&scenario.cells) {
                let text = match cell {
                    Cell::NotApplicable(why) => format!("n/a ({why})"),
                    Cell::Failed(reason) => {
                        if index == 0 {
                            notes.push(format!("{} / {}: {reason}", scenario.title, kind.name()));
                        }
                        "failed".to_string()
                    }
                    Cell::Measured(_) => cell
                        .median(index)
                        .map_or("-".into(), |v| format_value(v, metric.unit)),
                };
                line.push_str(&format!(" {text} |"));
            }
            line.push_str(&format!(
                " {} | {} |\n",
                ratio(&scenario.cells, index, metric),
                if index == 0 {
                    saturation.as_str()
                } else {
                    "″"
                }
            ));
            out.push_str(&line);
        }
    }
    let usage: Vec<String> = scenarios.iter().filter_map(core_use).collect();
    if !usage.is_empty() {
        out.push_str(
            "\nCore use over the measured window (medians): the proxy's own CPU, then how busy \
             core 0 (proxy + kernel work for its sockets + anything else) and core 1 (clients, \
             backends) were:\n",
        );
        for line in usage {
            out.push_str(&format!("- {line}\n"));
        }
    }
    let busy: Vec<String> = scenarios
        .iter()
        .filter(|s| s.background_pct >= BACKGROUND_WARN_PCT)
        .map(|s| format!("{} ({:.0} %)", s.title, s.background_pct))
        .collect();
    if !busy.is_empty() {
        out.push_str(&format!(
            "\nOther load on the machine: a core was busy between runs, with nothing of ours \
             running, in: {}. Those rows compete with it.\n",
            busy.join("; ")
        ));
    }
    if !notes.is_empty() {
        out.push_str("\nFailures:\n");
        for note in notes {
            out.push_str(&format!("- {}\n", note.replace('\n', " ")));
        }
    }
    out
}

/// tether's median over the better peer's: `1.20×` means tether's number is 1.2 times the
/// peer's (good for ↑ metrics, bad for ↓ ones).
fn ratio(cells: &[Cell], index: usize, metric: &Metric) -> String {
    let Some(tether) = cells[0].median(index) else {
        return "-".into();
    };
    let peers = cells[1..].iter().filter_map(|cell| cell.median(index));
    let better = if metric.higher_is_better {
        peers.fold(None, |best: Option<f64>, v| {
            Some(best.map_or(v, |b| b.max(v)))
        })
    } else {
        peers.fold(None, |best: Option<f64>, v| {
            Some(best.map_or(v, |b| b.min(v)))
        })
    };
    match better {
        None => "-".into(),
        Some(0.0) if tether == 0.0 => "= (both 0)".into(),
        Some(0.0) => "∞ (peer 0)".into(),
        Some(peer) => format!("{:.2}×", tether / peer),
    }
}

/// One note line for a scenario that loaded the proxy: per proxy, its CPU and both cores'.
fn core_use(scenario: &Scenario) -> Option<String> {
    let parts: Vec<String> = Kind::ALL
        .iter()
        .zip(&scenario.cells)
        .filter_map(|(kind, cell)| {
            let (cpu, core0, core1) = (cell.cpu()?, cell.core(0)?, cell.core(1)?);
            Some(format!(
                "{} {cpu:.0} % / core 0 {core0:.0} % / core 1 {core1:.0} %",
                kind.name()
            ))
        })
        .collect();
    (!parts.is_empty()).then(|| format!("{}: {}", scenario.title, parts.join("; ")))
}

/// "yes/no (CPU%)" per proxy that reported CPU.
fn saturation(cells: &[Cell]) -> String {
    let parts: Vec<String> = Kind::ALL
        .iter()
        .zip(cells)
        .filter_map(|(kind, cell)| {
            let cpu = cell.cpu()?;
            let verdict = if cpu >= SATURATED_PCT { "yes" } else { "no" };
            Some(format!("{} {verdict} ({cpu:.0} %)", kind.name()))
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// A value in its unit, with a thousands-friendly precision.
pub fn format_value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::PerSec if value >= 10_000.0 => format!("{:.1}k/s", value / 1000.0),
        Unit::PerSec => format!("{value:.0}/s"),
        Unit::Millis if value < 1.0 => format!("{:.0} µs", value * 1000.0),
        Unit::Millis => format!("{value:.2} ms"),
        Unit::Micros => format!("{value:.1} µs"),
        Unit::Bytes if value.abs() >= 1024.0 * 1024.0 => {
            format!("{:.1} MiB", value / (1024.0 * 1024.0))
        }
        Unit::Bytes if value.abs() >= 1024.0 => format!("{:.1} KiB", value / 1024.0),
        Unit::Bytes => format!("{value:.0} B"),
        Unit::Count => format!("{value:.0}"),
        Unit::Percent => format!("{value:.1} %"),
    }
}
