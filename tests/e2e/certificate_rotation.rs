//! Certificates that rotate themselves: the certificate and key files are watched like the
//! config's own, so a renewal — `cp` over the files, certbot's symlink swap, a Kubernetes
//! Secret's `..data` swap — reaches new handshakes without a signal, connections already open
//! keep theirs, and a broken file leaves the old certificate serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::harness::certs::{self, KeyKind, Leaf, TestCa};
use crate::harness::client::Reply;
use crate::harness::logs::Logs;
use crate::harness::session::eventually;
use crate::harness::{Backend, Proxy};

const LIMIT: Duration = Duration::from_secs(10);

/// A TLS server for `app.test` with the given certificate paths, proxying to backend `a`.
fn conf(cert: &Path, key: &Path) -> String {
    format!(
        "events {{}} http {{ server {{ listen {{listen}} ssl; server_name app.test; \
         ssl_certificate {}; ssl_certificate_key {}; \
         location / {{ proxy_pass http://{{a}}; }} }} }}",
        cert.display(),
        key.display()
    )
}

/// The certificate a new handshake with `app.test` is answered with.
async fn presented(proxy: &Proxy, ca: &TestCa) -> Option<Vec<u8>> {
    let tls = certs::connect(proxy.addr, ca.client_config(&[]), Some("app.test"))
        .await
        .ok()?;
    Some(tls.get_ref().1.peer_certificates()?[0].to_vec())
}

async fn until_presented(proxy: &Proxy, ca: &TestCa, leaf: &Leaf, what: &str) {
    eventually(LIMIT, what, || async {
        presented(proxy, ca).await.as_deref() == Some(&leaf.der[..])
    })
    .await;
}

async fn get(sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>) -> Reply {
    let request = Request::get("/")
        .header("host", "app.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    Reply::read(sender.send_request(request).await.expect("response"))
        .await
        .expect("body")
}

fn copy(from: &Path, to: &Path) {
    std::fs::write(to, std::fs::read(from).unwrap()).unwrap();
}

#[tokio::test]
async fn a_certificate_copied_over_reaches_new_handshakes_and_open_connections_keep_going() {
    let ca = TestCa::new();
    let old = ca.leaf(&["app.test"], KeyKind::EcdsaP256);
    let new = ca.leaf(&["app.test"], KeyKind::Rsa2048);
    let folder = tempfile::tempdir().unwrap();
    let (cert, key) = (folder.path().join("tls.crt"), folder.path().join("tls.key"));
    copy(&old.cert, &cert);
    copy(&old.key, &key);
    let a = Backend::start("a").await;
    let proxy = Proxy::start_watched(&conf(&cert, &key), &[("a", a.addr)]).await;
    assert_eq!(presented(&proxy, &ca).await.unwrap(), old.der.to_vec());
    let mut open = certs::https1(proxy.addr, ca.client_config(&[]), Some("app.test")).await;
    assert_eq!(get(&mut open).await.status, 200);

    // `cp` over both files, one after the other: the pair is mismatched in between.
    copy(&new.cert, &cert);
    copy(&new.key, &key);
    until_presented(&proxy, &ca, &new, "the new certificate on new handshakes").await;
    assert_eq!(
        get(&mut open).await.status,
        200,
        "the open connection goes on"
    );
}

#[tokio::test]
async fn a_secret_mounts_data_swap_and_a_certbot_symlink_swap_rotate() {
    let ca = TestCa::new();
    let first = ca.leaf(&["app.test"], KeyKind::EcdsaP256);
    let second = ca.leaf(&["app.test"], KeyKind::EcdsaP384);
    let third = ca.leaf(&["app.test"], KeyKind::Ed25519);
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    // Kubernetes: ..2026_01/{tls.crt,tls.key}, ..data -> ..2026_01, tls.crt -> ..data/tls.crt.
    let version = |n: u32, leaf: &Leaf| -> PathBuf {
        let name = format!("..2026_{n:02}");
        std::fs::create_dir(dir.join(&name)).unwrap();
        copy(&leaf.cert, &dir.join(&name).join("tls.crt"));
        copy(&leaf.key, &dir.join(&name).join("tls.key"));
        PathBuf::from(name)
    };
    let v1 = version(1, &first);
    std::os::unix::fs::symlink(&v1, dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", dir.join("tls.key")).unwrap();
    let a = Backend::start("a").await;
    let conf = conf(&dir.join("tls.crt"), &dir.join("tls.key"));
    let proxy = Proxy::start_watched(&conf, &[("a", a.addr)]).await;
    assert_eq!(presented(&proxy, &ca).await.unwrap(), first.der.to_vec());

    let v2 = version(2, &second);
    std::os::unix::fs::symlink(&v2, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    until_presented(&proxy, &ca, &second, "the Secret's new certificate").await;

    // certbot: live/ links point into archive/ and are replaced (a new link renamed over).
    let v3 = version(3, &third);
    for file in ["tls.crt", "tls.key"] {
        let tmp = dir.join(format!("{file}.new"));
        std::os::unix::fs::symlink(v3.join(file), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join(file)).unwrap();
    }
    until_presented(&proxy, &ca, &third, "certbot's renewed certificate").await;
}

#[tokio::test]
async fn a_broken_certificate_file_leaves_the_old_one_serving() {
    let logs = Logs::capture();
    let ca = TestCa::new();
    let good = ca.leaf(&["app.test"], KeyKind::EcdsaP256);
    let renewed = ca.leaf(&["app.test"], KeyKind::EcdsaP256);
    let folder = tempfile::tempdir().unwrap();
    let (cert, key) = (folder.path().join("tls.crt"), folder.path().join("tls.key"));
    copy(&good.cert, &cert);
    copy(&good.key, &key);
    let a = Backend::start("a").await;
    let proxy = Proxy::start_watched(&conf(&cert, &key), &[("a", a.addr)]).await;

    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    let shown = cert.display().to_string();
    eventually(LIMIT, "the failed reload naming the file", || async {
        !logs.lines_with("reload failed").is_empty() && !logs.lines_with(&shown).is_empty()
    })
    .await;
    assert_eq!(presented(&proxy, &ca).await.unwrap(), good.der.to_vec());
    let mut sender = certs::https1(proxy.addr, ca.client_config(&[]), Some("app.test")).await;
    assert_eq!(get(&mut sender).await.status, 200);

    // Fixed: the renewed certificate takes over.
    copy(&renewed.cert, &cert);
    copy(&renewed.key, &key);
    until_presented(&proxy, &ca, &renewed, "the renewed certificate").await;
}
