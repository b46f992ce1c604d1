//! Hostile input and faults: every case ends in a clear error or an untouched body,
//! never a panic, a corrupted or truncated body, or a lost request.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{FakeGateway, Proxy, Reply, key_digest, model_of};

const KEY: &str = "sk-hostile-team";

fn mapping() -> String {
    format!(
        "version: 1\nteams:\n  team-h:\n    models:\n      gpt-4.1: model_name_team-h_1\nkeys:\n  {}: team-h\n",
        key_digest(KEY)
    )
}

fn auth() -> String {
    format!("Bearer {KEY}")
}

fn setup(extra: &[&str]) -> (FakeGateway, Proxy) {
    let gw = FakeGateway::start();
    let proxy = Proxy::start(&gw.url(), &mapping(), extra);
    (gw, proxy)
}

/// The proxy still serves a normal request correctly.
fn still_serves(gw: &FakeGateway, proxy: &Proxy) {
    let resp = proxy.client().post(
        "/v1/chat/completions",
        &[("authorization", &auth())],
        br#"{"model":"gpt-4.1"}"#,
    );
    assert_eq!(resp.status, 200);
    assert_eq!(model_of(&gw.last()), "model_name_team-h_1");
}

/// Posts `body` with the guard on: modelmap cannot read it as the gateway would, so it
/// answers 400 `unreadable_request` itself and the gateway never gets the request whole.
fn refused_unreadable(body: &str, reason: &str) {
    let (gw, proxy) = setup(&[]);
    let before = gw.requests().len();
    let resp = proxy.client().post(
        "/v1/chat/completions",
        &[("authorization", &auth())],
        body.as_bytes(),
    );
    assert_eq!(resp.status, 400, "{reason}");
    assert_eq!(
        resp.json()["error"]["code"],
        "unreadable_request",
        "{reason}"
    );
    assert_eq!(
        gw.requests().len(),
        before,
        "{reason}: nothing reached the gateway"
    );
    let metrics = proxy.metrics();
    assert!(
        metrics.contains(&format!(
            "modelmap_unreadable_requests_total{{reason=\"{reason}\"}} 1"
        )),
        "{metrics}"
    );
    still_serves(&gw, &proxy);
}

/// Posts `body` with the guard off and asserts the gateway got it byte for byte.
fn passes_untouched_unguarded(body: &str, why: &str) {
    let (gw, proxy) = setup(&["--guard=false"]);
    let resp = proxy.client().post(
        "/v1/chat/completions",
        &[("authorization", &auth())],
        body.as_bytes(),
    );
    assert_eq!(resp.status, 200);
    assert!(gw.last().body == body.as_bytes(), "{why}");
    still_serves(&gw, &proxy);
}

