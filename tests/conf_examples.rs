//! Every config shipped in `conf/` — the files at its top and the `nginx.conf` of each layout
//! folder (`docker/`, `debian/`) — parses, lowers and builds into a snapshot. Certificates and
//! log files are the operator's: where a config names TLS files that do not exist here, a
//! certificate made for the test stands in for them, and access logs are written to a
//! temporary folder, so everything else is still built and checked. The examples taken from
//! nginx's world are also checked by a real `nginx -t`: they must stay valid nginx.

use std::path::{Path, PathBuf};
use std::process::Command;

use tether::peer::PeerRegistry;
use tether::snapshot::Snapshot;

#[test]
fn every_shipped_config_is_valid() {
    let stand_ins = tempfile::tempdir().expect("a folder for stand-in certificates");
    let shipped = shipped_configs();
    // Every refused example is listed, not only the first.
    let mut refused = Vec::new();
    for path in &shipped {
        let mut config = match tether::config::load(path, Path::new(".")) {
            Ok(config) => config,
            Err(errors) => {
                refused.push(format!("{} does not parse:\n{errors}", path.display()));
                continue;
            }
        };
        stand_in_certificates(&mut config, stand_ins.path());
        stand_in_access_logs(&mut config, stand_ins.path());
        if let Err(errors) = Snapshot::build(&config, &PeerRegistry::default(), 1) {
            refused.push(format!("{} does not build:\n{errors}", path.display()));
        }
    }
    assert!(refused.is_empty(), "{}", refused.join("\n"));
    assert!(
        shipped.len() >= 10,
        "expected the shipped examples, found {}",
        shipped.len()
    );
}

/// The `.conf` files at the top of `conf/`, then each layout folder's `nginx.conf`.
fn shipped_configs() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("conf").expect("conf/ exists") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() && path.join("nginx.conf").exists() {
            found.push(path.join("nginx.conf"));
        } else if path.extension().is_some_and(|ext| ext == "conf") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Examples that use only nginx's directives (the others show tether's own: `sticky`,
/// `health_check`, `status`; or name certificates).
const NGINX_EXAMPLES: &[&str] = &[
    "docker/nginx.conf",
    "debian/nginx.conf",
    "cors.conf",
    "rate-limited.conf",
    "hardened.conf",
    "tether.conf",
    "socketio.conf",
    "signalr.conf",
];

#[test]
fn the_examples_from_nginx_configs_are_valid_nginx() {
    let installed = Command::new("nginx").arg("-v").output().is_ok();
    if !installed {
        assert!(
            std::env::var_os("TETHER_REQUIRE_NGINX").is_none(),
            "nginx is required (TETHER_REQUIRE_NGINX) but not installed"
        );
        eprintln!("nginx comparison: nginx is not installed; skipped");
        return;
    }
    for example in NGINX_EXAMPLES {
        // A copy of conf/, so that nginx's prefix and logs are a temporary folder's. What is
        // the machine's rather than the config's goes: the `user` (nginx -t as root looks it
        // up) and the `load_module` lines (the module files), and /var/log/nginx moves.
        let dir = tempfile::tempdir().expect("a folder for nginx");
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).expect("logs folder");
        copy_adjusted(Path::new("conf"), &dir.path().join("conf"), &logs);
        let out = Command::new("nginx")
            .arg("-t")
            .arg("-q")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("conf").join(example))
            .output()
            .expect("run nginx -t");
        assert!(
            out.status.success(),
            "nginx -t refuses conf/{example}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Copies the folder `from` to `to`, dropping `user` and `load_module` lines and pointing
/// /var/log/nginx/ at `logs`.
fn copy_adjusted(from: &Path, to: &Path, logs: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let path = entry.expect("readable entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_adjusted(&path, &target, logs);
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read example");
        let kept: Vec<String> = text
            .lines()
            .filter(|line| {
                let line = line.trim_start();
                !line.starts_with("user ") && !line.starts_with("load_module ")
            })
            .map(|line| line.replace("/var/log/nginx/", &format!("{}/", logs.display())))
            .collect();
        std::fs::write(&target, kept.join("\n")).expect("write example");
    }
}

/// Points every access log at a file in `dir` (the operator's /var/log may not be writable).
fn stand_in_access_logs(config: &mut tether::config::Config, dir: &Path) {
    let locations = config
        .http
        .servers
        .iter_mut()
        .flat_map(|server| server.locations.iter_mut());
    for location in locations {
        for log in std::sync::Arc::make_mut(&mut location.proxy.access_logs) {
            let name = log
                .path
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            log.path = dir.join(name);
        }
    }
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

#[test]
fn no_shipped_config_closes_upstream_connections_for_plain_requests() {
    // `map $http_upgrade $connection_upgrade { default upgrade; '' close; }` sends
    // `Connection: close` upstream on every plain request: the README's advice is the variant
    // that maps '' to '' (no header, the upstream connection kept alive).
    let mut files = Vec::new();
    let mut folders = vec![PathBuf::from("conf")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read conf/") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut rest = text.as_str();
        while let Some(start) = rest.find("$connection_upgrade {") {
            let block = &rest[start..];
            let block = &block[..block.find('}').unwrap_or(block.len())];
            assert!(
                !block.contains("close"),
                "{} maps plain requests to Connection: close:\n{block}",
                path.display()
            );
            rest = &rest[start + block.len()..];
        }
    }
}
