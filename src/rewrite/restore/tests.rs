use super::*;

const INTERNAL: &str = "model_name_team-abc_f1c7";

fn pairs() -> Pairs {
    Pairs::new(vec![(INTERNAL.to_string(), "gpt-4.1".to_string())])
}

/// A stream as LiteLLM sends it: chat chunks, an Anthropic message_start, a Responses
/// API event, a comment, a keep-alive blank line, CRLF lines and the final [DONE].
fn recorded_stream() -> String {
    [
        ": keep-alive comment mentioning model_name_team-abc_f1c7\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"model_name_team-abc_f1c7\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"model_name_team-abc_f1c7\"}}\n\n",
        "data: {\"type\":\"response.created\",\"response\":{\"model\":\"model_name_team-abc_f1c7\",\"status\":\"in_progress\"}}\r\n\r\n",
        "data: {\"model\":\"backup-ok\",\"choices\":[{\"delta\":{\"content\":\"model_name_team-abc_f1c7\"}}]}\n\n",
        "data: [DONE]\n\n",
    ]
    .concat()
}

fn expected_stream() -> String {
    recorded_stream()
        .replace(
            "\"model\":\"model_name_team-abc_f1c7\",\"choices\"",
            "\"model\":\"gpt-4.1\",\"choices\"",
        )
        .replace(
            "\"id\":\"m\",\"model\":\"model_name_team-abc_f1c7\"",
            "\"id\":\"m\",\"model\":\"gpt-4.1\"",
        )
        .replace(
            "{\"model\":\"model_name_team-abc_f1c7\",\"status\"",
            "{\"model\":\"gpt-4.1\",\"status\"",
        )
}

fn stream_through(pieces: &[&[u8]]) -> Vec<u8> {
    let mut r = Restorer::Stream(StreamRestorer::new(pairs()));
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        out.extend_from_slice(&r.feed(Some(Bytes::copy_from_slice(p)), i + 1 == pieces.len()));
    }
    out
}

