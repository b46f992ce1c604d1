//! Streaming rewrite of the model names in a JSON request body.
//!
//! The body is scanned, never parsed into a tree: the scanner tracks just enough
//! structure (nesting, strings, keys of the top-level object) to find the values that
//! name models, and copies every other byte through untouched. The fields rewritten are
//! the top-level `model` and `target_model_names` (a string, or each string of an
//! array: LiteLLM authorizes on every entry), `session.model` and `completion.model`
//! (realtime and evals routes route on them), and inside the top-level `fallbacks` and
//! `context_window_fallbacks` arrays each string element and the `model` of each object
//! element. A `model` key anywhere else (inside messages, tools, …) is never touched.
//! Each candidate goes to the [`NameMapper`] with the [`Place`] the [`Profile`] says it
//! is at; a managed id (`file_id`, …, at [`Place::Id`]) is shown, never replaced.
//!
//! Memory is bounded whatever the body size: the only bytes held back are those of a
//! candidate value (at most [`MAX_NAME_LEN`]), a key being classified, and a nesting
//! stack of at most [`MAX_DEPTH`] entries. A limit reached is reported to the mapper
//! ([`NameMapper::unreadable`]): with the guard on the request is refused, since the
//! gateway's parser has no such limit (or a higher one); otherwise the value or the rest
//! of the body passes unchanged.
//! A body that is not a JSON object, or stops being valid JSON, is passed through from
//! the first byte the scanner cannot accept (see `body.rs` for how the window before
//! that point is kept untouched too).

use bytes::Bytes;

use super::concat;
use super::names::{NameMapper, Place};
use super::resource_id::ID_FIELDS;
use super::scalar::Scalar;
use super::scan::string_end;
use super::unreadable::Unreadable;

/// Longest candidate value, in raw bytes, that is looked up (a comma list included).
pub const MAX_NAME_LEN: usize = 16 * 1024;
/// Deepest nesting followed. The gateway's parsers stop before this (orjson at 1024,
/// Python's `json` at its recursion limit, after which LiteLLM reads no body at all).
pub const MAX_DEPTH: usize = 4096;
/// Longest raw key that can be one of the keys we look for (escapes included).
const MAX_KEY_LEN: usize = 160;

impl Default for JsonRewriter {
    fn default() -> Self {
        JsonRewriter::new()
    }
}

/// Which fields are candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Requests: `model` ([`Place::Body`]), the names in `fallbacks` /
    /// `context_window_fallbacks` ([`Place::Fallback`]), `target_model_names`,
    /// `session.model`, `completion.model` ([`Place::Target`]) and managed ids
    /// ([`Place::Id`]).
    Request,
    /// Responses and stream events: `model`, `message.model` (Anthropic
    /// `message_start`) and `response.model` (Responses API events), all at
    /// [`Place::Body`].
    Response,
    /// A line of a batch input file: `body.model` only, at [`Place::Batch`].
    BatchLine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The top-level object.
    Top,
    /// A `fallbacks` / `context_window_fallbacks` array.
    FallbackList,
    /// An object element of a fallback array.
    FallbackObject,
    /// The object whose `model` is a candidate: `message` / `response` of a response
    /// event, `body` of a batch line.
    Wrapper,
    /// `session` / `completion` of a request: its `model` is at [`Place::Target`].
    TargetWrapper,
    /// An array of names: the top-level `model` or `target_model_names` as a list.
    NameList(Place),
    /// `router_settings_override`: its fallback fields are read like the top level's.
    Override,
    /// Any other array in a fallback object (LiteLLM's `{group: [names…]}` form): its
    /// strings are names.
    GroupList,
    /// Anything else: scanned for structure only.
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    object: bool,
    role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    Model,
    FallbackList,
    Wrapper,
    Body,
    Target,
    Nested,
    Override,
    ResourceId,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level value.
    Start,
    /// Expecting a value; `close_ok` after `[` (an empty array).
    Value {
        close_ok: bool,
    },
    /// Expecting a key; `close_ok` after `{`.
    Key {
        close_ok: bool,
    },
    /// Inside a key string.
    InKey {
        escaped: bool,
    },
    Colon,
    /// Inside a value string; `held` when its bytes are held as a candidate.
    InString {
        escaped: bool,
        held: bool,
    },
    /// Inside a number or literal.
    Scalar(Scalar),
    /// After a value: `,` or a closing bracket.
    AfterValue,
    /// After the top-level object: only white space may follow.
    Done,
    /// Not JSON we understand: everything passes through.
    Passthrough,
}

