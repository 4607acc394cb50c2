//! The three proxies under test and the configs they run: one nginx-syntax file that tether
//! and nginx both read (nginx gets it without the lines marked `tether only`, since nginx OSS
//! has no `sticky`), and the equivalent `haproxy.cfg`. Each proxy is a child process pinned
//! to the proxy core, started fresh for every run, and reloaded the way its operators would.
//!
//! Knows the proxies' command lines and configs; not the scenarios.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::procs::{Guard, Usage, find_binary};
use crate::tls::CertFiles;

/// The proxy core; backends, load generators and the bench itself run on [`CLIENT_CORE`].
pub const PROXY_CORE: usize = 0;
/// Where everything that is not the proxy runs.
pub const CLIENT_CORE: usize = 1;

/// One of the proxies compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tether,
    Nginx,
    Haproxy,
}

impl Kind {
    /// In table order.
    pub const ALL: [Kind; 3] = [Kind::Tether, Kind::Nginx, Kind::Haproxy];

    fn index(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// The column heading.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tether => "tether",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "HAProxy",
        }
    }
}

/// Every address the configs name: the backends (shared by all proxies for the whole bench)
/// and one listening port per proxy (reused run after run; all three set `SO_REUSEADDR`).
#[derive(Clone, Debug)]
pub struct Ports {
    /// The nginx backend's three `return 200` servers.
    pub http: [u16; 3],
    /// The in-process WebSocket echo backend.
    pub ws: u16,
    /// The in-process SSE backend.
    pub sse: u16,
    /// tether, nginx, HAProxy: where each listens.
    pub listen: [u16; 3],
    /// tether, nginx, HAProxy: where each terminates TLS (HTTP/2 and HTTP/1.1 by ALPN).
    pub tls: [u16; 3],
}

impl Ports {
    /// Where `kind` listens.
    pub fn listen(&self, kind: Kind) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.listen[kind.index()]))
    }

    /// Where `kind` terminates TLS.
    pub fn tls(&self, kind: Kind) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tls[kind.index()]))
    }
}

/// How every proxy is started, the same for every run: where things listen and live, which
/// tether binary, and whether the proxies log.
pub struct Launch {
    /// Every address.
    pub ports: Ports,
    /// Each proxy gets a folder here for its config, logs and output; the certificates too.
    pub dir: PathBuf,
    /// The tether binary to run.
    pub tether: PathBuf,
    /// tether's log level (`TETHER_LOG`).
    pub tether_log: String,
    /// Every proxy logs each request in nginx's `combined` format: tether and nginx to
    /// `access.log` in their folder, HAProxy its `option httplog` line to its output file.
    pub access_log: bool,
}

/// Under valgrind's callgrind instead of as itself, writing its counts to `out`: one process
/// (nginx without its master, HAProxy without its master-worker split), so every instruction
/// the proxy spends is in that one file.
pub struct Callgrind {
    /// `valgrind`.
    pub valgrind: PathBuf,
    /// The callgrind output file.
    pub out: PathBuf,
}

/// Marks the lines only tether gets.
const TETHER_ONLY: &str = "# tether only";

