//! Which parts of a request are rewritten, decided from its head the way the gateway
//! reads it: the framing (refused when the gateway's HTTP parser could frame it
//! differently), the URL (path decoded as uvicorn decodes it, query parameters as
//! Starlette parses them), the `x-litellm-model` header, and the body by the parser
//! LiteLLM picks for its content type: a form for exactly
//! `application/x-www-form-urlencoded` and `multipart/form-data`, JSON for every other
//! type (`multipart/mixed` and `text/plain` included). Every place goes through the
//! request's one [`NameMapper`] (in the proxy, its `Names`), so every place is mapped and
//! checked from the same snapshot for the same caller; what cannot be read is reported
//! there for the guard. The request-side twin of `response.rs`.

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, TRANSFER_ENCODING};
use pingora::http::RequestHeader;

use crate::rewrite::concat;
use crate::rewrite::form::FormRewriter;
use crate::rewrite::multipart::{self, MultipartRewriter};
use crate::rewrite::path;
use crate::rewrite::py;
use crate::rewrite::unreadable::Unreadable;
use crate::rewrite::{BodyRewriter, NameMapper, Place};

/// The request header LiteLLM reads a model from (files, batches and other
/// model-routed resources: `MODEL_ROUTING_HEADER_NAME`).
pub const MODEL_HEADER: &str = "x-litellm-model";

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
    Form(FormRewriter),
    Multipart(Box<MultipartRewriter>),
}

