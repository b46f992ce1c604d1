//! Putting the requested name back into responses, so callers never see internal names.
//!
//! Responses are restored from the (sent, requested) pairs recorded while the request
//! was rewritten, never from an inverted mapping: several names may map to one target,
//! and only the caller knows which one it used. Only values equal to a sent name change;
//! a different value (a provider model reported after a fallback) stays as it is.
//!
//! - JSON bodies: the top-level `model`, streamed like requests.
//! - Server-sent events: each complete line is forwarded at once; a `data:` line that
//!   contains a sent name is restored (`model`, `message.model`, `response.model`).
//!   Only an incomplete last line is ever held, so no event is delayed. Lines with
//!   neither a sent name nor an escape are passed on without being scanned.
//! - Errors (4xx/5xx): buffered up to [`MAX_BUFFERED`] and every occurrence of a sent
//!   name is replaced, because gateway error messages quote the model they failed on.
//!   Buffered bodies also draw on one budget shared by all requests ([`Budget`]).
//! - Model lists (`GET /v1/models`): see [`models_list`].
//!
//! Anything larger than its bound passes through unchanged rather than being held.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use memchr::{memmem, memrchr};

use super::budget::{Budget, Hold};
use super::concat;
use super::json::{JsonRewriter, Profile};
use super::names::{NameMapper, Place};
use crate::mapping::Mapping;

/// Largest error or model-list body that is buffered for restoring.
pub const MAX_BUFFERED: usize = 4 * 1024 * 1024;
/// Longest stream line held while waiting for its end.
const MAX_LINE: usize = 1024 * 1024;

/// (sent, requested) pairs of one request.
#[derive(Debug, Clone, Default)]
pub struct Pairs(Arc<Vec<(String, String)>>);

impl Pairs {
    pub fn new(pairs: Vec<(String, String)>) -> Pairs {
        Pairs(Arc::new(pairs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The requested name for a sent one.
    pub fn requested(&self, sent: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(s, _)| s == sent)
            .map(|(_, r)| r.as_str())
    }

    /// Whether every requested name, written as a JSON string, is no longer than the
    /// name it was sent as. A sent name in a response is never shorter than its minimal
    /// JSON form (serde_json's), so a restored value then fits in the bytes it replaces.
    pub fn restore_fits(&self) -> bool {
        let len = |name: &str| serde_json::to_string(name).map_or(usize::MAX, |s| s.len());
        self.0.iter().all(|(s, r)| len(r) <= len(s))
    }

    /// Whether `bytes` may hold a sent name: it does literally, or it has an escape
    /// (a JSON string can spell any name with `\u` escapes).
    fn may_occur_in(&self, bytes: &[u8]) -> bool {
        memchr::memchr(b'\\', bytes).is_some()
            || self
                .0
                .iter()
                .any(|(s, _)| memmem::find(bytes, s.as_bytes()).is_some())
    }
}

/// The response's restorer: a model the response reports ([`Place::Body`], what
/// [`Profile::Response`] finds) that equals a sent name becomes the requested one.
impl NameMapper for Pairs {
    fn map_at(&mut self, place: Place, name: &str) -> Option<String> {
        (place == Place::Body)
            .then(|| self.requested(name))
            .flatten()
            .map(str::to_string)
    }
}

/// A response body being restored.
pub enum Restorer {
    Json(JsonRewriter, Pairs),
    Stream(StreamRestorer),
    Error(Buffered<Pairs>),
    Models(Buffered<ModelsList>),
}

impl Restorer {
    /// Whether the restored body always has the length of the gateway's.
    pub fn keeps_length(&self) -> bool {
        matches!(self, Restorer::Json(rw, _) if rw.keeps_length())
    }

    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool) -> Bytes {
        let chunk = chunk.unwrap_or_default();
        match self {
            Restorer::Json(rw, pairs) => {
                let out = rw.feed(&chunk, pairs);
                if end {
                    concat(&mut vec![out, rw.finish()])
                } else {
                    out
                }
            }
            Restorer::Stream(s) => s.feed(chunk, end),
            Restorer::Error(b) => b.feed(chunk, end),
            Restorer::Models(b) => b.feed(chunk, end),
        }
    }
}

/// Server-sent events, restored line by line.
pub struct StreamRestorer {
    pairs: Pairs,
    partial: BytesMut,
}

impl StreamRestorer {
    pub fn new(pairs: Pairs) -> StreamRestorer {
        StreamRestorer {
            pairs,
            partial: BytesMut::new(),
        }
    }

