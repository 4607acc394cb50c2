//! nginx's preaccess phase for one request: `limit_req` (refuse, or hold the request back for
//! the delay its bucket asks), then `limit_conn` (count it in its zones until its response
//! ends — a tunnel until it closes). Runs after the location's realip, before `allow`/`deny`,
//! as in nginx; a location whose `return` answered never gets here (that is the rewrite phase).
//!
//! Logs as nginx does: refusals at `limit_*_log_level`, delays one level lower; a dry run logs
//! the same with ", dry run" and lets the request through, uncounted by `limit_conn`.

use http::{Response, StatusCode};
use tracing::Level;

use super::body::response::ResponseBody;
use super::context::{RequestContext, request_event};
use super::error;
use crate::config::ErrorLevel;
use crate::limits::{ConnectionHolds, ConnectionVerdict, Limits, RequestVerdict};
use crate::vars::{RequestInfo, Vars};

/// What the preaccess phase decided.
#[derive(Debug, Default)]
pub(super) struct Preaccess {
    /// The places the request holds in `limit_conn` zones, to be dropped with its response.
    pub(super) holds: Option<ConnectionHolds>,
    /// The status a limit refused the request with.
    refused: Option<StatusCode>,
    /// `$limit_req_status` and `$limit_conn_status` ("" where no limit applied).
    pub(super) statuses: (&'static str, &'static str),
}

impl Preaccess {
    /// Whether a limit refused the request.
    pub(super) fn refused(&self) -> bool {
        self.refused.is_some()
    }

    /// The refusal's answer (an error page with the limit's status).
    pub(super) fn refusal(&self) -> Response<ResponseBody> {
        error::error_page(self.refused.unwrap_or(StatusCode::SERVICE_UNAVAILABLE))
    }
}

/// Runs `limits` for the request `info` describes: waits out a `limit_req` delay here.
pub(super) async fn preaccess(
    limits: &Limits,
    vars: &Vars,
    info: &RequestInfo<'_>,
    cx: &RequestContext<'_>,
) -> Preaccess {
    let mut decided = Preaccess::default();
    if limits.limits_requests() {
        let response = &limits.request_response;
        let verdict = limits.check_requests(vars, info);
        decided.statuses.0 = verdict.status_name(response.dry_run);
        let dry = if response.dry_run { ", dry run" } else { "" };
        match &verdict {
            RequestVerdict::Unlimited | RequestVerdict::Passed => {}
            RequestVerdict::Rejected { excess, zone } => {
                match excess {
                    Some(excess) => log(
                        response.log_level,
                        cx,
                        format_args!(
                            "limiting requests{dry}, excess: {}.{:03} by zone \"{zone}\"",
                            excess / 1000,
                            excess % 1000
                        ),
                    ),
                    None => log(
                        ErrorLevel::Error,
                        cx,
                        format_args!("could not allocate node in limit_req zone \"{zone}\""),
                    ),
                }
                if !response.dry_run {
                    decided.refused = StatusCode::from_u16(response.status).ok();
                    return decided;
                }
            }
            RequestVerdict::Delayed {
                delay,
                excess,
                zone,
            } => {
                log(
                    delay_level(response.log_level),
                    cx,
                    format_args!(
                        "delaying request{dry}, excess: {}.{:03}, by zone \"{zone}\"",
                        excess / 1000,
                        excess % 1000
                    ),
                );
                if !response.dry_run {
                    tokio::time::sleep(*delay).await;
                }
            }
        }
    }
    if limits.limits_connections() {
        let response = &limits.connection_response;
        match limits.enter_connections(vars, info) {
            ConnectionVerdict::Unlimited => {}
            ConnectionVerdict::Passed(holds) => {
                decided.holds = Some(holds);
                decided.statuses.1 = "PASSED";
            }
            ConnectionVerdict::Rejected { zone, full } => {
                let dry = if response.dry_run { ", dry run," } else { "" };
                if full {
                    let message =
                        format_args!("could not allocate node in limit_conn zone \"{zone}\"");
                    log(ErrorLevel::Error, cx, message);
                } else {
                    let message = format_args!("limiting connections{dry} by zone \"{zone}\"");
                    log(response.log_level, cx, message);
                }
                decided.statuses.1 = if response.dry_run {
                    "REJECTED_DRY_RUN"
                } else {
                    "REJECTED"
                };
                if !response.dry_run {
                    decided.refused = StatusCode::from_u16(response.status).ok();
                }
            }
        }
    }
    decided
}

/// nginx logs delays one level below refusals (`info` stays `info`).
fn delay_level(level: ErrorLevel) -> ErrorLevel {
    match level {
        ErrorLevel::Error => ErrorLevel::Warn,
        ErrorLevel::Warn => ErrorLevel::Notice,
        _ => ErrorLevel::Info,
    }
}

/// One error log line about the request at an nginx level (tracing's levels are fixed at each
/// call site, hence the match).
fn log(level: ErrorLevel, cx: &RequestContext<'_>, message: std::fmt::Arguments<'_>) {
    match level {
        ErrorLevel::Debug => request_event!(Level::DEBUG, cx, "{message}"),
        ErrorLevel::Info | ErrorLevel::Notice => request_event!(Level::INFO, cx, "{message}"),
        ErrorLevel::Warn => request_event!(Level::WARN, cx, "{message}"),
        _ => request_event!(Level::ERROR, cx, "{message}"),
    }
}
