//! Team identity from the gateway's `/key/info` (a faithful fake of LiteLLM's answer that
//! counts its calls), the cache in front of it, the failure policy, the other identity
//! sources, and the guard on other teams' internal names, all through the real proxy.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{
    Client, FakeGateway, Framing, Proxy, Recorded, Reply, Response, key_digest, model_of,
};

const ABC: &str = "sk-abc-secret-0001";
const XYZ: &str = "sk-xyz-secret-0002";
const NOTEAM: &str = "sk-noteam-secret-0003";
const BAD: &str = "sk-bad-secret-0004";
const FAIL: &str = "sk-fail-secret-0005";
const SLOW: &str = "sk-slow-secret-0006";
const MASTER: &str = "sk-master-secret-0007";
const STUCK: &str = "sk-stuck-secret-0008";
/// A marker in every request body, to prove bodies are never logged.
const BODY_MARKER: &str = "body-marker-5b1c0e";

const ABC_INTERNAL: &str = "model_name_team-abc_1111";
const XYZ_INTERNAL: &str = "model_name_team-xyz_2222";

fn mapping() -> String {
    format!(
        r#"version: 1
teams:
  team-abc:
    models:
      gpt-4.1: {ABC_INTERNAL}
      backup: model_name_team-abc_backup
  team-xyz:
    models:
      gpt-4.1: {XYZ_INTERNAL}
aliases:
  AgentX-LLM: gpt-4.1
"#
    )
}

/// The same mapping with a `keys` table entry for `key`.
fn mapping_with_key(key: &str, team: &str) -> String {
    format!("{}keys:\n  {}: {team}\n", mapping(), key_digest(key))
}

// ---- logs: one capture for this test binary --------------------------------------

fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let writer = || Capture;
        // Debug level on purpose: even then no key or body may appear.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(modelmap::logging::filter("debug"))
            .with_writer(writer)
            .with_ansi(false)
            .try_init();
        Mutex::new(Vec::new())
    })
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().expect("logs")).into_owned()
}

// ---- a fake LiteLLM with /key/info -----------------------------------------------

#[derive(Clone, Copy)]
enum KeyInfo {
    Team(&'static str),
    NoTeam,
    Invalid,
    /// LiteLLM's answer for a credential it accepts without a key record (master key).
    NotFound,
    Fail,
    Slow(Duration, &'static str),
}

/// The credential a request carries, read the way LiteLLM reads it.
fn credential(req: &Recorded) -> Option<String> {
    for h in [
        "x-litellm-api-key",
        "authorization",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
    ] {
        if let Some(v) = req.header(h) {
            return Some(v.strip_prefix("Bearer ").unwrap_or(v).to_string());
        }
    }
    None
}

/// LiteLLM's `/key/info` answer, in its real shape (the raw key echoed in `key`).
fn key_info_reply(key: &str, team: Option<&str>) -> Reply {
    let body = serde_json::json!({
        "key": key,
        "info": {
            "key_name": "sk-...0001",
            "key_alias": null,
            "spend": 0.0,
            "max_budget": null,
            "expires": null,
            "models": [],
            "aliases": {},
            "config": {},
            "user_id": null,
            "team_id": team,
            "permissions": {},
            "metadata": {},
            "blocked": null,
        }
    });
    json_reply(200, body)
}

fn json_reply(status: u16, body: serde_json::Value) -> Reply {
    Reply::new(status, "application/json", body.to_string())
}

fn echo(req: &Recorded) -> Reply {
    json_reply(
        200,
        serde_json::json!({"object": "chat.completion", "model": model_of(req)}),
    )
}

fn gateway() -> FakeGateway {
    let keys: HashMap<&str, KeyInfo> = [
        (ABC, KeyInfo::Team("team-abc")),
        (XYZ, KeyInfo::Team("team-xyz")),
        (NOTEAM, KeyInfo::NoTeam),
        (BAD, KeyInfo::Invalid),
        (FAIL, KeyInfo::Fail),
        (MASTER, KeyInfo::NotFound),
        (SLOW, KeyInfo::Slow(Duration::from_millis(300), "team-abc")),
        (STUCK, KeyInfo::Slow(Duration::from_secs(3), "team-abc")),
    ]
    .into();
    FakeGateway::with(Arc::new(move |req: &Recorded| {
        if req.path != "/key/info" {
            return echo(req);
        }
        let key = credential(req).unwrap_or_default();
        let invalid = serde_json::json!({"error": {"message": format!("Authentication Error, Invalid proxy server token passed. key={key}"), "type": "auth_error", "param": "None", "code": "401"}});
        match keys.get(key.as_str()) {
            Some(KeyInfo::Team(t)) => key_info_reply(&key, Some(t)),
            Some(KeyInfo::NoTeam) => key_info_reply(&key, None),
            Some(KeyInfo::Fail) => Reply {
                status: 500,
                body: format!("internal error for {key}").into_bytes(),
                ..Reply::default()
            },
            Some(KeyInfo::Slow(d, t)) => {
                std::thread::sleep(*d);
                key_info_reply(&key, Some(t))
            }
            Some(KeyInfo::NotFound) => json_reply(
                404,
                serde_json::json!({"error": {"message": "Key not found in database", "type": "not_found_error", "param": "key", "code": "404"}}),
            ),
            Some(KeyInfo::Invalid) | None => json_reply(401, invalid),
        }
    }))
}

fn key_info_calls(gw: &FakeGateway) -> usize {
    gw.requests()
        .iter()
        .filter(|r| r.path == "/key/info")
        .count()
}

fn chat_requests(gw: &FakeGateway) -> Vec<Recorded> {
    gw.requests()
        .into_iter()
        .filter(|r| r.path != "/key/info")
        .collect()
}

fn start(gw: &FakeGateway, mapping: &str, flags: &[&str]) -> Proxy {
    log_buffer();
    Proxy::start(&gw.url(), mapping, flags)
}

fn body(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"{BODY_MARKER}"}}]}}"#)
}

