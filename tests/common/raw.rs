//! Raw HTTP/1.1 peers for fault injection, on both sides of the proxy.
//!
//! `RawGateway` is a fake LiteLLM whose every connection runs a script the test writes
//! (answer early, close an idle pooled connection, answer `100 Continue`, ...), while it
//! counts the connections it accepted and every byte it received. `Conn` is a client
//! connection that writes exactly the bytes a test chooses and reads answers without
//! panicking, so a test can tell an answer from a reset, an EOF or a hang.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::client::Response;
use super::gateway::{Recorded, read_chunked, read_headers};

/// What a raw gateway has seen, over all its connections.
#[derive(Default)]
struct Tally {
    connections: AtomicUsize,
    bytes: AtomicUsize,
    requests: Mutex<Vec<Recorded>>,
}

/// Reads from the connection and counts every byte received.
struct Counted {
    stream: TcpStream,
    tally: Arc<Tally>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.tally.bytes.fetch_add(n, Ordering::SeqCst);
        Ok(n)
    }
}

/// A request line and headers, without the body.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length")?.trim().parse().ok()
    }
}

/// One connection accepted by a `RawGateway`, handed to the test's script.
pub struct Peer {
    /// 0 for the first connection the gateway accepted, then 1, 2, ...
    pub id: usize,
    reader: BufReader<Counted>,
    writer: TcpStream,
    tally: Arc<Tally>,
}

impl Peer {
    /// The next request head; `None` at the end of the connection (or on a reset, or
    /// after 30 s without one).
    pub fn read_head(&mut self) -> Option<Head> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next()?.to_string();
        let path = parts.next()?.to_string();
        let headers = read_headers(&mut self.reader)?;
        Some(Head {
            method,
            path,
            headers,
        })
    }

    /// The body `head` announces (Content-Length or chunked; none otherwise).
    pub fn read_body(&mut self, head: &Head) -> Option<Vec<u8>> {
        if head.chunked() {
            read_chunked(&mut self.reader)
        } else if let Some(len) = head.content_length() {
            let mut body = vec![0; len];
            self.reader.read_exact(&mut body).ok()?;
            Some(body)
        } else {
            Some(Vec::new())
        }
    }

    /// Reads a whole request and records it (see `RawGateway::requests`).
    pub fn read_request(&mut self) -> Option<Recorded> {
        let head = self.read_head()?;
        let body = self.read_body(&head)?;
        Some(self.record(head, body))
    }

    /// Records a request whose body the script read itself.
    pub fn record(&self, head: Head, body: Vec<u8>) -> Recorded {
        let req = Recorded {
            method: head.method,
            path: head.path,
            headers: head.headers,
            body,
            connection: self.id,
        };
        self.tally.requests.lock().expect("lock").push(req.clone());
        req
    }

    /// Answers with `body` and an exact Content-Length (keep-alive unless `headers`
    /// say otherwise).
    pub fn respond(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let mut head = format!("HTTP/1.1 {status} X\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        self.writer.write_all(&out)
    }

    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Whatever bytes have already arrived (at most one read, waiting at most `wait`).
    pub fn read_some(&mut self, wait: Duration) -> usize {
        let _ = self.writer.set_read_timeout(Some(wait));
        let got = match self.reader.fill_buf() {
            Ok(buf) => buf.len(),
            Err(_) => 0,
        };
        self.reader.consume(got);
        let _ = self.writer.set_read_timeout(Some(Duration::from_secs(30)));
        got
    }

    /// Waits up to `limit` for the proxy to close this connection: true on EOF or reset,
    /// false if it is still open or bytes arrived.
    pub fn closed_by_proxy_within(&mut self, limit: Duration) -> bool {
        let _ = self.writer.set_read_timeout(Some(limit));
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        }
    }

    /// Closes the connection now (FIN; a reset if unread bytes are pending).
    pub fn close(self) {
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}

/// A fake gateway driven by a per-connection script; counts connections and bytes.
pub struct RawGateway {
    pub addr: SocketAddr,
    tally: Arc<Tally>,
}

