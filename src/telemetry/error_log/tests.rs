//! The error log's lines and routing, through a real tracing subscriber set for one test.

use super::*;

/// A layer over memory sinks: `main` and `http` routes at the given levels.
fn logs(main: &[LevelFilter], http: &[LevelFilter]) -> (ErrorLogLayer, Vec<Arc<Sink>>) {
    let mut sinks = Vec::new();
    let mut routes = |levels: &[LevelFilter]| -> Vec<Route> {
        levels
            .iter()
            .map(|&level| {
                let sink = Arc::new(Sink::memory());
                sinks.push(sink.clone());
                Route { sink, level }
            })
            .collect()
    };
    let (main, http) = (routes(main), routes(http));
    let logs = Arc::new(Logs {
        routes: ArcSwap::from_pointee(Routes::new(main, http)),
        overridden: false,
    });
    (ErrorLogLayer { logs }, sinks)
}

fn with_layer(layer: ErrorLogLayer, log: impl FnOnce()) {
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, log);
}

#[test]
fn a_request_error_reads_like_nginx() {
    let (layer, sinks) = logs(&[LevelFilter::INFO], &[]);
    with_layer(layer, || {
        tracing::error!(
            target: "tether::proxy",
            connection = 5u64,
            client = %"10.1.2.3".parse::<std::net::IpAddr>().unwrap(),
            server = "example.com",
            request = %format_args!("{} {} {}", "GET", "/hub", "HTTP/1.1"),
            upstream = "http://hub/hub",
            host = "example.com",
            "no live upstreams while connecting to upstream"
        );
    });
    let written = sinks[0].written();
    let shape = regex::Regex::new(
        r#"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[error\] (\d+)#\d+: \*5 no live upstreams while connecting to upstream, client: 10\.1\.2\.3, server: example\.com, request: "GET /hub HTTP/1\.1", upstream: "http://hub/hub", host: "example\.com"\n$"#,
    )
    .unwrap();
    let captures = shape
        .captures(&written)
        .unwrap_or_else(|| panic!("{written:?}"));
    assert_eq!(captures[1], std::process::id().to_string());
}

#[test]
fn control_bytes_never_reach_the_file_and_an_event_is_one_line() {
    let (layer, sinks) = logs(&[LevelFilter::INFO], &[]);
    with_layer(layer, || {
        tracing::warn!(host = "evil\x1b[31m.example", "two\nlines\x1b[0m");
    });
    let written = sinks[0].written();
    assert!(!written.contains('\x1b'), "{written:?}");
    assert_eq!(written.matches('\n').count(), 1, "{written:?}");
    assert!(
        written.contains(r#"two\x0Alines\x1B[0m, host: "evil\x1B[31m.example""#),
        "{written:?}"
    );
}

#[test]
fn each_log_takes_events_from_its_level_on() {
    let (layer, sinks) = logs(&[LevelFilter::WARN, LevelFilter::DEBUG], &[]);
    with_layer(layer, || {
        tracing::debug!("a debug line");
        tracing::info!("an info line");
        tracing::warn!("a warn line");
        tracing::error!("an error line");
        tracing::trace!("finer than nginx's debug");
    });
    let warn = sinks[0].written();
    assert!(
        !warn.contains("[info]") && !warn.contains("[debug]"),
        "{warn}"
    );
    assert!(
        warn.contains("[warn] ") && warn.contains("[error] "),
        "{warn}"
    );
    let debug = sinks[1].written();
    assert_eq!(debug.lines().count(), 4, "{debug}");
    assert!(debug.contains("[debug] "), "{debug}");
    assert!(!debug.contains("finer"), "{debug}");
}

#[test]
fn http_events_go_to_the_http_log_and_process_events_to_the_main_one() {
    let (layer, sinks) = logs(&[LevelFilter::INFO], &[LevelFilter::INFO]);
    with_layer(layer, || {
        tracing::error!(target: "tether::proxy::forward", "an upstream failed");
        tracing::warn!(target: "tether::peer", "a server went down");
        tracing::info!(target: "tether::reload", "reload applied");
        tracing::info!(target: "tether", "stopping");
    });
    let (main, http) = (sinks[0].written(), sinks[1].written());
    assert!(
        main.contains("reload applied") && main.contains("stopping"),
        "{main}"
    );
    assert!(!main.contains("upstream failed"), "{main}");
    assert!(
        http.contains("an upstream failed") && http.contains("a server went down"),
        "{http}"
    );
    assert!(!http.contains("reload"), "{http}");
}

#[test]
fn nginx_levels_map_onto_tracing_levels() {
    let mapped: Vec<_> = ErrorLevel::ALL
        .iter()
        .map(|(level, _)| tracing_level(*level))
        .collect();
    use LevelFilter as L;
    assert_eq!(
        mapped,
        [
            L::DEBUG,
            L::INFO,
            L::INFO,
            L::WARN,
            L::ERROR,
            L::ERROR,
            L::ERROR,
            L::ERROR
        ]
    );
}

#[test]
fn a_server_with_its_own_log_takes_its_request_events() {
    let (own, http, main) = (
        Arc::new(Sink::memory()),
        Arc::new(Sink::memory()),
        Arc::new(Sink::memory()),
    );
    let route = |sink: &Arc<Sink>| Route {
        sink: sink.clone(),
        level: LevelFilter::INFO,
    };
    let servers = HashMap::from([("site.example".to_string(), vec![route(&own)])]);
    let logs = Arc::new(Logs {
        routes: ArcSwap::from_pointee(Routes::with_servers(
            vec![route(&main)],
            vec![route(&http)],
            servers,
        )),
        overridden: false,
    });
    with_layer(ErrorLogLayer { logs }, || {
        tracing::error!(target: "tether::proxy", server = "site.example", "its own");
        tracing::error!(target: "tether::proxy", server = "other.example", "the http level's");
        tracing::warn!(target: "tether::peer", "no server named");
        tracing::info!(target: "tether::reload", server = "site.example", "process event");
    });
    assert_eq!(own.written().lines().count(), 1, "{}", own.written());
    assert!(own.written().contains("its own"));
    let http = http.written();
    assert!(
        http.contains("the http level's") && http.contains("no server named"),
        "{http}"
    );
    assert!(!http.contains("its own"), "{http}");
    assert!(main.written().contains("process event"));
}