fn post_as(client: &mut Client, key: Option<&str>, model: &str) -> Response {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    client.post("/v1/chat/completions", &headers, body(model).as_bytes())
}

/// Posts as `key` and returns the model the gateway received.
fn sent_model(proxy: &Proxy, gw: &FakeGateway, key: Option<&str>, model: &str) -> String {
    let resp = post_as(&mut proxy.client(), key, model);
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let last = chat_requests(gw)
        .pop()
        .expect("the gateway got the request");
    last.json()["model"]
        .as_str()
        .expect("model is a string")
        .to_string()
}

fn metric(proxy: &Proxy, series: &str) -> f64 {
    let text = proxy.metrics();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// For series counted in the logging phase, which runs after the client has its answer.
fn eventually(proxy: &Proxy, series: &str, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(proxy, series) != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(metric(proxy, series), expected, "{series}");
}

// ---- the cache -----------------------------------------------------------------------

#[test]
fn the_cache_serves_repeats_with_one_lookup() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &[]);
    let mut client = proxy.client();
    for i in 0..20 {
        let resp = post_as(&mut client, Some(ABC), "gpt-4.1");
        assert_eq!(resp.status, 200, "request {i}");
        assert_eq!(
            resp.json()["model"],
            "gpt-4.1",
            "request {i}: restored for the caller"
        );
        assert_eq!(
            model_of(&gw.last()),
            ABC_INTERNAL,
            "request {i}: sent to the gateway"
        );
    }
    assert_eq!(key_info_calls(&gw), 1, "20 requests, one lookup");
    let lookup = gw
        .requests()
        .into_iter()
        .find(|r| r.path == "/key/info")
        .expect("lookup");
    assert_eq!(lookup.method, "GET");
    assert_eq!(
        lookup.header("authorization"),
        Some(format!("Bearer {ABC}").as_str()),
        "the caller's own credential, as sent"
    );
    assert!(lookup.body.is_empty());
    assert_eq!(
        metric(&proxy, r#"modelmap_identity_lookups_total{result="miss"}"#),
        1.0
    );
    assert_eq!(
        metric(&proxy, r#"modelmap_identity_lookups_total{result="hit"}"#),
        19.0
    );
    assert_eq!(metric(&proxy, "modelmap_identity_cache_entries"), 1.0);
}

#[test]
fn positive_answers_expire_after_their_ttl() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &["--identity-ttl", "1s"]);
    assert_eq!(sent_model(&proxy, &gw, Some(ABC), "gpt-4.1"), ABC_INTERNAL);
    assert_eq!(sent_model(&proxy, &gw, Some(ABC), "gpt-4.1"), ABC_INTERNAL);
    assert_eq!(key_info_calls(&gw), 1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(sent_model(&proxy, &gw, Some(ABC), "gpt-4.1"), ABC_INTERNAL);
    assert_eq!(key_info_calls(&gw), 2, "expired: asked again");
}

