//! A small authoritative DNS server on a loopback UDP port whose answers the test changes
//! while tether runs: A and AAAA records per name, NXDOMAIN for names it does not know. Built
//! on hickory-proto's message codec (the resolver's own), so tether's lookups are real DNS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
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
        let task = tokio::spawn(serve(socket, zone.clone(), queries.clone()));
        Dns {
            addr,
            zone,
            queries,
            task,
        }
    }

    /// From now on `name` has the addresses `ips` (none: NOERROR with no records).
    pub fn set(&self, name: &str, ips: &[IpAddr]) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.zone.lock().unwrap().insert(name, ips.to_vec());
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
) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buffer[..n]) else {
            continue;
        };
        queries.fetch_add(1, Ordering::SeqCst);
        let answer = answer(&query, &zone.lock().unwrap());
        if let Ok(bytes) = answer.to_vec() {
            let _ = socket.send_to(&bytes, from).await;
        }
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
