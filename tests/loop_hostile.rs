//! A red-team pass over the HTTP/1.1 loop: framing the gateway could read differently,
//! what follows a refused or early-answered request, interim answers in odd places,
//! HTTP/1.0 clients, half-closed tunnels, a SIGTERM during a request head, and inputs
//! that must never panic the proxy.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::process::Command;
use std::sync::{Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use common::process::ProxyProcess;
use common::raw::{Conn, End, RawGateway, chunked, head};
use common::team_e::{
    FOREIGN, OWN, auth, big_body, chat, chat_in, completion, mapping, serve, still_serves,
};
use common::{Proxy, model_of};

/// Splits a raw response into its head (lowercased) and its body bytes.
fn split_response(raw: &[u8]) -> (String, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "a whole response head arrived: {:?}",
                String::from_utf8_lossy(raw)
            )
        });
    (
        String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase(),
        raw[end + 4..].to_vec(),
    )
}

// ---- panics ------------------------------------------------------------------------------

/// Panics anywhere but in this file's own assertions (the proxy runs in-process).
static PROXY_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn watch_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info
                .location()
                .map(|l| l.file().to_string())
                .unwrap_or_default();
            if !at.contains("tests/") {
                PROXY_PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{info}"));
            }
            previous(info);
        }));
    });
}

fn assert_no_proxy_panic(what: &str) {
    let panics = PROXY_PANICS.lock().unwrap_or_else(|e| e.into_inner());
    assert!(panics.is_empty(), "{what}: the proxy panicked: {panics:?}");
}

// ---- framing the gateway could read differently ------------------------------------------

#[test]
fn a_request_with_both_content_length_and_chunked_is_refused_and_nothing_after_it_is_served() {
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let auth = auth();
    let body = br#"{"model":"gpt-4.1","messages":[]}"#;
    for (case, lengths) in [
        ("Content-Length before Transfer-Encoding", true),
        ("Transfer-Encoding before Content-Length", false),
    ] {
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let framing = [("content-length", "4"), ("transfer-encoding", "chunked")];
        if lengths {
            headers.extend(framing);
        } else {
            headers.extend(framing.iter().rev());
        }
        let request = [
            head("POST", "/v1/chat/completions", &headers).into_bytes(),
            chunked(body, 10),
            head("GET", "/v1/models?smuggled", &[("authorization", &auth)]).into_bytes(),
        ]
        .concat();
        let mut conn = Conn::connect(proxy.addr);
        conn.write(&request).expect("write");
        let (_, resp) = conn
            .read_final()
            .unwrap_or_else(|e| panic!("{case}: an answer: {e}"));
        assert_eq!(
            resp.status,
            400,
            "{case}: refused as documented (docs/places.md: both headers are bad_framing): {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(resp.json()["error"]["code"], "bad_framing", "{case}");
        let end = conn.end_within(Duration::from_secs(5));
        assert!(
            matches!(end, End::Closed | End::Reset),
            "{case}: the connection closes after the refusal, nothing else is answered: {end:?}"
        );
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (gw.connections(), gw.requests().len()),
        (0, 0),
        "neither the ambiguous request nor the one after it reached the gateway"
    );
    still_serves(&proxy);
}

#[test]
fn a_pipelined_request_after_a_refused_one_is_served_only_when_the_refused_body_was_read() {
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let auth = auth();
    let next = head(
        "GET",
        "/v1/models?after-refusal",
        &[("authorization", &auth)],
    );

    // The guard's refusal: the body is read to its end, the next request is the client's.
    let mut conn = Conn::connect(proxy.addr);
    conn.write(&[chat(FOREIGN, &[]), next.clone().into_bytes()].concat())
        .expect("write");
    let (_, refused) = conn.read_final().expect("the refusal");
    assert_eq!(
        refused.status,
        403,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    let (_, after) = conn
        .read_final()
        .expect("the pipelined request after a refused (and read) body is answered");
    assert_eq!(
        after.status,
        200,
        "{}",
        String::from_utf8_lossy(&after.body)
    );

    // A framing refusal: the body's end is unknown, so whatever follows may be body bytes.
    let bad = head(
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("content-length", "20,20"),
        ],
    );
    let mut conn = Conn::connect(proxy.addr);
    conn.write(
        &[
            bad.as_bytes(),
            b"{\"model\":\"gpt-4.1\"}\n",
            next.as_bytes(),
        ]
        .concat(),
    )
    .expect("write");
    let (_, refused) = conn.read_final().expect("the framing refusal");
    assert_eq!(
        refused.status,
        400,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    let end = conn.end_within(Duration::from_secs(5));
    assert!(
        matches!(end, End::Closed | End::Reset),
        "nothing after a request of unknown length is served: {end:?}"
    );
    thread::sleep(Duration::from_millis(200));
    let paths: Vec<String> = gw.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        vec!["/v1/models?after-refusal".to_string()],
        "only the request after the read body reached the gateway"
    );
}

#[test]
fn bytes_after_a_chunked_body_with_extensions_and_trailers_are_the_next_request() {
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let auth = auth();
    let post = head(
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("transfer-encoding", "chunked"),
        ],
    );
    let body = br#"{"model":"gpt-4.1","messages":[]}"#;
    let framed = format!(
        "5;ext=\"a\"\r\n{}\r\n{:x}\r\n{}\r\n0\r\nx-trailer: GET /v1/smuggled HTTP/1.1\r\n\r\n",
        std::str::from_utf8(&body[..5]).expect("ascii"),
        body.len() - 5,
        std::str::from_utf8(&body[5..]).expect("ascii"),
    );
    let next = head("GET", "/v1/models?next", &[("authorization", &auth)]);
    let mut conn = Conn::connect(proxy.addr);
    conn.write(&[post.as_bytes(), framed.as_bytes(), next.as_bytes()].concat())
        .expect("write");
    let (_, first) = conn.read_final().expect("the chunked request is answered");
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.json()["model"], "gpt-4.1");
    let (_, second) = conn
        .read_final()
        .expect("the request after the trailers is answered");
    assert_eq!(
        second.status,
        200,
        "{}",
        String::from_utf8_lossy(&second.body)
    );
    let got = gw.requests();
    let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["/v1/chat/completions", "/v1/models?next"],
        "the trailer is not a request"
    );
    assert_eq!(
        model_of(&got[0]),
        OWN,
        "the chunked body whole and rewritten"
    );
}