#[test]
fn negative_answers_are_cached_briefly() {
    let gw = gateway();
    let proxy = start(
        &gw,
        &mapping(),
        &["--identity-ttl", "60s", "--identity-negative-ttl", "1s"],
    );
    for _ in 0..5 {
        assert_eq!(
            sent_model(&proxy, &gw, Some(BAD), "AgentX-LLM"),
            "gpt-4.1",
            "an invalid key gets global aliases only (the gateway refuses it itself)"
        );
    }
    assert_eq!(key_info_calls(&gw), 1, "401 cached");
    std::thread::sleep(Duration::from_millis(1100));
    sent_model(&proxy, &gw, Some(BAD), "gpt-4.1");
    assert_eq!(key_info_calls(&gw), 2, "the negative TTL is short");
    assert_eq!(
        metric(
            &proxy,
            r#"modelmap_identity_lookups_total{result="negative"}"#
        ),
        2.0
    );

    // The master key, when --master-key-hash is not set: LiteLLM answers 404.
    for _ in 0..3 {
        assert_eq!(sent_model(&proxy, &gw, Some(MASTER), "gpt-4.1"), "gpt-4.1");
    }
    assert_eq!(key_info_calls(&gw), 3, "404 cached like 401");
    assert_eq!(
        metric(&proxy, r#"modelmap_identity_lookups_total{result="error"}"#),
        0.0,
        "a 404 is an answer, not a failure"
    );

    // A valid key without a team is a positive answer: cached for the long TTL.
    for _ in 0..3 {
        assert_eq!(sent_model(&proxy, &gw, Some(NOTEAM), "gpt-4.1"), "gpt-4.1");
    }
    assert_eq!(key_info_calls(&gw), 4);
}

#[test]
fn two_hundred_concurrent_first_requests_cause_one_lookup() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &[]);
    let n = 200;
    let barrier = Arc::new(Barrier::new(n));
    let addr = proxy.addr;
    let started = Instant::now();
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                barrier.wait();
                // SLOW's lookup takes 300 ms, so every request arrives while it is in flight.
                let resp = post_as(&mut client, Some(SLOW), "gpt-4.1");
                (resp.status, resp.json()["model"].clone())
            })
        })
        .collect();
    for t in threads {
        let (status, model) = t.join().expect("client thread");
        assert_eq!(status, 200);
        assert_eq!(model, "gpt-4.1", "restored for the caller");
    }
    assert!(
        chat_requests(&gw)
            .iter()
            .all(|r| model_of(r) == ABC_INTERNAL),
        "every request reached the gateway with the team's internal name"
    );
    let elapsed = started.elapsed();
    assert_eq!(key_info_calls(&gw), 1, "one lookup in flight per key");
    assert_eq!(chat_requests(&gw).len(), n);
    assert_eq!(
        metric(&proxy, r#"modelmap_identity_lookups_total{result="miss"}"#),
        1.0
    );
    assert_eq!(
        metric(&proxy, r#"modelmap_identity_lookups_total{result="hit"}"#),
        (n - 1) as f64,
        "the others shared the lookup in flight"
    );
    eprintln!("{n} concurrent first requests: 1 lookup, {elapsed:?}");
}

#[test]
fn two_keys_of_two_teams_get_their_own_teams_names() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &[]);
    for _ in 0..3 {
        assert_eq!(sent_model(&proxy, &gw, Some(ABC), "gpt-4.1"), ABC_INTERNAL);
        assert_eq!(sent_model(&proxy, &gw, Some(XYZ), "gpt-4.1"), XYZ_INTERNAL);
        assert_eq!(
            sent_model(&proxy, &gw, Some(XYZ), "AgentX-LLM"),
            XYZ_INTERNAL,
            "alias, then the caller's team"
        );
    }
    assert_eq!(key_info_calls(&gw), 2);
    assert_eq!(metric(&proxy, "modelmap_identity_cache_entries"), 2.0);
}