impl RequestBody {
    /// The rewriter a request's body needs, if it has a body that may carry names and
    /// that modelmap can read; what it cannot read is reported to `names`.
    pub fn for_request(req: &RequestHeader, names: &mut impl NameMapper) -> Option<RequestBody> {
        let headers = &req.headers;
        if !has_body(req) {
            return None;
        }
        if headers
            .get_all(CONTENT_ENCODING)
            .iter()
            .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            // The gateway does not decode it either, but what it would make of it is not
            // ours to guess.
            names.unreadable(Unreadable::ContentEncoding);
            return None;
        }
        let mut types = headers.get_all(CONTENT_TYPE).iter();
        let content_type = types.next().map(|v| py::latin1(v.as_bytes()));
        if types.next().is_some() {
            names.unreadable(Unreadable::ContentType);
            return None;
        }
        let content_type = content_type.unwrap_or_default();
        // LiteLLM picks the parser by `_normalize_media_type`; Starlette's `form()` then
        // dispatches on `parse_options_header`. Where the two disagree the gateway reads
        // an empty form: not a reading modelmap reproduces.
        let media = py::media_type(&content_type);
        let form = matches!(
            media.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data"
        );
        if form && py::parse_options_header(&content_type).0 != media {
            names.unreadable(Unreadable::ContentType);
            return None;
        }
        let rewriter = match media.as_str() {
            "application/x-www-form-urlencoded" => Rewriter::Form(FormRewriter::new()),
            "multipart/form-data" => match multipart::boundary(&content_type) {
                Ok(boundary) => {
                    let files = req.uri.path().trim_end_matches('/').ends_with("/files");
                    Rewriter::Multipart(Box::new(MultipartRewriter::new(boundary, files)))
                }
                Err(why) => {
                    names.unreadable(why);
                    return None;
                }
            },
            _ => Rewriter::Json(BodyRewriter::new()),
        };
        Some(RequestBody::new(rewriter))
    }

    fn new(rewriter: Rewriter) -> RequestBody {
        RequestBody {
            rewriter,
            batch: Vec::new(),
            batched: 0,
        }
    }

    /// Consumes one piece of the body; returns what to send upstream now (possibly
    /// empty): see [`BATCH`] for when gathered pieces go on.
    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool, names: &mut impl NameMapper) -> Bytes {
        let drained = chunk.as_ref().is_none_or(|c| c.len() < READ_PIECE);
        let out = match &mut self.rewriter {
            Rewriter::Json(rw) => rw.feed(chunk, end, names),
            Rewriter::Form(rw) => rw.feed(chunk, end, names),
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

/// Whether the request has a body (its framing was checked by [`framing`]).
pub fn has_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(TRANSFER_ENCODING) || content_length(req).is_some_and(|n| n > 0)
}

/// Whether the request asks to become a websocket: the one upgrade modelmap tunnels
/// (LiteLLM's realtime routes). Any other `Upgrade` (such as `h2c`), and any upgrade
/// asked in HTTP/1.0 (which has none, RFC 6455 §4.1; Pingora's session would not switch
/// either), is dropped as the hop-by-hop header it is, and the request is served as is.
pub fn is_websocket(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get_all(http::header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
}

/// Whether the client waits for `100 Continue` before sending its body (never in
/// HTTP/1.0, whose clients cannot read a 1xx: RFC 9110 §10.1.1 has the expectation
/// ignored).
pub fn expects_continue(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

fn content_length(req: &RequestHeader) -> Option<usize> {
    super::length(&req.headers)
}

/// How the gateway's HTTP parser could frame this request differently from modelmap,
/// if it could: such a request is refused whatever the guard says, since a body framed
/// two ways is a body only one of the two has read. `raw` is the head as received:
/// Pingora's session drops a `Content-Length` sent beside `Transfer-Encoding`, so only
/// the raw head still shows that pair.
pub fn framing(version: http::Version, headers: &HeaderMap, raw: &[u8]) -> Option<&'static str> {
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter().map(|v| v.as_bytes());
    let length = lengths.next();
    if lengths.next().is_some() {
        return Some("the request has more than one Content-Length header");
    }
    if let Some(len) = length
        && (len.is_empty() || len.len() > 18 || !len.iter().all(u8::is_ascii_digit))
    {
        return Some("the Content-Length header is not one decimal number");
    }
    if headers.get_all(TRANSFER_ENCODING).iter().nth(1).is_some() {
        return Some("the request has more than one Transfer-Encoding header");
    }
    if let Some(te) = headers.get(TRANSFER_ENCODING) {
        if version < http::Version::HTTP_11 {
            return Some("Transfer-Encoding is not defined for HTTP/1.0");
        }
        if !py::strip(&py::latin1(te.as_bytes())).eq_ignore_ascii_case("chunked") {
            return Some("the only Transfer-Encoding accepted is chunked");
        }
        if length.is_some() || names_content_length(raw) {
            return Some("the request has both Content-Length and Transfer-Encoding");
        }
    }
    None
}

/// Whether a raw request head has a `Content-Length` line (the request line cannot look
/// like one: a method has no `:`).
fn names_content_length(raw: &[u8]) -> bool {
    raw.split(|b| *b == b'\n').any(|line| {
        line.get(..15)
            .is_some_and(|name| name.eq_ignore_ascii_case(b"content-length:"))
    })
}

/// Checks every stretch of the decoded path that a route may read a model name from
/// (see [`path::segment_runs`]) and bounds the URL's size for that.
pub fn check_url(decoded_path: &str, path_and_query: &str, names: &mut impl NameMapper) {
    if !names.checks() {
        // Nothing here maps a name: these are the guard's checks alone.
        return;
    }
    match path::segment_runs(decoded_path) {
        Some(runs) => runs
            .into_iter()
            .for_each(|run| names.check_at(Place::Path, run)),
        None => names.unreadable(Unreadable::Url),
    }
    // `/v1/files/{file_id}`, `/v1/batches/{batch_id}`: managed ids carry model names.
    for segment in decoded_path.split('/').filter(|s| s.len() > 8) {
        names.check_at(Place::Id, segment);
    }
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    if !query.is_ascii() || path::query_params(path_and_query) > path::MAX_PARAMS {
        names.unreadable(Unreadable::Url);
    }
}

/// The request's path and query with its model names mapped, if any maps.
pub fn rewrite_uri(path_and_query: &str, names: &mut impl NameMapper) -> Option<String> {
    path::rewrite(path_and_query, names)
}

/// Every value of the `x-litellm-model` header, mapped; `None` when none changes.
pub fn map_model_header(headers: &HeaderMap, names: &mut impl NameMapper) -> Option<Vec<String>> {
    let mut changed = false;
    let values: Vec<String> = headers
        .get_all(MODEL_HEADER)
        .iter()
        .map(|v| {
            let text = py::latin1(v.as_bytes());
            match names.map_at(Place::Header, &text) {
                Some(new) => {
                    changed = true;
                    new
                }
                None => text,
            }
        })
        .collect();
    changed.then_some(values)
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
    fn heads_the_gateway_could_frame_differently_are_refused() {
        use http::{HeaderMap, HeaderValue, Version};
        let head = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            h
        };
        let v11 = Version::HTTP_11;
        assert_eq!(
            super::framing(v11, &head(&[("content-length", "34")]), b""),
            None
        );
        assert_eq!(
            super::framing(v11, &head(&[("transfer-encoding", "Chunked")]), b""),
            None
        );
        for bad in [
            head(&[("content-length", "34,34")]),
            head(&[("content-length", "34"), ("content-length", "34")]),
            head(&[("content-length", "+34")]),
            head(&[("content-length", "")]),
            head(&[("transfer-encoding", "gzip, chunked")]),
            head(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ]),
            head(&[("transfer-encoding", "chunked"), ("content-length", "3")]),
        ] {
            assert!(super::framing(v11, &bad, b"").is_some(), "{bad:?}");
        }
        // The Content-Length Pingora dropped beside Transfer-Encoding, seen in the raw head.
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n";
        assert!(super::framing(v11, &head(&[("transfer-encoding", "chunked")]), raw).is_some());
        assert!(
            super::framing(
                Version::HTTP_10,
                &head(&[("transfer-encoding", "chunked")]),
                b""
            )
            .is_some()
        );
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