impl RawGateway {
    /// Runs `script` on a thread of its own for every accepted connection; the
    /// connection closes when the script returns (dropping the `Peer`).
    pub fn start(script: impl Fn(Peer) + Send + Sync + 'static) -> RawGateway {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind raw gateway");
        let addr = listener.local_addr().expect("addr");
        let tally = Arc::new(Tally::default());
        let shared = tally.clone();
        let script = Arc::new(script);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let id = shared.connections.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_nodelay(true);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let writer = stream.try_clone().expect("clone");
                let peer = Peer {
                    id,
                    reader: BufReader::new(Counted {
                        stream,
                        tally: shared.clone(),
                    }),
                    writer,
                    tally: shared.clone(),
                };
                let script = script.clone();
                thread::spawn(move || script(peer));
            }
        });
        RawGateway { addr, tally }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.tally.connections.load(Ordering::SeqCst)
    }

    /// Bytes received so far, over all connections.
    pub fn bytes(&self) -> usize {
        self.tally.bytes.load(Ordering::SeqCst)
    }

    /// Requests recorded by the scripts, in the order they were read.
    pub fn requests(&self) -> Vec<Recorded> {
        self.tally.requests.lock().expect("lock").clone()
    }
}

/// How a connection ended, seen from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// EOF, without a byte.
    Closed,
    /// A reset, without a byte.
    Reset,
    /// Bytes arrived instead.
    Data(Vec<u8>),
    /// Nothing happened within the limit.
    StillOpen,
}

/// A client connection to the proxy that fails softly: every read returns what happened.
pub struct Conn {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect to proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("write timeout");
        let _ = stream.set_nodelay(true);
        Conn {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            stream,
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Another handle on the socket, for a writer thread.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone")
    }

    pub fn set_read_timeout(&self, limit: Duration) {
        self.stream
            .set_read_timeout(Some(limit))
            .expect("read timeout");
    }

    /// The next response, interim (1xx) ones included.
    pub fn read_one(&mut self) -> io::Result<Response> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        let status: u16 = line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(&format!("bad status line {line:?}")))?;
        let headers = read_headers(&mut self.reader).ok_or_else(|| bad("bad response headers"))?;
        let find = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let body = if (100..200).contains(&status) || status == 204 || status == 304 {
            Vec::new()
        } else if find("transfer-encoding").is_some() {
            read_chunked(&mut self.reader).ok_or_else(|| bad("bad chunked response body"))?
        } else if let Some(len) = find("content-length") {
            let len: usize = len.trim().parse().map_err(|_| bad("bad content-length"))?;
            let mut body = vec![0; len];
            self.reader.read_exact(&mut body)?;
            body
        } else {
            let mut body = Vec::new();
            self.reader.read_to_end(&mut body)?;
            body
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// The final response, and the statuses of the interim ones before it.
    pub fn read_final(&mut self) -> io::Result<(Vec<u16>, Response)> {
        let mut interim = Vec::new();
        for _ in 0..10 {
            let resp = self.read_one()?;
            if !(100..200).contains(&resp.status) {
                return Ok((interim, resp));
            }
            interim.push(resp.status);
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than 10 interim responses: {interim:?}"),
        ))
    }

    /// Waits up to `limit` for the connection to end without another byte.
    pub fn end_within(&mut self, limit: Duration) -> End {
        self.set_read_timeout(limit);
        let mut buf = [0u8; 4096];
        let end = match self.reader.read(&mut buf) {
            Ok(0) => End::Closed,
            Ok(n) => End::Data(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => End::Reset,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                End::StillOpen
            }
            Err(_) => End::Reset,
        };
        self.set_read_timeout(Duration::from_secs(30));
        end
    }

    /// Everything the proxy sends until it closes the connection (or `limit` passes).
    pub fn read_until_closed(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.set_read_timeout(left.max(Duration::from_millis(1)));
            match self.reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
        self.set_read_timeout(Duration::from_secs(30));
        all
    }
}

/// A request head for the proxy, `host` included, ending in the blank line.
pub fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nhost: modelmap.test\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    text
}

/// `body` framed as chunks of `size` bytes, with the terminating chunk.
pub fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / size.max(1) * 10 + 5);
    for piece in body.chunks(size.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
