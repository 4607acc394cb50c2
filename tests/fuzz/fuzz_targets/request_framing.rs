//! Fuzz target: any bytes as a client's HTTP/1 stream, read by tether's parser
//! (`server::http1::replay`) and by hyper's own HTTP/1 server over an in-memory pipe. Every
//! request tether accepts, hyper must accept too, in the same place, with the same method,
//! target and body length: tether may refuse more (nginx's rules), never take what hyper
//! would refuse or cut the stream into requests differently. Where hyper stops at a request
//! that ends the connection (HTTP/1.0 without keep-alive, `Connection: close`), a tether
//! connection stops too, so only that far is compared. The same promise as
//! `tests/e2e/framing_property.rs`, unseeded.

#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tether::config::HeadRules;
use tether::server::http1::replay::replay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

/// True when `request` ends its connection, by the rules both servers follow.
fn closes(request: &hyper::Request<hyper::body::Incoming>) -> bool {
    let connection = |token: &[u8]| {
        let values = request.headers().get_all(hyper::header::CONNECTION);
        values.iter().any(|value| {
            let mut tokens = value.as_bytes().split(|&b| b == b',');
            tokens.any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
    };
    connection(b"close")
        || (request.version() == hyper::Version::HTTP_10 && !connection(b"keep-alive"))
}

/// The requests hyper accepts from `input` (`METHOD target body-length`), and whether the last
/// of them ends the connection.
async fn read_by_hyper(input: &[u8]) -> (Vec<String>, bool) {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let seen = Arc::new(Mutex::new(Vec::<(String, bool)>::new()));
    let record = seen.clone();
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let record = record.clone();
        async move {
            let line = format!("{} {}", request.method(), request.uri());
            let last = closes(&request);
            if let Ok(body) = request.into_body().collect().await {
                let length = body.to_bytes().len();
                let mut seen = record.lock().expect("hyper's list");
                seen.push((format!("{line} {length}"), last));
            }
            Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new()))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(TokioIo::new(server), service);
    let feed = async {
        let _ = client.write_all(input).await;
        let _ = client.shutdown().await;
        let mut sink = Vec::new();
        let _ = client.read_to_end(&mut sink).await;
    };
    let _ = tokio::join!(connection, feed);
    let seen = seen.lock().expect("hyper's list");
    let requests = seen.iter().map(|(line, _)| line.clone()).collect();
    (requests, seen.last().is_some_and(|(_, last)| *last))
}

fuzz_target!(|data: &[u8]| {
    // Small limits, so that the fuzzer reaches them with short inputs.
    let rules = HeadRules {
        max_line: 128,
        max_head: 512,
        max_headers: 12,
        ..HeadRules::default()
    };
    let mut tether = replay(data, data.len(), &rules);
    let stopped = tether.last().is_some_and(|line| {
        line.starts_with("refused") || line.contains("incomplete") || line.contains("malformed")
    });
    if stopped {
        tether.pop();
    }
    let (hyper, last_closes) = runtime().block_on(read_by_hyper(data));
    let compared = if last_closes {
        &tether[..tether.len().min(hyper.len())]
    } else {
        &tether[..]
    };
    assert!(
        hyper.starts_with(compared),
        "tether accepted {tether:?}, hyper {hyper:?}"
    );
});
