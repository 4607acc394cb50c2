//! `ssl_ciphers` (OpenSSL cipher-list syntax) onto the suites rustls has.
//!
//! OpenSSL's rules, over rustls's six TLS 1.2 suites: items separated by `:`, `,` or spaces;
//! an item is a suite name or a keyword, several joined by `+` meaning "all of them"
//! (`ECDHE+AESGCM`); a bare item appends what it matches, `-` removes, `!` removes for good,
//! a leading `+` moves to the end, `@STRENGTH`/`@SECLEVEL=n` change nothing here (every rustls
//! suite is a strong AEAD). Keywords for what rustls never has (`aNULL`, `MD5`, `RC4`, `DHE`,
//! `CBC` ...) match nothing, so `!aNULL:!MD5` is harmless and nothing weaker can come in.
//!
//! As in OpenSSL, `ssl_ciphers` governs TLS 1.2 only, and TLS 1.3 keeps all its suites —
//! unless the string names TLS 1.3 suites (`TLS_AES_128_GCM_SHA256`), which tether reads as
//! the TLS 1.3 list (nginx needs `ssl_conf_command Ciphersuites` for that). Must not import
//! the other `tls` files.

use rustls::SupportedCipherSuite;
use rustls::crypto::aws_lc_rs::cipher_suite as suite;

/// A rustls TLS 1.2 suite, its OpenSSL name and the OpenSSL keywords that match it.
struct Tls12Suite {
    name: &'static str,
    suite: SupportedCipherSuite,
    keywords: &'static [&'static str],
}

/// Keywords every rustls TLS 1.2 suite matches (ECDHE key exchange, AEAD, high strength).
const COMMON: &[&str] = &[
    "ALL", "DEFAULT", "HIGH", "FIPS", "TLSv1.2", "ECDHE", "EECDH", "kECDHE", "kEECDH", "ECDH",
    "AEAD", "SSLv3",
];

/// OpenSSL keywords naming only what rustls never has: they match nothing, and are no reason
/// for a notice.
const NOTHING_HERE: &[&str] = &[
    "aNULL",
    "eNULL",
    "NULL",
    "COMPLEMENTOFALL",
    "COMPLEMENTOFDEFAULT",
    "MEDIUM",
    "LOW",
    "EXPORT",
    "EXP",
    "MD5",
    "RC4",
    "DES",
    "3DES",
    "SHA1",
    "SHA",
    "SHA256",
    "SHA384",
    "PSK",
    "kPSK",
    "ECDHEPSK",
    "SRP",
    "kSRP",
    "DSS",
    "aDSS",
    "RSA",
    "kRSA",
    "DH",
    "DHE",
    "EDH",
    "kDHE",
    "kEDH",
    "ADH",
    "AECDH",
    "aECDH",
    "CAMELLIA",
    "ARIA",
    "SEED",
    "IDEA",
    "CBC",
    "AESCCM",
    "AESCCM8",
    "kGOST",
    "aGOST",
    "GOST89MAC",
    "TLSv1",
    "TLSv1.0",
];

/// OpenSSL's own default order over the suites rustls has (AES-256 first, ECDSA before RSA).
static TLS12: [Tls12Suite; 6] = [
    Tls12Suite {
        name: "ECDHE-ECDSA-AES256-GCM-SHA384",
        suite: suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        keywords: &["aECDSA", "ECDSA", "AESGCM", "AES", "AES256", "AESGCM256"],
    },
    Tls12Suite {
        name: "ECDHE-RSA-AES256-GCM-SHA384",
        suite: suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        keywords: &["aRSA", "AESGCM", "AES", "AES256", "AESGCM256"],
    },
    Tls12Suite {
        name: "ECDHE-ECDSA-CHACHA20-POLY1305",
        suite: suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        keywords: &["aECDSA", "ECDSA", "CHACHA20"],
    },
    Tls12Suite {
        name: "ECDHE-RSA-CHACHA20-POLY1305",
        suite: suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        keywords: &["aRSA", "CHACHA20"],
    },
    Tls12Suite {
        name: "ECDHE-ECDSA-AES128-GCM-SHA256",
        suite: suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        keywords: &["aECDSA", "ECDSA", "AESGCM", "AES", "AES128", "AESGCM128"],
    },
    Tls12Suite {
        name: "ECDHE-RSA-AES128-GCM-SHA256",
        suite: suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        keywords: &["aRSA", "AESGCM", "AES", "AES128", "AESGCM128"],
    },
];

/// rustls's TLS 1.3 suites by their OpenSSL (= IANA) names, in OpenSSL's default order.
static TLS13: [(&str, SupportedCipherSuite); 3] = [
    ("TLS_AES_256_GCM_SHA384", suite::TLS13_AES_256_GCM_SHA384),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        suite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    ("TLS_AES_128_GCM_SHA256", suite::TLS13_AES_128_GCM_SHA256),
];

/// What a cipher string comes to.
#[derive(Debug, PartialEq)]
pub(super) struct CipherChoice {
    /// TLS 1.3 suites, then TLS 1.2 ones, in the order the string gives (the server's
    /// preference with `ssl_prefer_server_ciphers on`).
    pub suites: Vec<SupportedCipherSuite>,
    /// Items that asked for something rustls does not have (for the notice).
    pub unavailable: Vec<String>,
}

