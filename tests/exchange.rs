//! The HTTP/1.1 exchange itself, as a client and the gateway see it on the wire: the
//! request-head deadline and size limit, idle keep-alive, the connection cap, a refused
//! streamed body that never reaches the gateway, early gateway answers during an upload,
//! dead pooled connections, upstream reuse, pipelining, websockets under CPU load,
//! `Expect: 100-continue` and hop-by-hop headers.

mod common;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::raw::{Conn, End, Peer, RawGateway, chunked, head};
use common::team_e::{
    FOREIGN, OWN, auth, big_body, chat, completion, mapping, serve, still_serves,
};
use common::{FakeGateway, Proxy, Recorded, Reply, Response, model_of};

/// The sum of a metric's samples (all label sets), if the metric is there.
fn metric(proxy: &Proxy, name: &str) -> Option<f64> {
    let text = proxy.metrics();
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Polls `metric` until it equals `want` (at most 10 s); returns the last value seen.
fn metric_settles(proxy: &Proxy, name: &str, want: f64) -> Option<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = metric(proxy, name);
        if got == Some(want) || Instant::now() > deadline {
            return got;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// modelmap's own error answer: the status, the OpenAI error shape with `code`, and
/// `Connection: close`.
fn assert_own_error(resp: &Response, status: u16, code: &str) {
    assert_eq!(
        resp.status,
        status,
        "expected {status} {code}, got {} {}",
        resp.status,
        String::from_utf8_lossy(&resp.body)
    );
    let err = resp.json();
    assert_eq!(err["error"]["code"], code, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "a message says what happened: {err}"
    );
    assert!(err["error"]["type"].is_string(), "{err}");
    assert!(
        err["error"].get("param").is_some(),
        "the OpenAI shape has param: {err}"
    );
    assert!(
        resp.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close")),
        "{status} {code} says Connection: close: {:?}",
        resp.headers
    );
}

fn assert_ends(conn: &mut Conn, what: &str) {
    let end = conn.end_within(Duration::from_secs(5));
    assert!(
        matches!(end, End::Closed | End::Reset),
        "{what}: the connection closes after the answer, got {end:?}"
    );
}

// ---- the request head ------------------------------------------------------------------

#[test]
fn a_request_head_trickled_a_byte_at_a_time_gets_a_408_at_the_head_deadline() {
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(&gw.url(), &mapping(), &["--head-timeout", "1s"]);
    let mut conn = Conn::connect(proxy.addr);
    let mut writer = conn.writer();
    let text = head(
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth()), ("x-padding", &"p".repeat(60))],
    );
    let started = Instant::now();
    let trickle = thread::spawn(move || {
        for byte in text.bytes() {
            if started.elapsed() > Duration::from_secs(8) || writer.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    let mut others = proxy.client();
    for _ in 0..3 {
        let resp = others.post(
            "/v1/chat/completions",
            &[("authorization", &auth())],
            br#"{"model":"gpt-4.1"}"#,
        );
        assert_eq!(resp.status, 200, "a trickling client does not stall others");
    }
    conn.set_read_timeout(Duration::from_secs(10));
    let resp = conn
        .read_one()
        .expect("the trickling client gets an answer, not silence");
    let took = started.elapsed();
    assert_own_error(&resp, 408, "request_timeout");
    assert_ends(&mut conn, "408");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "cut off at the 1 s head deadline, not per byte: took {took:?}"
    );
    trickle.join().expect("trickle thread");
    assert_eq!(
        gw.requests().len(),
        3,
        "only the other client's requests reached the gateway"
    );
}

#[test]
fn the_head_deadline_counts_from_the_first_byte_and_spares_a_slow_but_timely_head() {
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(
        &gw.url(),
        &mapping(),
        &["--head-timeout", "1s", "--keepalive-timeout", "30s"],
    );
    let mut conn = Conn::connect(proxy.addr);
    thread::sleep(Duration::from_millis(1600));
    conn.write(&chat("gpt-4.1", &[]))
        .expect("a connection idle past the head timeout is still open");
    let (_, resp) = conn
        .read_final()
        .expect("a head sent 1.6 s after connecting is served");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));

    thread::sleep(Duration::from_millis(1600));
    let request = chat("gpt-4.1", &[]);
    for piece in request.chunks(request.len() / 4 + 1) {
        conn.write(piece).expect("write piece");
        thread::sleep(Duration::from_millis(150));
    }
    let (_, resp) = conn
        .read_final()
        .expect("a head sent in pieces within the deadline is served");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["model"], "gpt-4.1");
    let got = gw.requests();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter().all(|r| model_of(r) == OWN),
        "both requests rewritten"
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_silently_after_the_keepalive_timeout() {
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(&gw.url(), &mapping(), &["--keepalive-timeout", "2s"]);
    let mut conn = Conn::connect(proxy.addr);
    conn.write(&chat("gpt-4.1", &[])).expect("write");
    assert_eq!(conn.read_final().expect("answer").1.status, 200);
    thread::sleep(Duration::from_millis(800));
    conn.write(&chat("gpt-4.1", &[]))
        .expect("still open after 0.8 s idle");
    assert_eq!(
        conn.read_final()
            .expect("a connection idle less than the timeout is served")
            .1
            .status,
        200
    );
    let idle_since = Instant::now();
    let end = conn.end_within(Duration::from_secs(10));
    let after = idle_since.elapsed();
    assert!(
        matches!(end, End::Closed | End::Reset),
        "an idle connection is closed without an answer (no 408), got {end:?}"
    );
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(8),
        "closed at the 2 s keep-alive timeout, after {after:?}"
    );
}

