//! Reading a request head off a client connection, before any HTTP session exists.
//!
//! Guarantees: the first byte is waited for at most `idle` (silence then closes the
//! connection without an answer: it is an idle keep-alive connection, not a slow
//! request; empty lines, which RFC 9112 §2.2 has a server ignore before a request line,
//! do not count as a first byte); from the first byte, the whole head must arrive within
//! `deadline` (else [`Failure::HeadTimeout`], 408) and fit in [`MAX_HEAD`] bytes (else
//! [`Failure::HeadTooLarge`], 431). Pingora's own head reader has neither bound: it
//! reads up to 1 MiB with only a per-read timeout, so a client sending one byte every
//! few seconds held a connection forever. What is read past the head (a body's start,
//! pipelined requests) stays in the returned buffer for the HTTP session to parse.

use std::time::Duration;

use bytes::BytesMut;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;
use tokio::time::{Instant, timeout_at};

use crate::error::Failure;

/// Largest request head modelmap reads (request line and headers).
pub const MAX_HEAD: usize = 64 * 1024;

/// What a read buffer starts with: most heads fit (Pingora starts its own at 4 KiB too).
const INITIAL: usize = 4 * 1024;

pub(super) enum Head {
    /// A whole head (and maybe more) is in the buffer.
    Ready(BytesMut),
    /// The client closed mid-head: close quietly.
    Gone,
    /// Answer this, then close.
    Failed(Failure),
}

/// Waits until `buf` holds the first byte of a head (it may already): false when the
/// client closed, stayed idle for `idle`, or the server is shutting down. Empty lines
/// before it are dropped (an old client's CRLF after a body is not a slow head).
pub(super) async fn first_byte(
    stream: &mut Stream,
    buf: &mut BytesMut,
    idle: Duration,
    shutdown: &mut ShutdownWatch,
) -> bool {
    let until = Instant::now() + idle;
    loop {
        if buf.iter().any(|b| !matches!(b, b'\r' | b'\n')) {
            return true;
        }
        if *shutdown.borrow() {
            return false;
        }
        buf.clear();
        buf.reserve(INITIAL);
        let read = tokio::select! {
            read = timeout_at(until, stream.read_buf(buf)) => read,
            _ = shutdown.changed() => return false,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
}

/// Reads until `buf`, which holds a head's first byte (see [`first_byte`]), holds the
/// whole head (see the module docs for the bounds).
pub(super) async fn read(stream: &mut Stream, mut buf: BytesMut, deadline: Duration) -> Head {
    let until = Instant::now() + deadline;
    let mut scanned = 0;
    loop {
        if let Some(end) = head_end(&buf, scanned) {
            return if end > MAX_HEAD {
                Head::Failed(Failure::HeadTooLarge)
            } else {
                Head::Ready(buf)
            };
        }
        if buf.len() > MAX_HEAD {
            return Head::Failed(Failure::HeadTooLarge);
        }
        // Resume the search where a terminator split across reads could start.
        scanned = buf.len().saturating_sub(3);
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(buf.capacity().max(INITIAL));
        }
        match timeout_at(until, stream.read_buf(&mut buf)).await {
            Err(_) => return Head::Failed(Failure::HeadTimeout),
            Ok(Ok(n)) if n > 0 => {}
            // Closed or broken mid-head: nobody to answer.
            Ok(_) => return Head::Gone,
        }
    }
}

/// Where the head ends (just past its empty line), searching from `from`. A line ends at
/// LF, with or without CR before it, as the HTTP parsers on both sides accept.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    // Empty lines before the request line are skipped by the parsers (RFC 9112 §2.2).
    let start = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    let from = from.max(start);
    let mut at = from;
    while let Some(i) = memchr::memchr(b'\n', &buf[at..]) {
        let lf = at + i;
        let rest = &buf[lf + 1..];
        if rest.first() == Some(&b'\n') {
            return Some(lf + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(lf + 3);
        }
        if rest.is_empty() || rest == b"\r" {
            return None;
        }
        at = lf + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::head_end;

    #[test]
    fn a_head_ends_at_its_empty_line_however_lines_end() {
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", 0),
            Some(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nbody", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
        // Empty lines before the request line do not end a head.
        assert_eq!(head_end(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 0), Some(22));
        assert_eq!(head_end(b"\r\n", 0), None);
    }
}
