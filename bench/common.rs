//! Pieces shared by the benchmark harness programs (`examples/mockgw.rs`,
//! `examples/benchclient.rs`) and the rewriter micro-benchmark (`benches/rewrite.rs`),
//! included in each with `#[path]` so they all measure the same bodies.
#![allow(dead_code)]

/// Text of chat messages, already JSON-escaped: mostly plain prose, with the escapes a
/// real prompt carries (newlines, quotes, backslashes, `\u` escapes, tabs) and raw UTF-8.
const SEGMENTS: &[&str] = &[
    "Plain text without escapes makes up most of a real prompt, sentence after sentence, with punctuation, numbers like 3.14159 and 42, and the occasional list: one, two, three. ",
    r#"Please review the function below and explain what it does.\n"#,
    r#"fn main() {\n    let greeting = \"hello, world\";\n    println!(\"{greeting}\");\n}\n"#,
    r#"The caf\u00e9 on the corner serves cr\u00e8me br\u00fbl\u00e9e and \"real\" espresso. "#,
    r#"Path: C:\\Users\\bench\\notes.txt\t(tab separated)\n"#,
    "Raw UTF-8 is valid JSON too: 日本語のテキスト, Ünïcödé, emoji 🚀. ",
    "The model should answer in JSON with the keys \\\"answer\\\" and \\\"confidence\\\". ",
];

/// Target length of one message's content.
const MESSAGE_LEN: usize = 2048;

/// A chat completion request of exactly `size` bytes (when `size` is large enough to
/// hold the frame, about 200 bytes), with the top-level `model` placed last, after a
/// nested `metadata.model` that must not be touched.
pub fn chat_body(size: usize, model: &str) -> Vec<u8> {
    let prefix = r#"{"messages":["#;
    let suffix = format!(
        r#"],"temperature":0.2,"max_tokens":256,"stream":false,"metadata":{{"model":"not-this-one","tags":["bench"]}},"user":"bench","model":"{model}"}}"#
    );
    let open = [
        r#"{"role":"user","content":""#,
        r#"{"role":"assistant","content":""#,
    ];
    let close = r#""}"#;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(prefix.as_bytes());
    let mut seg = 0;
    let mut message = 0;
    loop {
        let room = size.saturating_sub(out.len() + suffix.len());
        let frame = usize::from(message > 0) + open[message % 2].len() + close.len();
        if room < frame {
            break;
        }
        // Full-size messages, the last one taking whatever is left so the size is exact.
        let next_frame = 1 + open[(message + 1) % 2].len() + close.len();
        let mut budget = room - frame;
        if budget >= MESSAGE_LEN + next_frame + 16 {
            budget = MESSAGE_LEN;
        }
        if message > 0 {
            out.push(b',');
        }
        out.extend_from_slice(open[message % 2].as_bytes());
        let start = out.len();
        while out.len() - start < budget {
            let s = SEGMENTS[seg % SEGMENTS.len()];
            let left = budget - (out.len() - start);
            if s.len() <= left {
                out.extend_from_slice(s.as_bytes());
                seg += 1;
            } else {
                out.extend(std::iter::repeat_n(b'x', left));
            }
        }
        out.extend_from_slice(close.as_bytes());
        message += 1;
    }
    out.extend_from_slice(suffix.as_bytes());
    out
}

/// The value of the last `"model"` key in `body` (raw, escapes not decoded): the mock
/// gateway reports it, and bench bodies put the top-level `model` last.
pub fn find_model(body: &[u8]) -> Option<&str> {
    let at = memchr::memmem::rfind(body, b"\"model\"")?;
    let rest = &body[at + 7..];
    let rest = trim_ws(rest).strip_prefix(b":")?;
    let rest = trim_ws(rest).strip_prefix(b"\"")?;
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'\\' => i += 2,
            b'"' => return std::str::from_utf8(&rest[..i]).ok(),
            _ => i += 1,
        }
    }
    None
}

fn trim_ws(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &b[n..]
}

/// The last bytes of a streamed body, enough to find a `model` placed last.
#[derive(Default)]
pub struct Tail {
    buf: Vec<u8>,
    pub total: usize,
}

const TAIL: usize = 8 * 1024;

impl Tail {
    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len();
        if data.len() >= TAIL {
            self.buf.clear();
            self.buf.extend_from_slice(&data[data.len() - TAIL..]);
        } else {
            self.buf.extend_from_slice(data);
            if self.buf.len() > 2 * TAIL {
                self.buf.drain(..self.buf.len() - TAIL);
            }
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Incremental decoder of HTTP/1.1 chunked framing.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    line: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataEnd(u8),
    Trailer,
    Done,
}

impl Chunked {
    /// Decodes from `input`, passing data to `sink`. Returns the bytes consumed and
    /// whether the body ended (bytes after the end are left for the next message).
    pub fn feed(
        &mut self,
        input: &[u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), String> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                ChunkState::Done => break,
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(nl) = memchr::memchr(b'\n', &input[i..]) else {
                        self.line.extend_from_slice(&input[i..]);
                        if self.line.len() > 4096 {
                            return Err("chunk header line too long".into());
                        }
                        i = input.len();
                        break;
                    };
                    self.line.extend_from_slice(&input[i..i + nl]);
                    i += nl + 1;
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    if self.state == ChunkState::Trailer {
                        if line.is_empty() {
                            self.state = ChunkState::Done;
                        }
                        continue;
                    }
                    let hex = line.split(|b| *b == b';').next().unwrap_or_default();
                    let hex = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
                    let n = usize::from_str_radix(hex.trim(), 16)
                        .map_err(|e| format!("bad chunk size {hex:?}: {e}"))?;
                    self.state = if n == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(n)
                    };
                }
                ChunkState::Data(left) => {
                    let n = left.min(input.len() - i);
                    sink(&input[i..i + n]);
                    i += n;
                    self.state = if n == left {
                        ChunkState::DataEnd(2)
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::DataEnd(left) => {
                    i += 1;
                    self.state = if left == 1 {
                        ChunkState::Size
                    } else {
                        ChunkState::DataEnd(left - 1)
                    };
                }
            }
        }
        Ok((i, self.state == ChunkState::Done))
    }
}

/// Nanoseconds since the Unix epoch: the mock stamps each stream event with it and the
/// client subtracts it on arrival (both run on this machine, on one clock).
pub fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
