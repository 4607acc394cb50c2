//! The directives tether knows: where each may appear, how many arguments it takes, whether it
//! has a block, and whether it is implemented, a documented no-op, or a real nginx directive
//! tether refuses.
//!
//! [`Lowering::accepts`] runs these checks for every directive before any context looks at its
//! arguments, so the contexts only handle well-formed directives. Must not import `model`.

use super::Lowering;
use crate::config::ast::Directive;
use crate::config::error::ErrorKind;

/// The block a directive is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Context {
    Main,
    Events,
    Http,
    Server,
    Location,
    Upstream,
}

impl Context {
    fn bit(self) -> u8 {
        1 << self as u8
    }
}

const M: u8 = 1 << Context::Main as u8;
const E: u8 = 1 << Context::Events as u8;
const H: u8 = 1 << Context::Http as u8;
const S: u8 = 1 << Context::Server as u8;
const L: u8 = 1 << Context::Location as u8;
const U: u8 = 1 << Context::Upstream as u8;
const HSL: u8 = H | S | L;
const MANY: u8 = u8::MAX;

/// What tether does with a known directive.
#[derive(Clone, Copy, Debug)]
enum Role {
    /// Lowered by the context it is in.
    Handled,
    /// Accepted and recorded in `Config::ignored` with this reason.
    Ignored(&'static str),
}

/// One known directive in the contexts it may appear in.
struct Spec {
    name: &'static str,
    contexts: u8,
    min_args: u8,
    max_args: u8,
    block: bool,
    role: Role,
}

const fn handled(name: &'static str, contexts: u8, min_args: u8, max_args: u8) -> Spec {
    Spec {
        name,
        contexts,
        min_args,
        max_args,
        block: false,
        role: Role::Handled,
    }
}

const fn block(name: &'static str, contexts: u8, min_args: u8, max_args: u8) -> Spec {
    Spec {
        block: true,
        ..handled(name, contexts, min_args, max_args)
    }
}

const fn ignored(name: &'static str, contexts: u8, max_args: u8, reason: &'static str) -> Spec {
    Spec {
        role: Role::Ignored(reason),
        ..handled(name, contexts, 1, max_args)
    }
}

const PROCESS: &str = "tether runs as one foreground process";
const FILES: &str = "tether does not serve files";
const SOCKETS: &str = "tether manages its own sockets";
const BUFFERS: &str = "tether streams bodies with its own buffers";
const TABLES: &str = "tether sizes its own lookup tables";
const GZIP_BUFFERS: &str = "tether compresses each piece of a response as it streams, \
                            in a buffer of its own";
const MODULES: &str = "every module tether has is built in";
const POOLS: &str = "tether allocates per connection and request by itself";
const TEMP_FILES: &str = "tether streams bodies and never writes them to temporary files";
const KEY_EXCHANGE: &str = "tether's TLS key exchange is ECDHE (X25519MLKEM768, X25519, \
                            P-256, P-384; see ssl_ecdh_curve), never finite-field DH";
/// Why server- and location-level client timeouts are ignored (`lower::http` uses it).
pub(super) const HTTP_LEVEL_ONLY: &str = "tether uses the http-level value only";

#[rustfmt::skip]
const SPECS: &[Spec] = &[
    // main and events
    handled("worker_processes", M, 1, 1),
    handled("pid", M, 1, 1),
    handled("shutdown_timeout", M, 1, 1),
    handled("worker_shutdown_timeout", M, 1, 1),
    block("events", M, 0, 0),
    block("http", M, 0, 0),
    handled("worker_connections", E, 1, 1),
    ignored("daemon", M, 1, PROCESS),
    // Honoured when started as root: privileges dropped after binding (`main`).
    handled("user", M, 1, 2),
    // Honoured when it raises the limit (`main`).
    handled("worker_rlimit_nofile", M, 1, 1),
    ignored("load_module", M, 1, MODULES),
    ignored("pcre_jit", M, 1, "tether's regexes (the regex crate) are compiled to automata, with no JIT to turn on"),
    ignored("worker_cpu_affinity", M, MANY, "tether's worker threads are placed by the OS"),
    ignored("worker_priority", M, 1, "set tether's priority with nice(1) or systemd's Nice="),
    ignored("timer_resolution", M, 1, "tether reads the clock when it needs the time"),
    ignored("working_directory", M, 1, "tether does not change its working directory"),
    ignored("worker_rlimit_core", M, 1, "set the core size with ulimit -c or systemd's LimitCORE="),
    ignored("lock_file", M, 1, "tether has no accept mutex to lock"),
    handled("error_log", M | H | S, 1, 2),
    ignored("multi_accept", E, 1, SOCKETS),
    ignored("use", E, 1, SOCKETS),
    ignored("accept_mutex", E, 1, SOCKETS),
    ignored("accept_mutex_delay", E, 1, SOCKETS),
    // http
    block("map", H, 2, 2),
    block("upstream", H, 1, 1),
    block("server", H, 0, 0),
    handled("keepalive_timeout", HSL | U, 1, 2),
    handled("client_header_timeout", H | S, 1, 1),
    handled("client_max_body_size", HSL, 1, 1),
    handled("proxy_set_header", HSL, 2, 2),
    handled("add_header", HSL, 2, 3),
    // response headers (`lower::headers`)
    handled("proxy_hide_header", HSL, 1, 1),
    handled("proxy_pass_header", HSL, 1, 1),
    handled("proxy_ignore_headers", HSL, 1, MANY),
    handled("expires", HSL, 1, 2),
    handled("proxy_redirect", HSL, 1, 2),
    handled("proxy_cookie_domain", HSL, 1, 2),
    handled("proxy_cookie_path", HSL, 1, 2),
    handled("proxy_cookie_flags", HSL, 1, 5),
    handled("server_tokens", HSL, 1, 1),
    handled("proxy_connect_timeout", HSL, 1, 1),
    handled("proxy_read_timeout", HSL, 1, 1),
    handled("proxy_send_timeout", HSL, 1, 1),
    handled("proxy_buffering", HSL, 1, 1),
    handled("proxy_next_upstream", HSL, 1, MANY),
    handled("proxy_next_upstream_tries", HSL, 1, 1),
    handled("proxy_cache", HSL, 1, 1),
    handled("proxy_ssl_verify", HSL, 1, 1),
    handled("proxy_ssl_trusted_certificate", HSL, 1, 1),
    handled("proxy_ssl_verify_depth", HSL, 1, 1),
    handled("proxy_ssl_server_name", HSL, 1, 1),
    handled("proxy_ssl_name", HSL, 1, 1),
    handled("proxy_ssl_certificate", HSL, 1, 1),
    handled("proxy_ssl_certificate_key", HSL, 1, 1),
    handled("proxy_ssl_protocols", HSL, 1, MANY),
    handled("proxy_ssl_session_reuse", HSL, 1, 1),
    ignored("proxy_ssl_ciphers", HSL, 1, "tether offers rustls's cipher suites to upstreams (all AEAD with forward secrecy)"),
    handled("gzip", HSL, 1, 1),
    handled("access_log", HSL, 1, 5),
    handled("log_format", H, 2, MANY),
    // the client's address and access (`lower::client`)
    handled("set_real_ip_from", HSL, 1, 1),
    handled("real_ip_header", HSL, 1, 1),
    handled("real_ip_recursive", HSL, 1, 1),
    handled("allow", HSL, 1, 1),
    handled("deny", HSL, 1, 1),
    // request and connection limits (`lower::limits`)
    handled("limit_req_zone", H, 3, 3),
    handled("limit_req", HSL, 1, 3),
    handled("limit_req_status", HSL, 1, 1),
    handled("limit_req_log_level", HSL, 1, 1),
    handled("limit_req_dry_run", HSL, 1, 1),
    handled("limit_conn_zone", H, 2, 2),
    handled("limit_conn", HSL, 2, 2),
    handled("limit_conn_status", HSL, 1, 1),
    handled("limit_conn_log_level", HSL, 1, 1),
    handled("limit_conn_dry_run", HSL, 1, 1),
    Spec { block: true, min_args: 0, max_args: 0, ..ignored("types", HSL, 0, FILES) },
    ignored("default_type", HSL, 1, FILES),
    ignored("sendfile", HSL, 1, FILES),
    ignored("charset", HSL, 1, FILES),
    ignored("root", HSL, 1, FILES),
    ignored("index", HSL, MANY, FILES),
    ignored("tcp_nopush", HSL, 1, SOCKETS),
    ignored("tcp_nodelay", HSL, 1, SOCKETS),
    ignored("lingering_close", HSL, 1, SOCKETS),
    ignored("lingering_time", HSL, 1, SOCKETS),
    ignored("lingering_timeout", HSL, 1, SOCKETS),
    ignored("reset_timedout_connection", HSL, 1, SOCKETS),
    ignored("keepalive_requests", HSL | U, 1, "tether does not cap requests per connection"),
    ignored("keepalive_time", HSL | U, 1, "tether does not cap connection lifetime"),
    handled("send_timeout", HSL, 1, 1),
    handled("client_body_timeout", HSL, 1, 1),
    handled("large_client_header_buffers", H | S, 2, 2),
    handled("client_max_headers", H | S, 1, 1),
    handled("underscores_in_headers", H | S, 1, 1),
    handled("ignore_invalid_headers", H | S, 1, 1),
    ignored("client_body_buffer_size", HSL, 1, BUFFERS),
    ignored("client_header_buffer_size", H | S, 1, "tether grows a request head's buffer up to large_client_header_buffers"),
    ignored("connection_pool_size", H | S, 1, POOLS),
    ignored("request_pool_size", H | S, 1, POOLS),
    ignored("output_buffers", HSL, 2, BUFFERS),
    ignored("postpone_output", HSL, 1, BUFFERS),
    ignored("keepalive_disable", HSL, MANY, "tether keeps connections alive with every browser (the ones nginx can exclude, MSIE 6 and old Safari, are long gone)"),
    ignored("client_body_temp_path", HSL, 4, TEMP_FILES),
    ignored("proxy_temp_path", HSL, 4, TEMP_FILES),
    ignored("proxy_temp_file_write_size", HSL, 1, TEMP_FILES),
    ignored("fastcgi_temp_path", HSL, 4, TEMP_FILES),
    ignored("uwsgi_temp_path", HSL, 4, TEMP_FILES),
    ignored("scgi_temp_path", HSL, 4, TEMP_FILES),
    ignored("open_file_cache", HSL, 2, FILES),
    ignored("open_file_cache_valid", HSL, 1, FILES),
    ignored("open_file_cache_min_uses", HSL, 1, FILES),
    ignored("open_file_cache_errors", HSL, 1, FILES),
    ignored("log_not_found", HSL, 1, FILES),
    ignored("etag", HSL, 1, FILES),
    ignored("aio", HSL, 2, FILES),
    ignored("directio", HSL, 1, FILES),
    ignored("proxy_request_buffering", HSL, 1, BUFFERS),
    ignored("proxy_buffer_size", HSL, 1, BUFFERS),
    ignored("proxy_buffers", HSL, 2, BUFFERS),
    ignored("proxy_busy_buffers_size", HSL, 1, BUFFERS),
    ignored("proxy_max_temp_file_size", HSL, 1, BUFFERS),
    ignored("proxy_http_version", HSL, 1, "tether always speaks HTTP/1.1 to upstreams"),
    ignored("proxy_ignore_client_abort", HSL, 1, "tether closes the upstream when the client goes"),
    handled("http2", H | S, 1, 1),
    // TLS termination (`lower::tls`)
    handled("ssl", H | S, 1, 1),
    handled("ssl_certificate", H | S, 1, 1),
    handled("ssl_certificate_key", H | S, 1, 1),
    handled("ssl_protocols", H | S, 1, MANY),
    handled("ssl_ciphers", H | S, 1, 1),
    handled("ssl_prefer_server_ciphers", H | S, 1, 1),
    handled("ssl_session_cache", H | S, 1, 2),
    handled("ssl_session_timeout", H | S, 1, 1),
    handled("ssl_session_tickets", H | S, 1, 1),
    handled("ssl_stapling", H | S, 1, 1),
    handled("ssl_stapling_file", H | S, 1, 1),
    handled("ssl_stapling_verify", H | S, 1, 1),
    handled("ssl_client_certificate", H | S, 1, 1),
    handled("ssl_trusted_certificate", H | S, 1, 1),
    handled("ssl_verify_client", H | S, 1, 1),
    handled("ssl_verify_depth", H | S, 1, 1),
    ignored("ssl_dhparam", H | S, 1, KEY_EXCHANGE),
    handled("ssl_ecdh_curve", H | S, 1, 1),
    ignored("ssl_buffer_size", H | S, 1, "rustls sizes TLS records itself (up to 16k)"),
    handled("gzip_types", HSL, 1, MANY),
    handled("gzip_vary", HSL, 1, 1),
    handled("gzip_proxied", HSL, 1, MANY),
    handled("gzip_comp_level", HSL, 1, 1),
    handled("gzip_min_length", HSL, 1, 1),
    handled("gzip_http_version", HSL, 1, 1),
    handled("gzip_disable", HSL, 1, MANY),
    Spec { min_args: 2, ..ignored("gzip_buffers", HSL, 2, GZIP_BUFFERS) },
    handled("resolver", HSL | U, 1, MANY),
    handled("resolver_timeout", HSL | U, 1, 1),
    ignored("server_names_hash_bucket_size", H, 1, TABLES),
    ignored("server_names_hash_max_size", H, 1, TABLES),
    ignored("types_hash_max_size", HSL, 1, TABLES),
    ignored("types_hash_bucket_size", HSL, 1, TABLES),
    ignored("variables_hash_max_size", H, 1, TABLES),
    ignored("variables_hash_bucket_size", H, 1, TABLES),
    ignored("map_hash_max_size", H, 1, TABLES),
    ignored("map_hash_bucket_size", H, 1, TABLES),
    ignored("proxy_headers_hash_max_size", HSL, 1, TABLES),
    ignored("proxy_headers_hash_bucket_size", HSL, 1, TABLES),
    // server and location
    handled("listen", S, 1, MANY),
    handled("server_name", S, 1, MANY),
    block("location", S | L, 1, 2),
    // error pages (`lower::error_page`)
    handled("error_page", HSL, 2, MANY),
    handled("proxy_intercept_errors", HSL, 1, 1),
    handled("recursive_error_pages", HSL, 1, 1),
    handled("internal", L, 0, 0),
    handled("return", S | L, 1, 2),
    // the rewrite module (`lower::rewrite`)
    handled("rewrite", S | L, 2, 3),
    handled("set", S | L, 2, 2),
    handled("break", S | L, 0, 0),
    block("if", S | L, 1, MANY),
    handled("absolute_redirect", HSL, 1, 1),
    handled("port_in_redirect", HSL, 1, 1),
    handled("server_name_in_redirect", HSL, 1, 1),
    ignored("rewrite_log", HSL, 1, "tether logs no notice per rewrite"),
    ignored("uninitialized_variable_warn", HSL, 1, "tether logs no warning for an unset variable (it is empty, as in nginx)"),
    handled("proxy_pass", L, 1, 1),
    handled("status", L, 0, 0),
    // nginx before 1.7.5 wanted an argument (`stub_status on;`); still accepted.
    handled("stub_status", L, 0, 1),
    // upstream
    handled("server", U, 1, MANY),
    handled("ip_hash", U, 0, 0),
    handled("least_conn", U, 0, 0),
    handled("hash", U, 1, 2),
    handled("random", U, 0, 2),
    handled("keepalive", U, 1, 1),
    handled("sticky", U, 1, MANY),
    handled("sticky_secret", H | U, 1, 1),
    handled("health_check", U, 0, MANY),
    handled("drain_timeout", U, 1, 1),
    ignored("zone", U, 2, "tether keeps upstream state in memory without zones"),
];

/// Real nginx directives that tether refuses rather than misreading as typos.
const UNSUPPORTED: &[&str] = &[
    "try_files",
    "alias",
    "limit_except",
    "proxy_cache_path",
    "proxy_cache_key",
    "proxy_cache_valid",
    "proxy_cache_bypass",
    "proxy_cache_use_stale",
    "proxy_cache_lock",
    "proxy_cache_lock_timeout",
    "proxy_cache_methods",
    "proxy_cache_min_uses",
    "proxy_cache_revalidate",
    "proxy_cache_background_update",
    "proxy_cache_convert_head",
    "proxy_cache_purge",
    "proxy_method",
    "proxy_limit_rate",
    "proxy_store_access",
    "proxy_no_cache",
    "proxy_set_body",
    "proxy_store",
    "proxy_bind",
    "proxy_ssl_crl",
    "proxy_ssl_password_file",
    "proxy_ssl_conf_command",
    "proxy_ssl_key_log",
    "proxy_ssl_certificate_cache",
    "proxy_next_upstream_timeout",
    "proxy_pass_request_headers",
    "proxy_pass_request_body",
    "fastcgi_pass",
    "fastcgi_param",
    "fastcgi_index",
    "uwsgi_pass",
    "uwsgi_param",
    "scgi_pass",
    "grpc_pass",
    "memcached_pass",
    "limit_rate",
    "auth_basic",
    "auth_basic_user_file",
    "auth_request",
    "sub_filter",
    "gzip_static",
    "gunzip",
    "gunzip_buffers",
    "sub_filter_once",
    "sub_filter_types",
    "ssi",
    "ssi_types",
    "mirror",
    "mirror_request_body",
    "add_before_body",
    "add_after_body",
    "addition_types",
    "secure_link",
    "secure_link_md5",
    "secure_link_secret",
    "auth_jwt",
    "auth_jwt_key_file",
    "js_import",
    "js_content",
    "js_set",
    "js_path",
    "perl_modules",
    "perl_require",
    "perl_set",
    "perl",
    "image_filter",
    "xslt_stylesheet",
    "dav_methods",
    "autoindex",
    "slice",
    "mp4",
    "flv",
    "userid",
    "empty_gif",
    "geoip_country",
    "geoip_city",
    "geoip2",
    "limit_rate_after",
    "random_index",
    "add_trailer",
    "split_clients",
    "geo",
    "stream",
    "mail",
    "env",
    "chunked_transfer_encoding",
    "ssl_password_file",
    "ssl_session_ticket_key",
    "ssl_stapling_responder",
    "ssl_crl",
    "ssl_early_data",
    "ssl_conf_command",
    "ssl_reject_handshake",
    "ssl_ocsp",
    "ssl_ocsp_cache",
    "ssl_ocsp_responder",
    "ssl_certificate_cache",
    "ssl_key_log",
    "ssl_engine",
    "ssl_preread",
];

impl Lowering {
    /// Checks `d` against what tether knows in `context`. Returns true when the context should
    /// lower it; otherwise it was reported as an error or recorded as ignored.
    pub(super) fn accepts(&mut self, context: Context, d: &Directive) -> bool {
        let name = d.name();
        if UNSUPPORTED.contains(&name) {
            self.error(&d.span, ErrorKind::NotSupported { name: name.into() });
            return false;
        }
        let mut specs = SPECS.iter().filter(|spec| spec.name == name).peekable();
        if specs.peek().is_none() {
            let budget = &mut self.suggestion_budget;
            let suggestion = closest(name, by_context(context), budget).map(str::to_string);
            let kind = ErrorKind::UnknownDirective {
                name: name.into(),
                suggestion,
            };
            self.error(&d.span, kind);
            return false;
        }
        let Some(spec) = specs.find(|spec| spec.contexts & context.bit() != 0) else {
            let kind = if name == "error_log" {
                ErrorKind::ErrorLogPerLocation
            } else if name == "health_check" {
                // nginx Plus writes it in a `location`; tether checks whole groups.
                ErrorKind::HealthCheckOutsideUpstream
            } else {
                ErrorKind::NotAllowedHere { name: name.into() }
            };
            self.error(&d.span, kind);
            return false;
        };
        // nginx checks the block before the arguments; so do we, to print the same first error.
        let kind = match (spec.block, d.block.is_some()) {
            (true, false) => Some(ErrorKind::NoOpeningBrace { name: name.into() }),
            (false, true) => Some(ErrorKind::NotTerminated { name: name.into() }),
            _ => None,
        };
        let count = d.args.len();
        let kind = kind.or_else(|| {
            (count < usize::from(spec.min_args) || count > usize::from(spec.max_args))
                .then(|| ErrorKind::InvalidArgCount { name: name.into() })
        });
        if let Some(kind) = kind {
            self.error(&d.span, kind);
            return false;
        }
        match spec.role {
            Role::Handled => true,
            Role::Ignored(reason) => {
                self.ignore(d, reason);
                false
            }
        }
    }
}

/// Known names, those allowed in `context` first, so a suggestion fits where the typo is.
fn by_context(context: Context) -> impl Iterator<Item = &'static str> {
    let fits = move |spec: &&Spec| spec.contexts & context.bit() != 0;
    let first = SPECS.iter().filter(fits);
    let rest = SPECS.iter().filter(move |spec| !fits(spec));
    first.chain(rest).map(|spec| spec.name)
}