#[test]
fn a_request_head_over_64_kib_gets_a_431_and_one_under_it_is_served() {
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let pad = "h".repeat(1000);
    let padded = |n: usize, path: &str| {
        let names: Vec<String> = (0..n).map(|i| format!("x-pad-{i:02}")).collect();
        let headers: Vec<(&str, &str)> = names.iter().map(|k| (k.as_str(), pad.as_str())).collect();
        head("GET", path, &headers)
    };

    let under = padded(60, "/v1/models?under");
    assert!(under.len() < 64 * 1024 - 100, "{} bytes", under.len());
    let mut conn = Conn::connect(proxy.addr);
    conn.write(under.as_bytes()).expect("write");
    let (_, resp) = conn.read_final().expect("a 60 KiB head is answered");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let got = gw
        .requests()
        .pop()
        .expect("the gateway got the 60 KiB head");
    assert_eq!(
        got.header("x-pad-59"),
        Some(pad.as_str()),
        "every header arrives"
    );

    let over = padded(70, "/v1/models?over");
    assert!(over.len() > 64 * 1024, "{} bytes", over.len());
    let mut conn = Conn::connect(proxy.addr);
    let _ = conn.write(over.as_bytes());
    conn.set_read_timeout(Duration::from_secs(10));
    let resp = conn
        .read_one()
        .expect("a 70 KiB head gets an answer, not a bare close");
    assert_own_error(&resp, 431, "request_header_too_large");
    assert_ends(&mut conn, "431");
    assert!(
        !gw.requests().iter().any(|r| r.path.ends_with("over")),
        "the oversized head never reached the gateway"
    );
    still_serves(&proxy);
}

// ---- the connection cap ----------------------------------------------------------------

#[test]
fn past_max_connections_a_new_connection_gets_a_503_at_once_and_a_metric_counts_it() {
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(&gw.url(), &mapping(), &["--max-connections", "4"]);
    // Proxy::start's own probe connections may not have been noticed closed yet.
    metric_settles(&proxy, "modelmap_connections_open", 0.0);
    let mut held: Vec<Conn> = (0..4)
        .map(|i| {
            let mut conn = Conn::connect(proxy.addr);
            conn.write(&chat("gpt-4.1", &[])).expect("write");
            let (_, resp) = conn
                .read_final()
                .unwrap_or_else(|e| panic!("connection {i} of 4 is served: {e}"));
            assert_eq!(resp.status, 200, "connection {i} of 4");
            conn
        })
        .collect();
    assert_eq!(
        metric_settles(&proxy, "modelmap_connections_open", 4.0),
        Some(4.0),
        "the gauge counts the 4 open connections"
    );

    let started = Instant::now();
    let mut extra = Conn::connect(proxy.addr);
    extra.set_read_timeout(Duration::from_secs(5));
    let resp = extra
        .read_one()
        .expect("the 5th connection is answered without sending a request");
    assert_own_error(&resp, 503, "too_many_connections");
    assert_ends(&mut extra, "503");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused at once, took {:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(&proxy, "modelmap_connections_refused_total"),
        Some(1.0),
        "the refusal is counted"
    );
    assert_eq!(
        metric(&proxy, "modelmap_connections_open"),
        Some(4.0),
        "a refused connection is not counted as open"
    );

    held[0].write(&chat("gpt-4.1", &[])).expect("write");
    assert_eq!(
        held[0]
            .read_final()
            .expect("open connections are unaffected")
            .1
            .status,
        200
    );

    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = Conn::connect(proxy.addr);
        let served = conn.write(&chat("gpt-4.1", &[])).is_ok()
            && conn.read_final().is_ok_and(|(_, r)| r.status == 200);
        if served {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed connection frees its place for a new one"
        );
        thread::sleep(Duration::from_millis(100));
    }
    drop(held);
    assert_eq!(
        metric_settles(&proxy, "modelmap_connections_open", 0.0),
        Some(0.0),
        "every closed connection leaves the gauge"
    );
}

// ---- the request body ------------------------------------------------------------------

/// An answer that came while the client was uploading.
struct Answered {
    conn: Conn,
    resp: Response,
    /// The answer was complete before the client had written its whole request.
    before_upload_end: bool,
}