// ---- failure policy --------------------------------------------------------------------

#[test]
fn a_failing_lookup_falls_back_to_global_aliases_only() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &[]);
    assert_eq!(
        sent_model(&proxy, &gw, Some(FAIL), "AgentX-LLM"),
        "gpt-4.1",
        "the alias applies, no team step"
    );
    assert_eq!(sent_model(&proxy, &gw, Some(FAIL), "gpt-4.1"), "gpt-4.1");
    assert_eq!(key_info_calls(&gw), 2, "errors are not cached");
    assert_eq!(
        metric(&proxy, r#"modelmap_identity_lookups_total{result="error"}"#),
        2.0
    );
    assert!(
        logs().contains("team lookup failed; this request gets global aliases only"),
        "a warning says so"
    );
}

#[test]
fn a_slow_lookup_times_out_and_falls_back() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &["--identity-timeout", "100ms"]);
    let started = Instant::now();
    assert_eq!(sent_model(&proxy, &gw, Some(STUCK), "gpt-4.1"), "gpt-4.1");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?} for a 100 ms timeout (the lookup takes 3 s)",
        started.elapsed()
    );
    assert_eq!(
        metric(&proxy, r#"modelmap_identity_lookups_total{result="error"}"#),
        1.0
    );
}

#[test]
fn failing_closed_answers_503_and_keeps_the_connection() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &["--identity-fail-closed"]);
    let mut client = proxy.client();
    for _ in 0..2 {
        let resp = post_as(&mut client, Some(FAIL), "gpt-4.1");
        assert_eq!(resp.status, 503);
        let err = resp.json();
        assert_eq!(err["error"]["type"], "api_error");
        assert_eq!(err["error"]["code"], "identity_unavailable");
        assert!(err["error"].get("param").is_some());
    }
    assert!(chat_requests(&gw).is_empty(), "nothing forwarded");
    assert_eq!(
        sent_model(&proxy, &gw, Some(ABC), "gpt-4.1"),
        ABC_INTERNAL,
        "a lookup that works is unaffected"
    );
    eventually(
        &proxy,
        r#"modelmap_requests_total{family="chat",outcome="rejected"}"#,
        2.0,
    );
}

// ---- sources that never ask the gateway ----------------------------------------------

#[test]
fn keys_table_master_key_jwt_and_no_key_never_ask() {
    let gw = gateway();
    let master_hash = key_digest(MASTER);
    let proxy = start(
        &gw,
        &mapping_with_key(XYZ, "team-xyz"),
        &["--master-key-hash", &master_hash],
    );
    assert_eq!(sent_model(&proxy, &gw, Some(XYZ), "gpt-4.1"), XYZ_INTERNAL);
    assert_eq!(sent_model(&proxy, &gw, Some(MASTER), "gpt-4.1"), "gpt-4.1");
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl";
    assert_eq!(sent_model(&proxy, &gw, Some(jwt), "AgentX-LLM"), "gpt-4.1");
    assert_eq!(sent_model(&proxy, &gw, None, "gpt-4.1"), "gpt-4.1");
    assert_eq!(key_info_calls(&gw), 0);

    let off = start(&gw, &mapping(), &["--identity-lookup=false"]);
    assert_eq!(sent_model(&off, &gw, Some(ABC), "gpt-4.1"), "gpt-4.1");
    assert_eq!(key_info_calls(&gw), 0, "lookups off");
}

