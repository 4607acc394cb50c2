//! `set_real_ip_from`, `real_ip_header`, `real_ip_recursive`, `allow` and `deny` at http,
//! server and location level, and their nginx inheritance: the lists (trusted peers, access
//! rules) are inherited as a whole and only by a level that writes none of its own; the header
//! and the recursive flag one by one. Must not import other `lower` contexts.

use std::sync::Arc;

use super::Lowering;
use crate::config::ast::{Directive, Word};
use crate::config::error::ErrorKind;
use crate::config::model::{AccessRule, Cidr, ClientRules, Peers, RealIp, RealIpHeader};

/// The client-address settings written at one level; `None` means "inherit".
#[derive(Clone, Debug, Default)]
pub(super) struct ClientLayer {
    // Shared by every level that inherits them, as `proxy_set_header`'s list is.
    trusted: Option<Arc<Vec<Peers>>>,
    header: Option<RealIpHeader>,
    recursive: Option<bool>,
    access: Option<Arc<Vec<AccessRule>>>,
}

impl ClientLayer {
    /// This level's settings, falling back to `outer`'s field by field.
    pub(super) fn over(&self, outer: &ClientLayer) -> ClientLayer {
        fn pick<T: Clone>(inner: &Option<T>, outer: &Option<T>) -> Option<T> {
            inner.as_ref().or(outer.as_ref()).cloned()
        }
        ClientLayer {
            trusted: pick(&self.trusted, &outer.trusted),
            header: pick(&self.header, &outer.header),
            recursive: pick(&self.recursive, &outer.recursive),
            access: pick(&self.access, &outer.access),
        }
    }

    /// The effective rules: this layer over nginx's defaults (no trusted peer, `X-Real-IP`,
    /// not recursive, no access rule).
    pub(super) fn resolve(self) -> ClientRules {
        ClientRules {
            real_ip: RealIp {
                trusted: self.trusted.unwrap_or_default(),
                header: self.header.unwrap_or_default(),
                recursive: self.recursive.unwrap_or(false),
            },
            access: self.access.unwrap_or_default(),
        }
    }
}

impl Lowering {
    /// Applies `d` to `layer` if it is one of the client-address directives; false if not.
    pub(super) fn client_setting(&mut self, layer: &mut ClientLayer, d: &Directive) -> bool {
        let word = &d.args[0];
        match d.name() {
            "set_real_ip_from" => {
                if let Some(peers) = self.trusted_peers(d, word) {
                    let list = layer.trusted.get_or_insert_with(Arc::default);
                    Arc::make_mut(list).push(peers);
                }
            }
            "real_ip_header" => {
                self.once(&mut layer.header, d, |_| Some(real_ip_header(&word.text)));
            }
            "real_ip_recursive" => self.once(&mut layer.recursive, d, |cx| cx.flag(d, word)),
            "allow" | "deny" => {
                let peers = match word.text.as_str() {
                    "all" => Some(Peers::All),
                    "unix:" => Some(Peers::Unix),
                    text => Cidr::parse(text).map(Peers::Cidr),
                };
                let Some(peers) = peers else {
                    self.invalid_peers(d, word);
                    return true;
                };
                let rule = AccessRule {
                    allow: d.name() == "allow",
                    peers,
                };
                let list = layer.access.get_or_insert_with(Arc::default);
                Arc::make_mut(list).push(rule);
            }
            _ => return false,
        }
        true
    }

    /// `set_real_ip_from ADDRESS|CIDR|unix:`. nginx also resolves a host name here; tether
    /// refuses one (a name's addresses would be fixed at load time, which misleads).
    fn trusted_peers(&mut self, d: &Directive, word: &Word) -> Option<Peers> {
        let text = word.text.as_str();
        if text == "unix:" {
            return Some(Peers::Unix);
        }
        if let Some(cidr) = Cidr::parse(text) {
            return Some(Peers::Cidr(cidr));
        }
        let host_name = !text.contains([':', '/']) && text.bytes().any(|b| b.is_ascii_alphabetic());
        if host_name {
            let kind = ErrorKind::ValueNotSupported {
                directive: d.name().into(),
                value: text.into(),
            };
            self.error(&word.span, kind);
        } else {
            self.invalid_peers(d, word);
        }
        None
    }

    fn invalid_peers(&mut self, d: &Directive, word: &Word) {
        let kind = ErrorKind::InvalidParameter {
            directive: d.name().into(),
            value: word.text.clone(),
        };
        self.error(&word.span, kind);
    }
}

/// nginx compares the three special names case-sensitively; anything else names a header,
/// whose name is compared case-insensitively.
fn real_ip_header(text: &str) -> RealIpHeader {
    match text {
        "X-Real-IP" => RealIpHeader::XRealIp,
        "X-Forwarded-For" => RealIpHeader::XForwardedFor,
        "proxy_protocol" => RealIpHeader::ProxyProtocol,
        other => RealIpHeader::Other(other.to_ascii_lowercase()),
    }
}
