//! The demo page in a real browser: headless Chromium loads it through tether running
//! `conf/demo.conf` in front of the demo farm, the test stops the app server the page is
//! pinned to by clicking the page's own button, and reads from the DOM that the WebSocket, the
//! event stream, the long poll and the plain requests all moved together to one other server,
//! that the tether panel (fed by tether's status page) shows the stopped server down, and —
//! once it is started again and back up — that all four stay where they are. A screenshot of
//! the page at the end is saved under `target/`.
//!
//! The test speaks to Chromium over the DevTools protocol (a WebSocket Chromium opens on a
//! port it picks and names in its profile folder). Skips where Chromium is not installed; with
//! `TETHER_REQUIRE_CHROMIUM` set it fails instead.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tether::demo::Farm;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::browser::{Browser, chromium, headless};
use crate::harness::{Proxy, get, within};

/// Where the page is read from, for each transport row: the server it shows and its state.
const ROWS: &str = r#"JSON.stringify(["ws", "sse", "poll", "fetch"].map(id => {
    const tr = document.getElementById(id);
    return [tr.querySelector(".server").textContent, tr.querySelector(".state").textContent];
}))"#;

/// The tether panel: each app server's name, state and tunnels, as the page shows them.
const PANEL: &str = r##"JSON.stringify([...document.querySelectorAll("#tether tbody tr")].map(tr =>
    Object.fromEntries([...tr.cells].map(td => [td.className.split(" ")[0], td.textContent]))))"##;