    fn feed(&mut self, chunk: Bytes, end: bool) -> Bytes {
        let split = if end {
            Some(chunk.len())
        } else {
            memrchr(b'\n', &chunk).map(|i| i + 1)
        };
        let Some(split) = split else {
            // No line ends here: hold the piece, unless the line is absurdly long.
            self.partial.extend_from_slice(&chunk);
            if self.partial.len() > MAX_LINE {
                return self.partial.split().freeze();
            }
            return Bytes::new();
        };
        let complete = if self.partial.is_empty() {
            chunk.slice(..split)
        } else {
            self.partial.extend_from_slice(&chunk[..split]);
            self.partial.split().freeze()
        };
        self.partial.extend_from_slice(&chunk[split..]);
        if !self.pairs.may_occur_in(&complete) {
            return complete;
        }
        let mut out = BytesMut::with_capacity(complete.len());
        for line in complete.split_inclusive(|&b| b == b'\n') {
            self.restore_line(line, &mut out);
        }
        out.freeze()
    }

    fn restore_line(&self, line: &[u8], out: &mut BytesMut) {
        let Some(payload) = line.strip_prefix(b"data:") else {
            out.extend_from_slice(line);
            return;
        };
        if !self.pairs.may_occur_in(payload) {
            out.extend_from_slice(line);
            return;
        }
        out.extend_from_slice(b"data:");
        let mut rw = JsonRewriter::with_profile(Profile::Response);
        let mut pairs = self.pairs.clone();
        let start = payload
            .iter()
            .position(|b| *b != b' ')
            .unwrap_or(payload.len());
        let end = payload
            .iter()
            .rposition(|b| !b"\r\n".contains(b))
            .map_or(start, |i| i + 1)
            .max(start);
        out.extend_from_slice(&payload[..start]);
        out.extend_from_slice(&rw.feed(&Bytes::copy_from_slice(&payload[start..end]), &mut pairs));
        out.extend_from_slice(&rw.finish());
        out.extend_from_slice(&payload[end..]);
    }
}

/// What to do with a whole buffered body.
pub trait Transform {
    /// The new body, or `None` to send the original.
    fn apply(&self, body: &[u8]) -> Option<Vec<u8>>;
}

impl Transform for Pairs {
    /// Replaces every occurrence of a sent name, as it appears inside a JSON string.
    /// The body is copied only when a name occurs in it (`None`: send it as it is).
    fn apply(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        let mut pairs: Vec<&(String, String)> = self.0.iter().collect();
        // Longer names first, so one name that contains another is replaced whole.
        pairs.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        for (sent, requested) in pairs {
            let (from, to) = (json_inner(sent), json_inner(requested));
            let current = out.as_deref().unwrap_or(body);
            if from.is_empty() || memmem::find(current, from.as_bytes()).is_none() {
                continue;
            }
            let mut next = Vec::with_capacity(current.len());
            let mut rest = current;
            while let Some(i) = memmem::find(rest, from.as_bytes()) {
                next.extend_from_slice(&rest[..i]);
                next.extend_from_slice(to.as_bytes());
                rest = &rest[i + from.len()..];
            }
            next.extend_from_slice(rest);
            out = Some(next);
        }
        out
    }
}

/// A name as it is written inside a JSON string (escaped, without quotes).
fn json_inner(name: &str) -> String {
    let quoted = serde_json::to_string(name).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_default()
        .to_string()
}

/// A body held whole (up to [`MAX_BUFFERED`], within its [`Budget`]) and transformed
/// at its end.
pub struct Buffered<T> {
    transform: T,
    buf: Vec<u8>,
    /// What `buf`'s allocation, and at the end the transform's copies, take from the
    /// budget.
    hold: Hold,
    gave_up: bool,
}

impl<T: Transform> Buffered<T> {
    /// A body with no shared budget (bounded only by [`MAX_BUFFERED`]).
    pub fn new(transform: T) -> Buffered<T> {
        Buffered::within(transform, Budget::unlimited(), None)
    }

