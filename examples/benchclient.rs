//! The benchmark harness's own client (`bench/run.sh`), for what wrk cannot do:
//! checking answers, timing each event of a stream, and concurrent large uploads.
//!
//! ```text
//! benchclient gen SIZE MODEL OUT
//!     write a chat request body of exactly SIZE bytes, `model` last
//! benchclient check ADDR PATH BODY KEY SENT RETURNED [BYTES]
//!     POST the file BODY (GET if BODY is `-`); the mock must have received model SENT (and BYTES body
//!     bytes unless `-`), and the answer's `model` must be RETURNED
//! benchclient sse ADDR KEY MODEL STREAMS EVENTS GAP_US RETURNED
//!     STREAMS streams of EVENTS events in a row; prints the per-event delay (µs) from
//!     the mock's write to this client's read; every event must name RETURNED
//! benchclient upload ADDR KEY MODEL CONCURRENCY SIZE SENT
//!     CONCURRENCY simultaneous uploads of a SIZE-byte body, streamed in 64 KiB writes;
//!     each must reach the mock whole, with model SENT
//! ```
//! Exits 1 on any wrong answer. Every command gives up after a minute.

#[path = "../bench/common.rs"]
mod common;

use std::io;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{Chunked, chat_body, find_model, now_ns};

const LIMIT: Duration = Duration::from_secs(60);

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Response {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// POSTs `body`, or GETs when it is `None`.
async fn send(s: &mut TcpStream, path: &str, key: &str, body: Option<&[u8]>) -> io::Result<()> {
    let Some(body) = body else {
        let head =
            format!("GET {path} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {key}\r\n\r\n");
        return s.write_all(head.as_bytes()).await;
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\nauthorization: Bearer {key}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    for piece in body.chunks(64 * 1024) {
        s.write_all(piece).await?;
    }
    Ok(())
}

/// Reads one response; `on_data` gets each piece of the body as it is decoded.
async fn receive(s: &mut TcpStream, mut on_data: impl FnMut(&[u8])) -> io::Result<Response> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let (resp, len, chunked, mut left) = loop {
        if s.read_buf(&mut buf).await? == 0 {
            return Err(bad("connection closed before the response head"));
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(n) = r.parse(&buf).map_err(|e| bad(e.to_string()))? {
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).trim().to_string(),
                    )
                })
                .collect();
            let resp = Response {
                status: r.code.unwrap_or(0),
                headers,
            };
            if resp.status == 100 {
                buf.advance(n);
                continue;
            }
            let chunked = resp
                .header("transfer-encoding")
                .to_ascii_lowercase()
                .contains("chunked");
            let length = resp.header("content-length").parse::<usize>().ok();
            break (resp, n, chunked, length);
        }
    };
    buf.advance(len);
    if chunked {
        let mut dec = Chunked::default();
        loop {
            let (used, done) = dec.feed(&buf, &mut on_data).map_err(bad)?;
            buf.advance(used);
            if done {
                return Ok(resp);
            }
            if s.read_buf(&mut buf).await? == 0 {
                return Err(bad("connection closed inside a chunked body"));
            }
        }
    }
    loop {
        let take = left.map_or(buf.len(), |l| l.min(buf.len()));
        on_data(&buf[..take]);
        buf.advance(take);
        left = left.map(|l| l - take);
        if left == Some(0) {
            return Ok(resp);
        }
        if s.read_buf(&mut buf).await? == 0 {
            return match left {
                None => Ok(resp),
                Some(_) => Err(bad("connection closed inside the body")),
            };
        }
    }
}