/// Streaming rewriter state for one body.
pub struct JsonRewriter {
    profile: Profile,
    state: State,
    stack: Vec<Frame>,
    /// Class of the key whose value comes next (meaningful in Top/FallbackObject frames).
    key: KeyClass,
    /// Raw bytes of the key being read, when it needs classifying.
    key_buf: Vec<u8>,
    collect_key: bool,
    /// Where the candidate being held was found.
    place: Place,
    /// Raw bytes (quotes included) of a candidate that began in an earlier chunk.
    held: Vec<u8>,
    rewrites: usize,
    /// Replacements take exactly the bytes of the value they replace (see
    /// [`JsonRewriter::keeping_length`]).
    keep_length: bool,
    /// A limit reached, not yet reported to the mapper.
    limit: Option<Unreadable>,
}

/// Output pieces of one chunk, appended to a caller's list; mostly zero-copy slices of
/// the input.
struct Out<'c, 'p> {
    chunk: &'c Bytes,
    pieces: &'p mut Vec<Bytes>,
    /// Start of the not-yet-emitted run of input bytes.
    from: usize,
}

impl Out<'_, '_> {
    fn flush_to(&mut self, end: usize) {
        if end > self.from {
            self.pieces.push(self.chunk.slice(self.from..end));
        }
        self.from = end;
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_scalar_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')
}

fn classify_key(raw: &[u8]) -> KeyClass {
    let decoded;
    let key: &[u8] = if raw.contains(&b'\\') {
        let mut quoted = Vec::with_capacity(raw.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(raw);
        quoted.push(b'"');
        match serde_json::from_slice::<String>(&quoted) {
            Ok(s) => {
                decoded = s;
                decoded.as_bytes()
            }
            Err(_) => return KeyClass::Other,
        }
    } else {
        raw
    };
    match key {
        b"model" => KeyClass::Model,
        b"fallbacks" | b"context_window_fallbacks" | b"content_policy_fallbacks" => {
            KeyClass::FallbackList
        }
        b"router_settings_override" => KeyClass::Override,
        k if ID_FIELDS.iter().any(|f| f.as_bytes() == k) => KeyClass::ResourceId,
        b"message" | b"response" => KeyClass::Wrapper,
        b"body" => KeyClass::Body,
        b"target_model_names" => KeyClass::Target,
        b"session" | b"completion" => KeyClass::Nested,
        _ => KeyClass::Other,
    }
}

impl JsonRewriter {
    /// A rewriter for request bodies.
    pub fn new() -> Self {
        JsonRewriter::with_profile(Profile::Request)
    }

    pub fn with_profile(profile: Profile) -> Self {
        JsonRewriter {
            profile,
            state: State::Start,
            stack: Vec::new(),
            key: KeyClass::Other,
            key_buf: Vec::new(),
            collect_key: false,
            place: Place::Body,
            held: Vec::new(),
            rewrites: 0,
            keep_length: false,
            limit: None,
        }
    }

    /// Makes every replacement take exactly the bytes of the value it replaces: a
    /// shorter one is followed by spaces (white space JSON ignores), a longer one is not
    /// made. The body keeps its length, so a response keeps its Content-Length and goes
    /// out in one write instead of chunks.
    pub fn keeping_length(mut self) -> Self {
        self.keep_length = true;
        self
    }

    /// Whether the output always has the length of the input.
    pub fn keeps_length(&self) -> bool {
        self.keep_length
    }

    /// Number of values replaced so far.
    pub fn rewrites(&self) -> usize {
        self.rewrites
    }

    /// Whether the scanner gave up on the body (not a JSON object, or invalid).
    pub fn passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// Whether the body so far is one complete JSON object (plus white space).
    pub fn complete(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes one chunk and returns the bytes to send on.
    pub fn feed(&mut self, chunk: &Bytes, mapper: &mut impl NameMapper) -> Bytes {
        let mut pieces = Vec::new();
        self.feed_into(chunk, mapper, &mut pieces);
        concat(&mut pieces)
    }

    /// Consumes one chunk and appends the bytes to send on to `pieces`, for a caller
    /// that gathers several chunks before sending (and so copies them once, not twice).
    pub fn feed_into(
        &mut self,
        chunk: &Bytes,
        mapper: &mut impl NameMapper,
        pieces: &mut Vec<Bytes>,
    ) {
        let mut out = Out {
            chunk,
            pieces,
            from: 0,
        };
        // Where a candidate that began in this chunk began.
        let mut hold_start: Option<usize> = None;
        let bytes = &chunk[..];
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Passthrough => break,
                State::InString { escaped, held } => {
                    let at = match string_end(&bytes[i..], escaped) {
                        Ok(off) => i + off,
                        Err(escaped) => {
                            self.state = State::InString { escaped, held };
                            break;
                        }
                    };
                    i = at + 1;
                    self.state = State::AfterValue;
                    if held {
                        self.end_candidate(&mut out, hold_start.take(), at + 1, mapper);
                    }
                    self.value_done();
                }
                State::InKey { escaped } => {
                    let at = match string_end(&bytes[i..], escaped) {
                        Ok(off) => i + off,
                        Err(escaped) => {
                            if self.collect_key {
                                self.extend_key(&bytes[i..]);
                            }
                            self.state = State::InKey { escaped };
                            break;
                        }
                    };
                    if self.collect_key {
                        // Raw bytes, escapes included: `classify_key` decodes them.
                        self.extend_key(&bytes[i..at]);
                    }
                    if self.collect_key {
                        self.key = classify_key(&self.key_buf);
                        self.collect_key = false;
                    }
                    i = at + 1;
                    self.state = State::Colon;
                }
                State::Scalar(scalar) => {
                    let b = bytes[i];
                    if is_scalar_byte(b) {
                        self.state = scalar.step(b).map_or(State::Passthrough, State::Scalar);
                        i += 1;
                    } else if scalar.complete() {
                        self.state = State::AfterValue;
                        self.value_done();
                    } else {
                        self.state = State::Passthrough;
                    }
                }
                _ => {
                    let b = bytes[i];
                    if is_ws(b) {
                        i += 1;
                        continue;
                    }
                    if let Some(start) = self.structural(b, i) {
                        hold_start = Some(start);
                    }
                    i += 1;
                }
            }
        }
        if let Some(why) = self.limit.take() {
            mapper.unreadable(why);
        }
        if self.state == State::Passthrough {
            out.flush_to(bytes.len());
            return;
        }
        // A candidate still open at the end of the chunk is held for the next one.
        if let State::InString {
            held: true,
            escaped,
        } = self.state
        {
            let start = hold_start.unwrap_or(0);
            out.flush_to(start);
            self.held.extend_from_slice(&bytes[start..]);
            out.from = bytes.len();
            if self.held.len() > MAX_NAME_LEN {
                // Too long to look up: release it unchanged and stop holding.
                mapper.unreadable(Unreadable::NameLength);
                out.pieces.push(Bytes::from(std::mem::take(&mut self.held)));
                self.state = State::InString {
                    escaped,
                    held: false,
                };
            }
        }
        out.flush_to(bytes.len());
    }

    /// Flushes what is still held at the end of the body (an unterminated candidate).
    pub fn finish(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.held))
    }

    /// Handles one structural byte outside strings; returns the index where a candidate
    /// string starts, if one does.
    fn structural(&mut self, b: u8, i: usize) -> Option<usize> {
        match self.state {
            State::Start => {
                if b == b'{' {
                    self.stack.push(Frame {
                        object: true,
                        role: Role::Top,
                    });
                    self.state = State::Key { close_ok: true };
                } else {
                    self.state = State::Passthrough;
                }
                None
            }
            State::Value { close_ok } => {
                if close_ok && b == b']' {
                    self.close(false);
                    return None;
                }
                self.begin_value(b, i)
            }
            State::Key { close_ok } => {
                if close_ok && b == b'}' {
                    self.close(true);
                } else if b == b'"' {
                    let role = self.top().map(|f| f.role);
                    self.collect_key = matches!(
                        role,
                        Some(
                            Role::Top
                                | Role::FallbackObject
                                | Role::Wrapper
                                | Role::TargetWrapper
                                | Role::Override
                        )
                    );
                    self.key_buf.clear();
                    self.key = KeyClass::Other;
                    self.state = State::InKey { escaped: false };
                } else {
                    self.state = State::Passthrough;
                }
                None
            }
            State::Colon => {
                self.state = if b == b':' {
                    State::Value { close_ok: false }
                } else {
                    State::Passthrough
                };
                None
            }
            State::AfterValue => {
                match (b, self.top().map(|f| f.object)) {
                    (b',', Some(true)) => self.state = State::Key { close_ok: false },
                    (b',', Some(false)) => self.state = State::Value { close_ok: false },
                    (b'}', Some(true)) => self.close(true),
                    (b']', Some(false)) => self.close(false),
                    _ => self.state = State::Passthrough,
                }
                None
            }
            State::Done => {
                self.state = State::Passthrough;
                None
            }
            State::InKey { .. }
            | State::InString { .. }
            | State::Scalar(_)
            | State::Passthrough => None,
        }
    }

    fn top(&self) -> Option<Frame> {
        self.stack.last().copied()
    }

    /// What a value in the current slot is, given the enclosing frame and key.
    fn slot(&self) -> (Option<Place>, Role) {
        let profile = self.profile;
        let batch = profile == Profile::BatchLine;
        match (self.top().map(|f| f.role), self.key) {
            (Some(Role::Wrapper), KeyClass::Model) => (Some(self.model_place()), Role::Plain),
            (Some(Role::TargetWrapper), KeyClass::Model) => (Some(Place::Target), Role::Plain),
            (Some(Role::NameList(place)), _) => (Some(place), Role::Plain),
            (Some(Role::Top), KeyClass::Model) if profile == Profile::Request => {
                (Some(Place::Body), Role::NameList(Place::Body))
            }
            (Some(Role::Top), KeyClass::Model) if !batch => (Some(Place::Body), Role::Plain),
            (Some(Role::Top), KeyClass::Target) if profile == Profile::Request => {
                (Some(Place::Target), Role::NameList(Place::Target))
            }
            (Some(Role::Top), KeyClass::Nested) if profile == Profile::Request => {
                (None, Role::TargetWrapper)
            }
            (Some(Role::Top), KeyClass::FallbackList) if profile == Profile::Request => {
                (None, Role::FallbackList)
            }
            (Some(Role::Top), KeyClass::Wrapper) if profile == Profile::Response => {
                (None, Role::Wrapper)
            }
            (Some(Role::Top), KeyClass::Body) if batch => (None, Role::Wrapper),
            (Some(Role::FallbackList), _) => (Some(Place::Fallback), Role::FallbackObject),
            (Some(Role::FallbackObject), KeyClass::Model) => (Some(Place::Fallback), Role::Plain),
            // LiteLLM also reads an object's own fallback fields, and `{group: [names…]}`
            // objects.
            (Some(Role::FallbackObject), KeyClass::FallbackList) => (None, Role::FallbackList),
            (Some(Role::FallbackObject), _) => (None, Role::GroupList),
            (Some(Role::GroupList), _) => (Some(Place::Fallback), Role::Plain),
            (Some(Role::Top), KeyClass::ResourceId) if profile == Profile::Request => {
                (Some(Place::Id), Role::Plain)
            }
            (Some(Role::Top), KeyClass::Override) if profile == Profile::Request => {
                (None, Role::Override)
            }
            (Some(Role::Override), KeyClass::FallbackList) => (None, Role::FallbackList),
            _ => (None, Role::Plain),
        }
    }

    /// Where a `model` the profile reads is found: a batch line's is a batch name.
    fn model_place(&self) -> Place {
        if self.profile == Profile::BatchLine {
            Place::Batch
        } else {
            Place::Body
        }
    }

    fn begin_value(&mut self, b: u8, i: usize) -> Option<usize> {
        let (place, child) = self.slot();
        match b {
            b'"' => {
                let held = place.is_some();
                if let Some(p) = place {
                    self.place = p;
                }
                self.state = State::InString {
                    escaped: false,
                    held,
                };
                held.then_some(i)
            }
            b'{' | b'[' => {
                let object = b == b'{';
                let role = match (child, object) {
                    (Role::FallbackList | Role::NameList(_) | Role::GroupList, false)
                    | (
                        Role::FallbackObject | Role::Wrapper | Role::TargetWrapper | Role::Override,
                        true,
                    ) => child,
                    _ => Role::Plain,
                };
                if self.stack.len() >= MAX_DEPTH {
                    self.limit = Some(Unreadable::Nesting);
                    self.state = State::Passthrough;
                    return None;
                }
                self.stack.push(Frame { object, role });
                self.state = if object {
                    State::Key { close_ok: true }
                } else {
                    State::Value { close_ok: true }
                };
                None
            }
            _ => {
                self.state = Scalar::start(b).map_or(State::Passthrough, State::Scalar);
                None
            }
        }
    }

    fn close(&mut self, object: bool) {
        match self.stack.pop() {
            Some(f) if f.object == object => {
                self.state = if self.stack.is_empty() {
                    State::Done
                } else {
                    State::AfterValue
                };
                self.value_done();
            }
            _ => self.state = State::Passthrough,
        }
    }

    /// A value ended: the key it belonged to no longer applies.
    fn value_done(&mut self) {
        self.key = KeyClass::Other;
    }

    fn extend_key(&mut self, bytes: &[u8]) {
        if self.key_buf.len() + bytes.len() <= MAX_KEY_LEN {
            self.key_buf.extend_from_slice(bytes);
        } else {
            self.collect_key = false;
            self.key = KeyClass::Other;
        }
    }

    /// A candidate string ended at `end` (exclusive, closing quote included).
    fn end_candidate(
        &mut self,
        out: &mut Out<'_, '_>,
        start_here: Option<usize>,
        end: usize,
        mapper: &mut impl NameMapper,
    ) {
        let chunk = out.chunk.clone();
        let raw: &[u8] = match start_here {
            Some(start) => &chunk[start..end],
            None => {
                self.held.extend_from_slice(&chunk[..end]);
                &self.held
            }
        };
        let decoded = if raw.len() > MAX_NAME_LEN {
            mapper.unreadable(Unreadable::NameLength);
            None
        } else {
            let name = serde_json::from_slice::<String>(raw).ok();
            if name.is_none() {
                // Lone surrogates, raw control characters: the gateway refuses the body,
                // but what it would read is not certain, so the guard does not guess.
                mapper.unreadable(Unreadable::Escapes);
            }
            name
        };
        let place = self.place;
        let replacement = decoded
            .and_then(|name| mapper.map_at(place, &name))
            .filter(|_| place.replaceable())
            .and_then(|new| serde_json::to_vec(&new).ok())
            .and_then(|mut new| {
                if self.keep_length {
                    if new.len() > raw.len() {
                        return None;
                    }
                    new.resize(raw.len(), b' ');
                }
                Some(new)
            });
        match (replacement, start_here) {
            (Some(new), start) => {
                out.flush_to(start.unwrap_or(0));
                out.pieces.push(Bytes::from(new));
                out.from = end;
                self.rewrites += 1;
            }
            (None, Some(_)) => {}
            (None, None) => {
                out.pieces.push(Bytes::from(std::mem::take(&mut self.held)));
                out.from = end;
            }
        }
        self.held.clear();
    }
}

#[cfg(test)]
mod tests;