/// Sends `request` from a thread of its own, in 64 KiB pieces `pace` apart (a refusal
/// or an early answer may come before it is all written), and returns the answer; the
/// upload must not stall.
fn answer_while_sending(proxy: &Proxy, request: Vec<u8>, pace: Duration) -> Answered {
    let mut conn = Conn::connect(proxy.addr);
    let mut writer = conn.writer();
    let sending = thread::spawn(move || {
        for piece in request.chunks(64 * 1024) {
            writer.write_all(piece).map_err(|e| e.kind())?;
            thread::sleep(pace);
        }
        Ok(Instant::now())
    });
    let answer = conn.read_final();
    let answered_at = Instant::now();
    let sent = sending.join().expect("writer thread");
    assert!(
        !matches!(sent, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the upload stalled: modelmap neither read the rest nor closed"
    );
    let (_, resp) = answer.expect("an answer while the body is being sent");
    Answered {
        conn,
        resp,
        before_upload_end: sent.map_or(true, |done| answered_at < done),
    }
}

#[test]
fn a_refused_streamed_body_sends_nothing_to_the_gateway() {
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let auth = auth();
    let chunked_head = head(
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("transfer-encoding", "chunked"),
        ],
    );
    let length_head = |len: usize| {
        head(
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("content-length", &len.to_string()),
            ],
        )
    };
    let mib = big_body(FOREIGN, 1024 * 1024);
    let late = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}],"model":"{FOREIGN}","user":"{}"}}"#,
        "x".repeat(60 * 1024),
        "u".repeat(1024 * 1024)
    )
    .into_bytes();
    let small = big_body(FOREIGN, 1024);
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "1 KiB chunked",
            [chunked_head.as_bytes(), &chunked(&small, 300)].concat(),
        ),
        (
            "1 MiB chunked",
            [chunked_head.as_bytes(), &chunked(&mib, 16 * 1024)].concat(),
        ),
        (
            "1 MiB with a Content-Length",
            [length_head(mib.len()).as_bytes(), &mib].concat(),
        ),
        (
            "1 MiB chunked, the name ending 60 KiB in",
            [chunked_head.as_bytes(), &chunked(&late, 8 * 1024)].concat(),
        ),
    ];
    for (case, request) in cases {
        let resp = answer_while_sending(&proxy, request, Duration::ZERO).resp;
        assert_eq!(
            resp.status,
            403,
            "{case}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(
            resp.json()["error"]["code"],
            "team_model_access_denied",
            "{case}"
        );
        thread::sleep(Duration::from_millis(300));
        assert_eq!(
            (gw.connections(), gw.bytes()),
            (0, 0),
            "{case}: the gateway saw no connection and no byte (connections, bytes)"
        );
    }
    still_serves(&proxy);
    assert_eq!(
        gw.connections(),
        1,
        "an allowed request does reach the gateway"
    );
}

