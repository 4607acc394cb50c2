//! The PROXY header: v1 and v2 as HAProxy's spec writes them, refusals, arbitrary bytes, and
//! reading from a real socket exactly up to the first byte after the header.

use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn proxied(client: &str, server: &str) -> Option<Proxied> {
    Some(Proxied {
        client: addr(client),
        server: addr(server),
    })
}

/// A v2 header: `command` (0 LOCAL, 1 PROXY), `family_transport`, the address block, and
/// `tlv_len` bytes of TLVs.
fn v2(command: u8, family_transport: u8, block: &[u8], tlv_len: usize) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x20 | command);
    header.push(family_transport);
    let length = u16::try_from(block.len() + tlv_len).unwrap();
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(block);
    // PP2_TYPE_NOOP TLVs, as padding: their content is never looked at.
    header.extend(std::iter::repeat_n(0x04, tlv_len));
    header
}

fn v4_block() -> Vec<u8> {
    let mut block = vec![203, 0, 113, 7, 192, 0, 2, 1];
    block.extend_from_slice(&51000u16.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    block
}

fn header(bytes: &[u8]) -> (usize, Option<Proxied>) {
    match frame(bytes) {
        Ok(Frame::Header { len, proxied }) => (len, proxied),
        other => panic!("not a whole header: {other:?}"),
    }
}

#[test]
fn v1_lines() {
    let line = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\nGET / HTTP/1.1\r\n";
    let want = proxied("203.0.113.7:51000", "192.0.2.1:443");
    assert_eq!(header(line), (44, want));
    let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n";
    let want = proxied("[2001:db8::7]:51000", "[2001:db8::1]:443");
    assert_eq!(header(line), (line.len(), want));
    assert_eq!(header(b"PROXY UNKNOWN\r\n"), (15, None));
    let unknown = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    assert_eq!(header(unknown), (unknown.len(), None));
}

#[test]
fn v1_refusals_and_waits() {
    for bad in [
        &b"PROXY TCP4 203.0.113.7 192.0.2.1 51000\r\n"[..],
        b"PROXY TCP4 2001:db8::7 192.0.2.1 51000 443\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 051000 443\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 443\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 1 443 extra\r\n",
        b"PROXY TCP4  203.0.113.7 192.0.2.1 1 443\r\n",
        b"PROXY UDP4 203.0.113.7 192.0.2.1 1 443\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 1 \xff\r\n",
    ] {
        assert!(matches!(frame(bad), Err(Refusal::Broken(_))), "{bad:?}");
    }
    let endless = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat();
    assert!(matches!(frame(&endless), Err(Refusal::Broken(_))));
    assert_eq!(frame(b"PRO").unwrap(), Frame::Incomplete);
    assert_eq!(frame(b"PROXY TCP4 203.0.113.7").unwrap(), Frame::Incomplete);
    assert!(matches!(
        frame(b"GET / HTTP/1.1\r\n"),
        Err(Refusal::Missing(_))
    ));
    assert!(matches!(frame(b"\x16\x03\x01"), Err(Refusal::Missing(_))));
}

#[test]
fn v2_headers() {
    let tcp4 = v2(1, 0x11, &v4_block(), 0);
    let want = proxied("203.0.113.7:51000", "192.0.2.1:443");
    assert_eq!(header(&tcp4), (28, want));
    // TLVs count in the length and are skipped, however long.
    let with_tlvs = v2(1, 0x11, &v4_block(), 60_000);
    assert_eq!(header(&with_tlvs[..PEEK]), (28 + 60_000, want));
    let mut block = Vec::new();
    for ip in ["2001:db8::7", "2001:db8::1"] {
        block.extend_from_slice(&ip.parse::<Ipv6Addr>().unwrap().octets());
    }
    block.extend_from_slice(&51000u16.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    let tcp6 = v2(1, 0x21, &block, 5);
    let want = proxied("[2001:db8::7]:51000", "[2001:db8::1]:443");
    assert_eq!(header(&tcp6), (16 + 36 + 5, want));
    // LOCAL (the balancer's own health check) and families without usable addresses.
    assert_eq!(header(&v2(0, 0x11, &v4_block(), 0)), (28, None));
    assert_eq!(header(&v2(0, 0x00, &[], 0)), (16, None));
    assert_eq!(header(&v2(1, 0x00, &[], 3)), (19, None));
    assert_eq!(header(&v2(1, 0x31, &[0; 216], 0)), (232, None));
}

#[test]
fn v2_refusals_and_waits() {
    let mut wrong_version = v2(1, 0x11, &v4_block(), 0);
    wrong_version[12] = 0x11;
    let mut wrong_command = v2(1, 0x11, &v4_block(), 0);
    wrong_command[12] = 0x22;
    let mut wrong_family = v2(1, 0x11, &v4_block(), 0);
    wrong_family[13] = 0x41;
    let short = v2(1, 0x11, &v4_block()[..8], 0);
    for bad in [wrong_version, wrong_command, wrong_family, short] {
        assert!(matches!(frame(&bad), Err(Refusal::Broken(_))), "{bad:?}");
    }
    let tcp4 = v2(1, 0x11, &v4_block(), 0);
    for cut in [1, 12, 15, 16, 27] {
        assert_eq!(frame(&tcp4[..cut]).unwrap(), Frame::Incomplete, "{cut}");
    }
}

proptest! {
    /// Whatever the bytes, framing answers without panicking, a header is never shorter than
    /// what it read, and it never asks for more than a whole peek can tell.
    #[test]
    fn arbitrary_bytes_frame_safely(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = frame(&bytes);
        let mut v1 = b"PROXY ".to_vec();
        v1.extend_from_slice(&bytes);
        if let Ok(Frame::Header { len, .. }) = frame(&v1) {
            prop_assert!(len <= V1_MAX && len <= v1.len());
        }
        let mut binary = V2_SIGNATURE.to_vec();
        binary.extend_from_slice(&bytes);
        match frame(&binary[..binary.len().min(PEEK)]) {
            Ok(Frame::Incomplete) => prop_assert!(binary.len() < PEEK),
            Ok(Frame::Header { len, .. }) => prop_assert!(len >= V2_FIXED),
            Err(_) => {}
        }
    }
}

/// A connected pair on loopback: (client side, server side).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

async fn read_bounded(server: &TcpStream) -> Result<Option<Proxied>, Refusal> {
    timeout(Duration::from_secs(5), read(server))
        .await
        .expect("the header read hung")
}

#[tokio::test]
async fn a_header_split_across_segments_is_read_exactly() {
    let (mut client, mut server) = pair().await;
    client.set_nodelay(true).unwrap();
    let line = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n";
    client.write_all(&line[..9]).await.unwrap();
    let reader = tokio::spawn(async move {
        let proxied = read_bounded(&server).await.unwrap();
        let mut rest = [0u8; 5];
        server.read_exact(&mut rest).await.unwrap();
        (proxied, rest)
    });
    tokio::time::sleep(Duration::from_millis(20)).await; // paces the second segment
    client.write_all(&line[9..]).await.unwrap();
    client.write_all(b"GET /").await.unwrap();
    let (proxied, rest) = reader.await.unwrap();
    assert_eq!(proxied, self::proxied("203.0.113.7:51000", "192.0.2.1:443"));
    assert_eq!(&rest, b"GET /");
}

#[tokio::test]
async fn v2_tlvs_are_skipped_and_the_next_bytes_stay() {
    let (mut client, mut server) = pair().await;
    let mut bytes = v2(1, 0x11, &v4_block(), 20_000);
    bytes.extend_from_slice(b"\x16\x03\x01");
    let writer = tokio::spawn(async move {
        client.write_all(&bytes).await.unwrap();
        client
    });
    let proxied = read_bounded(&server).await.unwrap();
    assert_eq!(proxied, self::proxied("203.0.113.7:51000", "192.0.2.1:443"));
    let mut rest = [0u8; 3];
    server.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"\x16\x03\x01");
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn a_connection_without_a_header_or_cut_short_is_refused() {
    let (mut client, server) = pair().await;
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(matches!(
        read_bounded(&server).await,
        Err(Refusal::Missing(_))
    ));

    let (mut client, server) = pair().await;
    client.write_all(b"PROXY TCP4 203.0.113.7").await.unwrap();
    drop(client);
    assert!(matches!(read_bounded(&server).await, Err(Refusal::Closed)));

    let (mut client, server) = pair().await;
    client
        .write_all(&v2(1, 0x11, &v4_block(), 1000)[..100])
        .await
        .unwrap();
    drop(client);
    assert!(matches!(read_bounded(&server).await, Err(Refusal::Closed)));

    let (client, server) = pair().await;
    drop(client);
    assert!(matches!(read_bounded(&server).await, Err(Refusal::Empty)));
}
