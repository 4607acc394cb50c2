//! One SignalR connection as the server holds it between requests, and the JSON hub protocol
//! it speaks: the handshake, invocations answered by completions, pings and the close message.
//!
//! Messages to the client queue in an outbox whatever the transport; the transport that holds
//! the connection (a WebSocket, an SSE stream, the pending long poll) takes them from there.
//! Knows nothing of HTTP: the transports in `transports.rs` feed it text and carry its output.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Hub, Transport};

/// Ends every record of the JSON hub protocol, handshake included.
pub const RECORD_SEPARATOR: char = '\u{1e}';

/// The hub protocol messages this server reads and writes (ASP.NET Core's `HubProtocolConstants`).
const INVOCATION: u64 = 1;
const COMPLETION: u64 = 3;
const PING: u64 = 6;
const CLOSE: u64 = 7;

/// A connection negotiated with this server, looked up by its token on every request.
pub struct Connection {
    /// The token the client names in `?id=`.
    pub token: String,
    /// Bound by the first transport request; a connection never changes transports.
    transport: OnceLock<Transport>,
    outbox: mpsc::UnboundedSender<String>,
    /// Taken by the transport request that carries messages to the client (a long poll holds
    /// it for one poll).
    pub inbox: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>,
    /// The text of a record not yet complete (a send may split one).
    partial: Mutex<String>,
    handshaken: AtomicBool,
    /// Cancelled when the connection ends: the client said goodbye, its transport went away,
    /// or the server stopped.
    pub ended: CancellationToken,
}

/// What a transport request finds when it binds the connection to its transport.
#[derive(Debug, PartialEq, Eq)]
pub enum Binding {
    /// The connection's first transport request.
    First,
    /// A later request of the same transport (a long poll after the first).
    Again,
    /// The connection is bound to another transport.
    Other(Transport),
}

impl Connection {
    /// A new connection with token `token`, ended at the latest with `stopping`.
    pub fn new(token: String, stopping: &CancellationToken) -> Connection {
        let (outbox, inbox) = mpsc::unbounded_channel();
        Connection {
            token,
            transport: OnceLock::new(),
            outbox,
            inbox: Arc::new(tokio::sync::Mutex::new(inbox)),
            partial: Mutex::new(String::new()),
            handshaken: AtomicBool::new(false),
            ended: stopping.child_token(),
        }
    }

    /// Binds the connection to `transport` (only its first transport request does).
    pub fn bind(&self, transport: Transport) -> Binding {
        let mut first = false;
        let bound = *self.transport.get_or_init(|| {
            first = true;
            transport
        });
        match (first, bound == transport) {
            (true, _) => Binding::First,
            (false, true) => Binding::Again,
            (false, false) => Binding::Other(bound),
        }
    }

    /// The transport the connection is bound to, if any request has bound it yet.
    pub fn transport(&self) -> Option<Transport> {
        self.transport.get().copied()
    }

    /// Ends the connection: its transport finishes, its pings stop.
    pub fn end(&self) {
        self.ended.cancel();
    }

    /// Whether the connection has ended.
    pub fn is_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    /// Takes text the client sent (a WebSocket message, a POST body) and answers each complete
    /// record in it.
    pub fn receive(self: &Arc<Self>, hub: &Arc<Hub>, text: &str) {
        let records: Vec<String> = {
            let mut partial = self.partial.lock().expect("no panics while holding it");
            partial.push_str(text);
            let complete = partial.rfind(RECORD_SEPARATOR).map_or(0, |at| at + 1);
            let whole: String = partial.drain(..complete).collect();
            whole
                .split_terminator(RECORD_SEPARATOR)
                .map(str::to_string)
                .collect()
        };
        for record in records {
            self.record(hub, &record);
        }
    }

    fn record(self: &Arc<Self>, hub: &Arc<Hub>, record: &str) {
        let message: Value = match serde_json::from_str(record) {
            Ok(message) => message,
            Err(error) => return self.fail(&format!("not JSON: {error}")),
        };
        if !self.handshaken.load(Ordering::SeqCst) {
            return self.handshake(hub, &message);
        }
        match message["type"].as_u64() {
            Some(INVOCATION) => self.invoke(hub, &message),
            // The client's keep-alive: its arrival is all that counts.
            Some(PING) => {}
            Some(CLOSE) => self.end(),
            // Stream items, cancellations and the rest: nothing this hub offers uses them.
            _ => {}
        }
    }

    /// `{"protocol":"json","version":1}` is answered `{}`; anything else gets an error and
    /// the connection ends, as ASP.NET Core does.
    fn handshake(self: &Arc<Self>, hub: &Arc<Hub>, request: &Value) {
        if request["protocol"] != "json" || request["version"] != 1 {
            return self.fail(&format!("unsupported handshake {request}"));
        }
        self.handshaken.store(true, Ordering::SeqCst);
        self.send(&json!({}));
        tokio::spawn(keep_alive(self.clone(), hub.clone()));
    }

    /// The hub's methods: `Echo(x)` answers `{"message": x, "server": NAME}`, `WhoAmI()`
    /// answers `NAME`. A blocking invocation (one with an id) gets its completion.
    fn invoke(&self, hub: &Hub, message: &Value) {
        hub.invoked(self.transport());
        let arguments = message["arguments"].as_array().cloned().unwrap_or_default();
        let result = match (message["target"].as_str(), arguments.as_slice()) {
            (Some("Echo"), [argument]) => Ok(json!({ "message": argument, "server": hub.name })),
            (Some("WhoAmI"), []) => Ok(json!(hub.name)),
            (target, _) => Err(format!(
                "Failed to invoke '{}': no such method taking {} arguments",
                target.unwrap_or(""),
                arguments.len()
            )),
        };
        let Some(id) = message["invocationId"].as_str() else {
            return;
        };
        self.send(&match result {
            Ok(result) => json!({ "type": COMPLETION, "invocationId": id, "result": result }),
            Err(error) => json!({ "type": COMPLETION, "invocationId": id, "error": error }),
        });
    }

    fn fail(&self, why: &str) {
        self.send(&json!({ "error": why }));
        self.end();
    }

    /// Queues one record for the client.
    fn send(&self, message: &Value) {
        // The outbox outlives every sender: its receiver is owned by this connection.
        let _ = self.outbox.send(format!("{message}{RECORD_SEPARATOR}"));
    }
}

/// Pings the client at once after the handshake (so even a short session carries one through
/// the proxy), then every `hub.keep_alive` until the connection ends.
async fn keep_alive(connection: Arc<Connection>, hub: Arc<Hub>) {
    loop {
        connection.send(&json!({ "type": PING }));
        hub.pinged();
        tokio::select! {
            _ = tokio::time::sleep(hub.keep_alive) => {}
            _ = connection.ended.cancelled() => return,
        }
    }
}
