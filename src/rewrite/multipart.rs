//! Streaming rewrite of `multipart/form-data` request bodies.
//!
//! The `model` field of a form (audio transcriptions, image edits, any multipart
//! request) goes to the [`NameMapper`] at [`Place::Form`], `target_model_names` at
//! [`Place::Target`], managed ids at [`Place::Id`] (checked, never replaced). Parts are
//! read as Starlette reads them (python-multipart): the boundary and the part's
//! `Content-Disposition` parameters by `parse_options_header` (quotes, escapes, `;`
//! inside quotes, the last of repeated parameters), the last of repeated
//! `Content-Disposition` headers, a part with a `filename` as a file, names and values
//! decoded as UTF-8 and, where that fails, as Latin-1. A form whose `charset` is not
//! UTF-8, or whose boundary or part headers modelmap cannot follow, is unreadable: the
//! guard refuses it. On file uploads (`/v1/files`), every file part is read as JSONL and
//! each line's `body.model` goes to the same mapper at [`Place::Batch`] (batch input
//! files; lines of other files have no `body.model` and pass unchanged), line by line.
//!
//! File parts are never held: content streams through as it arrives, except the few
//! bytes at the end of a chunk that could be the start of the next boundary. Only a
//! part's headers (at most [`MAX_HEADERS`]) and a `model` value (at most
//! [`MAX_NAME_LEN`]) are ever buffered, whatever the size of the upload. A body that does
//! not follow the multipart structure passes through untouched from where it stops
//! making sense.

use bytes::{Bytes, BytesMut};
use memchr::memmem;

use super::concat;
use super::form::field_place;
use super::json::{JsonRewriter, MAX_NAME_LEN, Profile};
use super::names::{NameMapper, Place};
use super::py;
use super::unreadable::Unreadable;

/// Largest part header block read; a larger one ends the rewrite (passed through, or
/// refused by the guard).
pub const MAX_HEADERS: usize = 16 * 1024;
/// Longest boundary followed.
pub const MAX_BOUNDARY: usize = 1024;
/// Longest delimiter line (boundary plus transport padding).
const MAX_DELIMITER_LINE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first boundary.
    Preamble,
    /// Just after a boundary: `--` ends the body, CRLF starts a part.
    DelimiterLine,
    Headers,
    Content,
    /// After the closing boundary, or after giving up: everything passes.
    Epilogue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Plain,
    /// A field the gateway reads model names (or a managed id) from, and where.
    Model(Place),
    Batch,
}

/// Python's `codecs` names for UTF-8, after its own normalisation (lower case, `-` and
/// spaces as `_`).
const UTF8_NAMES: [&str; 7] = [
    "utf_8",
    "utf8",
    "u8",
    "utf",
    "utf8_ucs2",
    "utf8_ucs4",
    "cp65001",
];

/// The boundary of a `multipart/form-data` content type (Latin-1 text), read as
/// Starlette reads it; an error when the form cannot be followed.
pub fn boundary(content_type: &str) -> Result<Vec<u8>, Unreadable> {
    let (_, options) = py::parse_options_header(content_type);
    if let Some(charset) = py::option(&options, "charset") {
        let normal = charset.to_lowercase().replace(['-', ' '], "_");
        if !UTF8_NAMES.contains(&normal.as_str()) {
            return Err(Unreadable::Charset);
        }
    }
    let boundary: Vec<u8> = py::option(&options, "boundary")
        .ok_or(Unreadable::Boundary)?
        .chars()
        .map(|c| c as u8)
        .collect();
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
        return Err(Unreadable::Boundary);
    }
    Ok(boundary)
}

/// Latin-1 text back to its bytes, decoded as Starlette's `_user_safe_decode` does for
/// UTF-8 forms: UTF-8, or Latin-1 where that fails.
fn form_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => py::latin1(bytes),
    }
}

/// `name` and whether a `filename` is given, from a part's headers: python-multipart
/// keeps the last `Content-Disposition`, its value from after the colon and leading
/// spaces to the end of the line.
fn disposition(headers: &[u8]) -> (Option<String>, bool) {
    let mut value = None;
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"content-disposition") {
            let v = &line[colon + 1..];
            value = Some(&v[v.iter().take_while(|&&b| b == b' ').count()..]);
        }
    }
    let Some(value) = value else {
        return (None, false);
    };
    let (_, options) = py::parse_options_header(&py::latin1(value));
    let bytes = |s: &str| s.chars().map(|c| c as u8).collect::<Vec<u8>>();
    let name = py::option(&options, "name").map(|n| form_text(&bytes(n)));
    (name, py::option(&options, "filename").is_some())
}

/// Longest proper prefix of `delim` that `hay` ends with.
fn partial_delimiter(hay: &[u8], delim: &[u8]) -> usize {
    let window = hay.len().min(delim.len() - 1);
    let tail = &hay[hay.len() - window..];
    // A delimiter starts with '\r': only a suffix starting at a '\r' can be one.
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\r', &tail[from..]) {
        let suffix = &tail[from + i..];
        if delim.starts_with(suffix) {
            return suffix.len();
        }
        from += i + 1;
    }
    0
}

pub struct MultipartRewriter {
    /// `\r\n--boundary`.
    delim: Vec<u8>,
    finder: memmem::Finder<'static>,
    state: State,
    part: Part,
    /// Bytes held for the next chunk (a partial boundary, headers, a model value).
    carry: BytesMut,
    /// Whether file parts are batch input (JSONL).
    batch_files: bool,
    line: JsonRewriter,
}