    /// A body drawing on `budget`. With its `length` known (Content-Length), the body
    /// and its restored copy are taken from the budget at once: a body that cannot have
    /// them passes unrestored from its first byte, and concurrent bodies never starve
    /// each other half-way. A body of unknown length takes its bytes as it grows.
    pub fn within(transform: T, budget: Budget, length: Option<usize>) -> Buffered<T> {
        let mut hold = Hold::new(budget);
        let mut buf = Vec::new();
        let mut gave_up = false;
        if let Some(n) = length.filter(|&n| n <= MAX_BUFFERED) {
            if hold.grow_to(2 * n) {
                buf.reserve_exact(n);
            } else {
                hold.budget().count_over();
                gave_up = true;
            }
        }
        Buffered {
            transform,
            buf,
            hold,
            gave_up,
        }
    }

    fn feed(&mut self, chunk: Bytes, end: bool) -> Bytes {
        if self.gave_up {
            return chunk;
        }
        let len = self.buf.len() + chunk.len();
        if len > MAX_BUFFERED {
            return self.give_up(chunk);
        }
        if !self.make_room(len) {
            self.hold.budget().count_over();
            return self.give_up(chunk);
        }
        self.buf.extend_from_slice(&chunk);
        if !end {
            return Bytes::new();
        }
        let capacity = self.buf.capacity();
        let body = std::mem::take(&mut self.buf);
        // The transform writes a body-sized copy. What it returns is still in memory
        // while it is being sent: the hold lasts until the response ends (on drop).
        let out = if self.hold.grow_to(capacity + body.len()) {
            self.transform.apply(&body).map(Bytes::from)
        } else {
            self.hold.budget().count_over();
            None
        };
        out.unwrap_or_else(|| Bytes::from(body))
    }

    /// Grows the buffer's allocation to fit `len` bytes (doubling, so a body in many
    /// small chunks is not copied again and again), if the budget allows.
    fn make_room(&mut self, len: usize) -> bool {
        let cap = self.buf.capacity();
        if len <= cap {
            return true;
        }
        let roomy = len.max(2 * cap).min(MAX_BUFFERED);
        let want = [roomy, len]
            .into_iter()
            .find(|&want| self.hold.grow_to(want));
        match want {
            Some(want) => {
                self.buf.reserve_exact(want - self.buf.len());
                true
            }
            None => false,
        }
    }

    /// Stops holding: what was held and `chunk` go on unchanged. The bytes stay in the
    /// budget until the response ends, because they are still in memory while sent.
    fn give_up(&mut self, chunk: Bytes) -> Bytes {
        self.gave_up = true;
        let held = std::mem::take(&mut self.buf);
        if held.is_empty() {
            return chunk;
        }
        concat(&mut vec![Bytes::from(held), chunk])
    }
}

/// `GET /v1/models` for one caller: the names it may request instead of internal names.
///
/// Entries whose id is any team's internal name are removed; each of the caller's team
/// names and exact global aliases is listed (a copy of the entry of the model it is
/// sent as, with the requested name as id) when that model is in the gateway's list for
/// this key. Every other entry is left as the gateway sent it.
pub struct ModelsList {
    pub mapping: Arc<Mapping>,
    pub team: Option<String>,
}

impl Transform for ModelsList {
    fn apply(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut doc: serde_json::Value = serde_json::from_slice(body).ok()?;
        let data = doc.get_mut("data")?.as_array_mut()?;
        let id_of =
            |e: &serde_json::Value| e.get("id").and_then(|v| v.as_str()).map(str::to_string);
        let listed: Vec<serde_json::Value> = std::mem::take(data);
        let by_id = |id: &str| listed.iter().find(|e| id_of(e).as_deref() == Some(id));
        let mut out: Vec<serde_json::Value> = Vec::with_capacity(listed.len());
        let mut seen = std::collections::HashSet::new();
        let mut push = |out: &mut Vec<serde_json::Value>, entry: serde_json::Value, id: String| {
            if seen.insert(id) {
                out.push(entry);
            }
        };
        for entry in &listed {
            let Some(id) = id_of(entry) else {
                out.push(entry.clone());
                continue;
            };
            if self.mapping.owner_of(&id).is_none() {
                push(&mut out, entry.clone(), id);
            }
        }
        for (name, target) in self.mapping.listable(self.team.as_deref()) {
            if let Some(entry) = by_id(target) {
                let mut copy = entry.clone();
                copy["id"] = serde_json::Value::from(name);
                push(&mut out, copy, name.to_string());
            }
        }
        *doc.get_mut("data")?.as_array_mut()? = out;
        serde_json::to_vec(&doc).ok()
    }
}

#[cfg(test)]
mod tests;
