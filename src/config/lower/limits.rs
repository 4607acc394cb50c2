//! `limit_req_zone`, `limit_req`, `limit_req_status`, `limit_req_log_level`,
//! `limit_req_dry_run`, and the same five for `limit_conn`: their syntax and checks, with
//! nginx's messages, and their inheritance (a [`LimitsLayer`] per level, lists inherited as a
//! whole by a level that writes none, as nginx merges arrays).
//!
//! Zones are declared at http level in any order relative to their use, so the names a limit
//! refers to are checked once the whole http block is lowered ([`Lowering::check_limit_zones`]).
//! Must not import other `lower` contexts.

use std::collections::HashSet;
use std::sync::Arc;

use super::Lowering;
use super::values::{parse_number, parse_size};
use crate::config::ast::{Directive, Word};
use crate::config::error::ErrorKind;
use crate::config::model::{
    ConnectionLimit, ConnectionZoneSpec, ErrorLevel, Http, LimitResponse, LimitRules, RequestLimit,
    RequestZoneSpec, Span,
};

/// nginx refuses zones smaller than eight memory pages.
const MIN_ZONE_SIZE: u64 = 8 * 4096;

/// The limits written at one level; `None` means "inherit".
#[derive(Clone, Debug, Default)]
pub(super) struct LimitsLayer {
    requests: Option<Arc<Vec<RequestLimit>>>,
    request_status: Option<u16>,
    request_log_level: Option<ErrorLevel>,
    request_dry_run: Option<bool>,
    connections: Option<Arc<Vec<ConnectionLimit>>>,
    connection_status: Option<u16>,
    connection_log_level: Option<ErrorLevel>,
    connection_dry_run: Option<bool>,
}

impl LimitsLayer {
    /// This level's limits, falling back to `outer`'s field by field.
    pub(super) fn over(&self, outer: &LimitsLayer) -> LimitsLayer {
        fn pick<T: Clone>(inner: &Option<T>, outer: &Option<T>) -> Option<T> {
            inner.as_ref().or(outer.as_ref()).cloned()
        }
        LimitsLayer {
            requests: pick(&self.requests, &outer.requests),
            request_status: pick(&self.request_status, &outer.request_status),
            request_log_level: pick(&self.request_log_level, &outer.request_log_level),
            request_dry_run: pick(&self.request_dry_run, &outer.request_dry_run),
            connections: pick(&self.connections, &outer.connections),
            connection_status: pick(&self.connection_status, &outer.connection_status),
            connection_log_level: pick(&self.connection_log_level, &outer.connection_log_level),
            connection_dry_run: pick(&self.connection_dry_run, &outer.connection_dry_run),
        }
    }

    /// The effective limits: this layer over nginx's defaults.
    pub(super) fn resolve(self) -> LimitRules {
        let d = LimitResponse::default();
        LimitRules {
            requests: self.requests.unwrap_or_default(),
            request_response: LimitResponse {
                status: self.request_status.unwrap_or(d.status),
                log_level: self.request_log_level.unwrap_or(d.log_level),
                dry_run: self.request_dry_run.unwrap_or(d.dry_run),
            },
            connections: self.connections.unwrap_or_default(),
            connection_response: LimitResponse {
                status: self.connection_status.unwrap_or(d.status),
                log_level: self.connection_log_level.unwrap_or(d.log_level),
                dry_run: self.connection_dry_run.unwrap_or(d.dry_run),
            },
        }
    }
}

impl Lowering {
    /// Applies `d` to `layer` if it is one of the per-level limit directives; false if not.
    pub(super) fn limits_setting(&mut self, layer: &mut LimitsLayer, d: &Directive) -> bool {
        let word = &d.args[0];
        match d.name() {
            "limit_req" => {
                if let Some(limit) = self.limit_req(d) {
                    let zone = limit.zone.clone();
                    self.add_limit(&mut layer.requests, limit, |l| l.zone == zone, d);
                }
            }
            "limit_conn" => {
                if let Some(limit) = self.limit_conn(d) {
                    let zone = limit.zone.clone();
                    self.add_limit(&mut layer.connections, limit, |l| l.zone == zone, d);
                }
            }
            "limit_req_status" => {
                self.once(&mut layer.request_status, d, |cx| cx.limit_status(d, word));
            }
            "limit_conn_status" => {
                self.once(&mut layer.connection_status, d, |cx| {
                    cx.limit_status(d, word)
                });
            }
            "limit_req_log_level" => {
                self.once(&mut layer.request_log_level, d, |cx| {
                    cx.limit_level(d, word)
                });
            }
            "limit_conn_log_level" => {
                self.once(&mut layer.connection_log_level, d, |cx| {
                    cx.limit_level(d, word)
                });
            }
            "limit_req_dry_run" => {
                self.once(&mut layer.request_dry_run, d, |cx| cx.flag(d, word));
            }
            "limit_conn_dry_run" => {
                self.once(&mut layer.connection_dry_run, d, |cx| cx.flag(d, word));
            }
            _ => return false,
        }
        true
    }

