//! modelmap's own answers: refusals before anything goes upstream, and failures, in the
//! OpenAI error shape.

use std::time::Duration;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::{ErrorSource, ErrorType};

use crate::error::Refusal;

/// Answers `refusal` before anything is sent upstream. The body is read and discarded
/// first (up to `drain_for`) so the connection can be kept and closing it can't reset the
/// answer away; a client waiting for `100 Continue` gets the answer at once instead.
pub(super) async fn respond_early(
    session: &mut Session,
    refusal: &Refusal,
    drain_for: Duration,
) -> Result<()> {
    let expects_continue = session
        .req_header()
        .headers
        .get(EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let downstream = session.as_downstream_mut();
    // A body whose framing is in doubt is not read at all: the connection closes.
    let drained = !expects_continue && refusal.framing_trusted() && !drain_for.is_zero() && {
        downstream.set_total_drain_timeout(Some(drain_for));
        downstream.drain_request_body().await.is_ok()
    };
    if !drained {
        downstream.set_keepalive(None);
    }
    let body = refusal.body();
    let mut resp = ResponseHeader::build(refusal.status(), Some(3))?;
    resp.insert_header(CONTENT_TYPE, "application/json")?;
    resp.insert_header(CONTENT_LENGTH, body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Status, OpenAI error type, code and message for a failed request.
pub(super) fn describe_failure(
    e: &Error,
    upstream: &str,
) -> (u16, &'static str, &'static str, String) {
    use ErrorType::*;
    if e.esource() == &ErrorSource::Downstream && matches!(e.etype(), ReadTimedout) {
        return (
            408,
            "invalid_request_error",
            "request_timeout",
            "modelmap did not receive the request in time".to_string(),
        );
    }
    match e.etype() {
        HTTPStatus(code) => (
            *code,
            "invalid_request_error",
            "bad_request",
            format!("request rejected: {e}"),
        ),
        ConnectTimedout => (
            504,
            "api_error",
            "gateway_timeout",
            format!("modelmap timed out connecting to the gateway at {upstream}"),
        ),
        ReadTimedout | WriteTimedout => (
            504,
            "api_error",
            "gateway_timeout",
            format!("modelmap timed out waiting for the gateway at {upstream}"),
        ),
        ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError
        | ConnectProxyFailure => (
            502,
            "api_error",
            "bad_gateway",
            format!(
                "modelmap could not connect to the gateway at {upstream}: {}",
                e.etype().as_str()
            ),
        ),
        _ => match e.esource() {
            ErrorSource::Upstream => (
                502,
                "api_error",
                "bad_gateway",
                format!(
                    "the gateway at {upstream} failed mid-request: {}",
                    e.etype().as_str()
                ),
            ),
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => (0, "", "", String::new()),
                _ => (
                    400,
                    "invalid_request_error",
                    "bad_request",
                    format!(
                        "modelmap could not read the request: {}",
                        e.etype().as_str()
                    ),
                ),
            },
            ErrorSource::Internal | ErrorSource::Unset => (
                500,
                "api_error",
                "internal_error",
                format!("modelmap internal error: {}", e.etype().as_str()),
            ),
        },
    }
}
