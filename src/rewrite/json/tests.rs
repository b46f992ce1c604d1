use super::*;

fn mapper(place: Place, name: &str) -> Option<String> {
    match (place, name) {
        (_, "gpt-4.1") => Some("model_name_team-abc_1".into()),
        (Place::Fallback, "backup") => Some("model_name_team-abc_backup".into()),
        (_, "quote\"d") => Some("new\\line\n".into()),
        _ => None,
    }
}

/// Feeds `input` split at the given offsets and returns the concatenated output.
fn run_split(input: &str, cuts: &[usize]) -> (String, usize, bool) {
    let mut rw = JsonRewriter::new();
    let mut out = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let chunk = Bytes::copy_from_slice(&input.as_bytes()[last..cut]);
        out.extend_from_slice(&rw.feed(&chunk, &mut mapper));
        last = cut;
    }
    out.extend_from_slice(&rw.finish());
    (
        String::from_utf8(out).expect("utf8"),
        rw.rewrites(),
        rw.complete(),
    )
}

fn run(input: &str) -> String {
    let whole = run_split(input, &[]).0;
    for cut in 0..=input.len() {
        assert_eq!(
            run_split(input, &[cut]).0,
            whole,
            "split at {cut} of {input:?}"
        );
    }
    let every: Vec<usize> = (1..input.len()).collect();
    assert_eq!(
        run_split(input, &every).0,
        whole,
        "one byte at a time: {input:?}"
    );
    whole
}

#[test]
fn rewrites_top_level_model_only() {
    let input = r#"{"messages":[{"role":"user","content":"hi","model":"gpt-4.1"}],"model" : "gpt-4.1","n":1}"#;
    let expect = r#"{"messages":[{"role":"user","content":"hi","model":"gpt-4.1"}],"model" : "model_name_team-abc_1","n":1}"#;
    assert_eq!(run(input), expect);
}

#[test]
fn rewrites_fallbacks_strings_and_objects() {
    let input = r#"{"model":"x","fallbacks":["backup",{"model":"backup","messages":[{"model":"backup"}]},7],"context_window_fallbacks":["gpt-4.1"]}"#;
    let expect = r#"{"model":"x","fallbacks":["model_name_team-abc_backup",{"model":"model_name_team-abc_backup","messages":[{"model":"backup"}]},7],"context_window_fallbacks":["model_name_team-abc_1"]}"#;
    assert_eq!(run(input), expect);
    assert_eq!(run_split(input, &[]).1, 3);
}

#[test]
fn escaped_keys_and_values_are_decoded_and_replacements_escaped() {
    let input = r#"{"mod\u0065l":"gpt\u002d4.1","fallbacks":["quote\"d"]}"#;
    let expect = r#"{"mod\u0065l":"model_name_team-abc_1","fallbacks":["new\\line\n"]}"#;
    assert_eq!(run(input), expect);
}

#[test]
fn model_that_is_not_a_string_or_is_unmapped_is_untouched() {
    for input in [
        r#"{"model":null,"x":"gpt-4.1"}"#,
        r#"{"model":{"model":"gpt-4.1"}}"#,
        r#"{"model":[["gpt-4.1"]]}"#,
        r#"{"model":"other"}"#,
        r#"{"Model":"gpt-4.1"}"#,
        r#"{"model":12}"#,
    ] {
        assert_eq!(run(input), input);
    }
}

#[test]
fn model_lists_and_target_names_are_rewritten_name_by_name() {
    assert_eq!(
        run(
            r#"{"model":["gpt-4.1",1,"x"],"target_model_names":"gpt-4.1","session":{"model":"gpt-4.1"},"metadata":{"model":"gpt-4.1"}}"#
        ),
        r#"{"model":["model_name_team-abc_1",1,"x"],"target_model_names":"model_name_team-abc_1","session":{"model":"model_name_team-abc_1"},"metadata":{"model":"gpt-4.1"}}"#
    );
}

#[test]
fn every_fallback_shape_litellm_reads_is_rewritten() {
    assert_eq!(
        run(
            r#"{"content_policy_fallbacks":[{"gpt-4.1":["gpt-4.1"]}],"router_settings_override":{"fallbacks":["gpt-4.1"]},"fallbacks":[{"model":"gpt-4.1","fallbacks":["gpt-4.1"]}]}"#
        ),
        r#"{"content_policy_fallbacks":[{"gpt-4.1":["model_name_team-abc_1"]}],"router_settings_override":{"fallbacks":["model_name_team-abc_1"]},"fallbacks":[{"model":"model_name_team-abc_1","fallbacks":["model_name_team-abc_1"]}]}"#
    );
}

#[test]
fn duplicate_model_keys_are_all_rewritten() {
    let input = r#"{"model":"gpt-4.1","model":"gpt-4.1"}"#;
    assert_eq!(
        run(input),
        r#"{"model":"model_name_team-abc_1","model":"model_name_team-abc_1"}"#
    );
}