#[test]
fn a_head_of_exactly_64_kib_is_served_and_one_byte_more_gets_a_431() {
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let sized = |total: usize, tag: &str| {
        let bare = head(
            "GET",
            &format!("/v1/models?{tag}"),
            &[("authorization", &auth()), ("x-pad", "")],
        );
        let pad = "p".repeat(total - bare.len());
        let text = head(
            "GET",
            &format!("/v1/models?{tag}"),
            &[("authorization", &auth()), ("x-pad", &pad)],
        );
        assert_eq!(text.len(), total);
        text.into_bytes()
    };
    for (case, split) in [("in one write", None), ("its last byte late", Some(1))] {
        let exact = sized(64 * 1024, "exact");
        let mut conn = Conn::connect(proxy.addr);
        match split {
            None => conn.write(&exact).expect("write"),
            Some(late) => {
                conn.write(&exact[..exact.len() - late]).expect("write");
                thread::sleep(Duration::from_millis(200));
                conn.write(&exact[exact.len() - late..]).expect("write");
            }
        }
        let (_, resp) = conn
            .read_final()
            .unwrap_or_else(|e| panic!("{case}: a 64 KiB head is answered: {e}"));
        assert_eq!(
            resp.status,
            200,
            "{case}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    let over = sized(64 * 1024 + 1, "over");
    let mut conn = Conn::connect(proxy.addr);
    let _ = conn.write(&over);
    let resp = conn
        .read_one()
        .expect("a head one byte too long gets an answer");
    assert_eq!(resp.status, 431, "{}", String::from_utf8_lossy(&resp.body));
    assert!(
        !gw.requests().iter().any(|r| r.path.ends_with("over")),
        "the oversized head never reached the gateway"
    );
}

// ---- interim and odd answers from the gateway --------------------------------------------

#[test]
fn an_interim_answer_while_the_body_streams_does_not_stop_the_upload() {
    // A gateway that sends 103 Early Hints as soon as it has the head, then reads the
    // whole body before answering.
    let gw = RawGateway::start(|mut peer| {
        while let Some(head) = peer.read_head() {
            let hints = b"HTTP/1.1 103 Early Hints\r\nlink: </v1/a>; rel=preload\r\n\r\n";
            if peer.write_raw(hints).is_err() {
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
    let proxy = Proxy::start(&gw.url(), &mapping(), &["--read-timeout", "5s"]);
    let body = big_body("gpt-4.1", 1024 * 1024);
    let auth = auth();
    for chunk in [false, true] {
        let case = if chunk { "chunked" } else { "Content-Length" };
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
                framing,
            ],
        );
        let framed = if chunk {
            chunked(&body, 64 * 1024)
        } else {
            body.clone()
        };
        let request = [request_head.into_bytes(), framed].concat();
        let mut conn = Conn::connect(proxy.addr);
        let mut writer = conn.writer();
        let sending = thread::spawn(move || {
            for piece in request.chunks(64 * 1024) {
                if writer.write_all(piece).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        let (interim, resp) = conn
            .read_final()
            .unwrap_or_else(|e| panic!("{case}: an answer: {e}"));
        sending.join().expect("writer");
        assert_eq!(
            resp.status,
            200,
            "{case}: the gateway's answer once it read the whole body (interim {interim:?}): {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(resp.json()["model"], "gpt-4.1", "{case}");
        let got = gw.requests().pop().expect("the gateway got the request");
        assert_eq!(
            got.body.len(),
            body.len() + OWN.len() - "gpt-4.1".len(),
            "{case}: the whole body reached the gateway"
        );
    }
}

#[test]
fn a_101_to_a_request_that_asked_for_no_upgrade_is_a_502_and_the_connection_is_not_reused() {
    let gw = RawGateway::start(|mut peer| {
        if peer.id == 0 {
            if peer.read_request().is_none() {
                return;
            }
            let _ = peer.write_raw(
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nGARBAGE",
            );
            let _ = peer.closed_by_proxy_within(Duration::from_secs(10));
            return;
        }
        serve(peer);
    });
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let mut conn = Conn::connect(proxy.addr);
    conn.write(&chat("gpt-4.1", &[])).expect("write");
    let (_, resp) = conn.read_final().expect("an answer");
    assert_eq!(resp.status, 502, "{}", String::from_utf8_lossy(&resp.body));
    still_serves(&proxy);
    assert_eq!(
        gw.connections(),
        2,
        "the connection that answered 101 is not pooled"
    );
}

// ---- HTTP/1.0 clients --------------------------------------------------------------------

#[test]
fn an_http_1_0_client_never_gets_a_chunked_body_or_an_interim_answer() {
    // The gateway answers chunked (uvicorn streams this way), after a 103.
    let gw = RawGateway::start(|mut peer| {
        while let Some(req) = peer.read_request() {
            let body = completion(&req);
            let mut out = b"HTTP/1.1 103 Early Hints\r\nlink: </v1/a>; rel=preload\r\n\r\n\
                HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                .to_vec();
            out.extend_from_slice(&chunked(&body, 7));
            if peer.write_raw(&out).is_err() {
                return;
            }
        }
    });
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    for (case, extra) in [
        ("HTTP/1.0", &[][..]),
        (
            "HTTP/1.0 with keep-alive",
            &[("connection", "keep-alive")][..],
        ),
    ] {
        let mut conn = Conn::connect(proxy.addr);
        conn.write(&chat_in("HTTP/1.0", "gpt-4.1", extra))
            .expect("write");
        let raw = conn.read_until_closed(Duration::from_secs(5));
        let (head, body) = split_response(&raw);
        assert!(
            head.starts_with("http/1.1 200") || head.starts_with("http/1.0 200"),
            "{case}: the first answer is the final one (an HTTP/1.0 client cannot read 1xx, RFC 9110 §15.2): {head}"
        );
        assert!(
            !head.contains("transfer-encoding"),
            "{case}: no Transfer-Encoding to an HTTP/1.0 client (RFC 9112 §6.1): {head}"
        );
        assert!(
            head.contains("content-length") || head.contains("connection: close"),
            "{case}: a body of unknown length says the connection closes after it: {head}"
        );
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{case}: the body is the JSON itself ({e}): {:?}",
                String::from_utf8_lossy(&body)
            )
        });
        assert_eq!(json["model"], "gpt-4.1", "{case}: restored");
    }
    assert_no_proxy_panic("HTTP/1.0");
}

// ---- tunnels -----------------------------------------------------------------------------

/// A websocket handshake for the realtime route, as raw bytes.
fn ws_handshake() -> Vec<u8> {
    head(
        "GET",
        "/v1/realtime?model=gpt-4o-realtime",
        &[
            ("authorization", &auth()),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ],
    )
    .into_bytes()
}

const SWITCH: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

#[test]
fn a_client_that_half_closes_a_tunnel_still_gets_what_the_gateway_sends_back() {
    const SENT: &[u8] = b"client-last-frame";
    const REPLY: &[u8] = b"gateway-reply-after-a-round-trip";
    let gw = RawGateway::start(|mut peer| {
        if peer.read_head().is_none() || peer.write_raw(SWITCH).is_err() {
            return;
        }
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while got < SENT.len() && Instant::now() < deadline {
            got += peer.read_some(Duration::from_secs(1));
        }
        // The gateway's answer takes a moment (an LLM's last events).
        thread::sleep(Duration::from_millis(300));
        let _ = peer.write_raw(REPLY);
        let _ = peer.closed_by_proxy_within(Duration::from_secs(10));
    });
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let mut conn = Conn::connect(proxy.addr);
    conn.write(&ws_handshake()).expect("handshake");
    let switched = conn.read_one().expect("the 101");
    assert_eq!(switched.status, 101);
    conn.write(SENT).expect("the client's last bytes");
    conn.stream
        .shutdown(Shutdown::Write)
        .expect("half-close the client side");
    let rest = conn.read_until_closed(Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&rest),
        String::from_utf8_lossy(REPLY),
        "after the client's FIN the gateway's reply still reaches it, then the tunnel closes"
    );
}

#[test]
fn upgrade_requests_with_bodies_head_or_http_1_0_never_panic_and_never_hang() {
    watch_panics();
    // The gateway switches protocols for anything that asks, even before the body ends,
    // then echoes until closed.
    let gw = RawGateway::start(|mut peer| {
        if peer.read_head().is_none() || peer.write_raw(SWITCH).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if peer.read_some(Duration::from_millis(500)) > 0 && peer.write_raw(b"echo").is_err() {
                return;
            }
        }
    });
    let proxy = Proxy::start(&gw.url(), &mapping(), &["--read-timeout", "3s"]);
    let upgrade_head = |method: &str, version: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![
            ("authorization", auth()),
            ("upgrade", "websocket".into()),
            ("connection", "Upgrade".into()),
            ("content-type", "application/json".into()),
        ];
        headers.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        head(method, "/v1/realtime?model=gpt-4o-realtime", &headers)
            .replacen("HTTP/1.1", version, 1)
            .into_bytes()
    };
    let small = big_body("gpt-4.1", 100);
    let large = big_body("gpt-4.1", 512 * 1024);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "GET with a small body",
            [
                upgrade_head(
                    "GET",
                    "HTTP/1.1",
                    &[("content-length", &small.len().to_string())],
                ),
                small.clone(),
            ]
            .concat(),
        ),
        (
            "GET with a body larger than the window",
            [
                upgrade_head(
                    "GET",
                    "HTTP/1.1",
                    &[("content-length", &large.len().to_string())],
                ),
                large.clone(),
            ]
            .concat(),
        ),
        (
            "GET with a chunked body larger than the window",
            [
                upgrade_head("GET", "HTTP/1.1", &[("transfer-encoding", "chunked")]),
                chunked(&large, 16 * 1024),
            ]
            .concat(),
        ),
        ("HEAD", upgrade_head("HEAD", "HTTP/1.1", &[])),
        ("HTTP/1.0", upgrade_head("GET", "HTTP/1.0", &[])),
    ];
    for (case, request) in cases {
        let mut conn = Conn::connect(proxy.addr);
        let mut writer = conn.writer();
        let sending = thread::spawn(move || {
            for piece in request.chunks(32 * 1024) {
                if writer.write_all(piece).is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let _ = conn.read_until_closed(Duration::from_secs(15));
        let _ = sending.join();
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "{case}: the connection ends (the gateway's timeout at the latest), took {:?}",
            started.elapsed()
        );
        assert_no_proxy_panic(case);
    }
    still_serves_on(&proxy);
}

/// A normal request still works (on a proxy whose gateway only switches protocols, so
/// only the proxy's own answer can be checked: a websocket handshake gets its 101).
fn still_serves_on(proxy: &Proxy) {
    let mut conn = Conn::connect(proxy.addr);
    conn.write(&ws_handshake()).expect("write");
    let resp = conn.read_one().expect("a handshake is still answered");
    assert_eq!(resp.status, 101);
}

// ---- draining ----------------------------------------------------------------------------

#[test]
fn a_request_whose_head_is_arriving_at_sigterm_is_still_served() {
    let gw = RawGateway::start(serve);
    let proxy = ProxyProcess::start(&gw.url(), &mapping(), &["--shutdown-timeout", "10s"]);
    let request = chat("gpt-4.1", &[]);
    let (first, rest) = request.split_at(40);
    let mut conn = Conn::connect(proxy.addr);
    conn.write(first).expect("the head's first bytes");
    thread::sleep(Duration::from_millis(200));
    let status = Command::new("kill")
        .args(["-TERM", &proxy.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM");
    // Longer than the drain's settling pause, shorter than the head deadline.
    thread::sleep(Duration::from_millis(600));
    let wrote = conn.write(rest);
    let answer = conn.read_final();
    assert!(
        wrote.is_ok() && answer.is_ok(),
        "a request whose head had begun before SIGTERM is not cut by the drain: write {wrote:?}, answer {:?}",
        answer.as_ref().map(|(_, r)| r.status)
    );
    let (_, resp) = answer.expect("checked");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["model"], "gpt-4.1");
}

// ---- the client side of a kept-alive connection ------------------------------------------

#[test]
fn an_empty_line_after_a_request_is_ignored_not_answered_with_a_408() {
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(
        &gw.url(),
        &mapping(),
        &["--head-timeout", "1s", "--keepalive-timeout", "3s"],
    );
    let mut conn = Conn::connect(proxy.addr);
    // Old clients send CRLF after a POST body (RFC 9112 §2.2: a server ignores it).
    conn.write(&[chat("gpt-4.1", &[]), b"\r\n".to_vec()].concat())
        .expect("write");
    let (_, resp) = conn.read_final().expect("the request is answered");
    assert_eq!(resp.status, 200);
    let end = conn.end_within(Duration::from_millis(1800));
    assert!(
        end == End::StillOpen,
        "an idle connection past the head timeout gets no unsolicited answer (a 408 would be read as the answer to the client's next request): {}",
        match &end {
            End::Data(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            other => format!("{other:?}"),
        }
    );
    conn.write(&chat("gpt-4.1", &[]))
        .expect("the connection is still open within the keep-alive timeout");
    let (_, resp) = conn
        .read_final()
        .expect("the next request on it is answered");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["model"], "gpt-4.1");
}

#[test]
fn head_204_and_304_answers_end_where_they_should_and_the_connection_goes_on() {
    let gw = RawGateway::start(|mut peer| {
        while let Some(req) = peer.read_request() {
            let out: Vec<u8> = if req.method == "HEAD" {
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1234\r\n\r\n"
                    .to_vec()
            } else if req.path.ends_with("204") {
                b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
            } else if req.path.ends_with("304") {
                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 50\r\netag: \"x\"\r\n\r\n".to_vec()
            } else {
                let body = completion(&req);
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                out.extend_from_slice(&body);
                out
            };
            if peer.write_raw(&out).is_err() {
                return;
            }
        }
    });
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let auth = auth();
    let mut conn = Conn::connect(proxy.addr);
    conn.write(head("HEAD", "/v1/models", &[("authorization", &auth)]).as_bytes())
        .expect("write");
    let got = conn.end_within(Duration::from_secs(5));
    let End::Data(bytes) = got else {
        panic!("the HEAD answer arrives, got {got:?}")
    };
    let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
    assert!(
        text.starts_with("http/1.1 200") && text.ends_with("\r\n\r\n"),
        "a HEAD answer is its head alone: {text:?}"
    );
    assert!(text.contains("content-length: 1234"), "{text:?}");
    for status in [204, 304] {
        conn.write(
            head(
                "GET",
                &format!("/v1/files/x/{status}"),
                &[("authorization", &auth)],
            )
            .as_bytes(),
        )
        .expect("write");
        let (_, resp) = conn
            .read_final()
            .unwrap_or_else(|e| panic!("the {status} is answered on the same connection: {e}"));
        assert_eq!(resp.status, status);
    }
    conn.write(&chat("gpt-4.1", &[])).expect("write");
    let (_, resp) = conn
        .read_final()
        .expect("after HEAD, 204 and 304 the connection still serves");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["model"], "gpt-4.1");
    assert_eq!(
        gw.connections(),
        1,
        "one gateway connection served all four"
    );
}

#[test]
fn a_request_pipelined_while_the_gateway_thinks_is_kept_whole_for_its_turn() {
    let gw = RawGateway::start(|mut peer| {
        while let Some(req) = peer.read_request() {
            thread::sleep(Duration::from_millis(300));
            let body = completion(&req);
            if peer
                .respond(200, &[("content-type", "application/json")], &body)
                .is_err()
            {
                return;
            }
        }
    });
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let auth = auth();
    let second = head("GET", "/v1/models?second", &[("authorization", &auth)]);
    let third = chat("gpt-4.1", &[("x-seq", "third")]);
    let mut conn = Conn::connect(proxy.addr);
    conn.write(&chat("gpt-4.1", &[])).expect("first");
    // While the gateway works on the first request (300 ms), the second's first byte
    // alone, then its rest; while it works on the second, the same with the third.
    let mut writer = conn.writer();
    let sending = thread::spawn(move || {
        let started = Instant::now();
        for (at, bytes) in [
            (100, &second.as_bytes()[..1]),
            (150, &second.as_bytes()[1..]),
            (450, &third[..1]),
            (500, &third[1..]),
        ] {
            thread::sleep(Duration::from_millis(at).saturating_sub(started.elapsed()));
            writer.write_all(bytes).expect("pipelined bytes");
        }
    });
    for i in 0..3 {
        let (_, resp) = conn
            .read_final()
            .unwrap_or_else(|e| panic!("answer {i} arrives in turn: {e}"));
        assert_eq!(
            resp.status,
            200,
            "answer {i}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    sending.join().expect("writer");
    let got = gw.requests();
    let lines: Vec<String> = got
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        lines,
        vec![
            "POST /v1/chat/completions",
            "GET /v1/models?second",
            "POST /v1/chat/completions"
        ],
        "each pipelined request reached the gateway whole, in order"
    );
    assert_eq!(got[2].header("x-seq"), Some("third"));
    assert!(
        got.iter()
            .filter(|r| r.method == "POST")
            .all(|r| model_of(r) == OWN),
        "both chats rewritten"
    );
}

#[test]
fn a_refusal_after_100_continue_reaches_a_client_still_uploading() {
    let gw = RawGateway::start(serve);
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let auth = auth();
    let body = big_body(FOREIGN, 8 * 1024 * 1024);
    let len = body.len().to_string();
    let mut conn = Conn::connect(proxy.addr);
    conn.write(
        head(
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("expect", "100-continue"),
                ("content-length", &len),
            ],
        )
        .as_bytes(),
    )
    .expect("head");
    let interim = conn.read_one().expect("100 Continue");
    assert_eq!(interim.status, 100);
    let mut writer = conn.writer();
    let sending = thread::spawn(move || {
        for piece in body.chunks(64 * 1024) {
            if writer.write_all(piece).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(2));
        }
    });
    let answer = conn.read_final();
    let _ = sending.join();
    let (_, resp) = answer.expect("the refusal reaches the client, not a reset");
    assert_eq!(resp.status, 403, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(gw.bytes(), 0, "nothing reached the gateway");
}
