//! SIGTERM drains: the real binary, as Kubernetes stops it. A slow server-sent-events
//! stream that is running when SIGTERM arrives reaches the client whole, new connections
//! are refused from then on, and the process exits 0 as soon as the stream is done (at
//! most `--shutdown-timeout` later).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::gateway::read_headers;
use common::proxy::free_port;
use common::{Client, FakeGateway, Framing, Reply};

const MAPPING: &str = "version: 1\naliases:\n  public: internal-sse\n";
const EVENTS: usize = 12;
const INTERVAL: Duration = Duration::from_millis(250);

/// The real `modelmap` binary, killed if a test fails before it exits.
struct Binary {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Binary {
    fn start(upstream: &str, shutdown_timeout: &str) -> Binary {
        let dir = tempfile::tempdir().expect("tempdir");
        let mapping = dir.path().join("mapping.yaml");
        std::fs::write(&mapping, MAPPING).expect("write mapping");
        let log = dir.path().join("modelmap.log");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let child = Command::new(env!("CARGO_BIN_EXE_modelmap"))
            .args(["--listen", &addr.to_string()])
            .args(["--admin", &admin.to_string()])
            .args(["--upstream", upstream])
            .arg("--mapping")
            .arg(&mapping)
            .args(["--shutdown-timeout", shutdown_timeout])
            .env_remove("MODELMAP_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start modelmap");
        let mut bin = Binary {
            child,
            addr,
            admin,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = TcpStream::connect(bin.admin).is_ok()
                && Client::connect(bin.admin)
                    .request("GET", "/readyz", &[], b"", Framing::Length)
                    .status
                    == 200;
            if ready && TcpStream::connect(bin.addr).is_ok() {
                return bin;
            }
            if let Ok(Some(status)) = bin.child.try_wait() {
                panic!("modelmap exited at start ({status}):\n{}", bin.logs());
            }
            assert!(
                Instant::now() < deadline,
                "modelmap did not become ready:\n{}",
                bin.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, at most `limit`.
    fn wait(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some((status, start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sse_event(i: usize) -> Vec<u8> {
    format!(
        "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"internal-sse\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"part {i}\"}}}}]}}\n\n"
    )
    .into_bytes()
}

/// A gateway that answers every POST with `events` events, one every `INTERVAL`.
fn slow_sse_gateway(events: usize) -> FakeGateway {
    FakeGateway::with(Arc::new(move |req| {
        if req.method == "GET" {
            return Reply::new(200, "application/json", "{}");
        }
        let mut chunks: Vec<Vec<u8>> = (0..events).map(sse_event).collect();
        chunks.push(b"data: [DONE]\n\n".to_vec());
        Reply::stream("text/event-stream", chunks, INTERVAL)
    }))
}

/// Starts a streaming request; the stream's pieces arrive on the returned channel, and
/// the thread's result is the response status.
fn start_stream(addr: SocketAddr) -> (mpsc::Receiver<Vec<u8>>, std::thread::JoinHandle<u16>) {
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        client.send(
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            br#"{"model":"public","stream":true}"#,
            Framing::Length,
        );
        client.read_streaming(|piece| {
            let _ = tx.send(piece.to_vec());
        })
    });
    (rx, reader)
}

fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

/// An idle keep-alive connection is closed by the server: reading it ends (EOF or reset)
/// without a response.
fn closed_without_response(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn sigterm_lets_a_slow_sse_stream_finish_then_exits_0() {
    let gw = slow_sse_gateway(EVENTS);
    let mut bin = Binary::start(&gw.url(), "20s");

    // A keep-alive connection that has finished one request and sits idle.
    let mut idle = TcpStream::connect(bin.addr).expect("connect");
    idle.write_all(b"GET /healthz-through-proxy HTTP/1.1\r\nhost: t\r\n\r\n")
        .expect("write");
    let mut idle_reader = BufReader::new(idle.try_clone().expect("clone"));
    let mut status_line = String::new();
    idle_reader.read_line(&mut status_line).expect("status");
    assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");
    let headers = read_headers(&mut idle_reader).expect("headers");
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .expect("a response with a length");
    let mut rest = vec![0; length];
    idle_reader.read_exact(&mut rest).expect("body");

    let (pieces, reader) = start_stream(bin.addr);
    let first = pieces
        .recv_timeout(Duration::from_secs(10))
        .expect("the stream starts");
    let sigterm_at = Instant::now();
    bin.sigterm();

    // The listener closes at once, while the stream goes on.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !refused(bin.addr) {
        assert!(
            Instant::now() < deadline,
            "new connections are still accepted after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        bin.child.try_wait().expect("wait").is_none(),
        "modelmap exited with a stream in flight:\n{}",
        bin.logs()
    );
    drop(idle_reader);
    assert!(
        closed_without_response(&mut idle),
        "an idle keep-alive connection is closed, not served again"
    );

    let mut body = first;
    while let Ok(piece) = pieces.recv_timeout(Duration::from_secs(10)) {
        body.extend_from_slice(&piece);
    }
    let status = reader.join().expect("the stream reads to its final chunk");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).expect("utf8");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(
        events.len(),
        EVENTS + 1,
        "every event arrives, then [DONE]:\n{text}"
    );
    for (i, event) in events[..EVENTS].iter().enumerate() {
        assert!(
            event.contains(&format!("\"content\":\"part {i}\"")),
            "event {i} in order: {event}"
        );
        assert!(
            event.contains("\"model\":\"public\""),
            "names are still restored while draining: {event}"
        );
    }
    assert_eq!(events[EVENTS], "data: [DONE]");
    let streamed_for = sigterm_at.elapsed();
    assert!(
        streamed_for >= INTERVAL * (EVENTS as u32 - 2),
        "the stream really outlived SIGTERM ({streamed_for:?})"
    );

    let (exit, after) = bin
        .wait(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("modelmap did not exit after draining:\n{}", bin.logs()));
    assert!(
        exit.success(),
        "exit status 0 after a drain, got {exit}:\n{}",
        bin.logs()
    );
    assert!(
        after < Duration::from_secs(2),
        "exits as soon as the stream has ended, not at the 20 s timeout (exited {after:?} after the stream)"
    );
    let logs = bin.logs();
    assert!(logs.contains("draining"), "the drain is logged:\n{logs}");
}

#[test]
fn sigterm_without_traffic_exits_0_at_once() {
    let gw = FakeGateway::start();
    let mut bin = Binary::start(&gw.url(), "30s");
    bin.sigterm();
    let (exit, took) = bin
        .wait(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("modelmap did not exit:\n{}", bin.logs()));
    assert!(exit.success(), "exit 0, got {exit}:\n{}", bin.logs());
    assert!(took < Duration::from_secs(3), "idle drain took {took:?}");
}

#[test]
fn a_stream_longer_than_the_shutdown_timeout_is_cut_at_the_timeout() {
    // 10 s of events: far longer than the timeout.
    let gw = slow_sse_gateway(40);
    let mut bin = Binary::start(&gw.url(), "1500ms");
    let (pieces, reader) = start_stream(bin.addr);
    pieces
        .recv_timeout(Duration::from_secs(10))
        .expect("the stream starts");
    let sigterm_at = Instant::now();
    bin.sigterm();
    let (exit, _) = bin
        .wait(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("modelmap did not exit at the timeout:\n{}", bin.logs()));
    let took = sigterm_at.elapsed();
    assert!(exit.success(), "exit 0, got {exit}:\n{}", bin.logs());
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "exits when the 1.5 s shutdown timeout runs out, took {took:?}:\n{}",
        bin.logs()
    );
    assert!(
        reader.join().is_err(),
        "the client sees the stream cut (no final chunk)"
    );
    let logs = bin.logs();
    assert!(
        logs.contains("requests still in flight"),
        "the cut requests are logged:\n{logs}"
    );
}

#[test]
fn a_second_signal_during_the_drain_stops_at_once() {
    let gw = slow_sse_gateway(40);
    let mut bin = Binary::start(&gw.url(), "30s");
    let (pieces, reader) = start_stream(bin.addr);
    pieces
        .recv_timeout(Duration::from_secs(10))
        .expect("the stream starts");
    bin.sigterm();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        bin.child.try_wait().expect("wait").is_none(),
        "still draining"
    );
    bin.sigterm();
    let started = Instant::now();
    let (exit, _) = bin
        .wait(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("a second SIGTERM did not stop modelmap:\n{}", bin.logs()));
    assert!(exit.success(), "exit 0, got {exit}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped at once, not after the stream"
    );
    assert!(reader.join().is_err(), "the stream was cut");
}