#[test]
fn the_trusted_team_header_wins_and_is_not_forwarded() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &["--trusted-team-header", "x-team-id"]);
    let auth = format!("Bearer {ABC}");
    let resp = proxy.client().post(
        "/v1/chat/completions",
        &[("authorization", &auth), ("x-team-id", "team-xyz")],
        body("gpt-4.1").as_bytes(),
    );
    assert_eq!(resp.status, 200);
    let got = chat_requests(&gw).pop().expect("forwarded");
    assert_eq!(got.json()["model"], XYZ_INTERNAL, "the header's team");
    assert_eq!(got.header("x-team-id"), None, "removed before forwarding");
    assert_eq!(key_info_calls(&gw), 0);
    assert_eq!(
        sent_model(&proxy, &gw, Some(ABC), "gpt-4.1"),
        ABC_INTERNAL,
        "without the header, the usual sources"
    );
}

#[test]
fn the_lookup_presents_the_credential_where_the_caller_put_it() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &[]);
    let resp = proxy.client().post(
        "/v1/messages",
        &[("x-api-key", ABC)],
        body("gpt-4.1").as_bytes(),
    );
    assert_eq!(resp.status, 200);
    let resp = proxy.client().post(
        &format!("/v1beta/models/gemini-pro:generateContent?key={XYZ}"),
        &[],
        body("gpt-4.1").as_bytes(),
    );
    assert_eq!(resp.status, 200);
    let lookups: Vec<Recorded> = gw
        .requests()
        .into_iter()
        .filter(|r| r.path == "/key/info")
        .collect();
    assert_eq!(lookups.len(), 2);
    assert_eq!(lookups[0].header("x-api-key"), Some(ABC));
    assert_eq!(lookups[0].header("authorization"), None);
    assert_eq!(
        lookups[1].header("authorization"),
        Some(format!("Bearer {XYZ}").as_str()),
        "?key= is presented as a bearer"
    );
    assert_eq!(lookups[1].path, "/key/info", "never ?key= on the lookup");
    let gemini = chat_requests(&gw).pop().expect("forwarded");
    assert_eq!(gemini.json()["model"], XYZ_INTERNAL);
}

// ---- the guard ------------------------------------------------------------------------

fn assert_refused(resp: &Response, name: &str) {
    assert_eq!(resp.status, 403, "{}", String::from_utf8_lossy(&resp.body));
    let err = resp.json();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["code"], "team_model_access_denied");
    let message = err["error"]["message"].as_str().expect("message");
    assert!(message.contains(name), "{message}");
    let rest = message.replace(name, "");
    assert!(
        !rest.contains("team-abc") && !rest.contains("team-xyz"),
        "no team is named beyond the name sent: {message}"
    );
}

#[test]
fn guard_passes_own_internal_names_and_refuses_other_teams() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &[]);
    assert_eq!(
        sent_model(&proxy, &gw, Some(ABC), ABC_INTERNAL),
        ABC_INTERNAL,
        "the caller's own team's internal name passes"
    );
    let forwarded = chat_requests(&gw).len();

    let resp = post_as(&mut proxy.client(), Some(ABC), XYZ_INTERNAL);
    assert_refused(&resp, XYZ_INTERNAL);
    let resp = post_as(
        &mut proxy.client(),
        Some(ABC),
        &format!("gpt-4.1, {XYZ_INTERNAL}"),
    );
    assert_refused(&resp, XYZ_INTERNAL);
    let auth = format!("Bearer {ABC}");
    let resp = proxy.client().post(
        "/v1/chat/completions",
        &[("authorization", &auth)],
        format!(r#"{{"model":"gpt-4.1","fallbacks":["{XYZ_INTERNAL}"]}}"#).as_bytes(),
    );
    assert_refused(&resp, XYZ_INTERNAL);

    assert_eq!(
        chat_requests(&gw).len(),
        forwarded,
        "no refused request reached the gateway"
    );
    assert!(
        gw.requests()
            .iter()
            .all(|r| !r.body_str().contains(XYZ_INTERNAL)),
        "the name never reached the gateway"
    );
    assert_eq!(metric(&proxy, "modelmap_guard_rejections_total"), 3.0);
    eventually(
        &proxy,
        r#"modelmap_requests_total{family="chat",outcome="rejected"}"#,
        3.0,
    );
}

