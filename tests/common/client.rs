//! A raw HTTP/1.1 client over one keep-alive connection, so tests choose the exact
//! framing (Content-Length, or chunked with chosen chunk boundaries) of what they send.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::gateway::{read_chunked, read_headers};

pub enum Framing<'a> {
    Length,
    /// Chunked, cut at these byte offsets.
    Chunked(&'a [usize]),
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let _ = stream.set_nodelay(true);
        Client {
            writer: stream.try_clone().expect("clone"),
            reader: BufReader::new(stream),
        }
    }

    /// Sends a request with the given extra headers and body, returns the response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        framing: Framing<'_>,
    ) -> Response {
        self.send(method, path, headers, body, framing);
        self.read_response()
    }

    pub fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.request("POST", path, &h, body, Framing::Length)
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        framing: Framing<'_>,
    ) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: modelmap.test\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        match framing {
            Framing::Length => head.push_str(&format!("content-length: {}\r\n\r\n", body.len())),
            Framing::Chunked(_) => head.push_str("transfer-encoding: chunked\r\n\r\n"),
        }
        self.writer.write_all(head.as_bytes()).expect("write head");
        match framing {
            Framing::Length => self.writer.write_all(body).expect("write body"),
            Framing::Chunked(cuts) => {
                let mut last = 0;
                for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
                    let piece = &body[last..cut.min(body.len())];
                    if !piece.is_empty() {
                        self.writer
                            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                            .expect("chunk size");
                        self.writer.write_all(piece).expect("chunk");
                        self.writer.write_all(b"\r\n").expect("crlf");
                    }
                    last = cut.min(body.len());
                }
                self.writer.write_all(b"0\r\n\r\n").expect("last chunk");
            }
        }
    }

    /// Reads a response head, then the chunked body piece by piece, calling `each` with
    /// every piece as it arrives (for timing streams). Returns the status.
    pub fn read_streaming(&mut self, mut each: impl FnMut(&[u8])) -> u16 {
        let (status, _) = self.read_head();
        loop {
            let mut size = String::new();
            std::io::BufRead::read_line(&mut self.reader, &mut size).expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex size");
            let mut data = vec![0; size + 2];
            self.reader.read_exact(&mut data).expect("chunk");
            if size == 0 {
                return status;
            }
            each(&data[..size]);
        }
    }

    /// Reads the final response, skipping interim 1xx responses (100 Continue).
    pub fn read_response(&mut self) -> Response {
        loop {
            let resp = self.read_one();
            if !(100..200).contains(&resp.status) {
                return resp;
            }
        }
    }

    /// The status line and headers of the next response.
    fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.reader, &mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        (
            status,
            read_headers(&mut self.reader).expect("response headers"),
        )
    }

    fn read_one(&mut self) -> Response {
        let (status, headers) = self.read_head();
        let find = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let body = if (100..200).contains(&status) {
            Vec::new()
        } else if find("transfer-encoding").is_some() {
            read_chunked(&mut self.reader).expect("chunked response")
        } else if let Some(len) = find("content-length") {
            let mut body = vec![0; len.parse().expect("length")];
            self.reader.read_exact(&mut body).expect("response body");
            body
        } else {
            let mut body = Vec::new();
            let _ = self.reader.read_to_end(&mut body);
            body
        };
        Response {
            status,
            headers,
            body,
        }
    }
}
