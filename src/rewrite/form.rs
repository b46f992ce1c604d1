//! Streaming rewrite of `application/x-www-form-urlencoded` request bodies.
//!
//! LiteLLM parses such a body as a form (Starlette's `FormParser` over python-multipart's
//! `QuerystringParser`): fields are split on `&` only, name and value at the first `=`,
//! each turned into text as Latin-1 and then `unquote_plus`ed (so `mod%65l` is `model`
//! and `%XX` runs decode as UTF-8). The `model` field ([`Place::Form`]) and
//! `target_model_names` ([`Place::Target`]) go to the [`NameMapper`] like a JSON body's,
//! managed ids ([`Place::Id`]) to be checked; a repeated field is mapped every time (the
//! gateway keeps the last). Everything else streams through untouched.
//!
//! Only the current field's name (while it could still decode to a model field) and a
//! model value (at most [`MAX_NAME_LEN`]) are held, whatever the body's size.

use bytes::Bytes;

use super::json::MAX_NAME_LEN;
use super::names::{NameMapper, Place};
use super::py;
use super::resource_id::ID_FIELDS;
use super::unreadable::Unreadable;

/// A raw field name longer than this cannot decode to `target_model_names` (18
/// characters, at most three bytes each as `%XX`): it is streamed, not held.
const MAX_MODEL_KEY: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a field name (held in `pending`).
    Key,
    /// Reading a model or id field's value (held in `pending`, after its name and `=`).
    Value(Place),
    /// Inside a field that names no model: bytes pass until the next `&`.
    Pass,
}

pub struct FormRewriter {
    state: State,
    /// The current field's bytes so far, while it may name a model.
    pending: Vec<u8>,
    /// Length of the raw name (and `=`) at the start of `pending`, in `Value`.
    key_len: usize,
}

impl Default for FormRewriter {
    fn default() -> Self {
        FormRewriter::new()
    }
}

/// Where the value of a form field the gateway reads models (or a managed id) from is,
/// by the field's decoded name.
pub(super) fn field_place(name: &str) -> Option<Place> {
    match name {
        "model" => Some(Place::Form),
        "target_model_names" => Some(Place::Target),
        n if ID_FIELDS.contains(&n) => Some(Place::Id),
        _ => None,
    }
}

fn raw_field_place(raw_key: &[u8]) -> Option<Place> {
    field_place(&py::unquote(&py::latin1(raw_key), true))
}

fn encode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

impl FormRewriter {
    pub fn new() -> FormRewriter {
        FormRewriter {
            state: State::Key,
            pending: Vec::new(),
            key_len: 0,
        }
    }