#[test]
fn guard_refuses_team_less_callers_any_teams_internal_name() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &[]);
    for key in [None, Some(NOTEAM), Some(BAD), Some(FAIL)] {
        for name in [ABC_INTERNAL, XYZ_INTERNAL] {
            let resp = post_as(&mut proxy.client(), key, name);
            assert_refused(&resp, name);
        }
    }
    assert!(chat_requests(&gw).is_empty());
    assert_eq!(
        sent_model(&proxy, &gw, None, "AgentX-LLM"),
        "gpt-4.1",
        "aliases still work for them"
    );
}

#[test]
fn guard_can_be_turned_off() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &["--guard=false"]);
    assert_eq!(sent_model(&proxy, &gw, None, XYZ_INTERNAL), XYZ_INTERNAL);
}

/// An upstream that records every byte it receives per connection and never answers.
struct Wire {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Wire {
    fn start() -> Wire {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let conns = Arc::new(Mutex::new(Vec::new()));
        let done = conns.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let done = done.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut bytes = Vec::new();
                    let _ = stream.read_to_end(&mut bytes);
                    done.lock().expect("lock").push(bytes);
                });
            }
        });
        Wire { addr, conns }
    }

    /// The bytes of the first connection, once it has closed.
    fn closed_connection(&self) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(c) = self.conns.lock().expect("lock").first() {
                return c.clone();
            }
            assert!(
                Instant::now() < deadline,
                "modelmap did not close the upstream connection"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn on_the_wire_a_refused_body_never_leaves_modelmap() {
    let filler = "y".repeat(200 * 1024);
    let small = body(XYZ_INTERNAL);
    let late = format!(
        r#"{{"messages":[{{"role":"user","content":"{filler}"}}],"model":"{XYZ_INTERNAL}"}}"#
    );
    // A body within the 64 KiB window (with a Content-Length or chunked) is read whole
    // before anything goes upstream, so the gateway sees nothing at all; a name past the
    // window is refused mid-stream.
    let cases: [(&str, &str, Framing<'_>, bool); 3] = [
        ("small body", &small, Framing::Length, false),
        (
            "name split across chunks",
            &small,
            Framing::Chunked(&[3, 12, 20]),
            false,
        ),
        (
            "model after the 64 KiB window",
            &late,
            Framing::Length,
            true,
        ),
    ];
    for (what, body, framing, reaches_upstream) in cases {
        let wire = Wire::start();
        log_buffer();
        let proxy = Proxy::start(
            &format!("http://{}", wire.addr),
            &mapping_with_key(ABC, "team-abc"),
            &[],
        );
        let auth = format!("Bearer {ABC}");
        let resp = proxy.client().request(
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
            framing,
        );
        assert_refused(&resp, XYZ_INTERNAL);
        if !reaches_upstream {
            std::thread::sleep(Duration::from_millis(200));
            assert!(
                wire.conns.lock().expect("lock").is_empty(),
                "{what}: nothing went upstream"
            );
            continue;
        }
        let got = wire.closed_connection();
        eprintln!("{what}: the gateway got {} bytes", got.len());
        let text = String::from_utf8_lossy(&got);
        let (head, sent_body) = text.split_once("\r\n\r\n").expect("a request head");
        assert!(
            head.starts_with("POST /v1/chat/completions HTTP/1.1"),
            "{what}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{what}"
        );
        assert!(!text.contains(XYZ_INTERNAL), "{what}: the name was sent");
        assert!(
            !sent_body.ends_with("0\r\n\r\n"),
            "{what}: the body was terminated, so the gateway could act on it"
        );
        // Past the window, a name-free prefix may have gone before the refusal.
    }
}

// ---- logs and explain -----------------------------------------------------------------

#[test]
fn a_request_refused_for_its_framing_asks_the_gateway_nothing() {
    use std::io::{Read, Write};
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &[]);
    let mut raw = std::net::TcpStream::connect(proxy.addr).expect("connect");
    let body = body("gpt-4.1");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {XYZ}\r\ncontent-length: {0},{0}\r\n\r\n",
        body.len()
    );
    raw.write_all(head.as_bytes()).expect("write");
    raw.write_all(body.as_bytes()).expect("write");
    raw.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("bad_framing"),
        "{answer}"
    );
    assert_eq!(
        key_info_calls(&gw),
        0,
        "no /key/info lookup for a request refused before it could be read"
    );
    assert!(chat_requests(&gw).is_empty(), "nothing reached the gateway");
}

