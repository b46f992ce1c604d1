//! The proxy end to end against a fake gateway that records the exact bytes it gets.

mod common;

use common::{FakeGateway, Framing, Proxy, key_digest};

const ABC: &str = "sk-team-abc-key";
const XYZ: &str = "sk-team-xyz-key";

fn mapping() -> String {
    format!(
        r#"version: 1
teams:
  team-abc:
    models:
      gpt-4.1: model_name_team-abc_1111
      "claude-*": model_name_team-abc_claude
      "claude-3-*": model_name_team-abc_claude3
      "*-opus": model_name_team-abc_opus
      backup: model_name_team-abc_backup
  team-xyz:
    models:
      gpt-4.1: model_name_team-xyz_2222
aliases:
  AgentX-LLM: gpt-4.1
  "ab*": alias-ab
  "*yz": alias-yz
keys:
  {}: team-abc
  {}: team-xyz
"#,
        key_digest(ABC),
        key_digest(XYZ)
    )
}

fn setup() -> (FakeGateway, Proxy) {
    let gw = FakeGateway::start();
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    (gw, proxy)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Posts `body` as `key` and returns what the gateway received.
fn sent(gw: &FakeGateway, proxy: &Proxy, key: Option<&str>, body: &str) -> String {
    let auth = key.map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let resp = proxy
        .client()
        .post("/v1/chat/completions", &headers, body.as_bytes());
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    gw.last().body_str()
}

#[test]
fn model_is_rewritten_for_the_callers_team_and_nothing_else_changes() {
    let (gw, proxy) = setup();
    let body = r#"{"model": "gpt-4.1", "messages": [{"role": "user", "content": "gpt-4.1 \"model\": x"}], "temperature": 0.5}"#;
    assert_eq!(
        sent(&gw, &proxy, Some(ABC), body),
        body.replacen("\"gpt-4.1\"", "\"model_name_team-abc_1111\"", 1)
    );
    assert_eq!(
        sent(&gw, &proxy, Some(XYZ), body),
        body.replacen("\"gpt-4.1\"", "\"model_name_team-xyz_2222\"", 1),
        "another team's key gets its own team's internal name"
    );
    assert_eq!(
        sent(&gw, &proxy, None, body),
        body,
        "no key: no team rules, and no alias matches"
    );
    assert_eq!(
        sent(&gw, &proxy, Some("sk-unknown"), body),
        body,
        "unknown key: no team rules"
    );
}

#[test]
fn fallbacks_and_context_window_fallbacks_are_rewritten() {
    let (gw, proxy) = setup();
    let body = r#"{"model":"gpt-4.1","fallbacks":["backup",{"model":"backup","messages":[{"role":"user","content":"x","model":"backup"}]}],"context_window_fallbacks":["claude-2","unmapped"]}"#;
    let expect = r#"{"model":"model_name_team-abc_1111","fallbacks":["model_name_team-abc_backup",{"model":"model_name_team-abc_backup","messages":[{"role":"user","content":"x","model":"backup"}]}],"context_window_fallbacks":["model_name_team-abc_claude","unmapped"]}"#;
    assert_eq!(sent(&gw, &proxy, Some(ABC), body), expect);
}

#[test]
fn nested_model_keys_are_never_touched() {
    let (gw, proxy) = setup();
    let body = r#"{"messages":[{"role":"user","content":"hi","model":"gpt-4.1"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"model":"gpt-4.1"}}}],"metadata":{"model":"gpt-4.1"},"model":"unmapped"}"#;
    assert_eq!(sent(&gw, &proxy, Some(ABC), body), body);
}

#[test]
fn comma_separated_models_map_each_name() {
    let (gw, proxy) = setup();
    let got = sent(
        &gw,
        &proxy,
        Some(ABC),
        r#"{"model":"gpt-4.1,claude-2, other"}"#,
    );
    assert_eq!(
        got,
        r#"{"model":"model_name_team-abc_1111,model_name_team-abc_claude, other"}"#
    );
}

#[test]
fn alias_resolves_then_team_rules_apply_once() {
    let (gw, proxy) = setup();
    let body = r#"{"model":"AgentX-LLM"}"#;
    assert_eq!(
        sent(&gw, &proxy, Some(ABC), body),
        r#"{"model":"model_name_team-abc_1111"}"#
    );
    assert_eq!(
        sent(&gw, &proxy, Some(XYZ), body),
        r#"{"model":"model_name_team-xyz_2222"}"#
    );
    assert_eq!(
        sent(&gw, &proxy, None, body),
        r#"{"model":"gpt-4.1"}"#,
        "team-less callers get the alias target"
    );
}

#[test]
fn team_rules_beat_aliases_and_patterns_resolve_deterministically() {
    let (gw, proxy) = setup();
    let cases = [
        (Some(ABC), "claude-3-opus", "model_name_team-abc_claude3"), // longest literal wins
        (Some(ABC), "claude-2", "model_name_team-abc_claude"),
        (Some(ABC), "big-opus", "model_name_team-abc_opus"),
        (Some(ABC), "claude-opus", "model_name_team-abc_claude"), // 7 literal chars beat 5
        (None, "abxyz", "alias-yz"), // equal literal length: "*yz" < "ab*"
        (None, "abc", "alias-ab"),
        (None, "claude-2", "claude-2"), // team patterns need a team
    ];
    for (key, requested, expect) in cases {
        let got = sent(&gw, &proxy, key, &format!(r#"{{"model":"{requested}"}}"#));
        assert_eq!(
            got,
            format!(r#"{{"model":"{expect}"}}"#),
            "{requested} as {key:?}"
        );
    }
}

#[test]
fn bodies_that_are_not_mappable_json_objects_pass_through_byte_for_byte() {
    let (gw, proxy) = setup();
    let bodies: [&[u8]; 8] = [
        b"model=gpt-4.1&x=1",
        br#"{"model":"gpt-4.1","messages":[}"#,
        br#"{"model":"gpt-4.1""#,
        br#"["gpt-4.1"]"#,
        br#"{"model":"unmapped"}"#,
        br#"{"model":"gpt-4.1"} trailing"#,
        b"{\"model\":\"gpt-4.1\",\"x\":\"\xff\xfe\"",
        br#"{"model":"gpt-4.1",,}"#,
    ];
    for body in bodies {
        let auth = bearer(ABC);
        let resp = proxy.client().request(
            "POST",
            "/v1/chat/completions",
            &[("authorization", &auth)],
            body,
            Framing::Length,
        );
        assert_eq!(resp.status, 200);
        assert_eq!(gw.last().body, body, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn upstream_framing_is_never_both_and_never_stale() {
    let (gw, proxy) = setup();
    let body = br#"{"model":"gpt-4.1","messages":[]}"#;
    let auth = bearer(ABC);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    for framing in [Framing::Length, Framing::Chunked(&[3, 12, 14, 20])] {
        let mut client = proxy.client();
        assert_eq!(
            client
                .request("POST", "/v1/chat/completions", &headers, body, framing)
                .status,
            200
        );
        let got = gw.last();
        // A small body, with a length or chunked, is read whole and sent with its new
        // length.
        assert_eq!(got.header("transfer-encoding"), None, "never both framings");
        assert_eq!(
            got.header("content-length"),
            Some(got.body.len().to_string().as_str()),
            "never a stale length"
        );
        assert_eq!(
            got.body_str(),
            r#"{"model":"model_name_team-abc_1111","messages":[]}"#
        );
    }
    let resp = proxy
        .client()
        .request("GET", "/v1/models", &headers, b"", Framing::Length);
    assert_eq!(resp.status, 200);
    let got = gw.last();
    assert_eq!(
        got.header("transfer-encoding"),
        None,
        "a request without a body gets no body"
    );
    assert!(got.body.is_empty());
}

#[test]
fn ten_mib_bodies_arrive_whole_with_model_anywhere() {
    let (gw, proxy) = setup();
    let filler = "x".repeat(10 * 1024 * 1024);
    let auth = bearer(ABC);
    let headers = [("authorization", auth.as_str())];
    let bodies = [
        format!(r#"{{"messages":[{{"role":"user","content":"{filler}"}}],"model":"gpt-4.1"}}"#),
        format!(r#"{{"model":"gpt-4.1","messages":[{{"role":"user","content":"{filler}"}}]}}"#),
    ];
    for body in &bodies {
        let expect = body.replacen("\"gpt-4.1\"", "\"model_name_team-abc_1111\"", 1);
        let cuts: Vec<usize> = (1..body.len()).step_by(100_003).collect();
        for framing in [Framing::Length, Framing::Chunked(&cuts)] {
            let resp = proxy.client().request(
                "POST",
                "/v1/chat/completions",
                &headers,
                body.as_bytes(),
                framing,
            );
            assert_eq!(resp.status, 200);
            let got = gw.last();
            assert_eq!(got.body.len(), expect.len(), "no truncation");
            assert!(
                got.body == expect.as_bytes(),
                "10 MiB body differs from the expected rewrite"
            );
        }
    }
}

#[test]
fn keep_alive_connections_are_reused_across_requests() {
    let (gw, proxy) = setup();
    let mut client = proxy.client();
    let auth = bearer(ABC);
    for i in 0..20 {
        let model = if i % 2 == 0 { "gpt-4.1" } else { "unmapped" };
        let resp = client.post(
            "/v1/chat/completions",
            &[("authorization", &auth)],
            format!(r#"{{"model":"{model}","n":{i}}}"#).as_bytes(),
        );
        assert_eq!(resp.status, 200);
        let expect = if i % 2 == 0 {
            "model_name_team-abc_1111"
        } else {
            "unmapped"
        };
        assert_eq!(
            gw.last().json()["model"],
            expect,
            "request {i} on one client connection"
        );
        assert_eq!(
            resp.json()["model"],
            model,
            "request {i}: the caller sees its own name"
        );
    }
    let upstream_conns: std::collections::HashSet<usize> =
        gw.requests().iter().map(|r| r.connection).collect();
    assert!(
        upstream_conns.len() < 20,
        "upstream connections are pooled: {} connections for 20 requests",
        upstream_conns.len()
    );
}

#[test]
fn expect_100_continue_is_honoured() {
    let (gw, proxy) = setup();
    let auth = bearer(ABC);
    let resp = proxy.client().post(
        "/v1/chat/completions",
        &[("authorization", &auth), ("expect", "100-continue")],
        br#"{"model":"gpt-4.1"}"#,
    );
    // The client sends the body without waiting; the proxy must not lose it.
    assert_eq!(resp.status, 200);
    assert_eq!(
        gw.last().body_str(),
        r#"{"model":"model_name_team-abc_1111"}"#
    );
}

#[test]
fn an_unreachable_gateway_gets_a_502_in_the_openai_error_shape() {
    let port = common::proxy::free_port();
    let proxy = Proxy::start(
        &format!("http://127.0.0.1:{port}"),
        &mapping(),
        &["--connect-timeout", "1s"],
    );
    let resp = proxy
        .client()
        .post("/v1/chat/completions", &[], br#"{"model":"gpt-4.1"}"#);
    assert_eq!(resp.status, 502);
    let err = resp.json();
    let message = err["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("could not connect to the gateway"),
        "{message}"
    );
    assert_eq!(err["error"]["type"], "api_error");
    assert_eq!(err["error"]["code"], "bad_gateway");
    assert!(err["error"].get("param").is_some());
}