#[test]
fn a_one_mib_model_value_is_refused_with_the_guard_and_passes_without() {
    let body = format!(r#"{{"model":"{}","messages":[]}}"#, "g".repeat(1024 * 1024));
    refused_unreadable(&body, "name_length");
    passes_untouched_unguarded(&body, "too long to look up: forwarded as sent");
}

#[test]
fn json_nested_100000_levels_deep_is_refused_with_the_guard_and_passes_without() {
    let depth = 100_000;
    let body = format!(
        r#"{{"x":{}{},"model":"gpt-4.1"}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    refused_unreadable(&body, "nesting");
    passes_untouched_unguarded(&body, "deeper than modelmap follows: untouched");
}

#[test]
fn duplicate_and_non_string_models_are_handled_like_the_gateway_reads_them() {
    let (gw, proxy) = setup(&[]);
    let cases: [(&str, &str); 5] = [
        // Python's json keeps the last duplicate; both are rewritten so whichever wins is mapped.
        (
            r#"{"model":"gpt-4.1","model":"gpt-4.1"}"#,
            r#"{"model":"model_name_team-h_1","model":"model_name_team-h_1"}"#,
        ),
        (r#"{"model":42}"#, r#"{"model":42}"#),
        (r#"{"model":null}"#, r#"{"model":null}"#),
        (
            r#"{"model":{"name":"gpt-4.1"}}"#,
            r#"{"model":{"name":"gpt-4.1"}}"#,
        ),
        // LiteLLM authorizes on every entry of a list.
        (
            r#"{"model":["gpt-4.1"]}"#,
            r#"{"model":["model_name_team-h_1"]}"#,
        ),
    ];
    for (body, expect) in cases {
        let resp = proxy.client().post(
            "/v1/chat/completions",
            &[("authorization", &auth())],
            body.as_bytes(),
        );
        assert_eq!(resp.status, 200, "{body}");
        assert_eq!(gw.last().body_str(), expect);
    }
}

#[test]
fn a_malformed_chunked_body_is_refused_and_never_forwarded_as_complete() {
    let (gw, proxy) = setup(&[]);
    let before = gw.requests().len();
    let mut stream = TcpStream::connect(proxy.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{{\"mod\r\nzz\r\nel\":\"gpt-4.1\"}}\r\n0\r\n\r\n",
        auth()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a bad chunk size is a client error: {answer}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        gw.requests().len(),
        before,
        "the gateway never saw a complete (truncated) request"
    );
    still_serves(&gw, &proxy);
}

#[test]
fn oversized_headers_are_refused_and_others_still_served() {
    let (gw, proxy) = setup(&[]);
    let mut stream = TcpStream::connect(proxy.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let huge = "a".repeat(2 * 1024 * 1024);
    let _ = stream.write_all(
        format!("GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: {huge}\r\n\r\n").as_bytes(),
    );
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    still_serves(&gw, &proxy);
}

#[test]
fn a_client_trickling_its_body_is_cut_off_and_others_are_unaffected() {
    let (gw, proxy) = setup(&["--client-body-timeout", "1s"]);
    let addr = proxy.addr;
    let slow = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let body = br#"{"model":"gpt-4.1","messages":[]}"#;
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("head");
        let start = Instant::now();
        for b in body {
            if stream.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
            if start.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        (
            String::from_utf8_lossy(&answer).into_owned(),
            start.elapsed(),
        )
    });
    // Meanwhile, normal clients go on as usual.
    let mut client = proxy.client();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(
            client
                .post(
                    "/v1/chat/completions",
                    &[("authorization", &auth())],
                    br#"{"model":"gpt-4.1"}"#
                )
                .status,
            200
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a slow client does not slow others"
        );
    }
    let (answer, took) = slow.join().expect("slow client");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(
        took < Duration::from_secs(5),
        "cut off by the deadline, took {took:?}"
    );
    assert!(
        !gw.requests()
            .iter()
            .any(|r| r.body.is_empty() && r.path == "/v1/chat/completions"),
        "no truncated body reached the gateway as complete"
    );
}

fn in_flight(proxy: &Proxy) -> i64 {
    proxy
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix("modelmap_requests_in_flight ")?.parse().ok())
        .expect("in-flight gauge")
}

fn eventually_idle(proxy: &Proxy) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight(proxy) != 0 {
        assert!(
            Instant::now() < deadline,
            "a request stayed in flight: leaked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn clients_that_disconnect_mid_body_or_mid_stream_leak_nothing() {
    let events: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("data: {{\"n\":{i}}}\n\n").into_bytes())
        .collect();
    let gw = FakeGateway::with(std::sync::Arc::new(move |req: &common::Recorded| {
        if req.path.contains("stream") {
            Reply::stream(
                "text/event-stream",
                events.clone(),
                Duration::from_millis(50),
            )
        } else {
            Reply::new(200, "application/json", "{}")
        }
    }));
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    // Mid-body: announce 1 MiB, send a little, hang up.
    {
        let mut stream = TcpStream::connect(proxy.addr).expect("connect");
        stream
            .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1048576\r\n\r\n{\"model\":\"gpt-4.1\",")
            .expect("write");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Mid-stream: read the first bytes and hang up while events are still coming.
    {
        let mut raw = TcpStream::connect(proxy.addr).expect("connect");
        let request = format!(
            "POST /v1/chat/stream HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-length: 33\r\n\r\n{{\"model\":\"gpt-4.1\",\"stream\":true}}",
            auth()
        );
        raw.write_all(request.as_bytes()).expect("write");
        let mut first = [0u8; 256];
        assert!(
            raw.read(&mut first).expect("first bytes") > 0,
            "the stream started"
        );
        assert!(in_flight(&proxy) >= 1, "the stream is in flight");
    }
    eventually_idle(&proxy);
    let metrics = proxy.metrics_after(2);
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("modelmap_upstream_responses_total{class=\"5xx\"}")),
        "a client hanging up is not a gateway failure"
    );
    let errors: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("modelmap_requests_total") && l.contains("outcome=\"error\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        errors, 0.0,
        "client disconnects are not counted as errors:\n{metrics}"
    );
}

/// A raw upstream that answers each connection with `reply` (then closes), after `delay`.
fn raw_upstream(reply: &'static [u8], delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let _ = stream.read(&mut buf);
                std::thread::sleep(delay);
                let _ = stream.write_all(reply);
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_slow_gateway_times_out_as_configured_with_a_504() {
    let upstream = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
        Duration::from_secs(3),
    );
    let proxy = Proxy::start(&upstream, &mapping(), &["--read-timeout", "500ms"]);
    let started = Instant::now();
    let resp = proxy.client().post(
        "/v1/chat/completions",
        &[("authorization", &auth())],
        br#"{"model":"gpt-4.1"}"#,
    );
    assert_eq!(resp.status, 504);
    assert_eq!(resp.json()["error"]["code"], "gateway_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timed out after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_gateway_closing_mid_response_never_looks_complete_to_the_client() {
    let upstream = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"model\":\"model_name_team-h_1\",\"x\":\"",
        Duration::ZERO,
    );
    let proxy = Proxy::start(&upstream, &mapping(), &[]);
    let mut stream = TcpStream::connect(proxy.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let body = br#"{"model":"gpt-4.1"}"#;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-length: {}\r\n\r\n",
        auth(),
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(body).expect("body");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let complete_chunked =
        text.contains("transfer-encoding: chunked") && text.ends_with("0\r\n\r\n");
    assert!(
        !complete_chunked,
        "a cut response was closed as if complete:\n{text}"
    );
    if let Some(len) = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        let body_len = text.split("\r\n\r\n").nth(1).map_or(0, str::len);
        assert!(
            body_len < len.trim().parse::<usize>().unwrap_or(0),
            "{text}"
        );
    }
    assert!(
        !text.contains("model_name_team-h_1"),
        "even a cut response is restored: {text}"
    );
}

#[test]
fn a_deleted_or_unreadable_mapping_keeps_the_last_one_and_stays_ready() {
    let (gw, proxy) = setup(&[]);
    let path = proxy.mapping_path();
    let failures = |p: &Proxy| {
        p.metrics()
            .lines()
            .find_map(|l| {
                l.strip_prefix("modelmap_mapping_reloads_total{result=\"failure\"} ")?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    std::fs::remove_file(&path).expect("delete");
    let deadline = Instant::now() + Duration::from_secs(10);
    while failures(&proxy) < 1.0 {
        assert!(Instant::now() < deadline, "deletion not noticed");
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(
        proxy.admin_get("/readyz").status,
        200,
        "still ready with the last mapping"
    );
    still_serves(&gw, &proxy);
    // Unreadable: a directory where the file should be (root ignores permission bits).
    std::fs::create_dir(&path).expect("dir in its place");
    let before = failures(&proxy);
    std::fs::write(proxy.dir.path().join("touch"), "x").expect("touch");
    while failures(&proxy) <= before {
        assert!(Instant::now() < deadline, "unreadable file not noticed");
        std::thread::sleep(Duration::from_millis(25));
    }
    still_serves(&gw, &proxy);
    assert_eq!(proxy.admin_get("/readyz").status, 200);
}
