//! Every config shipped in `conf/` parses, lowers and builds into a snapshot. Certificates
//! are the operator's: where a config names TLS files that do not exist here, a certificate
//! made for the test stands in for them, so everything else is still built and checked.

use std::path::Path;

use tether::peer::PeerRegistry;
use tether::snapshot::Snapshot;

#[test]
fn every_shipped_config_is_valid() {
    let mut checked = 0;
    let stand_ins = tempfile::tempdir().expect("a folder for stand-in certificates");
    for entry in std::fs::read_dir("conf").expect("conf/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|ext| ext != "conf") {
            continue;
        }
        let mut config = tether::config::load(&path, Path::new("."))
            .unwrap_or_else(|errors| panic!("{} does not parse:\n{errors}", path.display()));
        stand_in_certificates(&mut config, stand_ins.path());
        Snapshot::build(&config, &PeerRegistry::default(), 1)
            .unwrap_or_else(|errors| panic!("{} does not build:\n{errors}", path.display()));
        checked += 1;
    }
    assert!(
        checked >= 5,
        "expected the shipped examples, found {checked}"
    );
}

/// Points every certificate pair whose files are missing at a fresh self-signed pair in `dir`.
fn stand_in_certificates(config: &mut tether::config::Config, dir: &Path) {
    let pairs = config
        .http
        .servers
        .iter_mut()
        .filter_map(|server| server.tls.as_mut())
        .flat_map(|tls| tls.certificates.iter_mut());
    for (n, pair) in pairs.enumerate() {
        if pair.certificate.exists() && pair.key.exists() {
            continue;
        }
        let made = rcgen::generate_simple_self_signed(vec!["example.com".to_string()])
            .expect("a stand-in certificate");
        pair.certificate = dir.join(format!("stand-in{n}.pem"));
        pair.key = dir.join(format!("stand-in{n}.key"));
        std::fs::write(&pair.certificate, made.cert.pem()).expect("write it");
        std::fs::write(&pair.key, made.signing_key.serialize_pem()).expect("write its key");
    }
}