/// Reads an OpenSSL cipher string.
pub(super) fn choose(ciphers: &str) -> CipherChoice {
    let mut tls12: Vec<usize> = Vec::new();
    let mut banned = [false; TLS12.len()];
    let mut tls13: Vec<SupportedCipherSuite> = Vec::new();
    let mut unavailable = Vec::new();
    let items = ciphers
        .split([':', ',', ' '])
        .filter(|item| !item.is_empty());
    for item in items {
        let (op, body) = match item.as_bytes()[0] {
            b'!' | b'-' | b'+' => (item.as_bytes()[0], &item[1..]),
            _ => (b' ', item),
        };
        if body.starts_with('@') {
            continue;
        }
        if let Some((_, suite)) = TLS13.iter().find(|(name, _)| *name == body) {
            if op == b' ' && !tls13.contains(suite) {
                tls13.push(*suite);
            }
            continue;
        }
        let matched: Vec<usize> = (0..TLS12.len()).filter(|&i| matches(i, body)).collect();
        match op {
            b' ' => {
                let known_empty = body.split('+').any(|part| NOTHING_HERE.contains(&part));
                if matched.is_empty() && !known_empty {
                    unavailable.push(body.to_string());
                }
                for i in matched {
                    if !banned[i] && !tls12.contains(&i) {
                        tls12.push(i);
                    }
                }
            }
            b'+' => {
                // Moved to the end, keeping their relative order.
                let (moved, kept): (Vec<usize>, Vec<usize>) =
                    tls12.iter().partition(|i| matched.contains(i));
                tls12 = kept.into_iter().chain(moved).collect();
            }
            _ => {
                tls12.retain(|i| !matched.contains(i));
                if op == b'!' {
                    matched.iter().for_each(|&i| banned[i] = true);
                }
            }
        }
    }
    if tls13.is_empty() {
        tls13 = TLS13.iter().map(|(_, suite)| *suite).collect();
    }
    let suites = tls13
        .into_iter()
        .chain(tls12.into_iter().map(|i| TLS12[i].suite));
    CipherChoice {
        suites: suites.collect(),
        unavailable,
    }
}

/// Whether TLS 1.2 suite `i` matches an item body: its name, or every `+`-joined keyword.
fn matches(i: usize, body: &str) -> bool {
    let entry = &TLS12[i];
    body == entry.name
        || body
            .split('+')
            .all(|part| COMMON.contains(&part) || entry.keywords.contains(&part))
}

/// The OpenSSL name of a suite, as nginx's `$ssl_cipher` prints it.
pub fn openssl_name(suite: SupportedCipherSuite) -> Option<&'static str> {
    let tls13 = TLS13.iter().find(|(_, s)| s.suite() == suite.suite());
    let tls12 = TLS12.iter().find(|s| s.suite.suite() == suite.suite());
    tls13.map(|(name, _)| *name).or(tls12.map(|s| s.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenSSL names of what `ciphers` chooses.
    fn names(ciphers: &str) -> Vec<&'static str> {
        let choice = choose(ciphers);
        choice.suites.into_iter().filter_map(openssl_name).collect()
    }

    const ALL_TLS13: [&str; 3] = [
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_AES_128_GCM_SHA256",
    ];

    #[test]
    fn names_keywords_and_operators() {
        let tls12 = |ciphers| names(ciphers)[3..].to_vec();
        assert_eq!(
            tls12("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256"),
            [
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES128-GCM-SHA256"
            ]
        );
        assert_eq!(names("HIGH:!aNULL:!MD5").len(), 9);
        assert_eq!(names("DEFAULT").len(), 9);
        assert_eq!(
            tls12("ECDHE+AESGCM:!aRSA"),
            [
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-AES128-GCM-SHA256"
            ]
        );
        // `-` removes for now, `!` for good.
        assert_eq!(tls12("ALL:-CHACHA20:CHACHA20").len(), 6);
        assert_eq!(tls12("ALL:!CHACHA20:CHACHA20").len(), 4);
        // `+` moves to the end.
        assert_eq!(
            tls12("AES128:CHACHA20:+AES128"),
            [
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-RSA-CHACHA20-POLY1305",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256",
            ]
        );
        // TLS 1.3 keeps every suite unless some are named.
        assert_eq!(names("AES128")[..3], ALL_TLS13);
        assert_eq!(names("TLS_AES_128_GCM_SHA256"), ["TLS_AES_128_GCM_SHA256"]);
    }

    #[test]
    fn what_rustls_lacks_is_listed_never_added() {
        let choice = choose("ECDHE-RSA-AES128-SHA256:DHE-RSA-AES256-GCM-SHA384:!aNULL:RC4");
        assert_eq!(
            choice.unavailable,
            ["ECDHE-RSA-AES128-SHA256", "DHE-RSA-AES256-GCM-SHA384"]
        );
        assert_eq!(choice.suites.len(), 3, "only TLS 1.3 is left");
    }

    /// The same strings through the system's `openssl ciphers`, restricted to the suites rustls
    /// has, give the same TLS 1.2 list in the same order (skipped without `openssl`).
    #[test]
    fn agrees_with_openssl() {
        let strings = [
            "HIGH:!aNULL:!MD5",
            "ECDHE+AESGCM:ECDHE+CHACHA20",
            "EECDH+AESGCM:EDH+AESGCM",
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256",
            "AES128:CHACHA20:+AES128:!aRSA",
            "DEFAULT:-AES256",
        ];
        for ciphers in strings {
            let Ok(out) = std::process::Command::new("openssl")
                .args(["ciphers", ciphers])
                .output()
            else {
                return;
            };
            let text = String::from_utf8_lossy(&out.stdout);
            let ours: Vec<&str> = TLS12.iter().map(|s| s.name).collect();
            let openssl: Vec<&str> = text
                .trim()
                .split(':')
                .filter(|name| ours.contains(name))
                .collect();
            let mine: Vec<&str> = names(ciphers).into_iter().skip(3).collect();
            assert_eq!(mine, openssl, "{ciphers}");
        }
    }
}