/// The gateway answers uploads marked `x-early` before reading their bodies: `413-close`
/// answers 413 and closes at once; `401-drain` answers 401, then reads the whole body and
/// keeps the connection. Other requests are served normally.
fn answers_early(mut peer: Peer) {
    while let Some(head) = peer.read_head() {
        match head.header("x-early").map(str::to_string).as_deref() {
            Some("413-close") => {
                let body = br#"{"error":{"message":"Request body too large","type":"invalid_request_error","param":null,"code":"413"}}"#;
                let _ = peer.respond(
                    413,
                    &[
                        ("content-type", "application/json"),
                        ("connection", "close"),
                    ],
                    body,
                );
                return;
            }
            Some("401-drain") => {
                let body = br#"{"error":{"message":"Authentication Error, invalid key","type":"auth_error","param":"None","code":"401"}}"#;
                if peer
                    .respond(401, &[("content-type", "application/json")], body)
                    .is_err()
                {
                    return;
                }
                let Some(body) = peer.read_body(&head) else {
                    return;
                };
                peer.record(head, body);
            }
            _ => {
                let Some(body) = peer.read_body(&head) else {
                    return;
                };
                let req = peer.record(head, body);
                let reply = completion(&req);
                if peer
                    .respond(200, &[("content-type", "application/json")], &reply)
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

#[test]
fn an_early_gateway_answer_during_a_streaming_upload_reaches_the_client_and_ends_cleanly() {
    let gw = RawGateway::start(answers_early);
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let body = big_body("gpt-4.1", 8 * 1024 * 1024);
    let auth = auth();
    for (early, status, code) in [("413-close", 413, "413"), ("401-drain", 401, "401")] {
        for chunk in [false, true] {
            let case = format!(
                "{status} during an 8 MiB {} upload",
                if chunk { "chunked" } else { "Content-Length" }
            );
            let len = body.len().to_string();
            let framing = if chunk {
                ("transfer-encoding", "chunked")
            } else {
                ("content-length", len.as_str())
            };
            let request_head = head(
                "POST",
                "/v1/chat/completions",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("x-early", early),
                    framing,
                ],
            );
            let framed = if chunk {
                chunked(&body, 64 * 1024)
            } else {
                body.clone()
            };
            let started = Instant::now();
            // About 0.7 s of upload at least: an answer relayed at once beats its end.
            let Answered {
                mut conn,
                resp,
                before_upload_end,
            } = answer_while_sending(
                &proxy,
                [request_head.as_bytes(), &framed].concat(),
                Duration::from_millis(5),
            );
            assert_eq!(
                resp.status,
                status,
                "{case}: the gateway's answer, not a 502: {}",
                String::from_utf8_lossy(&resp.body)
            );
            assert_eq!(
                resp.json()["error"]["code"],
                code,
                "{case}: the gateway's body"
            );
            assert!(
                before_upload_end,
                "{case}: the answer is relayed as it comes, not after the client's upload"
            );
            // Ends cleanly: the connection is closed, or it serves the next request.
            match conn.end_within(Duration::from_secs(2)) {
                End::Closed | End::Reset => {}
                End::StillOpen => {
                    conn.write(&chat("gpt-4.1", &[]))
                        .unwrap_or_else(|e| panic!("{case}: {e}"));
                    let next = conn.read_final().unwrap_or_else(|e| {
                        panic!("{case}: a connection left open serves the next request: {e}")
                    });
                    assert_eq!(next.1.status, 200, "{case}: the next request");
                }
                End::Data(bytes) => panic!(
                    "{case}: unexpected bytes after the answer: {}",
                    String::from_utf8_lossy(&bytes)
                ),
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{case}: took {:?}",
                started.elapsed()
            );
        }
    }
    still_serves(&proxy);
}

// ---- the upstream connection -----------------------------------------------------------

/// Requests alternating a rewritten POST and a bodiless GET, on one client connection;
/// each must be answered 200 with the caller's name restored.
fn sequential_requests(proxy: &Proxy, n: usize, pause: Duration) {
    let mut conn = Conn::connect(proxy.addr);
    let auth = auth();
    for i in 0..n {
        thread::sleep(pause);
        let request = if i % 2 == 0 {
            chat("gpt-4.1", &[])
        } else {
            head("GET", "/v1/models", &[("authorization", &auth)]).into_bytes()
        };
        conn.write(&request).expect("write");
        let (_, resp) = conn
            .read_final()
            .unwrap_or_else(|e| panic!("request {i} is answered: {e}"));
        assert_eq!(
            resp.status,
            200,
            "request {i}: the normal answer, not a 502: {}",
            String::from_utf8_lossy(&resp.body)
        );
        if i % 2 == 0 {
            assert_eq!(resp.json()["model"], "gpt-4.1", "request {i}");
        }
    }
}

#[test]
fn a_pooled_connection_the_gateway_closed_is_retried_on_a_fresh_one() {
    // The gateway's keep-alive timer fires just as modelmap reuses the connection: it
    // reads the next request and closes without an answer.
    let reused = Arc::new(AtomicUsize::new(0));
    let seen = reused.clone();
    let gw = RawGateway::start(move |mut peer| {
        let Some(req) = peer.read_request() else {
            return;
        };
        let body = completion(&req);
        if peer
            .respond(200, &[("content-type", "application/json")], &body)
            .is_err()
        {
            return;
        }
        if peer.read_some(Duration::from_secs(30)) > 0 {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    sequential_requests(&proxy, 6, Duration::from_millis(50));
    assert!(
        reused.load(Ordering::SeqCst) >= 1,
        "modelmap reused a pooled connection (the fault was injected)"
    );
    let served = gw.requests();
    assert_eq!(
        served.len(),
        6,
        "each request reached the gateway whole exactly once"
    );
    assert!(
        served
            .iter()
            .filter(|r| r.method == "POST")
            .all(|r| model_of(r) == OWN),
        "retried requests are rewritten too"
    );

    // The gateway closes every connection 150 ms after its answer, while it idles in
    // modelmap's pool.
    let gw = RawGateway::start(|mut peer| {
        let Some(req) = peer.read_request() else {
            return;
        };
        let body = completion(&req);
        let _ = peer.respond(200, &[("content-type", "application/json")], &body);
        thread::sleep(Duration::from_millis(150));
        peer.close();
    });
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    sequential_requests(&proxy, 6, Duration::from_millis(500));
    assert_eq!(gw.requests().len(), 6, "each request served once");
}

#[test]
fn a_retry_that_fails_too_is_a_502_after_one_fresh_attempt() {
    // The first connection answers once, then dies on reuse; every later one dies on its
    // first request.
    let gw = RawGateway::start(|mut peer| {
        if peer.id == 0 {
            let Some(req) = peer.read_request() else {
                return;
            };
            let body = completion(&req);
            let _ = peer.respond(200, &[("content-type", "application/json")], &body);
        }
        let _ = peer.read_head();
    });
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let mut conn = Conn::connect(proxy.addr);
    conn.write(&chat("gpt-4.1", &[])).expect("write");
    assert_eq!(conn.read_final().expect("first answer").1.status, 200);
    let started = Instant::now();
    conn.write(&chat("gpt-4.1", &[])).expect("write");
    let (_, resp) = conn
        .read_final()
        .expect("a request whose retry fails is answered");
    assert_eq!(resp.status, 502, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["error"]["code"], "bad_gateway");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered promptly, took {:?}",
        started.elapsed()
    );
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        gw.connections(),
        2,
        "the dead pooled connection, then exactly one fresh attempt"
    );
}

#[test]
fn sequential_requests_reuse_one_upstream_connection() {
    let gw = FakeGateway::start();
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let auth = auth();
    let mut client = proxy.client();
    for i in 0..10 {
        let resp = client.post(
            "/v1/chat/completions",
            &[("authorization", &auth)],
            format!(r#"{{"model":"gpt-4.1","n":{i}}}"#).as_bytes(),
        );
        assert_eq!(resp.status, 200, "request {i} on one client connection");
    }
    for i in 0..5 {
        let resp = proxy.client().post(
            "/v1/chat/completions",
            &[("authorization", &auth)],
            format!(r#"{{"model":"gpt-4.1","n":{i}}}"#).as_bytes(),
        );
        assert_eq!(resp.status, 200, "request on new client connection {i}");
    }
    let resp = proxy.client().post(
        "/v1/chat/completions",
        &[("authorization", &auth), ("connection", "close")],
        br#"{"model":"gpt-4.1"}"#,
    );
    assert_eq!(resp.status, 200);
    let resp = proxy.client().post(
        "/v1/chat/completions",
        &[("authorization", &auth)],
        br#"{"model":"gpt-4.1"}"#,
    );
    assert_eq!(resp.status, 200);
    let requests = gw.requests();
    assert_eq!(requests.len(), 17);
    let connections: std::collections::BTreeSet<usize> =
        requests.iter().map(|r| r.connection).collect();
    assert_eq!(
        connections.len(),
        1,
        "17 sequential requests (one with the client's Connection: close) on one upstream connection: {connections:?}"
    );
}

// ---- pipelining ------------------------------------------------------------------------

#[test]
fn pipelined_requests_are_answered_in_order_each_rewritten() {
    let gw = FakeGateway::with(Arc::new(|req: &Recorded| {
        let seq = req.header("x-seq").unwrap_or("?").to_string();
        let body = if req.method == "GET" {
            serde_json::json!({"object": "list", "seq": seq})
        } else {
            serde_json::json!({"object": "chat.completion", "model": model_of(req), "seq": seq})
        };
        Reply::new(200, "application/json", body.to_string())
    }));
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let auth = auth();
    let post = |seq: &str, body: &[u8]| {
        let len = body.len().to_string();
        [
            head(
                "POST",
                "/v1/chat/completions",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("x-seq", seq),
                    ("content-length", &len),
                ],
            )
            .as_bytes(),
            body,
        ]
        .concat()
    };
    let requested = ["gpt-4.1", "", "gpt-4.1", "unmapped", "gpt-4.1", "gpt-4.1"];
    let mut all = Vec::new();
    all.extend(post("0", br#"{"model":"gpt-4.1","n":0}"#));
    all.extend(
        head(
            "GET",
            "/v1/models",
            &[("authorization", &auth), ("x-seq", "1")],
        )
        .as_bytes(),
    );
    all.extend(
        head(
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("x-seq", "2"),
                ("transfer-encoding", "chunked"),
            ],
        )
        .as_bytes(),
    );
    all.extend(chunked(br#"{"model":"gpt-4.1","n":2}"#, 7));
    all.extend(post("3", br#"{"model":"unmapped","n":3}"#));
    all.extend(post("4", &big_body("gpt-4.1", 100 * 1024)));
    all.extend(post("5", br#"{"model":"gpt-4.1","n":5}"#));

    let mut conn = Conn::connect(proxy.addr);
    conn.write(&all).expect("six requests in one write");
    for (i, model) in requested.iter().enumerate() {
        let (_, resp) = conn
            .read_final()
            .unwrap_or_else(|e| panic!("pipelined request {i} is answered: {e}"));
        assert_eq!(
            resp.status,
            200,
            "pipelined request {i}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let json = resp.json();
        assert_eq!(json["seq"], i.to_string(), "answers come in request order");
        if !model.is_empty() {
            assert_eq!(
                json["model"], *model,
                "request {i}: the caller's name restored"
            );
        }
    }
    let got: Vec<(String, String)> = gw
        .requests()
        .iter()
        .map(|r| (r.header("x-seq").unwrap_or("?").to_string(), model_of(r)))
        .collect();
    let expect: Vec<(String, String)> = requested
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let sent = match *m {
                "gpt-4.1" => OWN,
                other => other,
            };
            (i.to_string(), sent.to_string())
        })
        .collect();
    assert_eq!(
        got, expect,
        "the gateway got each request once, in order, rewritten"
    );
    conn.write(&chat("gpt-4.1", &[])).expect("write");
    assert_eq!(
        conn.read_final()
            .expect("the connection goes on after the pipeline")
            .1
            .status,
        200
    );
}

// ---- websockets ------------------------------------------------------------------------

/// A realtime gateway: it greets each session at once (as OpenAI's realtime API sends
/// `session.created`), then echoes every message; a text "close-please" makes it close
/// the session itself. Each handshake's URI is sent on `uris`; `closed_by_client` counts
/// sessions that ended with the client's close frame.
struct Realtime {
    addr: SocketAddr,
    uris: Mutex<mpsc::Receiver<String>>,
    closed_by_client: Arc<AtomicUsize>,
}

fn realtime_gateway() -> Realtime {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    let closed_by_client = Arc::new(AtomicUsize::new(0));
    let closed = closed_by_client.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
            let (tx, closed) = (tx.clone(), closed.clone());
            thread::spawn(move || {
                #[allow(clippy::result_large_err)] // the shape tungstenite's callback requires
                let record = |req: &tungstenite::handshake::server::Request, resp| {
                    let _ = tx.send(req.uri().to_string());
                    Ok(resp)
                };
                let Ok(mut ws) = tungstenite::accept_hdr(stream, record) else {
                    return;
                };
                if ws
                    .send(tungstenite::Message::text(r#"{"type":"session.created"}"#))
                    .is_err()
                {
                    return;
                }
                for _ in 0..10_000 {
                    match ws.read() {
                        Ok(msg) if msg.is_close() => {
                            closed.fetch_add(1, Ordering::SeqCst);
                            let _ = ws.flush();
                            return;
                        }
                        Ok(msg) if msg.to_text().is_ok_and(|t| t == "close-please") => {
                            let _ = ws.close(None);
                            for _ in 0..10 {
                                if ws.read().is_err() {
                                    break;
                                }
                            }
                            return;
                        }
                        Ok(msg) => {
                            if ws.send(msg).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            });
        }
    });
    Realtime {
        addr,
        uris: Mutex::new(rx),
        closed_by_client,
    }
}

type Ws = tungstenite::WebSocket<TcpStream>;

fn ws_connect(proxy: &Proxy) -> Result<Ws, String> {
    let stream = TcpStream::connect_timeout(&proxy.addr, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(20)));
    let _ = stream.set_nodelay(true);
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/v1/realtime?model=gpt-4o-realtime",
        proxy.addr
    ))
    .map_err(|e| e.to_string())?;
    request
        .headers_mut()
        .insert("authorization", auth().parse().expect("header"));
    let (ws, resp) = tungstenite::client(request, stream).map_err(|e| format!("handshake: {e}"))?;
    if resp.status() != 101 {
        return Err(format!("handshake answered {}", resp.status()));
    }
    Ok(ws)
}

fn ws_read_text(ws: &mut Ws) -> Result<String, String> {
    for _ in 0..10 {
        match ws.read().map_err(|e| format!("read: {e}"))? {
            tungstenite::Message::Text(t) => return Ok(t.as_str().to_string()),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => return Err(format!("expected text, got {other:?}")),
        }
    }
    Err("only pings".into())
}

/// One realtime session: the client's first frame goes right after the 101 (where
/// pingora-proxy's upgrade race reset sessions), a greeting and echoes come back, then
/// the client closes and the close handshake completes.
fn ws_session(proxy: &Proxy, n: usize) -> Result<(), String> {
    let mut ws = ws_connect(proxy)?;
    let first = format!(r#"{{"type":"session.update","session":{n}}}"#);
    ws.send(tungstenite::Message::text(first.clone()))
        .map_err(|e| format!("first frame: {e}"))?;
    let greeting = ws_read_text(&mut ws)?;
    if !greeting.contains("session.created") {
        return Err(format!("greeting: {greeting}"));
    }
    let mut expect = vec![first];
    for i in 0..2 {
        let text = format!(r#"{{"type":"input_audio_buffer.append","session":{n},"i":{i}}}"#);
        ws.send(tungstenite::Message::text(text.clone()))
            .map_err(|e| format!("frame {i}: {e}"))?;
        expect.push(text);
    }
    for want in expect {
        let got = ws_read_text(&mut ws)?;
        if got != want {
            return Err(format!("echo {got} instead of {want}"));
        }
    }
    ws.close(None).map_err(|e| format!("close: {e}"))?;
    for _ in 0..10 {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(());
            }
            Err(e) => return Err(format!("closing: {e}")),
        }
    }
    Err("no end after the close handshake".into())
}

#[test]
fn a_thousand_realtime_sessions_on_a_loaded_machine_have_no_resets() {
    const SESSIONS: usize = 1000;
    const CLIENTS: usize = 4;
    let gw = realtime_gateway();
    let proxy = Arc::new(Proxy::start(
        &format!("http://{}", gw.addr),
        &mapping(),
        &[],
    ));
    let deadline = Instant::now() + Duration::from_secs(240);
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    for _ in 0..10_000 {
                        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) ^ 1);
                    }
                }
            })
        })
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (proxy, next, failures) = (proxy.clone(), next.clone(), failures.clone());
            thread::spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= SESSIONS || Instant::now() > deadline {
                        return;
                    }
                    if let Err(e) = ws_session(&proxy, n) {
                        failures.lock().expect("lock").push((n, e));
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().expect("spinner");
    }
    let took = started.elapsed();
    let done = next.load(Ordering::SeqCst).min(SESSIONS);
    let failures = failures.lock().expect("lock");
    eprintln!(
        "websocket: {done} sessions in {took:?} under two busy threads, {} failed",
        failures.len()
    );
    assert_eq!(
        done, SESSIONS,
        "all sessions ran within the time bound ({took:?})"
    );
    assert!(
        failures.is_empty(),
        "{} of {SESSIONS} sessions failed; the first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let uri = gw
        .uris
        .lock()
        .expect("lock")
        .recv_timeout(Duration::from_secs(1))
        .expect("a handshake reached the gateway");
    assert_eq!(uri, "/v1/realtime?model=model_name_team-e_rt");
    assert!(
        gw.closed_by_client.load(Ordering::SeqCst) >= SESSIONS * 9 / 10,
        "the clients' close frames reach the gateway ({} of {SESSIONS})",
        gw.closed_by_client.load(Ordering::SeqCst)
    );
}

#[test]
fn a_websocket_is_copied_both_ways_until_either_side_closes() {
    let gw = realtime_gateway();
    let proxy = Proxy::start(
        &format!("http://{}", gw.addr),
        &mapping(),
        &[
            "--head-timeout",
            "1s",
            "--keepalive-timeout",
            "1s",
            "--client-read-timeout",
            "1s",
            "--client-body-timeout",
            "1s",
        ],
    );

    // The gateway closes first, after a quiet spell longer than every client timeout
    // and large frames both ways.
    let mut ws = ws_connect(&proxy).expect("a session opens");
    assert!(
        ws_read_text(&mut ws)
            .expect("the greeting arrives unprompted")
            .contains("session.created")
    );
    thread::sleep(Duration::from_millis(2500));
    let big: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    ws.send(tungstenite::Message::binary(big.clone()))
        .expect("a session idle 2.5 s is still open");
    let echo = ws.read().expect("1 MiB frame echoed");
    assert!(
        echo.into_data().as_ref() == big.as_slice(),
        "1 MiB frame intact"
    );
    ws.send(tungstenite::Message::text("close-please"))
        .expect("send");
    let mut saw_close = false;
    for _ in 0..10 {
        match ws.read() {
            Ok(msg) if msg.is_close() => saw_close = true,
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("the gateway's close reaches the client cleanly: {e}"),
        }
    }
    assert!(saw_close, "the gateway's close frame reached the client");

    // The client closes first.
    let before = gw.closed_by_client.load(Ordering::SeqCst);
    let mut ws = ws_connect(&proxy).expect("a second session opens");
    ws_read_text(&mut ws).expect("greeting");
    ws.send(tungstenite::Message::text("hello")).expect("send");
    assert_eq!(ws_read_text(&mut ws).expect("echo"), "hello");
    ws.close(None).expect("close");
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.closed_by_client.load(Ordering::SeqCst) == before {
        assert!(
            Instant::now() < deadline,
            "the client's close frame reaches the gateway"
        );
        thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..10 {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("the close handshake completes: {e}"),
        }
    }
}

// ---- Expect: 100-continue --------------------------------------------------------------

/// Sends a request with `Expect: 100-continue`, waits for the 100 before sending `body`,
/// and returns the final answer.
fn send_after_continue(proxy: &Proxy, case: &str, body: &[u8], chunk: bool) -> Response {
    let auth = auth();
    let len = body.len().to_string();
    let framing = if chunk {
        ("transfer-encoding", "chunked")
    } else {
        ("content-length", len.as_str())
    };
    let mut conn = Conn::connect(proxy.addr);
    conn.write(
        head(
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("expect", "100-continue"),
                framing,
            ],
        )
        .as_bytes(),
    )
    .expect("head");
    conn.set_read_timeout(Duration::from_secs(5));
    let interim = conn
        .read_one()
        .unwrap_or_else(|e| panic!("{case}: 100 Continue before the body is sent: {e}"));
    assert_eq!(interim.status, 100, "{case}: an interim 100 first");
    conn.set_read_timeout(Duration::from_secs(30));
    let framed = if chunk {
        chunked(body, 32 * 1024)
    } else {
        body.to_vec()
    };
    conn.write(&framed).expect("body");
    let (_, resp) = conn
        .read_final()
        .unwrap_or_else(|e| panic!("{case}: the answer follows: {e}"));
    assert_eq!(
        resp.status,
        200,
        "{case}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.json()["model"], "gpt-4.1", "{case}");
    resp
}

#[test]
fn expect_100_continue_gets_a_100_before_the_body_then_the_answer() {
    // Like uvicorn: the gateway sends 100 Continue when it starts reading a body that
    // expects one.
    let gw = RawGateway::start(|mut peer| {
        while let Some(head) = peer.read_head() {
            if head
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
                && peer.write_raw(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
            {
                return;
            }
            let Some(body) = peer.read_body(&head) else {
                return;
            };
            let req = peer.record(head, body);
            let reply = completion(&req);
            if peer
                .respond(200, &[("content-type", "application/json")], &reply)
                .is_err()
            {
                return;
            }
        }
    });
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    for (case, size, chunk) in [
        ("1 KiB", 1024, false),
        ("1 MiB", 1024 * 1024, false),
        ("1 MiB chunked", 1024 * 1024, true),
    ] {
        let body = big_body("gpt-4.1", size);
        send_after_continue(&proxy, case, &body, chunk);
        let got = gw.requests().pop().expect("forwarded");
        assert_eq!(model_of(&got), OWN, "{case}: rewritten");
        assert_eq!(
            got.body.len(),
            body.len() + OWN.len() - "gpt-4.1".len(),
            "{case}: the whole body"
        );
    }
}

#[test]
fn a_small_body_expecting_100_continue_gets_it_from_modelmap_itself() {
    // A gateway that never sends 100 Continue: a body modelmap reads whole before it
    // connects cannot wait for the gateway's.
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let body = big_body("gpt-4.1", 1024);
    send_after_continue(&proxy, "1 KiB, silent gateway", &body, false);
    assert_eq!(model_of(&gw.requests().pop().expect("forwarded")), OWN);
}

#[test]
fn an_interim_103_from_the_gateway_reaches_the_client_before_the_answer() {
    let gw = RawGateway::start(|mut peer| {
        while let Some(req) = peer.read_request() {
            let hints = b"HTTP/1.1 103 Early Hints\r\nlink: </v1/style.css>; rel=preload\r\n\r\n";
            let body = completion(&req);
            if peer.write_raw(hints).is_err()
                || peer
                    .respond(200, &[("content-type", "application/json")], &body)
                    .is_err()
            {
                return;
            }
        }
    });
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let mut conn = Conn::connect(proxy.addr);
    for i in 0..2 {
        conn.write(&chat("gpt-4.1", &[])).expect("write");
        let (interim, resp) = conn
            .read_final()
            .unwrap_or_else(|e| panic!("request {i} is answered: {e}"));
        assert_eq!(
            interim,
            vec![103],
            "request {i}: the gateway's 103 is relayed"
        );
        assert_eq!(resp.status, 200, "request {i}");
        assert_eq!(resp.json()["model"], "gpt-4.1", "request {i}");
    }
}

// ---- hop-by-hop headers ----------------------------------------------------------------

#[test]
fn hop_by_hop_request_headers_are_not_forwarded_to_the_gateway() {
    let gw = FakeGateway::start();
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let auth = auth();
    let body = br#"{"model":"gpt-4.1"}"#;
    let len = body.len().to_string();
    let request = head(
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("content-length", &len),
            ("Connection", "Keep-Alive ,  X-Hop-Secret"),
            ("connection", "x-hop-two"),
            ("X-Hop-Secret", "s3cret"),
            ("x-hop-two", "2"),
            ("Keep-Alive", "timeout=5, max=100"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers, deflate"),
            ("Trailer", "x-checksum"),
            ("Upgrade", "h2c"),
            ("x-request-id", "req-123"),
        ],
    );
    let mut conn = Conn::connect(proxy.addr);
    conn.write(&[request.as_bytes(), body].concat())
        .expect("write");
    let (_, resp) = conn.read_final().expect("answered");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let got = gw.last();
    for name in [
        "x-hop-secret",
        "x-hop-two",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert_eq!(
            got.header(name),
            None,
            "{name} is hop-by-hop: not forwarded ({:?})",
            got.headers
        );
    }
    if let Some(connection) = got.header("connection") {
        let connection = connection.to_ascii_lowercase();
        assert!(
            !connection.contains("x-hop") && !connection.contains("upgrade"),
            "the client's Connection options are not forwarded: {connection}"
        );
    }
    assert_eq!(
        got.header("x-request-id"),
        Some("req-123"),
        "end-to-end headers pass"
    );
    assert_eq!(got.header("authorization"), Some(auth.as_str()));
    assert_eq!(model_of(&got), OWN);
}

#[test]
fn hop_by_hop_response_headers_are_not_forwarded_to_the_client() {
    let gw = FakeGateway::with(Arc::new(|req: &Recorded| {
        Reply::new(200, "application/json", completion(req))
            .header("Connection", "keep-alive, X-Gw-Hop")
            .header("X-Gw-Hop", "internal")
            .header("Keep-Alive", "timeout=5, max=7")
            .header("x-litellm-call-id", "call-1")
    }));
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let mut conn = Conn::connect(proxy.addr);
    conn.write(&chat("gpt-4.1", &[])).expect("write");
    let (_, resp) = conn.read_final().expect("answered");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("x-gw-hop"),
        None,
        "a header the gateway named in Connection stays between modelmap and the gateway: {:?}",
        resp.headers
    );
    assert_ne!(
        resp.header("keep-alive"),
        Some("timeout=5, max=7"),
        "the gateway's Keep-Alive is not the client's"
    );
    if let Some(connection) = resp.header("connection") {
        assert!(
            !connection.to_ascii_lowercase().contains("x-gw-hop"),
            "the gateway's Connection options are not forwarded: {connection}"
        );
    }
    assert_eq!(
        resp.header("x-litellm-call-id"),
        Some("call-1"),
        "end-to-end headers pass"
    );
    assert_eq!(resp.json()["model"], "gpt-4.1");
}