/// The nginx-syntax config for `kind`, presenting the certificate in `cert`: nginx gets
/// tether's without the `tether only` lines.
pub fn nginx_syntax(ports: &Ports, kind: Kind, cert: &CertFiles, access_log: bool) -> String {
    let [a, b, c] = ports.http;
    let (ws, sse) = (ports.ws, ports.sse);
    let listen = ports.listen(kind);
    let tls = ports.tls(kind);
    let (crt, key) = (cert.cert.display(), cert.key.display());
    // Relative to the prefix (`-p`), the proxy's own folder, for tether and nginx alike.
    let access_log = if access_log {
        "access_log access.log combined;"
    } else {
        "access_log off;"
    };
    let text = format!(
        r#"# tether and nginx run this same file; nginx gets it without the lines marked
# "{TETHER_ONLY}" (nginx OSS has no sticky cookies).
worker_processes 1;
worker_rlimit_nofile 20000;
# nginx counts upstream connections here too: a proxied WebSocket takes two.
events {{ worker_connections 19900; }}

http {{
    {access_log}
    keepalive_requests 1000000;
    keepalive_timeout 300s;

    # Upgrade requests send "Connection: upgrade"; the rest an empty Connection header, so
    # upstream connections stay pooled.
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ""      "";
    }}

    upstream one {{ server 127.0.0.1:{a}; keepalive 64; keepalive_requests 1000000; }}
    upstream three_ip_hash {{
        ip_hash;
        server 127.0.0.1:{a}; server 127.0.0.1:{b}; server 127.0.0.1:{c};
        keepalive 64; keepalive_requests 1000000;
    }}
    upstream three_sticky {{                                  {TETHER_ONLY}
        sticky cookie srv;                                    {TETHER_ONLY}
        server 127.0.0.1:{a}; server 127.0.0.1:{b}; server 127.0.0.1:{c};  {TETHER_ONLY}
        keepalive 64;                                         {TETHER_ONLY}
    }}                                                        {TETHER_ONLY}
    upstream three_learn {{                                   {TETHER_ONLY}
        sticky learn create=$upstream_cookie_sid lookup=$cookie_sid zone=learn:1m; {TETHER_ONLY}
        server 127.0.0.1:{a}; server 127.0.0.1:{b}; server 127.0.0.1:{c};  {TETHER_ONLY}
        keepalive 64;                                         {TETHER_ONLY}
    }}                                                        {TETHER_ONLY}
    upstream ws_echo {{ server 127.0.0.1:{ws}; }}
    upstream sse {{ server 127.0.0.1:{sse}; keepalive 64; }}

    server {{
        listen {listen};
        # nginx 1.22 takes http2 on the listen line (1.25 also has "http2 on;"); tether both.
        listen {tls} ssl http2;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        # nginx 1.22's default leaves TLS 1.3 out (tether's and HAProxy's have it).
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
        # The same key exchange for all three (OpenSSL 3.0 has no post-quantum hybrid; rustls
        # would pick X25519MLKEM768 first, a heavier handshake than the peers do).
        ssl_ecdh_curve X25519:prime256v1;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location / {{ proxy_pass http://one; }}
        location /ip_hash {{ proxy_pass http://three_ip_hash; }}
        location /sticky {{ proxy_pass http://three_sticky; }}  {TETHER_ONLY}
        location /learn {{ proxy_pass http://three_learn; }}    {TETHER_ONLY}
        location /ws {{
            proxy_pass http://ws_echo;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1h;
        }}
        location /sse {{
            proxy_pass http://sse;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"#
    );
    if kind == Kind::Tether {
        return text;
    }
    text.lines()
        .filter(|line| !line.ends_with(TETHER_ONLY))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The `haproxy.cfg` equivalent to [`nginx_syntax`]; `cert` holds the certificate and key in
/// one file. HAProxy's own defaults resume sessions (a 20,000-entry cache, tickets on).
pub fn haproxy_cfg(ports: &Ports, cert: &CertFiles, access_log: bool) -> String {
    let [a, b, c] = ports.http;
    let (ws, sse) = (ports.ws, ports.sse);
    let listen = ports.listen(Kind::Haproxy);
    let tls = ports.tls(Kind::Haproxy);
    let pem = cert.combined.display();
    // HAProxy writes its log lines to a log server or a stream; stdout goes to its output file.
    let log = if access_log {
        "log stdout format raw local0 info\n    option httplog"
    } else {
        "# no log"
    };
    format!(
        r#"global
    nbthread 1
    # Two descriptors per proxied connection under a hard limit of 20,000.
    maxconn 9950

defaults
    mode http
    {log}
    option http-keep-alive
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout http-keep-alive 300s
    timeout tunnel 1h
    maxconn 9950

frontend fe
    bind {listen}
    bind {tls} ssl crt {pem} alpn h2,http/1.1 curves X25519:P-256
    use_backend three_ip_hash if {{ path_beg /ip_hash }}
    use_backend three_sticky if {{ path_beg /sticky }}
    use_backend three_learn if {{ path_beg /learn }}
    use_backend ws_echo if {{ path_beg /ws }}
    use_backend sse if {{ path_beg /sse }}
    default_backend one

backend one
    server a 127.0.0.1:{a}

backend three_ip_hash
    balance source
    server a 127.0.0.1:{a}
    server b 127.0.0.1:{b}
    server c 127.0.0.1:{c}

backend three_sticky
    balance roundrobin
    cookie SRV insert indirect nocache
    server a 127.0.0.1:{a} cookie a
    server b 127.0.0.1:{b} cookie b
    server c 127.0.0.1:{c} cookie c

# sticky learn's equivalent: the backend's session cookie stored from responses, matched
# on requests.
backend three_learn
    balance roundrobin
    stick-table type string len 64 size 4k expire 10m
    stick match req.cook(sid)
    stick store-response res.cook(sid)
    server a 127.0.0.1:{a}
    server b 127.0.0.1:{b}
    server c 127.0.0.1:{c}

backend ws_echo
    server ws 127.0.0.1:{ws}

# Without http-no-delay HAProxy sends each event of an unfinished message with MSG_MORE, and
# the kernel holds it until its 200 ms probe timer sends it, from a timer outside HAProxy's
# CPU: events arrive ~200 ms late, and their sending is not counted.
backend sse
    option http-no-delay
    server sse 127.0.0.1:{sse}
"#
    )
}

/// A running proxy: its process group, where it listens, and how to reload it.
pub struct Proxy {
    /// Which proxy.
    pub kind: Kind,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it terminates TLS.
    pub tls_addr: SocketAddr,
    guard: Guard,
    conf: PathBuf,
    dir: PathBuf,
}

impl Proxy {
    /// Writes `kind`'s config (presenting `cert` on its TLS address) into its folder, starts
    /// it pinned to [`PROXY_CORE`] (under `callgrind` if given) and waits (bounded) until it
    /// accepts connections.
    pub async fn start(
        kind: Kind,
        launch: &Launch,
        cert: &CertFiles,
        callgrind: Option<&Callgrind>,
    ) -> Result<Proxy, String> {
        let ports = &launch.ports;
        let dir = launch.dir.join(kind.name());
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let log = dir.join("output.log");
        let program = match kind {
            Kind::Tether => launch.tether.clone(),
            Kind::Nginx => binary("nginx")?,
            Kind::Haproxy => binary("haproxy")?,
        };
        let mut command = match callgrind {
            Some(callgrind) => {
                let mut command = Command::new(&callgrind.valgrind);
                command
                    .arg("--tool=callgrind")
                    .arg(format!("--callgrind-out-file={}", callgrind.out.display()))
                    .arg(&program);
                command
            }
            None => Command::new(&program),
        };
        let conf = match kind {
            Kind::Tether => {
                // The prefix is the proxy's folder, as nginx's: relative log paths land there.
                let conf = dir.join("tether.conf");
                command
                    .arg("-p")
                    .arg(&dir)
                    .arg("-c")
                    .arg(&conf)
                    .env("TETHER_LOG", &launch.tether_log);
                conf
            }
            Kind::Nginx => {
                let conf = dir.join("nginx.conf");
                command.args(nginx_args(&dir, &conf, callgrind.is_none()));
                conf
            }
            Kind::Haproxy => {
                // Master-worker in the foreground: USR2 to the master reloads. Under callgrind,
                // the one process serves.
                let conf = dir.join("haproxy.cfg");
                if callgrind.is_none() {
                    command.arg("-W");
                }
                command.arg("-db").arg("-f").arg(&conf);
                conf
            }
        };
        let text = match kind {
            Kind::Haproxy => haproxy_cfg(ports, cert, launch.access_log),
            _ => nginx_syntax(ports, kind, cert, launch.access_log),
        };
        std::fs::write(&conf, text).map_err(|e| format!("write {}: {e}", conf.display()))?;
        let guard = Guard::spawn(command, Some(PROXY_CORE), &log)?;
        let mut proxy = Proxy {
            kind,
            addr: ports.listen(kind),
            tls_addr: ports.tls(kind),
            guard,
            conf,
            dir,
        };
        // valgrind takes seconds to start a program it translates.
        let limit = Duration::from_secs(if callgrind.is_some() { 60 } else { 10 });
        proxy.until_accepting(limit).await?;
        Ok(proxy)
    }

    async fn until_accepting(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.guard.exited() {
                return Err(format!(
                    "{} exited ({status}) at start:\n{}",
                    self.kind.name(),
                    self.guard.log_tail()
                ));
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{} does not accept connections", self.kind.name()));
            }
            // Polling a condition: ends as soon as the proxy listens.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Reloads the config the way each proxy's operators do: SIGHUP for tether (what
    /// `tether -s reload` sends), `nginx -s reload`, USR2 to HAProxy's master.
    pub async fn reload(&self) -> Result<(), String> {
        match self.kind {
            Kind::Tether => self.signal(libc::SIGHUP),
            Kind::Haproxy => self.signal(libc::SIGUSR2),
            Kind::Nginx => {
                let status = tokio::process::Command::new(binary("nginx")?)
                    .args(nginx_args(&self.dir, &self.conf, true))
                    .args(["-s", "reload"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .await
                    .map_err(|e| format!("nginx -s reload: {e}"))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("nginx -s reload: {status}"))
                }
            }
        }
    }

    /// Asks the proxy to stop (SIGTERM) and waits, at most `limit`, until it has exited: under
    /// callgrind, its counts are written only then.
    pub async fn stop(mut self, limit: Duration) -> Result<(), String> {
        self.signal(libc::SIGTERM)?;
        let deadline = Instant::now() + limit;
        while self.guard.exited().is_none() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} still running {limit:?} after SIGTERM",
                    self.kind.name()
                ));
            }
            // Polling a condition: ends as soon as the process is gone.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn signal(&self, signal: i32) -> Result<(), String> {
        // SAFETY: kill(2) on our own child's pid.
        if unsafe { libc::kill(self.guard.pid(), signal) } == 0 {
            Ok(())
        } else {
            Err(format!(
                "signal {}: {}",
                self.kind.name(),
                std::io::Error::last_os_error()
            ))
        }
    }

    /// CPU and memory of the proxy's whole process group (nginx's and HAProxy's master and
    /// workers).
    pub fn usage(&self) -> Usage {
        self.guard.usage()
    }

    /// The proxy's last log lines.
    pub fn log_tail(&self) -> String {
        self.guard.log_tail()
    }
}

/// nginx's command line: the shared config, with what only nginx needs (foreground, pid file,
/// error log inside `dir`) given on the command line so the file stays the one tether reads.
/// Without `master`, the one process serves (as under callgrind).
fn nginx_args(dir: &Path, conf: &Path, master: bool) -> Vec<String> {
    let master = if master { "" } else { " master_process off;" };
    vec![
        "-p".into(),
        dir.display().to_string(),
        "-e".into(),
        dir.join("error.log").display().to_string(),
        "-c".into(),
        conf.display().to_string(),
        "-g".into(),
        format!(
            "daemon off;{master} pid {};",
            dir.join("nginx.pid").display()
        ),
    ]
}

fn binary(name: &str) -> Result<PathBuf, String> {
    find_binary(name).ok_or_else(|| format!("{name} is not installed"))
}
