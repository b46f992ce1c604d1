//! Every answer modelmap gives on its own, in the OpenAI error shape clients already
//! parse: `{"error": {"message", "type", "param", "code"}}`. [`Refusal`]s are policy (the
//! guard, identity, what cannot be read as the gateway reads it); [`Failure`]s are the
//! exchange going wrong (a slow or oversized head, an unreachable gateway). Both give a
//! status and a body; [`raw_response`] frames one for a connection that has no HTTP
//! session yet (the head was never read).

use bytes::Bytes;
use pingora::{ErrorSource, ErrorType};
use serde_json::json;

use crate::rewrite::unreadable::Unreadable;

/// The body of an OpenAI-style error.
pub fn openai_error_body(message: &str, kind: &str, code: &str) -> Bytes {
    let body = json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    });
    Bytes::from(body.to_string())
}

/// A request modelmap refuses on its own, before the gateway answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The body names another team's internal model name (the guard).
    OtherTeamsModel { requested: String },
    /// The team lookup failed and `--identity-fail-closed` is set.
    IdentityUnavailable,
    /// A part that may name a model cannot be read as the gateway reads it (the guard
    /// fails closed).
    Unreadable(Unreadable),
    /// A model name with characters it cannot carry as a response header on the gateway.
    InvalidName,
    /// Framing the gateway's HTTP parser could read differently.
    Framing(&'static str),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::OtherTeamsModel { .. } => 403,
            Refusal::IdentityUnavailable => 503,
            Refusal::Unreadable(_) | Refusal::InvalidName | Refusal::Framing(_) => 400,
        }
    }

    /// The `reason` label of `modelmap_unreadable_requests_total`, for 400 refusals.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Refusal::Unreadable(why) => Some(why.as_str()),
            Refusal::InvalidName => Some("invalid_model_name"),
            Refusal::Framing(_) => Some("framing"),
            Refusal::OtherTeamsModel { .. } | Refusal::IdentityUnavailable => None,
        }
    }

    /// Whether the request's body framing can be trusted to read the body to its end.
    pub fn framing_trusted(&self) -> bool {
        !matches!(self, Refusal::Framing(_))
    }

    /// The OpenAI-shaped body. The guard's message names only what the caller sent.
    pub fn body(&self) -> Bytes {
        match self {
            Refusal::OtherTeamsModel { requested } => openai_error_body(
                &format!(
                    "model {requested:?} is another team's internal model name and is not available to this key; request the model by its public name"
                ),
                "invalid_request_error",
                "team_model_access_denied",
            ),
            Refusal::IdentityUnavailable => openai_error_body(
                "modelmap could not determine the caller's team (the gateway's /key/info did not answer); try again",
                "api_error",
                "identity_unavailable",
            ),
            Refusal::Unreadable(why) => openai_error_body(
                &format!(
                    "modelmap cannot read this request exactly as the gateway would, so it cannot check the model names in it: {}",
                    why.message()
                ),
                "invalid_request_error",
                "unreadable_request",
            ),
            Refusal::InvalidName => openai_error_body(
                "a model name contains control characters (or characters outside Latin-1) that cannot travel in an HTTP header",
                "invalid_request_error",
                "invalid_model_name",
            ),
            Refusal::Framing(why) => openai_error_body(
                &format!("the request's framing is ambiguous: {why}"),
                "invalid_request_error",
                "bad_framing",
            ),
        }
    }
}

/// The exchange went wrong: modelmap answers (when the response has not started) with
/// one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The request head did not arrive within `--head-timeout`.
    HeadTimeout,
    /// The request head is larger than modelmap reads.
    HeadTooLarge,
    /// The request head is not HTTP/1.x modelmap can parse.
    BadHead,
    /// The body did not arrive within `--client-body-timeout` (or a read stalled).
    BodyTimeout,
    /// The body's framing broke (e.g. a bad chunk size).
    BadBody(&'static str),
    /// `--max-connections` client connections are already open.
    TooManyConnections,
    ConnectTimeout,
    Connect(&'static str),
    /// The gateway did not answer within `--read-timeout`.
    UpstreamTimeout,
    /// The gateway's connection broke before its answer was complete.
    UpstreamBroken(&'static str),
}

impl Failure {
    /// Which failure a Pingora error stands for; `None` when the client went away (there
    /// is nobody to answer).
    pub fn from_pingora(e: &pingora::Error) -> Option<Failure> {
        use ErrorType::*;
        let kind = e.etype();
        Some(match (e.esource(), kind) {
            (ErrorSource::Downstream, ReadTimedout) => Failure::BodyTimeout,
            (ErrorSource::Downstream, WriteError | ReadError | ConnectionClosed) => return None,
            (ErrorSource::Downstream, _) => Failure::BadBody(kind.as_str()),
            (_, ConnectTimedout) => Failure::ConnectTimeout,
            (_, ReadTimedout | WriteTimedout) => Failure::UpstreamTimeout,
            (
                _,
                ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError
                | ConnectProxyFailure,
            ) => Failure::Connect(kind.as_str()),
            _ => Failure::UpstreamBroken(kind.as_str()),
        })
    }

    pub fn status(&self) -> u16 {
        match self {
            Failure::HeadTimeout | Failure::BodyTimeout => 408,
            Failure::HeadTooLarge => 431,
            Failure::BadHead | Failure::BadBody(_) => 400,
            Failure::TooManyConnections => 503,
            Failure::ConnectTimeout | Failure::UpstreamTimeout => 504,
            Failure::Connect(_) | Failure::UpstreamBroken(_) => 502,
        }
    }

    /// The OpenAI-shaped body; `upstream` is the gateway's URL, for messages.
    pub fn body(&self, upstream: &str) -> Bytes {
        let (kind, code, message) = match self {
            Failure::HeadTimeout => (
                "invalid_request_error",
                "request_timeout",
                "modelmap did not receive the request head in time".to_string(),
            ),
            Failure::BodyTimeout => (
                "invalid_request_error",
                "request_timeout",
                "modelmap did not receive the request in time".to_string(),
            ),
            Failure::HeadTooLarge => (
                "invalid_request_error",
                "request_header_too_large",
                format!("the request head is larger than {} KiB", crate::proxy::MAX_HEAD / 1024),
            ),
            Failure::BadHead => (
                "invalid_request_error",
                "bad_request",
                "modelmap could not parse the request head as HTTP/1.1".to_string(),
            ),
            Failure::BadBody(why) => (
                "invalid_request_error",
                "bad_request",
                format!("modelmap could not read the request: {why}"),
            ),
            Failure::TooManyConnections => (
                "api_error",
                "too_many_connections",
                "modelmap has as many client connections open as it accepts (--max-connections); try again".to_string(),
            ),
            Failure::ConnectTimeout => (
                "api_error",
                "gateway_timeout",
                format!("modelmap timed out connecting to the gateway at {upstream}"),
            ),
            Failure::UpstreamTimeout => (
                "api_error",
                "gateway_timeout",
                format!("modelmap timed out waiting for the gateway at {upstream}"),
            ),
            Failure::Connect(why) => (
                "api_error",
                "bad_gateway",
                format!("modelmap could not connect to the gateway at {upstream}: {why}"),
            ),
            Failure::UpstreamBroken(why) => (
                "api_error",
                "bad_gateway",
                format!("the gateway at {upstream} failed mid-request: {why}"),
            ),
        };
        openai_error_body(&message, kind, code)
    }
}

/// A whole HTTP/1.1 response carrying `body` as JSON, closing the connection: for answers
/// given before (or instead of) an HTTP session.
pub fn raw_response(status: u16, body: &[u8]) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