    /// `limit_req_zone KEY zone=NAME:SIZE rate=Nr/s|Nr/m`.
    pub(super) fn limit_req_zone(&mut self, d: &Directive) -> Option<RequestZoneSpec> {
        let mut zone = None;
        // nginx's default when no rate is given: one request per second.
        let mut rate = Some(1000);
        let mut valid = true;
        for word in &d.args[1..] {
            if let Some(text) = word.text.strip_prefix("zone=") {
                zone = self.zone_parameter(d, word, text);
                valid &= zone.is_some();
            } else if let Some(text) = word.text.strip_prefix("rate=") {
                rate = parse_rate(text);
                if rate.is_none() {
                    self.invalid_value(d, word);
                }
            } else {
                self.invalid_parameter(d, word);
                valid = false;
            }
        }
        if valid && zone.is_none() {
            let directive = d.name().to_string();
            self.error(&d.span, ErrorKind::MissingZoneParameter { directive });
        }
        let (name, size) = zone?;
        Some(RequestZoneSpec {
            name,
            key: d.args[0].text.clone(),
            size,
            rate: rate?,
            span: d.span.clone(),
        })
    }

    /// `limit_conn_zone KEY zone=NAME:SIZE`.
    pub(super) fn limit_conn_zone(&mut self, d: &Directive) -> Option<ConnectionZoneSpec> {
        let word = &d.args[1];
        let Some(text) = word.text.strip_prefix("zone=") else {
            self.invalid_parameter(d, word);
            return None;
        };
        let (name, size) = self.zone_parameter(d, word, text)?;
        Some(ConnectionZoneSpec {
            name,
            key: d.args[0].text.clone(),
            size,
            span: d.span.clone(),
        })
    }

    /// `NAME:SIZE` of a `zone=` parameter, at least nginx's minimum size.
    pub(super) fn zone_parameter(
        &mut self,
        d: &Directive,
        word: &Word,
        text: &str,
    ) -> Option<(String, u64)> {
        let parsed = text
            .split_once(':')
            .filter(|(name, _)| !name.is_empty())
            .and_then(|(name, size)| Some((name, parse_size(size)?)));
        let Some((name, size)) = parsed else {
            self.invalid_value(d, word);
            return None;
        };
        if size < MIN_ZONE_SIZE {
            let name = name.to_string();
            self.error(&word.span, ErrorKind::ZoneTooSmall { name });
            return None;
        }
        Some((name.to_string(), size))
    }

    /// Adds `limit` to a level's list, or reports `d` as a duplicate when the list already
    /// limits by its zone (`same_zone`), as nginx does.
    fn add_limit<T: Clone>(
        &mut self,
        list: &mut Option<Arc<Vec<T>>>,
        limit: T,
        same_zone: impl Fn(&T) -> bool,
        d: &Directive,
    ) {
        let list = list.get_or_insert_with(Arc::default);
        if list.iter().any(same_zone) {
            self.duplicate(d);
        } else {
            Arc::make_mut(list).push(limit);
        }
    }

    /// `limit_req zone=NAME [burst=N] [nodelay | delay=N]`.
    fn limit_req(&mut self, d: &Directive) -> Option<RequestLimit> {
        let mut zone = None;
        let (mut burst, mut delay) = (0, 0);
        let mut valid = true;
        for word in &d.args {
            let text = word.text.as_str();
            // nginx takes a positive number for `burst=` and `delay=`; the last of `delay=`
            // and `nodelay` written wins.
            let positive = |value: &str| parse_number::<u64>(value).filter(|&n| n > 0);
            if let Some(name) = text.strip_prefix("zone=").filter(|n| !n.is_empty()) {
                zone = Some(name.to_string());
            } else if let Some(n) = text.strip_prefix("burst=").and_then(positive) {
                burst = n;
            } else if let Some(n) = text.strip_prefix("delay=").and_then(positive) {
                delay = n;
            } else if text == "nodelay" {
                delay = u64::MAX;
            } else {
                if text.starts_with("burst=") || text.starts_with("delay=") {
                    self.invalid_value(d, word);
                } else {
                    self.invalid_parameter(d, word);
                }
                valid = false;
            }
        }
        if valid && zone.is_none() {
            let directive = d.name().to_string();
            self.error(&d.span, ErrorKind::MissingZoneParameter { directive });
        }
        Some(RequestLimit {
            zone: zone.filter(|_| valid)?,
            burst,
            delay,
            span: d.span.clone(),
        })
    }

