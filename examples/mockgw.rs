//! A fast mock of the gateway, for the benchmark harness (`bench/run.sh`).
//!
//! `mockgw [ADDR]` (default 127.0.0.1:18080) serves HTTP/1.1 with keep-alive and
//! TCP_NODELAY on one thread. Every request body is read to its end (Content-Length or
//! chunked) without being kept: only its last 8 KiB are, to find the last `"model"`
//! value (bench bodies put the top-level `model` last). The answer reports what arrived:
//! header `x-mock-model` (the model, `-` if none) and `x-mock-body-bytes` (the body's
//! length), and a small chat completion whose `model` is the received name.
//!
//! With `?sse=N` in the URL (and optionally `&gap_us=G`, default 2000) the answer is a
//! `text/event-stream` of N chat chunks, one every G µs, then `data: [DONE]`; each
//! event carries `"t"`, the Unix time in ns at which it was written, so a client can
//! measure how long each event took to arrive.
//!
//! With `whole=1` in the query, and for every stream, the body is kept whole (up to
//! 64 MiB) and parsed as JSON, and the model reported is the top-level `model`, wherever
//! it is: a hop that re-serialises the body may reorder its keys (nginx + Lua's cjson
//! does). The harness checks answers that way; the timed runs keep to the cheap scan.

#[path = "../bench/common.rs"]
mod common;

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::{Chunked, Tail, find_model, now_ns};

const READ_SIZE: usize = 64 * 1024;
/// The largest body kept whole for `whole=1`.
const WHOLE_MAX: usize = 64 * 1024 * 1024;

struct Head {
    len: usize,
    content_length: usize,
    chunked: bool,
    expect_continue: bool,
    close: bool,
    /// `Some((events, gap))` for a stream.
    sse: Option<(usize, Duration)>,
    /// Keep the body whole and report its top-level `model`.
    whole: bool,
}

fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req
        .parse(buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
    {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let mut head = Head {
        len,
        content_length: 0,
        chunked: false,
        expect_continue: false,
        close: false,
        sse: None,
        whole: false,
    };
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().unwrap_or(0);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if h.name.eq_ignore_ascii_case("expect") {
            head.expect_continue = value.eq_ignore_ascii_case("100-continue");
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    if let Some((_, query)) = req.path.unwrap_or("/").split_once('?') {
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let Some(n) = param("sse") {
            let gap = Duration::from_micros(param("gap_us").unwrap_or(2000));
            head.sse = Some((n as usize, gap));
        }
        head.whole = head.sse.is_some() || param("whole") == Some(1);
    }
    Ok(Some(head))
}

async fn fill(s: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    buf.reserve(READ_SIZE);
    s.read_buf(buf).await
}

async fn serve(mut s: TcpStream) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut out = Vec::with_capacity(1024);
    loop {
        let head = loop {
            if let Some(h) = parse_head(&buf)? {
                break h;
            }
            if buf.len() > READ_SIZE || fill(&mut s, &mut buf).await? == 0 {
                return Ok(());
            }
        };
        buf.advance(head.len);
        if head.expect_continue {
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let mut tail = Tail::default();
        let mut whole = head.whole.then(Vec::new);
        let mut keep = |d: &[u8]| {
            tail.push(d);
            if let Some(w) = whole.as_mut()
                && w.len() + d.len() <= WHOLE_MAX
            {
                w.extend_from_slice(d);
            }
        };
        if head.chunked {
            let mut dec = Chunked::default();
            loop {
                let (used, done) = dec
                    .feed(&buf, &mut keep)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                buf.advance(used);
                if done {
                    break;
                }
                if fill(&mut s, &mut buf).await? == 0 {
                    return Ok(());
                }
            }
        } else {
            let mut left = head.content_length;
            while left > 0 {
                if buf.is_empty() && fill(&mut s, &mut buf).await? == 0 {
                    return Ok(());
                }
                let n = left.min(buf.len());
                keep(&buf[..n]);
                buf.advance(n);
                left -= n;
            }
        }
        let model = match &whole {
            Some(w) => top_level_model(w),
            None => find_model(tail.bytes()).unwrap_or("-").to_string(),
        };
        out.clear();
        match head.sse {
            None => {
                let body = format!(
                    r#"{{"id":"chatcmpl-mock","object":"chat.completion","created":0,"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"ok"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}}}"#
                );
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-mock-model: {model}\r\nx-mock-body-bytes: {}\r\n\r\n",
                        body.len(),
                        tail.total
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(body.as_bytes());
                s.write_all(&out).await?;
            }
            Some((events, gap)) => {
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nx-mock-model: {model}\r\nx-mock-body-bytes: {}\r\n\r\n",
                        tail.total
                    )
                    .as_bytes(),
                );
                s.write_all(&out).await?;
                for i in 0..events {
                    tokio::time::sleep(gap).await;
                    let event = format!(
                        "data: {{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"{model}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token {i} \"}}}}],\"t\":{}}}\n\n",
                        now_ns()
                    );
                    let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                    s.write_all(chunk.as_bytes()).await?;
                }
                let done = "data: [DONE]\n\n";
                let chunk = format!("{:x}\r\n{done}\r\n0\r\n\r\n", done.len());
                s.write_all(chunk.as_bytes()).await?;
            }
        }
        if head.close {
            return Ok(());
        }
    }
}

/// The top-level `model` of a JSON body, `-` if it has none (or is not JSON).
fn top_level_model(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("model")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".into())
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("mockgw listening on {addr}");
        loop {
            let (s, _) = listener.accept().await?;
            s.set_nodelay(true)?;
            tokio::spawn(async move {
                let _ = serve(s).await;
            });
        }
    })
}
