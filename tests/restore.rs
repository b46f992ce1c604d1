//! Callers never see internal names: JSON bodies, streams, headers, errors and model
//! lists come back with the name the caller requested.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{FakeGateway, Proxy, Recorded, Reply, key_digest, model_of};

const KEY: &str = "sk-restore-team";
const INTERNAL: &str = "model_name_team-abc_f1c7df87";

fn mapping() -> String {
    format!(
        "version: 1\nteams:\n  team-abc:\n    models:\n      gpt-4.1: {INTERNAL}\n  team-xyz:\n    models:\n      gpt-4.1: model_name_team-xyz_9\naliases:\n  AgentX: gpt-4.1\nkeys:\n  {}: team-abc\n",
        key_digest(KEY)
    )
}

fn start(responder: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> (FakeGateway, Proxy) {
    let gw = FakeGateway::with(Arc::new(responder));
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    (gw, proxy)
}

fn auth() -> String {
    format!("Bearer {KEY}")
}

#[test]
fn json_response_model_is_the_requested_name() {
    let (gw, proxy) = start(|req| {
        let body = format!(
            r#"{{"id":"c","model":"{}","choices":[{{"message":{{"content":"I am {INTERNAL}"}}}}],"usage":{{"total_tokens":3}}}}"#,
            model_of(req)
        );
        Reply::new(200, "application/json", body).header("x-litellm-model-group", &model_of(req))
    });
    for requested in ["gpt-4.1", "AgentX"] {
        let body = format!(r#"{{"model":"{requested}"}}"#);
        let resp = proxy.client().post(
            "/v1/chat/completions",
            &[("authorization", &auth())],
            body.as_bytes(),
        );
        assert_eq!(
            model_of(&gw.last()),
            INTERNAL,
            "the gateway got the internal name"
        );
        assert_eq!(resp.status, 200);
        let json = resp.json();
        assert_eq!(
            json["model"], requested,
            "the caller sees what it asked for"
        );
        assert_eq!(
            json["choices"][0]["message"]["content"],
            format!("I am {INTERNAL}"),
            "only the model field is restored"
        );
        assert_eq!(resp.header("x-litellm-model-group"), Some(requested));
        if let Some(length) = resp.header("content-length") {
            assert_eq!(
                length,
                resp.body.len().to_string(),
                "a changed body is not sent with a stale length"
            );
        }
    }
}

#[test]
fn a_different_model_after_fallback_is_left_alone() {
    let (_gw, proxy) = start(|_| {
        Reply::new(200, "application/json", r#"{"model":"backup-ok"}"#)
            .header("x-litellm-model-group", "backup-model")
    });
    let resp = proxy.client().post(
        "/v1/chat/completions",
        &[("authorization", &auth())],
        br#"{"model":"gpt-4.1"}"#,
    );
    assert_eq!(resp.json()["model"], "backup-ok");
    assert_eq!(resp.header("x-litellm-model-group"), Some("backup-model"));
}

fn sse_events(model: &str) -> Vec<Vec<u8>> {
    vec![
        format!("data: {{\"object\":\"chat.completion.chunk\",\"model\":\"{model}\",\"choices\":[{{\"delta\":{{\"content\":\"a\"}}}}]}}\n\n"),
        format!("event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"model\":\"{model}\"}}}}\n\n"),
        format!("data: {{\"type\":\"response.created\",\"response\":{{\"model\":\"{model}\"}}}}\n\n"),
        ": ping\n\n".to_string(),
        "data: [DONE]\n\n".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

#[test]
fn slow_streams_arrive_event_by_event_and_restored() {
    let interval = Duration::from_millis(200);
    let (_gw, proxy) =
        start(move |req| Reply::stream("text/event-stream", sse_events(&model_of(req)), interval));
    let mut client = proxy.client();
    client.send(
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth()),
            ("content-type", "application/json"),
        ],
        br#"{"model":"gpt-4.1","stream":true}"#,
        common::Framing::Length,
    );
    let start = Instant::now();
    let mut text = String::new();
    let mut arrivals = Vec::new();
    let status = client.read_streaming(|piece| {
        text.push_str(&String::from_utf8_lossy(piece));
        arrivals.push((start.elapsed(), text.matches("\n\n").count()));
    });
    assert_eq!(status, 200);
    assert_eq!(
        text,
        String::from_utf8(sse_events("gpt-4.1").concat()).expect("utf8")
    );
    assert!(!text.contains(INTERNAL));
    // Event k (0-based) is sent at k*200 ms; it must arrive long before the stream ends.
    for k in 1..5 {
        let at = arrivals
            .iter()
            .find(|(_, n)| *n >= k)
            .map(|(t, _)| *t)
            .expect("event arrived");
        assert!(
            at < interval * (k as u32) + Duration::from_millis(150),
            "event {k} arrived at {at:?}: held back instead of forwarded"
        );
    }
}

#[test]
fn error_messages_quote_the_requested_name() {
    let (_gw, proxy) = start(|req| {
        let msg = format!(
            "litellm.InternalServerError: model group '{0}' failed ... Fallbacks are configured for: {0}",
            model_of(req)
        );
        Reply::new(
            500,
            "application/json",
            serde_json::json!({"error": {"message": msg, "type": null, "code": "500"}}).to_string(),
        )
    });
    let resp = proxy.client().post(
        "/v1/chat/completions",
        &[("authorization", &auth())],
        br#"{"model":"gpt-4.1"}"#,
    );
    assert_eq!(resp.status, 500);
    let message = resp.json()["error"]["message"]
        .as_str()
        .expect("message")
        .to_string();
    assert!(!message.contains(INTERNAL), "{message}");
    assert!(
        message.contains("model group 'gpt-4.1' failed"),
        "{message}"
    );
}

#[test]
fn model_lists_show_the_callers_names_not_internal_ones() {
    let (gw, proxy) = start(|_| {
        Reply::new(
            200,
            "application/json",
            format!(
                r#"{{"object":"list","data":[{{"id":"gpt-3.5","object":"model"}},{{"id":"{INTERNAL}","object":"model"}},{{"id":"model_name_team-xyz_9","object":"model"}}]}}"#
            ),
        )
    });
    let resp = proxy.client().request(
        "GET",
        "/v1/models",
        &[("authorization", &auth()), ("accept-encoding", "gzip")],
        b"",
        common::Framing::Length,
    );
    assert_eq!(
        gw.last().header("accept-encoding"),
        None,
        "asked for an identity body to restore"
    );
    let ids: Vec<String> = resp.json()["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, ["gpt-3.5", "gpt-4.1", "AgentX"]);
}

#[test]
fn compressed_responses_are_never_touched() {
    let gzipped: Vec<u8> = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3];
    let body = gzipped.clone();
    let (_gw, proxy) = start(move |_| {
        Reply::new(200, "application/json", body.clone()).header("content-encoding", "gzip")
    });
    let resp = proxy.client().post(
        "/v1/chat/completions",
        &[("authorization", &auth())],
        br#"{"model":"gpt-4.1"}"#,
    );
    assert_eq!(resp.body, gzipped, "an encoded body passes byte for byte");
}
