//! Streaming rewrite of `multipart/form-data` request bodies.
//!
//! The `model` field of a form (audio transcriptions, image edits, any multipart
//! request) is mapped like a JSON body's `model`. On file uploads (`/v1/files`), every
//! file part is read as JSONL and each line's `body.model` is mapped (batch input files;
//! lines of other files have no `body.model` and pass unchanged), line by line.
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
use super::json::{JsonRewriter, MAX_NAME_LEN, Profile};
use super::names::{Names, Place};

/// Largest part header block read; a larger one ends the rewrite (passed through).
pub const MAX_HEADERS: usize = 16 * 1024;
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
    Model,
    Batch,
}

/// The boundary of a `multipart/form-data` content type, if it is one.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty() && b.len() <= 200)
    })
}

/// `name` and whether a `filename` is given, from a part's headers.
fn disposition(headers: &[u8]) -> (Option<String>, bool) {
    let text = String::from_utf8_lossy(headers);
    let Some(line) = text.split("\r\n").find(|l| {
        l.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
    }) else {
        return (None, false);
    };
    let mut name = None;
    let mut file = false;
    for param in line.split(';').skip(1) {
        if let Some((k, v)) = param.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "name" => name = Some(v),
                "filename" | "filename*" => file = true,
                _ => {}
            }
        }
    }
    (name, file)
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
    pub fn new(boundary: &str, batch_files: bool) -> MultipartRewriter {
        let delim = format!("\r\n--{boundary}").into_bytes();
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
    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool, names: &mut Names) -> Bytes {
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
                            self.part = match (name.as_deref(), file) {
                                (Some("model"), false) => Part::Model,
                                (_, true) if self.batch_files => Part::Batch,
                                _ => Part::Plain,
                            };
                            out.push(data.slice(pos..pos + i + 2));
                            pos += i + 2;
                            self.state = State::Content;
                        }
                        None if rest.len() > MAX_HEADERS || end => self.state = State::Epilogue,
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
                    if found.is_none() && !end && self.part == Part::Model {
                        if rest.len() <= MAX_NAME_LEN {
                            // Hold the value until it is complete.
                            self.carry.extend_from_slice(rest);
                            pos = data.len();
                            continue;
                        }
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
        names: &mut Names,
        out: &mut Vec<Bytes>,
    ) {
        match self.part {
            Part::Plain => out.push(data.slice(from..to)),
            Part::Model => {
                let raw = &data[from..to];
                match std::str::from_utf8(raw)
                    .ok()
                    .and_then(|v| names.map_at(Place::Form, v))
                {
                    Some(new) => out.push(Bytes::from(new)),
                    None => out.push(data.slice(from..to)),
                }
            }
            Part::Batch => {
                let mut at = from;
                while at < to {
                    let nl = memchr::memchr(b'\n', &data[at..to]).map(|i| at + i + 1);
                    let stop = nl.unwrap_or(to);
                    out.push(
                        self.line
                            .feed(&data.slice(at..stop), &mut names.at(Place::Batch)),
                    );
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
