//! Which parts of a request are rewritten: its URL, and its body as JSON or as a
//! multipart form. Everything here shares the request's one [`Names`], so every place
//! is mapped from the same snapshot for the same caller.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT, TRANSFER_ENCODING};
use pingora::http::RequestHeader;

use crate::rewrite::body::WINDOW;
use crate::rewrite::concat;
use crate::rewrite::multipart::{self, MultipartRewriter};
use crate::rewrite::names::Place;
use crate::rewrite::path::{self, UrlPlace};
use crate::rewrite::{BodyRewriter, Names};

/// Most of a streamed body gathered before it is sent upstream.
///
/// Bodies arrive in pieces of at most [`READ_PIECE`] bytes, and each piece sent on is a
/// chunk, a write and a wake-up of the gateway. While pieces arrive full, the client is
/// ahead of us (more is waiting in the socket) and gathering them into larger pieces
/// costs one copy and saves far more: a 1 MiB body took about a third less proxy CPU
/// (`bench/run.sh`). A short piece means the socket was drained: what was gathered goes
/// on at once, so a body is never held waiting for bytes that have not arrived.
/// Memory per request stays bounded by this, whatever the body size.
pub const BATCH: usize = 128 * 1024;

/// The most Pingora reads from the client in one go (its body buffer size).
const READ_PIECE: usize = 64 * 1024;

/// How a request body is rewritten, and the output gathered but not yet sent.
pub struct RequestBody {
    rewriter: Rewriter,
    batch: Vec<Bytes>,
    batched: usize,
}

enum Rewriter {
    Json(BodyRewriter),
    Multipart(Box<MultipartRewriter>),
}

impl RequestBody {
    /// The rewriter a request's body needs, if it has a body.
    ///
    /// Bodies of any content type are read as JSON (the gateway parses them as JSON
    /// whatever the header says), except multipart forms.
    pub fn for_request(req: &RequestHeader) -> Option<RequestBody> {
        let headers = &req.headers;
        let has_body =
            headers.contains_key(TRANSFER_ENCODING) || content_length(req).is_some_and(|n| n > 0);
        if !has_body {
            return None;
        }
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/")
        {
            // A multipart body without a usable boundary cannot be followed: leave it.
            let boundary = multipart::boundary(content_type)?;
            let files = req.uri.path().trim_end_matches('/').ends_with("/files");
            let rewriter = MultipartRewriter::new(&boundary, files);
            return Some(RequestBody::new(Rewriter::Multipart(Box::new(rewriter))));
        }
        Some(RequestBody::new(Rewriter::Json(BodyRewriter::new())))
    }

    fn new(rewriter: Rewriter) -> RequestBody {
        RequestBody {
            rewriter,
            batch: Vec::new(),
            batched: 0,
        }
    }

    /// Whether the body is read whole before anything is forwarded: a JSON body with a
    /// Content-Length of at most [`WINDOW`], which the rewriter would hold back anyway.
    /// Its rewritten length is then known before the headers go upstream, so it is sent
    /// with a Content-Length in one write, not as chunks (a chunk and a last chunk: two
    /// more packets for the gateway to wake up to). Not when the client asked for
    /// `100 Continue`: it may wait for the gateway's answer before sending the body.
    pub fn read_whole(&self, req: &RequestHeader) -> bool {
        matches!(self.rewriter, Rewriter::Json(_))
            && !req.headers.contains_key(TRANSFER_ENCODING)
            && !req.headers.contains_key(EXPECT)
            && content_length(req).is_some_and(|n| n <= WINDOW as u64)
    }

    /// Consumes one piece of the body; returns what to send upstream now (possibly
    /// empty): see [`BATCH`] for when gathered pieces go on.
    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool, names: &mut Names) -> Bytes {
        let drained = chunk.as_ref().is_none_or(|c| c.len() < READ_PIECE);
        let out = match &mut self.rewriter {
            Rewriter::Json(rw) => rw.feed(chunk, end, names),
            Rewriter::Multipart(rw) => rw.feed(chunk, end, names),
        };
        let flush = end || drained;
        if self.batch.is_empty() && (flush || out.len() >= BATCH) {
            return out;
        }
        self.batched += out.len();
        if !out.is_empty() {
            self.batch.push(out);
        }
        if flush || self.batched >= BATCH {
            self.batched = 0;
            return concat(&mut self.batch);
        }
        Bytes::new()
    }

    /// Whether the original body was sent instead of the rewritten one.
    pub fn reverted(&self) -> bool {
        matches!(&self.rewriter, Rewriter::Json(rw) if rw.reverted())
    }

    /// Whether a JSON body was not a JSON object modelmap could follow.
    pub fn passthrough(&self) -> bool {
        matches!(&self.rewriter, Rewriter::Json(rw) if rw.passthrough())
    }
}

fn content_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The request's path and query with its model name mapped, if it names one that maps.
pub fn rewrite_uri(path_and_query: &str, names: &mut Names) -> Option<String> {
    path::rewrite(path_and_query, &mut |place, name| {
        let place = match place {
            UrlPlace::Path => Place::Path,
            UrlPlace::Query => Place::Query,
        };
        names.map_at(place, name)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::{BATCH, READ_PIECE, RequestBody, Rewriter};
    use crate::mapping::Mapping;
    use crate::rewrite::{BodyRewriter, Names};

    fn names() -> Names {
        let m = Mapping::parse(
            "version: 1\nteams:\n  t:\n    models:\n      gpt-4.1: model_name_t_gpt\n",
            "t",
        )
        .expect("valid");
        Names::new(Arc::new(m), Some("t".into()))
    }

    #[test]
    fn full_pieces_are_gathered_and_a_short_one_sends_what_was_gathered() {
        // A JSON body: one long string, then the model after it.
        let mut body = br#"{"messages":[{"role":"user","content":""#.to_vec();
        body.resize(5 * READ_PIECE, b'x');
        body.extend_from_slice(br#""}],"model":"gpt-4.1"}"#);
        let pieces: Vec<Bytes> = [
            &body[..READ_PIECE],
            &body[READ_PIECE..2 * READ_PIECE],
            &body[2 * READ_PIECE..3 * READ_PIECE],
            &body[3 * READ_PIECE..3 * READ_PIECE + 1000],
            &body[3 * READ_PIECE + 1000..],
        ]
        .map(Bytes::copy_from_slice)
        .into();
        let mut rb = RequestBody::new(Rewriter::Json(BodyRewriter::new()));
        let mut names = names();
        let last = pieces.len() - 1;
        let sent: Vec<usize> = pieces
            .into_iter()
            .enumerate()
            .map(|(i, p)| rb.feed(Some(p), i == last, &mut names).len())
            .collect();
        // Full pieces wait until BATCH is reached; the short fourth piece (the client's
        // socket drained) sends the third at once instead of holding it.
        assert_eq!(sent[0], 0, "{sent:?}");
        assert_eq!(sent[1], BATCH, "{sent:?}");
        assert_eq!(sent[2], 0, "{sent:?}");
        assert_eq!(sent[3], READ_PIECE + 1000, "{sent:?}");
        let delta = "model_name_t_gpt".len() - "gpt-4.1".len();
        assert_eq!(sent.iter().sum::<usize>(), body.len() + delta);
    }
}
