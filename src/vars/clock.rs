//! nginx's time formats: `$time_local` (`06/Dec/2026:04:20:38 +0000`), `$time_iso8601`
//! (`2026-12-06T04:20:38+00:00`), `$msec` (`1765000000.123`). tether writes UTC (the offset is
//! always `+0000`): it carries no time-zone database. Pure std.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar time to the second.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
}

fn civil(time: SystemTime) -> Civil {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil: exact for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: rest / 3_600,
        minute: rest / 60 % 60,
        second: rest % 60,
    }
}

/// Appends `$time_local`: `06/Dec/2026:04:20:38 +0000`. The text changes once a second, so
/// each thread keeps the last one it wrote (nginx caches its time strings likewise).
pub fn time_local(time: SystemTime, out: &mut String) {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            text.clear();
            format_time_local(time, text);
            *at = secs;
        }
        out.push_str(text);
    });
}

fn format_time_local(time: SystemTime, out: &mut String) {
    let c = civil(time);
    let month = MONTHS[(c.month - 1) as usize];
    let _ = write!(
        out,
        "{:02}/{month}/{}:{:02}:{:02}:{:02} +0000",
        c.day, c.year, c.hour, c.minute, c.second
    );
}

/// Appends `$time_iso8601`: `2026-12-06T04:20:38+00:00`.
pub fn time_iso8601(time: SystemTime, out: &mut String) {
    let c = civil(time);
    let _ = write!(
        out,
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    );
}

/// Appends `$msec`: seconds since the epoch with milliseconds, `1765000000.123`.
pub fn msec(time: SystemTime, out: &mut String) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let _ = write!(out, "{}.{:03}", since.as_secs(), since.subsec_millis());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
    }

    #[test]
    fn nginx_formats() {
        let mut out = String::new();
        // 2026-12-06T04:20:38Z.
        let time = at(1_796_530_838, 123);
        time_local(time, &mut out);
        assert_eq!(out, "06/Dec/2026:04:20:38 +0000");
        out.clear();
        time_iso8601(time, &mut out);
        assert_eq!(out, "2026-12-06T04:20:38+00:00");
        out.clear();
        msec(time, &mut out);
        assert_eq!(out, "1796530838.123");
        out.clear();
        // A leap day and the epoch.
        time_local(at(951_782_400, 0), &mut out);
        assert_eq!(out, "29/Feb/2000:00:00:00 +0000");
        out.clear();
        time_local(at(0, 5), &mut out);
        assert_eq!(out, "01/Jan/1970:00:00:00 +0000");
    }
}