#[test]
fn no_key_and_no_body_in_the_logs() {
    let gw = gateway();
    let proxy = start(&gw, &mapping(), &[]);
    for key in [ABC, XYZ, NOTEAM, BAD, FAIL] {
        let _ = post_as(&mut proxy.client(), Some(key), "gpt-4.1");
        let _ = post_as(&mut proxy.client(), Some(key), XYZ_INTERNAL);
    }
    let _ = proxy.client().post(
        &format!("/v1beta/models/g:generateContent?key={FAIL}"),
        &[],
        body("gpt-4.1").as_bytes(),
    );
    let closed = start(&gw, &mapping(), &["--identity-fail-closed"]);
    let _ = post_as(&mut closed.client(), Some(FAIL), "gpt-4.1");
    // A Pingora error path (unreachable gateway) with a key in the query.
    let down = Proxy::start(
        &format!("http://127.0.0.1:{}", common::proxy::free_port()),
        &mapping_with_key(ABC, "team-abc"),
        &["--connect-timeout", "1s"],
    );
    let _ = down.client().post(
        &format!("/v1beta/models/g:generateContent?key={ABC}"),
        &[],
        body("gpt-4.1").as_bytes(),
    );
    // A head Pingora's parser rejects, with the key in it: its error text quotes the head.
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(proxy.addr).expect("connect");
        let head =
            format!("GET /v1/models HTTP/1.1\r\nAuthorization: Bearer {XYZ}\r\nbad header\r\n\r\n");
        raw.write_all(head.as_bytes()).expect("write");
        raw.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut answer = Vec::new();
        let _ = raw.read_to_end(&mut answer);
        assert!(
            answer.starts_with(b"HTTP/1.1 400"),
            "an unparsable head gets a 400: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    std::thread::sleep(Duration::from_millis(100));

    let logs = logs();
    assert!(
        logs.contains("modelmap::access") && logs.contains("team lookup failed"),
        "the capture works:\n{logs}"
    );
    assert!(logs.contains("guard: refusing"), "refusals are logged");
    for secret in [ABC, XYZ, NOTEAM, BAD, FAIL, "secret-000", BODY_MARKER] {
        assert!(!logs.contains(secret), "{secret:?} appears in the logs");
    }
    assert!(
        logs.contains(&key_digest(FAIL)[..8]),
        "a short digest prefix identifies the key"
    );
}

#[test]
fn explain_can_ask_the_gateway() {
    let gw = gateway();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mapping.yaml");
    std::fs::write(&path, mapping()).expect("write");
    let explain = |key: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelmap"))
            .args(["explain", "--mapping"])
            .arg(&path)
            .args([
                "--key",
                key,
                "--ask-gateway",
                "--upstream",
                &gw.url(),
                "gpt-4.1",
            ])
            .output()
            .expect("run modelmap explain");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf8")
    };
    let out = explain(XYZ);
    assert!(
        out.contains(r#"-> team "team-xyz" (gateway /key/info)"#),
        "{out}"
    );
    assert!(out.contains(XYZ_INTERNAL), "{out}");
    assert!(!out.contains(XYZ), "the key is not printed: {out}");
    let out = explain(BAD);
    assert!(out.contains("has no key record at the gateway"), "{out}");
    let out = explain(FAIL);
    assert!(
        out.contains("lookup failed (/key/info answered HTTP 500)"),
        "{out}"
    );
}