    /// Consumes one piece of the body; returns what to send upstream now.
    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool, names: &mut impl NameMapper) -> Bytes {
        let chunk = chunk.unwrap_or_default();
        let mut out: Vec<u8> = Vec::with_capacity(chunk.len() + self.pending.len());
        let mut i = 0;
        while i < chunk.len() {
            match self.state {
                State::Pass => match memchr::memchr(b'&', &chunk[i..]) {
                    Some(at) => {
                        out.extend_from_slice(&chunk[i..=i + at]);
                        i += at + 1;
                        self.state = State::Key;
                    }
                    None => {
                        out.extend_from_slice(&chunk[i..]);
                        i = chunk.len();
                    }
                },
                State::Key => {
                    let stop = memchr::memchr2(b'=', b'&', &chunk[i..]).map(|at| i + at);
                    let piece = &chunk[i..stop.unwrap_or(chunk.len())];
                    self.pending.extend_from_slice(piece);
                    if self.pending.len() > MAX_MODEL_KEY {
                        // Too long to be a model field's name.
                        out.append(&mut self.pending);
                        self.state = State::Pass;
                        i += piece.len();
                        continue;
                    }
                    match stop {
                        None => i = chunk.len(),
                        Some(at) if chunk[at] == b'&' => {
                            // A name without a value: an empty value, nothing to map.
                            out.append(&mut self.pending);
                            out.push(b'&');
                            i = at + 1;
                        }
                        Some(at) => {
                            match raw_field_place(&self.pending) {
                                Some(place) => {
                                    self.pending.push(b'=');
                                    self.key_len = self.pending.len();
                                    self.state = State::Value(place);
                                }
                                None => {
                                    out.append(&mut self.pending);
                                    out.push(b'=');
                                    self.state = State::Pass;
                                }
                            }
                            i = at + 1;
                        }
                    }
                }
                State::Value(place) => {
                    let stop = memchr::memchr(b'&', &chunk[i..]).map(|at| i + at);
                    let piece = &chunk[i..stop.unwrap_or(chunk.len())];
                    self.pending.extend_from_slice(piece);
                    i += piece.len();
                    if self.pending.len() - self.key_len > MAX_NAME_LEN {
                        names.unreadable(Unreadable::NameLength);
                        out.append(&mut self.pending);
                        self.state = State::Pass;
                        continue;
                    }
                    if stop.is_some() {
                        self.finish_value(place, names, &mut out);
                        out.push(b'&');
                        i += 1;
                        self.state = State::Key;
                    }
                }
            }
        }
        if end {
            if let State::Value(place) = self.state {
                self.finish_value(place, names, &mut out);
            } else {
                out.append(&mut self.pending);
            }
            self.state = State::Pass;
        }
        Bytes::from(out)
    }

    /// A model field's value is complete: map it and emit the field.
    fn finish_value(&mut self, place: Place, names: &mut impl NameMapper, out: &mut Vec<u8>) {
        let value = py::unquote(&py::latin1(&self.pending[self.key_len..]), true);
        let mapped = names.map_at(place, &value).filter(|_| place.replaceable());
        match mapped {
            Some(new) => {
                out.extend_from_slice(&self.pending[..self.key_len]);
                out.extend_from_slice(&encode(&new));
            }
            None => out.extend_from_slice(&self.pending),
        }
        self.pending.clear();
        self.key_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mapping::Mapping;
    use crate::rewrite::names::{Names, Verdict};

    fn names(team: Option<&str>) -> Names {
        let m = Mapping::parse(
            "version: 1\nteams:\n  t:\n    models:\n      gpt-4.1: model_name_t_1\n  u:\n    models:\n      b: model_name_u_2\n",
            "t",
        )
        .expect("valid");
        Names::new(Arc::new(m), team.map(str::to_string)).guarded(true)
    }

    fn run(body: &[u8], split: usize, n: &mut Names) -> Vec<u8> {
        let mut rw = FormRewriter::new();
        let split = split.min(body.len());
        let mut out = rw
            .feed(Some(Bytes::copy_from_slice(&body[..split])), false, n)
            .to_vec();
        out.extend_from_slice(&rw.feed(Some(Bytes::copy_from_slice(&body[split..])), true, n));
        out
    }

    #[test]
    fn model_fields_are_mapped_however_they_are_encoded() {
        let body =
            b"x=1&mod%65l=gpt%2D4.1&model=gpt-4.1&y=model%3Dgpt-4.1&target_model_names=a,+gpt-4.1";
        for split in 0..body.len() {
            let mut n = names(Some("t"));
            let out = run(body, split, &mut n);
            assert_eq!(
                String::from_utf8_lossy(&out),
                "x=1&mod%65l=model_name_t_1&model=model_name_t_1&y=model%3Dgpt-4.1&target_model_names=a%2C%20model_name_t_1",
                "split at {split}"
            );
            assert_eq!(n.verdict, None);
        }
    }

    #[test]
    fn another_teams_name_is_denied_in_any_field_spelling() {
        for body in [
            &b"model=model_name_u_2"[..],
            b"mod%65l=x,+model_name_u_2%C2%A0",
        ] {
            let mut n = names(Some("t"));
            run(body, 3, &mut n);
            assert_eq!(
                n.verdict,
                Some(Verdict::Denied("model_name_u_2".into())),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn other_fields_stream_untouched() {
        let body = b"a=b&&c&model&".repeat(3);
        let mut n = names(Some("t"));
        assert_eq!(run(&body, 5, &mut n), body);
    }
}
