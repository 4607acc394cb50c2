//! What a finished handshake was, for the `$ssl_*` variables and the access log: protocol,
//! cipher, SNI name, resumption and the client certificate, in nginx's spellings. Must not
//! import the other `tls` files but `ciphers` (for OpenSSL suite names).

use rustls::{HandshakeKind, ProtocolVersion, ServerConnection};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use super::ciphers::openssl_name;

/// One TLS connection's facts, as nginx's `$ssl_*` variables print them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSession {
    /// `$ssl_protocol`: `TLSv1.2` or `TLSv1.3`.
    pub protocol: &'static str,
    /// `$ssl_cipher`: the suite's OpenSSL name (`TLS_AES_128_GCM_SHA256`,
    /// `ECDHE-RSA-AES128-GCM-SHA256`).
    pub cipher: &'static str,
    /// `$ssl_server_name`: the SNI name the client sent, if any.
    pub server_name: Option<String>,
    /// `$ssl_session_reused`: the handshake resumed a session (`r`) or not (`.`).
    pub session_reused: bool,
    /// `$ssl_client_verify`: `SUCCESS` (a certificate was sent and verified) or `NONE`.
    /// rustls ends a handshake whose client certificate fails, so `FAILED:reason` never
    /// reaches a request here (nginx lets it through with `optional`, then answers 400).
    pub client_verify: &'static str,
    /// `$ssl_client_s_dn`: the client certificate's subject in RFC 2253 form
    /// (`CN=alice,O=Example,C=US`), if one was sent.
    pub client_subject: Option<String>,
}

impl TlsSession {
    /// The facts of `connection`'s handshake (call it once the handshake is done).
    pub fn of(connection: &ServerConnection) -> TlsSession {
        let protocol = match connection.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        };
        let cipher = connection.negotiated_cipher_suite().and_then(openssl_name);
        let leaf = connection
            .peer_certificates()
            .and_then(|chain| chain.first());
        let client_subject = leaf.and_then(|der| {
            let (_, cert) = X509Certificate::from_der(der).ok()?;
            Some(rfc2253(cert.subject()))
        });
        TlsSession {
            protocol,
            cipher: cipher.unwrap_or(""),
            server_name: connection.server_name().map(str::to_string),
            session_reused: connection.handshake_kind() == Some(HandshakeKind::Resumed),
            client_verify: if leaf.is_some() { "SUCCESS" } else { "NONE" },
            client_subject,
        }
    }
}

/// A name as OpenSSL's `XN_FLAG_RFC2253` prints it: the last RDN first, `,` between RDNs,
/// `+` inside one, short attribute names, RFC 2253 escapes.
pub(super) fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            let parts: Vec<String> = rdn
                .iter()
                .map(|attribute| {
                    let oid = attribute.attr_type();
                    let dotted = oid.to_id_string();
                    let key = short_name(&dotted).map_or(dotted.clone(), str::to_string);
                    let value = attribute.as_str().map(escape);
                    // A value that is no string is printed as `#` and its DER in hex.
                    let value = value.unwrap_or_else(|_| {
                        let der = attribute.attr_value().data;
                        let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
                        format!("#{hex}")
                    });
                    format!("{key}={value}")
                })
                .collect();
            parts.join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// OpenSSL's short name for an attribute type (what `$ssl_client_s_dn` shows); other types
/// print as their dotted OID, as OpenSSL prints types it does not know.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.41" => "name",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        _ => return None,
    })
}

/// RFC 2253 §2.4 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';');
        let edge = (i == 0 && (c == '#' || c == ' ')) || (i == last && c == ' ');
        if special || edge {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
