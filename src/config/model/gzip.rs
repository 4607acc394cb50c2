//! The effective `gzip*` settings of one location, inheritance already resolved, with nginx's
//! defaults. Pure data: the regexes of `gzip_disable` stay strings here and are compiled by
//! `compress` when a snapshot is built.

/// `gzip` and the directives that tune it, as one location has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gzip {
    /// `gzip on|off` (default off).
    pub enabled: bool,
    /// `gzip_types` (default `text/html`, which is always compressed whatever the list says).
    pub types: GzipTypes,
    /// `gzip_min_length` (default 20): a response whose `Content-Length` says fewer bytes is
    /// sent as it is; a response of unknown length is always compressed.
    pub min_length: u64,
    /// `gzip_comp_level` 1..=9 (default 1).
    pub comp_level: u32,
    /// `gzip_proxied` (default `off`): what to do for requests that came through a proxy
    /// (those with a `Via` header).
    pub proxied: GzipProxied,
    /// `gzip_vary` (default off): add `Vary: Accept-Encoding` to every response that could be
    /// compressed, whether or not this one was.
    pub vary: bool,
    /// `gzip_disable`: which clients never get a compressed response.
    pub disable: GzipDisable,
    /// `gzip_http_version 1.0|1.1` (default 1.1): the lowest request version compressed for.
    pub http_version: GzipHttpVersion,
}

impl Default for Gzip {
    fn default() -> Gzip {
        Gzip {
            enabled: false,
            types: GzipTypes::List(Vec::new()),
            min_length: 20,
            comp_level: 1,
            proxied: GzipProxied::OFF,
            vary: false,
            disable: GzipDisable::default(),
            http_version: GzipHttpVersion::Http11,
        }
    }
}

/// The MIME types `gzip_types` lets through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GzipTypes {
    /// `gzip_types *;`: every response, with a `Content-Type` or without.
    Any,
    /// These types (lowercase, without parameters), besides `text/html`.
    List(Vec<String>),
}

/// `gzip_proxied`: nginx's flags, each a condition under which a proxied request's response
/// is compressed anyway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GzipProxied {
    /// `off`: never for a proxied request (the default; nginx lets it win over the rest).
    pub off: bool,
    /// `any`: always.
    pub any: bool,
    /// `expired`: the response's `Expires` is in the past (before its `Date`).
    pub expired: bool,
    /// `no-cache`: its `Cache-Control` says `no-cache`.
    pub no_cache: bool,
    /// `no-store`: its `Cache-Control` says `no-store`.
    pub no_store: bool,
    /// `private`: its `Cache-Control` says `private`.
    pub private: bool,
    /// `no_last_modified`: it has no `Last-Modified`.
    pub no_last_modified: bool,
    /// `no_etag`: it has no `ETag`.
    pub no_etag: bool,
    /// `auth`: the request carries `Authorization`.
    pub auth: bool,
}

impl GzipProxied {
    /// nginx's default, `gzip_proxied off`.
    pub const OFF: GzipProxied = GzipProxied {
        off: true,
        any: false,
        expired: false,
        no_cache: false,
        no_store: false,
        private: false,
        no_last_modified: false,
        no_etag: false,
        auth: false,
    };
}

/// `gzip_disable`: clients (by `User-Agent`) that never get a compressed response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GzipDisable {
    /// `msie6`: nginx's fast test for MSIE 4, 5 and 6 (6 without "SV1").
    pub msie6: bool,
    /// Any other value: a case-insensitive regex over the `User-Agent`.
    pub patterns: Vec<String>,
}

/// `gzip_http_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GzipHttpVersion {
    /// `1.0`: HTTP/1.0 clients too (their response is then sent until the connection closes).
    Http10,
    /// `1.1`: HTTP/1.1 and HTTP/2 clients.
    Http11,
}
