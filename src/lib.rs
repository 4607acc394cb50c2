//! tether: an nginx-flavoured sticky L7 load balancer for real-time app farms.
//!
//! ```text
//! conf/*.conf ──config::load──> Config (typed, validated, spans kept)
//!                                  │
//!                     Snapshot::build (vars, route, upstream groups over live peers)
//!                                  │  one ArcSwap pointer, swapped whole
//!                                  ▼
//! server (accept, ceiling, own HTTP/1, hyper HTTP/2) ──> proxy::serve ──> snapshot.server(listen, host)
//!    ──> route(path) ──> return | group.choose ──> forward ──> stream / tunnel back
//! ```
//!
//! `runtime::Tether` holds the pointer and changes it: start, apply (build -> bind the new
//! listeners -> swap -> reconcile listeners, restart `proxy::health` probes), stop. `reload`
//! calls `apply` when the config's files change or SIGHUP comes.
//!
//! Layering: `config` <- `route`; `config` <- `realip` (the real client address, pure) <-
//! {`vars`, `proxy`, `server`}; {`peer` <- `balance`, `vars`} <- `upstream`; `config` <-
//! `tls` (rustls configs read from the config's files); {`config`, `route`, `upstream`,
//! `vars`, `tls`, `limits`, `rewrite`} <- `snapshot` <- `proxy` <- `server` <- `runtime` <-
//! `reload` <- `main`; {`config`, `vars`} <- `limits` (`limit_req`/`limit_conn` zones, pure:
//! the proxy waits out a delay); {`config`, `vars`} <- `rewrite` (the rewrite module's
//! programs, pure).
//! `header_list` (a request's header lines in order; std and `http`) serves every layer that
//! reads a request.
//! `telemetry` (the error log and its throttle) serves `runtime`, `proxy` and `server`.
//! `config` <- `compress` (which responses `gzip` compresses, and the streaming compressor;
//! no hyper, no tokio) <- {`snapshot`, `proxy`}.
//! `process` (the open-file limit, dropping to `user`, systemd readiness; std and nix only)
//! serves `main`.
//! Below `proxy`, only `peer` names a hyper type (its idle connection pool, which must live and
//! die with the peer); nothing below `server` binds a socket. `telemetry` (the process's and
//! listeners' counters, the status pages over them and the peers' own) sits between
//! `snapshot` and `proxy`: `server` counts into it, `proxy` answers `status;` from it.

pub mod balance;
pub mod compress;
pub mod config;
pub mod demo;
pub mod drain;
pub mod header_list;
pub mod heap;
pub mod inflight;
pub mod limits;
mod lru;
pub mod peer;
pub mod process;
pub mod proxy;
pub mod realip;
pub mod reload;
pub mod resolve;
pub mod rewrite;
pub mod route;
pub mod runtime;
pub mod server;
pub mod session_sync;
pub mod sessions;
pub mod snapshot;
pub mod stream;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod vars;
