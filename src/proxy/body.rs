//! Small request bodies read whole before the upstream request is sent.

use std::time::Duration;

use bytes::Bytes;
use pingora::ErrorType;
use pingora::prelude::*;

use super::Ctx;

/// Reads a small body whole (see [`RequestBody::read_whole`]) and rewrites it. Pingora's
/// retry buffer, enabled first (the body fits in it), then brings `request_body_filter`
/// the end of the body, where the rewritten bytes are sent in its place.
pub(super) async fn read_whole_body(
    session: &mut Session,
    ctx: &mut Ctx,
    deadline: Duration,
) -> Result<Bytes> {
    session.enable_retry_buffering();
    // The body deadline holds here too: Pingora's own read timeout is per read.
    let until = tokio::time::Instant::from_std(ctx.start + deadline);
    let (Some(rewriter), Some(names)) = (ctx.body.as_mut(), ctx.names.as_mut()) else {
        return Ok(Bytes::new());
    };
    let mut out = Vec::new();
    loop {
        let Ok(chunk) = tokio::time::timeout_at(until, session.read_request_body()).await else {
            return Error::e_explain(ErrorType::ReadTimedout, "request body deadline")
                .map_err(|e| e.into_down());
        };
        let chunk = chunk?;
        let end = chunk.is_none() || session.is_body_done();
        let piece = rewriter.feed(chunk, end, names);
        if !piece.is_empty() {
            out.push(piece);
        }
        if end {
            return Ok(crate::rewrite::concat(&mut out));
        }
    }
}
