//! A fake LiteLLM: records each request's method, path, headers and decoded body (and
//! which connection it came on), and answers with a configurable reply. The default
//! reply echoes the received `model` the way LiteLLM does.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub connection: usize,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("gateway received valid JSON")
    }
}

/// What the fake gateway answers. With `chunks`, the body is sent chunked, one chunk
/// every `interval` (a slow stream); otherwise `body` with a Content-Length.
#[derive(Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunks: Vec<Vec<u8>>,
    pub interval: std::time::Duration,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            ..Reply::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn stream(
        content_type: &str,
        chunks: Vec<Vec<u8>>,
        interval: std::time::Duration,
    ) -> Reply {
        Reply {
            status: 200,
            headers: vec![
                ("content-type".into(), content_type.into()),
                ("transfer-encoding".into(), "chunked".into()),
            ],
            chunks,
            interval,
            ..Reply::default()
        }
    }
}

type Responder = dyn Fn(&Recorded) -> Reply + Send + Sync;

pub struct FakeGateway {
    pub addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    garbage: Arc<AtomicUsize>,
}

/// The `model` a request body carried, as the gateway saw it.
pub fn model_of(req: &Recorded) -> String {
    serde_json::from_slice::<serde_json::Value>(&req.body)
        .ok()
        .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_default()
}

fn echo(req: &Recorded) -> Reply {
    let body = serde_json::json!({"object": "chat.completion", "model": model_of(req)}).to_string();
    Reply::new(200, "application/json", body)
}

impl FakeGateway {
    pub fn start() -> FakeGateway {
        FakeGateway::with(Arc::new(echo))
    }

    pub fn with(responder: Arc<Responder>) -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake gateway");
        let addr = listener.local_addr().expect("addr");
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let rec = recorded.clone();
        let conns = Arc::new(AtomicUsize::new(0));
        let garbage = Arc::new(AtomicUsize::new(0));
        let bad = garbage.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (rec, responder, bad) = (rec.clone(), responder.clone(), bad.clone());
                let id = conns.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || serve(stream, id, rec, responder, bad));
            }
        });
        FakeGateway {
            addr,
            recorded,
            garbage,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("lock").clone()
    }

    /// Connections on which bytes arrived that do not start a request: what a body
    /// framed wrong leaves behind (a second chunked terminator, a body longer than its
    /// Content-Length).
    pub fn garbage(&self) -> usize {
        self.garbage.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the gateway received a request")
    }
}

fn serve(
    stream: TcpStream,
    id: usize,
    rec: Arc<Mutex<Vec<Recorded>>>,
    responder: Arc<Responder>,
    garbage: Arc<AtomicUsize>,
) {
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        match reader.fill_buf() {
            Ok([first, ..]) if !first.is_ascii_uppercase() => {
                garbage.fetch_add(1, Ordering::SeqCst);
                return;
            }
            _ => {}
        }
        let Some(req) = read_request(&mut reader, id) else {
            return;
        };
        rec.lock().expect("lock").push(req.clone());
        let reply = responder(&req);
        let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
        let mut has_len = false;
        for (k, v) in &reply.headers {
            has_len |= k.eq_ignore_ascii_case("content-length")
                || k.eq_ignore_ascii_case("transfer-encoding");
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !has_len {
            head.push_str(&format!("content-length: {}\r\n", reply.body.len()));
        }
        head.push_str("\r\n");
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&reply.body).is_err() {
            return;
        }
        for chunk in &reply.chunks {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
            if writer.write_all(&framed).is_err() {
                return;
            }
            thread::sleep(reply.interval);
        }
        if !reply.chunks.is_empty() && writer.write_all(b"0\r\n\r\n").is_err() {
            return;
        }
    }
}

/// Reads one request; `None` at end of connection.
pub fn read_request(reader: &mut impl BufRead, connection: usize) -> Option<Recorded> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let headers = read_headers(reader)?;
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(reader)?
    } else if let Some(len) = find("content-length") {
        let mut body = vec![0; len.trim().parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        body
    } else {
        Vec::new()
    };
    Some(Recorded {
        method,
        path,
        headers,
        body,
        connection,
    })
}

pub fn read_headers(reader: &mut impl BufRead) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Some(headers);
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
}

pub fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            // Trailers, then the blank line.
            read_headers(reader)?;
            return Some(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).ok()?;
    }
}