#[test]
fn stream_events_are_restored_at_every_split_offset() {
    let input = recorded_stream();
    let expect = expected_stream();
    assert_ne!(input, expect, "the stream has values to restore");
    assert!(
        expect.contains("\"model\":\"backup-ok\""),
        "other models are left alone"
    );
    assert!(
        expect.contains("comment mentioning model_name"),
        "comments pass unchanged"
    );
    assert!(
        expect.contains("\"content\":\"model_name_team-abc_f1c7\""),
        "content is never touched"
    );
    let bytes = input.as_bytes();
    for cut in 0..=bytes.len() {
        let out = stream_through(&[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(String::from_utf8_lossy(&out), expect, "split at {cut}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(
        String::from_utf8_lossy(&stream_through(&singles)),
        expect,
        "one byte at a time"
    );
}

#[test]
fn complete_lines_leave_at_once() {
    let mut s = StreamRestorer::new(pairs());
    let out = s.feed(
        Bytes::from_static(b"data: {\"model\":\"model_name_team-abc_f1c7\"}\n\ndata: {\"mo"),
        false,
    );
    assert_eq!(
        &out[..],
        b"data: {\"model\":\"gpt-4.1\"}\n\n",
        "the finished event is not held back"
    );
    let out = s.feed(Bytes::from_static(b"del\":\"x\"}\n\n"), false);
    assert_eq!(&out[..], b"data: {\"model\":\"x\"}\n\n");
}

#[test]
fn json_bodies_restore_only_the_sent_name() {
    let body = br#"{"id":"x","model":"model_name_team-abc_f1c7","choices":[{"message":{"content":"model_name_team-abc_f1c7"}}]}"#;
    let mut r = Restorer::Json(JsonRewriter::with_profile(Profile::Response), pairs());
    let out = r.feed(Some(Bytes::from_static(body)), true);
    assert_eq!(
        String::from_utf8_lossy(&out),
        r#"{"id":"x","model":"gpt-4.1","choices":[{"message":{"content":"model_name_team-abc_f1c7"}}]}"#
    );
    let mut r = Restorer::Json(JsonRewriter::with_profile(Profile::Response), pairs());
    let other = br#"{"model":"backup-ok"}"#;
    assert_eq!(&r.feed(Some(Bytes::from_static(other)), true)[..], other);
}

#[test]
fn error_messages_quote_the_requested_name() {
    let body = br#"{"error":{"message":"model group 'model_name_team-abc_f1c7' failed. Fallbacks are configured for: model_name_team-abc_f1c7","type":"None","code":"500"}}"#;
    let mut r = Restorer::Error(Buffered::new(pairs()));
    assert!(
        r.feed(Some(Bytes::from_static(&body[..20])), false)
            .is_empty(),
        "held until complete"
    );
    let out = r.feed(Some(Bytes::from_static(&body[20..])), true);
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains(INTERNAL), "{text}");
    assert!(text.contains("model group 'gpt-4.1' failed"), "{text}");
}

#[test]
fn oversized_bodies_pass_unchanged() {
    let mut r = Restorer::Error(Buffered::new(pairs()));
    let big = Bytes::from(vec![b'x'; MAX_BUFFERED + 1]);
    assert_eq!(r.feed(Some(big.clone()), false).len(), big.len());
    assert_eq!(
        &r.feed(Some(Bytes::from_static(INTERNAL.as_bytes())), true)[..],
        INTERNAL.as_bytes()
    );
}

#[test]
fn model_lists_show_requestable_names_only() {
    let mapping = Mapping::parse(
        "version: 1\nteams:\n  team-abc:\n    models:\n      gpt-4.1: model_name_team-abc_1\n  team-xyz:\n    models:\n      gpt-4.1: model_name_team-xyz_2\naliases:\n  AgentX: gpt-4.1\n  Cheap: gpt-3.5\n",
        "t",
    )
    .expect("valid");
    let list = br#"{"object":"list","data":[
        {"id":"gpt-3.5","object":"model","created":1,"owned_by":"openai"},
        {"id":"model_name_team-abc_1","object":"model","created":2,"owned_by":"team"},
        {"id":"model_name_team-xyz_2","object":"model","created":3,"owned_by":"team"}]}"#;
    let ids = |team: Option<&str>| {
        let mut b = Buffered::new(ModelsList {
            mapping: Arc::new(mapping.clone()),
            team: team.map(str::to_string),
        });
        let out = b.feed(Bytes::from_static(list), true);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap_or_default().to_string(),
                    e["created"].as_i64().unwrap_or(0),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(Some("team-abc")),
        [
            ("gpt-3.5".into(), 1),
            ("gpt-4.1".into(), 2),
            ("AgentX".into(), 2),
            ("Cheap".into(), 1)
        ],
        "public names replace the team's internal ones; other teams' are gone; aliases listed"
    );
    assert_eq!(
        ids(None),
        [("gpt-3.5".to_string(), 1), ("Cheap".to_string(), 1)]
    );
}

#[test]
fn in_place_restores_pad_and_refuse_what_does_not_fit() {
    assert!(
        pairs().restore_fits(),
        "an internal name is longer than the public one"
    );
    let long = Pairs::new(vec![(
        "short".to_string(),
        "a-much-longer-alias".to_string(),
    )]);
    assert!(
        !long.restore_fits(),
        "a longer requested name cannot restore in place"
    );

    let body = format!(r#"{{"id":"c","model":"{INTERNAL}","usage":{{}}}}"#);
    let mut r = Restorer::Json(
        JsonRewriter::with_profile(Profile::Response).keeping_length(),
        pairs(),
    );
    let out = r.feed(Some(Bytes::from(body.clone())), true);
    assert_eq!(out.len(), body.len(), "the length is kept");
    let padding = " ".repeat(INTERNAL.len() - "gpt-4.1".len());
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!(r#"{{"id":"c","model":"gpt-4.1"{padding},"usage":{{}}}}"#)
    );

    // Were a restore ever longer than its value, the value would be left, not overrun.
    let mut r = Restorer::Json(
        JsonRewriter::with_profile(Profile::Response).keeping_length(),
        long,
    );
    let body = r#"{"model":"short"}"#;
    assert_eq!(
        r.feed(Some(Bytes::from_static(body.as_bytes())), true),
        body
    );
}
