//! `health_check [interval=T] [fails=N] [passes=N] [uri=/path] [timeout=T] [status=LO-HI];`
//! in an `upstream`: active probes of every server of the group.
//!
//! nginx Plus writes `health_check` in a `location` and probes that location's upstream; tether
//! checks groups, so the directive lives in the group it checks (the directive table turns it
//! away elsewhere, with a hint). Parameters nginx Plus has but tether lacks are refused by name
//! rather than called invalid. Must not import `peer` or anything that probes: this is the check
//! as written.

use std::time::Duration;

use super::Lowering;
use super::upstream::set;
use super::values::{parse_number, parse_time};
use crate::config::ast::Directive;
use crate::config::error::ErrorKind;
use crate::config::model::HealthCheck;

/// Time between two probes of one server when `interval=` is not given (nginx Plus's too).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Cap on the default probe timeout, so a long interval does not mean a long-hanging probe.
const MAX_DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Status codes a probe accepts by default: any success or redirect, as nginx Plus.
const DEFAULT_STATUS: (u16, u16) = (200, 399);

impl Lowering {
    /// Lowers `health_check ...`; `None` once an error is reported.
    pub(super) fn health_check(&mut self, d: &Directive) -> Option<HealthCheck> {
        let mut check = HealthCheck {
            interval: DEFAULT_INTERVAL,
            fails: 1,
            passes: 1,
            uri: "/".to_string(),
            timeout: Duration::ZERO,
            status: DEFAULT_STATUS,
            span: d.span.clone(),
        };
        // Known only once every parameter is read: `interval=` may come after it.
        let mut timeout = None;
        let mut valid = true;
        for param in &d.args {
            let text = param.text.as_str();
            let (key, value) = text.split_once('=').unwrap_or((text, ""));
            let ok = match (key, text.contains('=')) {
                ("interval", true) => set(&mut check.interval, positive_time(value)),
                ("fails", true) => set(&mut check.fails, parse_number(value).filter(|&n| n > 0)),
                ("passes", true) => set(&mut check.passes, parse_number(value).filter(|&n| n > 0)),
                ("uri", true) => set(&mut check.uri, probe_uri(value)),
                ("timeout", true) => set(&mut timeout, positive_time(value).map(Some)),
                ("status", true) => set(&mut check.status, status_range(value)),
                ("jitter" | "match" | "port" | "type" | "keepalive_time", true)
                | ("grpc_service" | "grpc_status", true)
                | ("mandatory" | "persistent", false) => {
                    let kind = ErrorKind::ValueNotSupported {
                        directive: d.name().into(),
                        value: text.into(),
                    };
                    self.error(&param.span, kind);
                    valid = false;
                    continue;
                }
                _ => false,
            };
            if !ok {
                valid = false;
                self.invalid_parameter(d, param);
            }
        }
        check.timeout = timeout.unwrap_or(check.interval.min(MAX_DEFAULT_TIMEOUT));
        valid.then_some(check)
    }
}

/// A time above zero (a zero interval would probe in a busy loop, a zero timeout never pass).
fn positive_time(text: &str) -> Option<Duration> {
    parse_time(text).filter(|t| !t.is_zero())
}

/// An origin-form path for the probe's request line: starts with `/`, visible ASCII only (a
/// space or control character would break the request line).
fn probe_uri(text: &str) -> Option<String> {
    let valid = text.starts_with('/') && text.bytes().all(|b| b.is_ascii_graphic());
    valid.then(|| text.to_string())
}

/// `LO-HI` or a single `CODE`, inside 100..=599 and in order.
fn status_range(text: &str) -> Option<(u16, u16)> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let code = |t: &str| parse_number::<u16>(t).filter(|c| (100..=599).contains(c));
    let (low, high) = (code(low)?, code(high)?);
    (low <= high).then_some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(status_range("200-399"), Some((200, 399)));
        assert_eq!(status_range("204"), Some((204, 204)));
        for bad in [
            "",
            "99",
            "600",
            "300-200",
            "200-",
            "-300",
            "2xx",
            "200-300-400",
        ] {
            assert_eq!(status_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn probe_uris() {
        assert_eq!(probe_uri("/healthz?x=1").as_deref(), Some("/healthz?x=1"));
        for bad in ["", "healthz", "/a b", "/a\tb", "/é"] {
            assert_eq!(probe_uri(bad), None, "{bad}");
        }
    }
}
