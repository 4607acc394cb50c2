//! `ssl_ecdh_curve`: OpenSSL's group names (`X25519:prime256v1:secp384r1`, `auto`) onto the
//! key-exchange groups of rustls's aws-lc-rs provider, in the order written. Names rustls does
//! not have (`X448`, `secp521r1`, the finite-field `ffdhe*`) are reported, never silently
//! replaced. Must not import the other `tls` files.

use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::kx_group;

/// What a `ssl_ecdh_curve` value comes to.
#[derive(Debug)]
pub(super) struct Groups {
    /// The groups, in the order written; None for `auto` (rustls's defaults and order).
    pub chosen: Option<Vec<&'static dyn SupportedKxGroup>>,
    /// Names written that rustls does not have.
    pub unavailable: Vec<String>,
}

/// Reads a `ssl_ecdh_curve` value.
pub(super) fn choose(text: &str) -> Groups {
    if text.eq_ignore_ascii_case("auto") {
        return Groups {
            chosen: None,
            unavailable: Vec::new(),
        };
    }
    let mut chosen: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    let mut unavailable = Vec::new();
    for name in text.split(':').filter(|name| !name.is_empty()) {
        match group(name) {
            Some(group) if !chosen.iter().any(|g| g.name() == group.name()) => chosen.push(group),
            Some(_) => {}
            None => unavailable.push(name.to_string()),
        }
    }
    Groups {
        chosen: Some(chosen),
        unavailable,
    }
}

/// One OpenSSL group name (its aliases too), case-insensitively.
fn group(name: &str) -> Option<&'static dyn SupportedKxGroup> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        "x25519" => kx_group::X25519,
        "prime256v1" | "secp256r1" | "p-256" => kx_group::SECP256R1,
        "secp384r1" | "p-384" => kx_group::SECP384R1,
        "x25519mlkem768" => kx_group::X25519MLKEM768,
        "secp256r1mlkem768" => kx_group::SECP256R1MLKEM768,
        "mlkem768" => kx_group::MLKEM768,
        "mlkem1024" => kx_group::MLKEM1024,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> (Option<Vec<String>>, Vec<String>) {
        let groups = choose(text);
        let chosen = groups
            .chosen
            .map(|list| list.iter().map(|g| format!("{:?}", g.name())).collect());
        (chosen, groups.unavailable)
    }

    #[test]
    fn openssl_names_map_in_order_and_unknown_ones_are_reported() {
        assert_eq!(names("auto"), (None, vec![]));
        assert_eq!(
            names("X25519:prime256v1:secp384r1"),
            (
                Some(vec![
                    "X25519".into(),
                    "secp256r1".into(),
                    "secp384r1".into()
                ]),
                vec![]
            )
        );
        assert_eq!(
            names("P-384:x25519:X448:secp521r1:X25519"),
            (
                Some(vec!["secp384r1".into(), "X25519".into()]),
                vec!["X448".into(), "secp521r1".into()]
            )
        );
        assert_eq!(names("ffdhe2048"), (Some(vec![]), vec!["ffdhe2048".into()]));
    }
}