async fn connect(addr: &str) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One request; checks what the mock received and what came back.
async fn check(args: &[String]) -> io::Result<Result<String, String>> {
    let [addr, path, body, key, sent, returned, rest @ ..] = args else {
        return Err(bad("check ADDR PATH BODY KEY SENT RETURNED [BYTES]"));
    };
    let body = match body.as_str() {
        "-" => None,
        file => Some(std::fs::read(file)?),
    };
    let mut s = connect(addr).await?;
    send(&mut s, path, key, body.as_deref()).await?;
    let mut answer = Vec::new();
    let resp = receive(&mut s, |d| answer.extend_from_slice(d)).await?;
    let got_model = find_model(&answer).unwrap_or("-");
    let got_sent = resp.header("x-mock-model");
    let got_bytes = resp.header("x-mock-body-bytes");
    let mut wrong = Vec::new();
    if resp.status != 200 {
        wrong.push(format!("status {}", resp.status));
    }
    if got_sent != sent {
        wrong.push(format!(
            "gateway received model {got_sent:?}, expected {sent:?}"
        ));
    }
    if got_model != returned {
        wrong.push(format!("answer names {got_model:?}, expected {returned:?}"));
    }
    if let Some(bytes) = rest.first().filter(|b| b.as_str() != "-")
        && got_bytes != bytes
    {
        wrong.push(format!(
            "gateway received {got_bytes} body bytes, expected {bytes}"
        ));
    }
    Ok(if wrong.is_empty() {
        Ok(format!(
            "ok: gateway got {got_sent} ({got_bytes} bytes), client got {got_model}"
        ))
    } else {
        Err(wrong.join("; "))
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i]
}

/// Streams; the delay of each event from the mock's write to our read.
async fn sse(args: &[String]) -> io::Result<Result<String, String>> {
    let [addr, key, model, streams, events, gap, returned] = args else {
        return Err(bad("sse ADDR KEY MODEL STREAMS EVENTS GAP_US RETURNED"));
    };
    let parse = |s: &str| s.parse::<usize>().map_err(|e| bad(e.to_string()));
    let (streams, events, gap) = (parse(streams)?, parse(events)?, parse(gap)?);
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":"hi"}}],"stream":true,"model":"{model}"}}"#
    );
    let path = format!("/v1/chat/completions?sse={events}&gap_us={gap}");
    let mut delays = Vec::new();
    let mut wrong = Vec::new();
    for _ in 0..streams {
        let mut s = connect(addr).await?;
        send(&mut s, &path, key, Some(body.as_bytes())).await?;
        let mut pending = Vec::new();
        let mut seen = 0;
        let mut done = false;
        let resp = receive(&mut s, |d| {
            let now = now_ns();
            pending.extend_from_slice(d);
            while let Some(end) = memchr::memmem::find(&pending, b"\n\n") {
                let event: Vec<u8> = pending.drain(..end + 2).collect();
                if event.starts_with(b"data: [DONE]") {
                    done = true;
                    continue;
                }
                seen += 1;
                let t = memchr::memmem::rfind(&event, b"\"t\":").and_then(|at| {
                    let digits: String = event[at + 4..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .map(|b| *b as char)
                        .collect();
                    digits.parse::<u128>().ok()
                });
                match t {
                    Some(t) => delays.push(now.saturating_sub(t) as f64 / 1000.0),
                    None => wrong.push("an event without its time".to_string()),
                }
                let named = find_model(&event).unwrap_or("-");
                if named != returned {
                    wrong.push(format!("an event names {named:?}, expected {returned:?}"));
                }
            }
        })
        .await?;
        if resp.status != 200 {
            wrong.push(format!("status {}", resp.status));
        }
        if seen != events || !done {
            wrong.push(format!("{seen} of {events} events, [DONE] {done}"));
        }
    }
    wrong.dedup();
    if !wrong.is_empty() {
        return Ok(Err(wrong.join("; ")));
    }
    delays.sort_by(f64::total_cmp);
    let mean = delays.iter().sum::<f64>() / delays.len().max(1) as f64;
    Ok(Ok(format!(
        "SSE events={} p50_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1} mean_us={:.1}",
        delays.len(),
        percentile(&delays, 50.0),
        percentile(&delays, 90.0),
        percentile(&delays, 99.0),
        delays.last().copied().unwrap_or(0.0),
        mean
    )))
}

/// Concurrent large uploads, each checked.
async fn upload(args: &[String]) -> io::Result<Result<String, String>> {
    let [addr, key, model, concurrency, size, sent] = args else {
        return Err(bad("upload ADDR KEY MODEL CONCURRENCY SIZE SENT"));
    };
    let parse = |s: &str| s.parse::<usize>().map_err(|e| bad(e.to_string()));
    let (concurrency, size) = (parse(concurrency)?, parse(size)?);
    let body = Arc::new(chat_body(size, model));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (addr, key, sent, body) = (addr.clone(), key.clone(), sent.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = connect(&addr).await?;
            send(&mut s, "/v1/chat/completions", &key, Some(&body)).await?;
            let resp = receive(&mut s, |_| {}).await?;
            let got = resp.header("x-mock-model");
            let bytes = resp.header("x-mock-body-bytes").parse::<usize>().unwrap_or(0);
            let expected = body.len() + sent.len() - find_model(&body).map_or(0, str::len);
            Ok::<_, io::Error>(if resp.status == 200 && got == sent && bytes == expected {
                None
            } else {
                Some(format!(
                    "status {}, gateway got {got:?} and {bytes} bytes (expected {sent:?}, {expected})",
                    resp.status
                ))
            })
        }));
    }
    let mut wrong = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(w))) => wrong.push(w),
            Ok(Err(e)) => wrong.push(e.to_string()),
            Err(e) => wrong.push(e.to_string()),
        }
    }
    wrong.dedup();
    Ok(if wrong.is_empty() {
        Ok(format!(
            "UPLOAD n={concurrency} size={size} secs={:.2}",
            start.elapsed().as_secs_f64()
        ))
    } else {
        Err(wrong.join("; "))
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("usage: benchclient gen|check|sse|upload ... (see the source)");
        return ExitCode::from(2);
    };
    if cmd == "gen" {
        let [size, model, out] = rest else {
            eprintln!("gen SIZE MODEL OUT");
            return ExitCode::from(2);
        };
        let Ok(size) = size.parse::<usize>() else {
            eprintln!("gen: bad size {size:?}");
            return ExitCode::from(2);
        };
        return match std::fs::write(out, chat_body(size, model)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gen: {out}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(async {
        let run = async {
            match cmd.as_str() {
                "check" => check(rest).await,
                "sse" => sse(rest).await,
                "upload" => upload(rest).await,
                other => Err(bad(format!("unknown command {other:?}"))),
            }
        };
        tokio::time::timeout(LIMIT, run)
            .await
            .unwrap_or_else(|_| Ok(Err(format!("{cmd}: no answer within {LIMIT:?}"))))
    });
    match outcome {
        Ok(Ok(line)) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Ok(Err(wrong)) => {
            println!("WRONG: {wrong}");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}