/// A DevTools protocol session with one page.
struct DevTools {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl DevTools {
    /// Attaches to the first page of the Chromium whose profile is `profile`.
    async fn attach(profile: &Path) -> DevTools {
        // Chromium writes the port it chose (and the browser's path) once it listens.
        let file = profile.join("DevToolsActivePort");
        let port: u16 = within(Duration::from_secs(30), "Chromium's DevTools port", async {
            loop {
                if let Some(port) = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|text| text.lines().next()?.parse().ok())
                {
                    return port;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let devtools: SocketAddr = ([127, 0, 0, 1], port).into();
        let targets: Value = serde_json::from_str(&get(devtools, "/json/list").await.body)
            .expect("DevTools targets");
        let page = targets
            .as_array()
            .and_then(|all| all.iter().find(|t| t["type"] == "page"))
            .expect("a page target");
        // Its URL names the host our request named ("localhost", which may resolve to ::1).
        let id = page["id"].as_str().expect("the page's id");
        let url = format!("ws://{devtools}/devtools/page/{id}");
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the DevTools WebSocket");
        DevTools { socket, next_id: 0 }
    }

    /// Calls `method` and returns its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(message)).await.unwrap();
        within(Duration::from_secs(20), method, async {
            while let Some(Ok(message)) = self.socket.next().await {
                let Ok(text) = message.to_text() else {
                    continue;
                };
                let reply: Value = serde_json::from_str(text).unwrap_or_default();
                if reply["id"] == id {
                    return reply["result"].clone();
                }
            }
            panic!("DevTools closed while waiting for {method}");
        })
        .await
    }

    /// Evaluates `expression` in the page; its value (JSON text for the queries above).
    async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.call("Runtime.evaluate", params).await;
        result["result"]["value"].clone()
    }

    /// The JSON a query expression returns, parsed.
    async fn query(&mut self, expression: &str) -> Value {
        let text = self.eval(expression).await;
        serde_json::from_str(text.as_str().unwrap_or("null")).unwrap_or_default()
    }

    /// Polls `expression` until `done` accepts its value (bounded); the last value.
    async fn until(
        &mut self,
        what: &str,
        expression: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let limit = Duration::from_secs(45);
        let started = tokio::time::Instant::now();
        loop {
            let value = self.query(expression).await;
            if done(&value) {
                return value;
            }
            if started.elapsed() >= limit {
                // The page's own event log says what it saw, in order.
                let log = self.eval(r#"document.getElementById("log").textContent"#);
                let log = log.await;
                let log = log.as_str().unwrap_or_default();
                panic!("timed out waiting for {what}: {value}\nthe page's log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The one server every transport row shows, when all four show the same one, live.
fn together(rows: &Value) -> Option<String> {
    let rows = rows.as_array()?;
    let first = rows.first()?[0].as_str()?;
    let all = rows.len() == 4 && rows.iter().all(|row| row[0] == first && row[1] == "live");
    (all && first != "–").then(|| first.to_string())
}

/// The tether panel's row for `name`.
fn panel_row<'a>(panel: &'a Value, name: &str) -> Option<&'a Value> {
    panel.as_array()?.iter().find(|row| row["name"] == name)
}

/// `conf/demo.conf` with the farm's real addresses and the harness's listener.
fn demo_conf(apps: &[(String, SocketAddr, bool)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/demo.conf");
    let mut text = std::fs::read_to_string(path).expect("conf/demo.conf");
    for ((_, written), (_, addr, _)) in tether::demo::DEMO_APPS.iter().zip(apps) {
        text = text.replace(written, &addr.to_string());
    }
    text.replace("listen 127.0.0.1:8080", "listen {listen}")
}

#[tokio::test]
async fn the_page_moves_every_transport_together_and_shows_what_tether_decided() {
    let Some(chromium) = chromium() else { return };
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let names = ["a", "b", "c"].map(|name| (name.to_string(), any_port));
    let farm = Farm::start(names.to_vec()).await.expect("the demo farm");
    let proxy = Proxy::start(&demo_conf(&farm.status().await), &[]).await;

    let profile = tempfile::tempdir().unwrap();
    let child = headless(&chromium, profile.path())
        .args(["--remote-debugging-port=0", "--window-size=1000,1500"])
        .arg(proxy.url("/"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start Chromium");
    let _browser = Browser(child);
    let mut page = DevTools::attach(profile.path()).await;

    let rows = page
        .until("all four transports on one server", ROWS, |rows| {
            together(rows).is_some()
        })
        .await;
    let pinned = together(&rows).expect("one server");

    // Stop it through the page's own button.
    let click =
        format!(r#"document.querySelector('#apps .app[data-name="{pinned}"] button').click()"#);
    page.eval(&click).await;
    let rows = page
        .until(
            "all four transports moved to one other server",
            ROWS,
            |rows| together(rows).is_some_and(|now| now != pinned),
        )
        .await;
    let moved_to = together(&rows).expect("one server");
    let panel = page
        .until(
            "the panel to show the stopped server down",
            PANEL,
            |panel| {
                panel_row(panel, &pinned).is_some_and(|row| row["state"] == "down")
                    && panel_row(panel, &moved_to)
                        .is_some_and(|row| row["websocket"] == "1" && row["sse"] == "1")
            },
        )
        .await;
    let old = panel_row(&panel, &pinned).expect("the stopped server's row");
    assert_eq!(
        old["websocket"], "0",
        "nothing open on a stopped server: {panel}"
    );
    assert_eq!(old["sse"], "0", "{panel}");

    // Start it again: once tether sees it up, the page's transports stay where they are.
    let click =
        format!(r#"document.querySelector('#apps .app[data-name="{pinned}"] button').click()"#);
    page.eval(&click).await;
    page.until("the panel to show it up again", PANEL, |panel| {
        panel_row(panel, &pinned).is_some_and(|row| row["state"] == "up")
    })
    .await;
    let last_poll = r##"JSON.stringify(document.querySelector("#poll .last").textContent)"##;
    let before = page.query(last_poll).await;
    page.until("another long poll answered", last_poll, |now| {
        *now != before
    })
    .await;
    let rows = page.query(ROWS).await;
    assert_eq!(
        together(&rows).as_deref(),
        Some(moved_to.as_str()),
        "stayed together: {rows}"
    );

    let shot = page
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap_or_default())
        .expect("a PNG");
    let path = screenshot_path();
    std::fs::write(&path, png).expect("save the screenshot");
    println!("screenshot of the demo page: {}", path.display());
}

/// `target/demo-page.png` (CARGO_TARGET_DIR honoured).
fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("demo-page.png")
}
