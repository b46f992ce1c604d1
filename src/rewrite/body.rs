//! A request body's rewrite, with a window that keeps invalid bodies byte-exact.
//!
//! Streaming means a rewritten value may be sent before the scanner learns that the
//! body is not valid JSON. To keep that from ever mattering in practice, the first
//! [`WINDOW`] bytes are held (as reference-counted chunks, not copies) until the scanner
//! has either accepted them or seen the end of the body. If the body turns out invalid
//! or truncated while still inside the window, the original chunks are sent instead of
//! the rewritten ones, so such a body reaches the gateway exactly as the client sent it.
//! Bodies larger than the window stream after it; an error past the window stops
//! further rewriting but values already rewritten stay rewritten (the gateway rejects
//! the body either way).

use bytes::Bytes;

use super::concat;
use super::json::JsonRewriter;
use super::names::NameMapper;

/// Bytes held back at the start of a body while it is validated.
pub const WINDOW: usize = 64 * 1024;

pub struct BodyRewriter {
    json: JsonRewriter,
    /// Input chunks and the pieces of their rewritten output, while still inside the
    /// window (joined once, when the window is released).
    originals: Vec<Bytes>,
    rewritten: Vec<Bytes>,
    held: usize,
    released: bool,
    /// The original bytes were sent instead of the rewritten ones.
    reverted: bool,
}

impl BodyRewriter {
    pub fn new() -> Self {
        BodyRewriter {
            json: JsonRewriter::new(),
            originals: Vec::new(),
            rewritten: Vec::new(),
            held: 0,
            released: false,
            reverted: false,
        }
    }

    /// Values replaced in what was sent (none if the original body was sent instead).
    pub fn rewrites(&self) -> usize {
        if self.reverted {
            0
        } else {
            self.json.rewrites()
        }
    }

    /// Whether the body was sent exactly as received because it proved invalid inside
    /// the window; what the mapper recorded for it then did not reach the gateway.
    pub fn reverted(&self) -> bool {
        self.reverted
    }

    /// Whether the body was passed through untouched because it is not a JSON object
    /// the scanner could follow.
    pub fn passthrough(&self) -> bool {
        self.json.passthrough()
    }

    /// Consumes one piece of the body; returns what to send upstream now (possibly empty).
    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool, mapper: &mut impl NameMapper) -> Bytes {
        let chunk = chunk.unwrap_or_default();
        if self.released {
            let mut out = self.json.feed(&chunk, mapper);
            if end {
                let rest = self.json.finish();
                if !rest.is_empty() {
                    out = concat(&mut vec![out, rest]);
                }
            }
            return out;
        }
        self.json.feed_into(&chunk, mapper, &mut self.rewritten);
        if end {
            let rest = self.json.finish();
            if !rest.is_empty() {
                self.rewritten.push(rest);
            }
        }
        self.held += chunk.len();
        self.originals.push(chunk);

        let invalid = self.json.passthrough() || (end && !self.json.complete());
        if invalid {
            // Nothing has been sent yet: send the body exactly as received.
            self.released = true;
            self.reverted = self.json.rewrites() > 0;
            self.rewritten.clear();
            return concat(&mut self.originals);
        }
        if end || self.held >= WINDOW {
            self.released = true;
            self.originals.clear();
            return concat(&mut self.rewritten);
        }
        Bytes::new()
    }
}

impl Default for BodyRewriter {
    fn default() -> Self {
        BodyRewriter::new()
    }
}
