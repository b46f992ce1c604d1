//! The response side, twin of `request.rs`: names restored in the response's headers,
//! and which restorer its body gets (see `rewrite::restore`); a body whose length may
//! change goes out chunked.

use http::StatusCode;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use pingora::Result;
use pingora::http::ResponseHeader;

use super::exchange::Ctx;
use super::request::RequestBody;
use crate::rewrite::Names;
use crate::rewrite::budget::Budget;
use crate::rewrite::restore::{Buffered, ModelsList, Pairs, Restorer, StreamRestorer};
use crate::rewrite::{JsonRewriter, Profile};

/// Restores the response's headers and picks its body's restorer.
pub(super) fn prepare(
    resp: &mut ResponseHeader,
    is_head: bool,
    ctx: &mut Ctx,
    budget: &Budget,
) -> Result<Option<Restorer>> {
    // A reverted body reached the gateway as sent: nothing to restore. The pairs are
    // the restorer's from here on.
    let pairs = if ctx.body.as_ref().is_some_and(RequestBody::reverted) {
        Pairs::default()
    } else {
        Pairs::new(std::mem::take(&mut ctx.names.restores))
    };
    if let Some(group) = resp
        .headers
        .get("x-litellm-model-group")
        .and_then(|v| v.to_str().ok())
        && let Some(requested) = pairs.requested(group)
    {
        let requested = requested.to_string();
        resp.insert_header("x-litellm-model-group", requested)?;
    }
    let restorer = plan_restore(resp, is_head, ctx.models_list, pairs, &ctx.names, budget);
    if restorer.as_ref().is_some_and(|r| !r.keeps_length()) {
        resp.remove_header(&CONTENT_LENGTH);
        resp.insert_header(TRANSFER_ENCODING, "chunked")?;
    }
    Ok(restorer)
}

/// The body length a response head announces (none when chunked or close-delimited).
pub(super) fn content_length(resp: &ResponseHeader) -> Option<usize> {
    if resp.headers.contains_key(TRANSFER_ENCODING) {
        return None;
    }
    super::length(&resp.headers)
}

/// Which restorer a response needs, if any. Compressed bodies are never touched.
fn plan_restore(
    resp: &ResponseHeader,
    head: bool,
    models_list: bool,
    pairs: Pairs,
    names: &Names,
    budget: &Budget,
) -> Option<Restorer> {
    let status = resp.status;
    if head
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
    {
        return None;
    }
    let header = |name| {
        resp.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let encoding = header(CONTENT_ENCODING);
    if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
        return None;
    }
    let content_type = header(CONTENT_TYPE).to_ascii_lowercase();
    let length = content_length(resp);
    if models_list && status.is_success() && content_type.contains("json") {
        return Some(Restorer::Models(Buffered::within(
            ModelsList {
                mapping: names.mapping().clone(),
                team: names.team().map(str::to_string),
            },
            budget.clone(),
            length,
        )));
    }
    if pairs.is_empty() {
        return None;
    }
    if status.as_u16() >= 400 {
        Some(Restorer::Error(Buffered::within(
            pairs,
            budget.clone(),
            length,
        )))
    } else if content_type.starts_with("text/event-stream") {
        Some(Restorer::Stream(StreamRestorer::new(pairs)))
    } else if content_type.contains("json") {
        // With a known length and names that fit, restore in place: the response keeps
        // its Content-Length and leaves in one write (chunks cost two more).
        let mut rw = JsonRewriter::with_profile(Profile::Response);
        let sized = resp.headers.contains_key(CONTENT_LENGTH)
            && !resp.headers.contains_key(TRANSFER_ENCODING);
        if sized && pairs.restore_fits() {
            rw = rw.keeping_length();
        }
        Some(Restorer::Json(rw, pairs))
    } else {
        None
    }
}