impl MultipartRewriter {
    pub fn new(boundary: impl AsRef<[u8]>, batch_files: bool) -> MultipartRewriter {
        let mut delim = b"\r\n--".to_vec();
        delim.extend_from_slice(boundary.as_ref());
        MultipartRewriter {
            finder: memmem::Finder::new(&delim).into_owned(),
            delim,
            state: State::Preamble,
            part: Part::Plain,
            carry: BytesMut::new(),
            batch_files,
            line: JsonRewriter::with_profile(Profile::BatchLine),
        }
    }

    /// Consumes one piece of the body; returns what to send upstream now.
    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool, names: &mut impl NameMapper) -> Bytes {
        let chunk = chunk.unwrap_or_default();
        let data = if self.carry.is_empty() {
            chunk
        } else {
            self.carry.extend_from_slice(&chunk);
            self.carry.split().freeze()
        };
        let mut out: Vec<Bytes> = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            match self.state {
                State::Epilogue => {
                    out.push(data.slice(pos..));
                    pos = data.len();
                }
                State::Preamble => {
                    let dash = &self.delim[2..];
                    match memmem::find(rest, dash) {
                        Some(i) => {
                            out.push(data.slice(pos..pos + i + dash.len()));
                            pos += i + dash.len();
                            self.state = State::DelimiterLine;
                        }
                        None => {
                            let keep = if end {
                                0
                            } else {
                                rest.len().min(dash.len() - 1)
                            };
                            out.push(data.slice(pos..data.len() - keep));
                            self.carry.extend_from_slice(&data[data.len() - keep..]);
                            pos = data.len();
                        }
                    }
                }
                State::DelimiterLine => {
                    if rest.starts_with(b"--") {
                        self.state = State::Epilogue;
                    } else if let Some(i) = memmem::find(rest, b"\r\n") {
                        out.push(data.slice(pos..pos + i + 2));
                        pos += i + 2;
                        self.state = State::Headers;
                    } else if rest.len() > MAX_DELIMITER_LINE || end {
                        self.state = State::Epilogue;
                    } else {
                        self.carry.extend_from_slice(rest);
                        pos = data.len();
                    }
                }
                State::Headers => {
                    let block_end = if rest.starts_with(b"\r\n") {
                        Some(0)
                    } else {
                        memmem::find(rest, b"\r\n\r\n").map(|i| i + 2)
                    };
                    match block_end {
                        Some(i) => {
                            let (name, file) = disposition(&rest[..i]);
                            self.part = match (name.as_deref().and_then(field_place), file) {
                                (Some(place), false) => Part::Model(place),
                                (_, true) if self.batch_files => Part::Batch,
                                _ => Part::Plain,
                            };
                            out.push(data.slice(pos..pos + i + 2));
                            pos += i + 2;
                            self.state = State::Content;
                        }
                        None if rest.len() > MAX_HEADERS || end => {
                            names.unreadable(Unreadable::PartHeaders);
                            self.state = State::Epilogue;
                        }
                        None => {
                            self.carry.extend_from_slice(rest);
                            pos = data.len();
                        }
                    }
                }
                State::Content => {
                    let found = self.finder.find(rest);
                    let content_end = match found {
                        Some(k) => pos + k,
                        None if end => data.len(),
                        None => data.len() - partial_delimiter(rest, &self.delim),
                    };
                    if found.is_none() && !end && matches!(self.part, Part::Model(_)) {
                        if rest.len() <= MAX_NAME_LEN {
                            // Hold the value until it is complete.
                            self.carry.extend_from_slice(rest);
                            pos = data.len();
                            continue;
                        }
                        names.unreadable(Unreadable::NameLength);
                        self.part = Part::Plain;
                    }
                    self.content(
                        &data,
                        pos,
                        content_end,
                        found.is_some() || end,
                        names,
                        &mut out,
                    );
                    match found {
                        Some(k) => {
                            let after = pos + k + self.delim.len();
                            out.push(data.slice(pos + k..after));
                            pos = after;
                            self.state = State::DelimiterLine;
                        }
                        None => {
                            self.carry.extend_from_slice(&data[content_end..]);
                            pos = data.len();
                        }
                    }
                }
            }
        }
        if end && !self.carry.is_empty() {
            out.push(self.carry.split().freeze());
        }
        concat(&mut out)
    }

    /// Sends a part's content `data[from..to]`; `complete` when the part ends there.
    fn content(
        &mut self,
        data: &Bytes,
        from: usize,
        to: usize,
        complete: bool,
        names: &mut impl NameMapper,
        out: &mut Vec<Bytes>,
    ) {
        match self.part {
            Part::Plain => out.push(data.slice(from..to)),
            Part::Model(place) => {
                let raw = &data[from..to];
                let mapped = names
                    .map_at(place, &form_text(raw))
                    .filter(|_| place.replaceable());
                match mapped {
                    Some(new) => out.push(Bytes::from(new)),
                    None => out.push(data.slice(from..to)),
                }
            }
            Part::Batch => {
                let mut at = from;
                while at < to {
                    let nl = memchr::memchr(b'\n', &data[at..to]).map(|i| at + i + 1);
                    let stop = nl.unwrap_or(to);
                    out.push(self.line.feed(&data.slice(at..stop), names));
                    if nl.is_some() {
                        out.push(self.line.finish());
                        self.line = JsonRewriter::with_profile(Profile::BatchLine);
                    }
                    at = stop;
                }
                if complete {
                    out.push(self.line.finish());
                    self.line = JsonRewriter::with_profile(Profile::BatchLine);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
