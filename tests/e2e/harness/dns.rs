//! A small authoritative DNS server on a loopback UDP port whose answers the test changes
//! while tether runs: A and AAAA records per name, NXDOMAIN for names it does not know, and
//! SERVFAIL to everything while told to fail. Built
//! on hickory-proto's message codec (the resolver's own), so tether's lookups are real DNS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// TTL of every answer, in seconds (tests set `valid=` to ask again sooner).
const TTL: u32 = 1;

/// A running DNS server; stops when dropped.
pub struct Dns {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    zone: Arc<Mutex<HashMap<String, Vec<IpAddr>>>>,
    queries: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Dns {
    /// Starts a server that knows no name yet.
    pub async fn start() -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind the DNS port");
        let addr = socket.local_addr().expect("DNS address");
        let zone = Arc::new(Mutex::new(HashMap::new()));
        let queries = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(serve(
            socket,
            zone.clone(),
            queries.clone(),
            failing.clone(),
        ));
        Dns {
            addr,
            zone,
            queries,
            failing,
            task,
        }
    }

    /// From now on `name` has the addresses `ips` (none: NOERROR with no records).
    pub fn set(&self, name: &str, ips: &[IpAddr]) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.zone.lock().unwrap().insert(name, ips.to_vec());
    }

    /// From now on every query gets SERVFAIL (`true`), or its answer again (`false`).
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Queries answered so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    socket: UdpSocket,
    zone: Arc<Mutex<HashMap<String, Vec<IpAddr>>>>,
    queries: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buffer[..n]) else {
            continue;
        };
        let answer = if failing.load(Ordering::SeqCst) {
            let mut failed = Message::error_msg(
                query.metadata.id,
                query.metadata.op_code,
                ResponseCode::ServFail,
            );
            failed.add_queries(query.queries.clone());
            failed
        } else {
            answer(&query, &zone.lock().unwrap())
        };
        // Counted once answered, so a test that saw the count grow knows the answer is out.
        let bytes = answer.to_vec();
        if let Ok(bytes) = bytes {
            let _ = socket.send_to(&bytes, from).await;
        }
        queries.fetch_add(1, Ordering::SeqCst);
    }
}

fn answer(query: &Message, zone: &HashMap<String, Vec<IpAddr>>) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    for question in &query.queries {
        response.add_query(question.clone());
        let name = question.name().to_string();
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        let Some(ips) = zone.get(&key) else {
            response.metadata.response_code = ResponseCode::NXDomain;
            continue;
        };
        for ip in ips {
            let wanted = matches!(
                (question.query_type(), ip),
                (RecordType::A, IpAddr::V4(_)) | (RecordType::AAAA, IpAddr::V6(_))
            );
            if wanted {
                let record = Record::from_rdata(question.name().clone(), TTL, RData::from(*ip));
                response.add_answer(record);
            }
        }
    }
    response
}
