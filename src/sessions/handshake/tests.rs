use super::*;

/// ASP.NET Core's negotiate v1 response, as its server writes it.
const NEGOTIATE_V1: &[u8] = br#"{"negotiateVersion":1,"connectionId":"AbCdEfGhIjKlMnOpQrStUv","connectionToken":"t0KeN-Xyz_123abcDEF456","availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}"#;
/// Negotiate v0: the connection id is the id.
const NEGOTIATE_V0: &[u8] =
    br#"{"connectionId":"V0-Id_abcdefghijklmnop","availableTransports":[]}"#;

fn scan_in_pieces(kind: Handshake, body: &[u8], piece: usize) -> Option<Vec<u8>> {
    let mut scan = HandshakeScan::new(kind);
    for chunk in body.chunks(piece) {
        if let Some(key) = scan.feed(chunk) {
            return Some(key);
        }
    }
    scan.finish()
}

#[test]
fn a_negotiate_v1_response_gives_its_connection_token_however_it_is_cut() {
    for piece in [1, 2, 7, 40, NEGOTIATE_V1.len()] {
        let key = scan_in_pieces(Handshake::SignalrNegotiate, NEGOTIATE_V1, piece);
        assert_eq!(
            key.as_deref(),
            Some(&b"t0KeN-Xyz_123abcDEF456"[..]),
            "{piece}"
        );
    }
}

#[test]
fn a_negotiate_v0_response_gives_its_connection_id_at_the_end() {
    let mut scan = HandshakeScan::new(Handshake::SignalrNegotiate);
    assert_eq!(scan.feed(NEGOTIATE_V0), None);
    assert_eq!(
        scan.finish().as_deref(),
        Some(&b"V0-Id_abcdefghijklmnop"[..])
    );
    assert!(scan.is_done());
}

#[test]
fn engine_io_open_packets_of_versions_4_and_3_give_their_sid() {
    let v4 = br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
    let v3_text = br#"97:0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}2:40"#;
    let mut v3_binary = vec![0u8, 9, 7, 0xff];
    v3_binary.extend_from_slice(&v3_text[3..]);
    for body in [&v4[..], &v3_text[..], &v3_binary[..]] {
        for piece in [1, 5, body.len()] {
            let key = scan_in_pieces(Handshake::EngineioOpen, body, piece);
            assert_eq!(key.as_deref(), Some(&b"lv_VI97HAXpY6yYWAAAC"[..]));
        }
    }
}

#[test]
fn bodies_without_a_key_give_nothing_and_the_scan_stops_after_its_prefix() {
    let mut scan = HandshakeScan::new(Handshake::EngineioOpen);
    assert_eq!(scan.feed(b"ok"), None);
    assert_eq!(scan.finish(), None);
    // A value named like the field is not the field; an escaped value is not taken.
    let tricky = br#"{"x":"connectionToken","connectionToken":"a\"b"}"#;
    assert_eq!(scan_in_pieces(Handshake::SignalrNegotiate, tricky, 3), None);
    let mut scan = HandshakeScan::new(Handshake::SignalrNegotiate);
    let filler = vec![b' '; MAX_PREFIX];
    assert_eq!(scan.feed(&filler), None);
    assert!(scan.is_done());
    assert_eq!(scan.feed(br#"{"connectionToken":"late"}"#), None);
}

#[test]
fn handshakes_are_told_from_their_requests() {
    let open = Handshake::of_request(false, b"/socket.io/", Some("EIO=4&transport=polling&t=x"));
    assert_eq!(open, Some(Handshake::EngineioOpen));
    let later = Handshake::of_request(false, b"/socket.io/", Some("EIO=4&transport=polling&sid=a"));
    assert_eq!(later, None);
    let negotiate = Handshake::of_request(true, b"/hub/negotiate", Some("negotiateVersion=1"));
    assert_eq!(negotiate, Some(Handshake::SignalrNegotiate));
    assert_eq!(Handshake::of_request(false, b"/hub/negotiate", None), None);
    assert_eq!(Handshake::of_request(true, b"/hub", Some("id=x")), None);
}