#[test]
fn non_objects_and_invalid_json_pass_through() {
    for input in [
        r#"["model","gpt-4.1"]"#,
        r#""gpt-4.1""#,
        "model=gpt-4.1",
        r#"{"a" 1, "model":"gpt-4.1"}"#,
        r#"{"a":1}} {"model":"gpt-4.1"}"#,
        "",
    ] {
        assert_eq!(run(input), input);
    }
    let (_, _, complete) = run_split(r#"{"model":"gpt-4.1""#, &[]);
    assert!(!complete, "a truncated object is not complete");
}

#[test]
fn whitespace_everywhere_is_preserved() {
    let input = "\n {\r\n\t\"model\"\n:\n\"gpt-4.1\" ,\"fallbacks\" : [ \"backup\" ] } \n";
    let expect = "\n {\r\n\t\"model\"\n:\n\"model_name_team-abc_1\" ,\"fallbacks\" : [ \"model_name_team-abc_backup\" ] } \n";
    assert_eq!(run(input), expect);
    assert!(run_split(input, &[]).2);
}

#[test]
fn overlong_values_pass_unchanged_without_being_held() {
    let long = "g".repeat(MAX_NAME_LEN * 3);
    let input = format!(r#"{{"model":"{long}"}}"#);
    let mut rw = JsonRewriter::new();
    let mut out = Vec::new();
    for piece in input.as_bytes().chunks(1000) {
        out.extend_from_slice(&rw.feed(&Bytes::copy_from_slice(piece), &mut mapper));
        assert!(
            rw.held.len() <= MAX_NAME_LEN + 1000,
            "held bytes stay bounded"
        );
    }
    out.extend_from_slice(&rw.finish());
    assert_eq!(out, input.as_bytes());
}

#[test]
fn deep_nesting_is_bounded() {
    let depth = 100_000;
    let input = format!(
        r#"{{"a":{}{}, "model":"gpt-4.1"}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let mut rw = JsonRewriter::new();
    let out = rw.feed(&Bytes::from(input.clone()), &mut mapper);
    assert_eq!(
        out,
        input.as_bytes(),
        "too deep for the gateway: passed through"
    );
    assert!(rw.stack.len() <= MAX_DEPTH);
}

#[test]
fn unchanged_chunks_are_not_copied() {
    let chunk = Bytes::from_static(br#"{"model":"other","messages":[]}"#);
    let mut rw = JsonRewriter::new();
    let out = rw.feed(&chunk, &mut mapper);
    assert_eq!(
        out.as_ptr(),
        chunk.as_ptr(),
        "zero-copy when nothing changes"
    );
}

#[test]
fn response_profile_restores_model_message_model_and_response_model_only() {
    let restore = |_: Place, name: &str| (name == "internal").then(|| "public".to_string());
    let run = |input: &str| {
        let mut rw = JsonRewriter::with_profile(Profile::Response);
        let mut restore = restore;
        String::from_utf8(
            rw.feed(&Bytes::from(input.to_string()), &mut restore)
                .to_vec(),
        )
        .expect("utf8")
    };
    assert_eq!(
        run(r#"{"id":"x","model":"internal","choices":[{"delta":{"model":"internal"}}]}"#),
        r#"{"id":"x","model":"public","choices":[{"delta":{"model":"internal"}}]}"#
    );
    assert_eq!(
        run(r#"{"type":"message_start","message":{"id":"m","model":"internal","content":[]}}"#),
        r#"{"type":"message_start","message":{"id":"m","model":"public","content":[]}}"#
    );
    assert_eq!(
        run(
            r#"{"type":"response.created","response":{"model":"internal","output":[{"model":"internal"}]}}"#
        ),
        r#"{"type":"response.created","response":{"model":"public","output":[{"model":"internal"}]}}"#
    );
    assert_eq!(
        run(r#"{"model":"other","fallbacks":["internal"]}"#),
        r#"{"model":"other","fallbacks":["internal"]}"#,
        "responses have no fallback lists"
    );
    let mut request = JsonRewriter::new();
    let mut restore = restore;
    let body = Bytes::from_static(br#"{"message":{"model":"internal"}}"#);
    assert_eq!(
        request.feed(&body, &mut restore),
        body,
        "requests have no message.model"
    );
}

#[test]
fn scalars_are_validated_like_the_gateways_parser() {
    for bad in [
        "tru", "01", "1.", "-", "1e", "1e+", "nul", "+1", "Infinit", "-NaN", ".5", "truex",
    ] {
        let input = format!(r#"{{"x":{bad},"model":"gpt-4.1"}}"#);
        assert_eq!(run(&input), input, "{bad} is not a JSON value: untouched");
    }
    let input = r#"{"a":-1.5e+10,"b":0,"c":0.25E-3,"d":NaN,"e":-Infinity,"f":Infinity,"g":true,"h":false,"i":null,"model":"gpt-4.1"}"#;
    assert_eq!(
        run(input),
        input.replace("\"gpt-4.1\"", "\"model_name_team-abc_1\"")
    );
}
