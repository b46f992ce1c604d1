//! The loop tests' shared cast: team e (whose key is in the keys table) and team f,
//! each with its own internal name for `gpt-4.1`, a raw gateway script that answers like
//! LiteLLM, and chat requests as raw bytes.

use super::raw::{Conn, Peer, head};
use super::{Proxy, Recorded, key_digest, model_of};

pub const KEY: &str = "sk-loop-team-e";
pub const OWN: &str = "model_name_team-e_1";
/// Team f's internal name: the guard refuses it to team e's callers.
pub const FOREIGN: &str = "model_name_team-f_1";

pub fn mapping() -> String {
    format!(
        "version: 1\nteams:\n  team-e:\n    models:\n      gpt-4.1: {OWN}\n      gpt-4o-realtime: model_name_team-e_rt\n  team-f:\n    models:\n      gpt-4.1: {FOREIGN}\nkeys:\n  {}: team-e\n",
        key_digest(KEY)
    )
}

pub fn auth() -> String {
    format!("Bearer {KEY}")
}

/// LiteLLM's answer to a chat request: the model it was asked for.
pub fn completion(req: &Recorded) -> Vec<u8> {
    serde_json::json!({"object": "chat.completion", "model": model_of(req)})
        .to_string()
        .into_bytes()
}

/// A raw gateway script that answers every request on the connection like LiteLLM,
/// with a Content-Length.
pub fn serve(mut peer: Peer) {
    while let Some(req) = peer.read_request() {
        let body = completion(&req);
        if peer
            .respond(200, &[("content-type", "application/json")], &body)
            .is_err()
        {
            return;
        }
    }
}

/// A chat request for `model` with a Content-Length, in `version` (`HTTP/1.1`, ...).
pub fn chat_in(version: &str, model: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let body = format!(r#"{{"model":"{model}","messages":[]}}"#);
    let auth = auth();
    let len = body.len().to_string();
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("content-length", len.as_str()),
    ];
    headers.extend_from_slice(extra);
    let text = head("POST", "/v1/chat/completions", &headers)
        .replacen("HTTP/1.1", version, 1)
        .into_bytes();
    [text, body.into_bytes()].concat()
}

/// A chat request for `model` with a Content-Length, as one buffer.
pub fn chat(model: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    chat_in("HTTP/1.1", model, extra)
}

/// A JSON chat body of about `size` bytes: `model` first, then one long message.
pub fn big_body(model: &str, size: usize) -> Vec<u8> {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(size)
    )
    .into_bytes()
}

/// A plain chat request on a new connection is answered, the name restored.
pub fn still_serves(proxy: &Proxy) {
    let mut conn = Conn::connect(proxy.addr);
    conn.write(&chat("gpt-4.1", &[])).expect("write");
    let (_, resp) = conn.read_final().expect("a normal request is answered");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        resp.json()["model"],
        "gpt-4.1",
        "the caller's name restored"
    );
}