/// Names longer than this get no suggestion: no real directive or upstream name is, and a
/// distance costs time (and memory) proportional to the product of the two lengths.
const MAX_SUGGESTED_LEN: usize = 64;

/// How many name distances one lowering may compute for "did you mean" hints. An unknown
/// directive costs up to one per known directive (~150), an unknown upstream one per upstream
/// of a similar length; past the budget errors come without a hint, so a config of 100,000
/// typos, or of 100,000 upstreams and as many bad `proxy_pass`es, is still checked in linear
/// time.
pub(super) const SUGGESTION_BUDGET: usize = 100_000;

/// The candidate closest to `name` (Damerau-Levenshtein distance at most 2, and less than the
/// name's own length so that short words do not "resemble" everything); earlier candidates win
/// ties. Each distance computed takes one from `budget`; none is computed once it is spent.
pub(super) fn closest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
    budget: &mut usize,
) -> Option<&'a str> {
    let length = name.chars().count();
    if length > MAX_SUGGESTED_LEN {
        return None;
    }
    let limit = 2.min(length.saturating_sub(1));
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        // The distance is at least the difference in length, so most candidates need no
        // computation; a long candidate is counted only as far as that tells.
        let counted = candidate.chars().take(length + limit + 1).count();
        if counted.abs_diff(length) > limit {
            continue;
        }
        let Some(left) = budget.checked_sub(1) else {
            break;
        };
        *budget = left;
        let distance = strsim::damerau_levenshtein(name, candidate);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_prefer_close_names_valid_here() {
        let near = |name, context| closest(name, by_context(context), &mut 1_000);
        assert_eq!(near("proxy_pas", Context::Location), Some("proxy_pass"));
        assert_eq!(near("lisen", Context::Server), Some("listen"));
        assert_eq!(near("sever", Context::Upstream), Some("server"));
        assert_eq!(near("xyzzy", Context::Http), None);
        assert_eq!(near("a", Context::Http), None);
        // Too long to be a typo of anything.
        let long = "proxy_pass".repeat(7);
        assert_eq!(
            closest(&long[1..], [long.as_str()].into_iter(), &mut 1),
            None
        );
    }

    #[test]
    fn suggestions_stop_when_the_budget_is_spent() {
        let mut budget = 2;
        let names = || ["lisen", "listen", "listens"].into_iter();
        // The first candidate costs one, the second one (and is the answer), the third none.
        assert_eq!(closest("listen", names(), &mut budget), Some("listen"));
        assert_eq!(budget, 0);
        assert_eq!(closest("listen", names(), &mut budget), None);
    }

    #[test]
    fn the_readme_reference_lists_every_directive() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("### Configuration reference")
            .expect("README has a configuration reference");
        let reference = &readme[start..];
        for spec in SPECS {
            let row = format!("| `{}` |", spec.name);
            assert!(
                reference.contains(&row),
                "README's reference has no row for {}",
                spec.name
            );
        }
        for name in UNSUPPORTED {
            let named = format!("`{name}`");
            assert!(
                reference.contains(&named),
                "README's reference does not name {name}"
            );
        }
    }

    #[test]
    fn every_name_is_listed_once_per_context() {
        for (i, spec) in SPECS.iter().enumerate() {
            assert!(!UNSUPPORTED.contains(&spec.name), "{}", spec.name);
            let clash = SPECS[i + 1..]
                .iter()
                .any(|other| other.name == spec.name && other.contexts & spec.contexts != 0);
            assert!(!clash, "{} is listed twice for one context", spec.name);
        }
    }
}
