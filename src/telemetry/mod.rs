//! Seeing inside tether: the access log (formatted on the request path, written off it).
//!
//! May use `vars`, `config` and std threads; must not import `proxy` or `server` (they call in
//! here with what they know, never the other way round).

pub mod access_log;