    /// `limit_conn ZONE NUMBER` (1..=65535, as nginx).
    fn limit_conn(&mut self, d: &Directive) -> Option<ConnectionLimit> {
        let [zone, number] = d.args.as_slice() else {
            let name = d.name().to_string();
            self.error(&d.span, ErrorKind::InvalidArgCount { name });
            return None;
        };
        let Some(max) = parse_number::<u32>(&number.text).filter(|n| (1..=65535).contains(n))
        else {
            self.invalid_value(d, number);
            return None;
        };
        Some(ConnectionLimit {
            zone: zone.text.clone(),
            max,
            span: d.span.clone(),
        })
    }

    /// `limit_req_status` / `limit_conn_status`: 400..=599, as nginx.
    fn limit_status(&mut self, d: &Directive, word: &Word) -> Option<u16> {
        let status = parse_number::<u16>(&word.text).filter(|s| (400..=599).contains(s));
        if status.is_none() {
            self.invalid_value(d, word);
        }
        status
    }

    /// `limit_req_log_level` / `limit_conn_log_level`: info, notice, warn or error.
    fn limit_level(&mut self, d: &Directive, word: &Word) -> Option<ErrorLevel> {
        let level = ErrorLevel::from_name(&word.text).filter(|level| {
            matches!(
                level,
                ErrorLevel::Info | ErrorLevel::Notice | ErrorLevel::Warn | ErrorLevel::Error
            )
        });
        if level.is_none() {
            self.invalid_value(d, word);
        }
        level
    }

    /// Reports zones declared twice, and every limit (once per place written, however many
    /// locations inherit it) whose zone is not declared by the matching `*_zone` directive.
    pub(super) fn check_limit_zones(&mut self, http: &Http) {
        let mut request_zones = HashSet::new();
        for zone in &http.request_zones {
            if !request_zones.insert(zone.name.as_str()) {
                let name = zone.name.clone();
                self.error(&zone.span, ErrorKind::DuplicateZone { name });
            }
        }
        let mut connection_zones = HashSet::new();
        for zone in &http.connection_zones {
            if !connection_zones.insert(zone.name.as_str()) {
                let name = zone.name.clone();
                self.error(&zone.span, ErrorKind::DuplicateZone { name });
            }
        }
        let mut reported: HashSet<Span> = HashSet::new();
        let locations = http.servers.iter().flat_map(|server| &server.locations);
        for rules in locations.map(|location| &location.proxy.limits) {
            let requests = rules
                .requests
                .iter()
                .map(|l| ("limit_req", &l.zone, &l.span));
            let requests = requests.filter(|(_, zone, _)| !request_zones.contains(zone.as_str()));
            let connections = rules
                .connections
                .iter()
                .map(|l| ("limit_conn", &l.zone, &l.span));
            let connections =
                connections.filter(|(_, zone, _)| !connection_zones.contains(zone.as_str()));
            for (directive, zone, span) in requests.chain(connections) {
                if reported.insert(span.clone()) {
                    let kind = ErrorKind::UnknownZone {
                        directive: directive.to_string(),
                        name: zone.clone(),
                    };
                    self.error(span, kind);
                }
            }
        }
    }
}

/// `Nr/s`, `Nr/m` or a bare `N` (per second), N > 0, in thousandths of a request per second.
fn parse_rate(text: &str) -> Option<u64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("r/s") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix("r/m") {
        (n, 60)
    } else {
        (text, 1)
    };
    let rate = parse_number::<u64>(number).filter(|&n| n > 0)?;
    Some(rate.checked_mul(1000)? / scale)
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_in_thousandths_per_second() {
        assert_eq!(parse_rate("10r/s"), Some(10_000));
        assert_eq!(parse_rate("30r/m"), Some(500));
        assert_eq!(parse_rate("1r/m"), Some(16));
        assert_eq!(parse_rate("5"), Some(5_000));
        assert_eq!(parse_rate("0r/s"), None);
        assert_eq!(parse_rate("r/s"), None);
        assert_eq!(parse_rate("5r/h"), None);
    }
}
