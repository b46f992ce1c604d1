//! The fuzz targets' bodies and the oracles they share. Each target checks, for
//! arbitrary input: no panic; the same output whatever the chunk boundaries; and a
//! semantic oracle computed independently of the code under test (serde_json for JSON).
//!
//! The targets in fuzz_targets/ only call the `target_*` functions here, and
//! tests/fuzz_corpus.rs (in the main crate's ordinary `cargo test`) replays every
//! committed corpus file through the same functions, so the corpus is checked on every
//! test run without cargo-fuzz; fuzz/run.sh is for looking for new inputs. This file is
//! compiled in both places: with the fuzz crate's serde_json (feature
//! `unbounded_depth`) and with the main crate's, which keeps serde_json's recursion
//! limit (see `parse_unbounded`).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use modelmap::mapping::Mapping;
use modelmap::rewrite::body::WINDOW;
use modelmap::rewrite::multipart::MultipartRewriter;
use modelmap::rewrite::path::rewrite;
use modelmap::rewrite::restore::{Pairs, Restorer, StreamRestorer};
use modelmap::rewrite::{BodyRewriter, Names, Place};
use serde_json::Value;

const MAPPING: &str = r#"
version: 1
teams:
  t:
    models:
      gpt-4.1: TARGET-gpt
      "claude-*": TARGET-claude
aliases:
  a: gpt-4.1
"#;

fn mapping() -> Arc<Mapping> {
    static M: OnceLock<Arc<Mapping>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Mapping::parse(MAPPING, "fuzz").expect("fuzz mapping is valid")))
        .clone()
}

pub fn names() -> Names {
    Names::new(mapping(), Some("t".into()))
}

/// What the mapping does to one name (an independent restatement for the oracle).
fn map_name(name: &str) -> Option<&'static str> {
    match name {
        "gpt-4.1" | "a" => Some("TARGET-gpt"),
        n if n.starts_with("claude-") => Some("TARGET-claude"),
        _ => None,
    }
}

/// The first bytes choose up to 7 cut points; the rest is the body.
pub fn split_input(data: &[u8]) -> Option<(Vec<usize>, &[u8])> {
    let (&n, rest) = data.split_first()?;
    let n = (n % 8) as usize;
    if rest.len() < n * 2 {
        return None;
    }
    let (cut_bytes, body) = rest.split_at(n * 2);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as usize % (body.len() + 1))
        .collect();
    cuts.sort_unstable();
    Some((cuts, body))
}

fn feed_all(body: &[u8], cuts: &[usize], mut feed: impl FnMut(Bytes, bool) -> Bytes) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last = 0;
    for &cut in cuts {
        out.extend_from_slice(&feed(Bytes::copy_from_slice(&body[last..cut]), false));
        last = cut;
    }
    out.extend_from_slice(&feed(Bytes::copy_from_slice(&body[last..]), true));
    out
}

pub fn rewrite_json(body: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut rw = BodyRewriter::new();
    let mut n = names();
    feed_all(body, cuts, |chunk, end| rw.feed(Some(chunk), end, &mut n))
}

pub fn restore_stream(body: &[u8], cuts: &[usize]) -> Vec<u8> {
    let pairs = Pairs::new(vec![("TARGET-gpt".into(), "gpt-4.1".into())]);
    let mut r = Restorer::Stream(StreamRestorer::new(pairs));
    feed_all(body, cuts, |chunk, end| r.feed(Some(chunk), end))
}

pub fn rewrite_multipart(body: &[u8], cuts: &[usize], batch: bool) -> Vec<u8> {
    let mut rw = MultipartRewriter::new("XyZ", batch);
    let mut n = names();
    feed_all(body, cuts, |chunk, end| rw.feed(Some(chunk), end, &mut n))
}

fn map_value_model(v: &mut Value) {
    if let Value::String(s) = v {
        if s.contains(',') {
            let parts: Vec<String> = s
                .split(',')
                .map(|p| match map_name(p.trim()) {
                    Some(t) => {
                        let lead = &p[..p.len() - p.trim_start().len()];
                        let trail = &p[p.trim_end().len()..];
                        format!("{lead}{t}{trail}")
                    }
                    None => p.to_string(),
                })
                .collect();
            *s = parts.join(",");
        } else if let Some(t) = map_name(s) {
            *s = t.to_string();
        }
    }
}

enum Parsed {
    Value(Result<Value, serde_json::Error>),
    /// Nested deeper than serde_json's recursion limit, where it is on: no oracle.
    TooDeep,
}

/// The whole of `bytes` as one JSON value, at any depth where serde_json allows it.
// The feature is the fuzz crate's; the main crate's tests compile this file too.
#[allow(unexpected_cfgs)]
fn parse_unbounded(bytes: &[u8]) -> Parsed {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    #[cfg(feature = "unbounded_depth")]
    de.disable_recursion_limit();
    let parsed = serde::Deserialize::deserialize(&mut de).and_then(|v: Value| de.end().map(|()| v));
    match parsed {
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => Parsed::TooDeep,
        other => Parsed::Value(other),
    }
}

/// The request JSON oracle: a valid JSON object comes out as the same object with the
/// mapped values changed; anything else within the validation window comes out as is.
pub fn check_json_oracle(input: &[u8], output: &[u8]) {
    let parsed = match parse_unbounded(input) {
        Parsed::TooDeep => return,
        Parsed::Value(v) => v,
    };
    match parsed {
        Ok(Value::Object(mut obj)) => {
            if let Some(m) = obj.get_mut("model") {
                map_value_model(m);
            }
            for key in ["fallbacks", "context_window_fallbacks"] {
                if let Some(Value::Array(items)) = obj.get_mut(key) {
                    for item in items {
                        match item {
                            Value::String(s) => {
                                if let Some(t) = map_name(s) {
                                    *s = t.to_string();
                                }
                            }
                            Value::Object(o) => {
                                if let Some(Value::String(s)) = o.get_mut("model")
                                    && let Some(t) = map_name(s)
                                {
                                    *s = t.to_string();
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            let got = match parse_unbounded(output) {
                Parsed::Value(got) => got.expect("a valid object stays valid"),
                Parsed::TooDeep => panic!("an object that parsed gets deeper"),
            };
            assert_eq!(got, Value::Object(obj), "only the mapped values may change");
        }
        Ok(_) => assert_eq!(output, input, "non-object JSON passes untouched"),
        Err(_) => {
            // The scanner does not check escapes or control characters inside strings,
            // and accepts NaN/Infinity (as the gateway's parser does); leave those aside.
            let unchecked = input.iter().any(|&b| b < 0x20 || b == b'\\')
                || input.windows(3).any(|w| w == b"NaN")
                || input.windows(8).any(|w| w == b"Infinity");
            if input.len() <= WINDOW && !unchecked {
                assert_eq!(
                    output, input,
                    "invalid JSON within the window passes untouched"
                );
            }
        }
    }
}

/// JSON request bodies: never a panic; cutting the body anywhere changes nothing; and
/// when the body is a JSON object, the output is that object with exactly the mapped
/// model values changed (checked through serde_json, independently of the scanner).
pub fn target_json_request(data: &[u8]) {
    let Some((cuts, body)) = split_input(data) else {
        return;
    };
    let whole = rewrite_json(body, &[]);
    assert_eq!(
        rewrite_json(body, &cuts),
        whole,
        "chunk boundaries changed the output"
    );
    check_json_oracle(body, &whole);
}

/// SSE restoring: never a panic; the same output whatever the chunk boundaries; a
/// stream with neither the sent name nor an escape passes byte for byte.
pub fn target_sse_response(data: &[u8]) {
    let Some((cuts, body)) = split_input(data) else {
        return;
    };
    let whole = restore_stream(body, &[]);
    assert_eq!(
        restore_stream(body, &cuts),
        whole,
        "chunk boundaries changed the output"
    );
    let may_change = body.contains(&b'\\') || body.windows(10).any(|w| w == b"TARGET-gpt");
    if !may_change {
        assert_eq!(whole, body, "nothing to restore: untouched");
    }
}

/// Multipart forms and batch files: never a panic; the same output whatever the chunk
/// boundaries; a body naming no mapped model passes byte for byte.
pub fn target_multipart(data: &[u8]) {
    let Some((cuts, body)) = split_input(data) else {
        return;
    };
    for batch in [false, true] {
        let whole = rewrite_multipart(body, &[], batch);
        assert_eq!(
            rewrite_multipart(body, &cuts, batch),
            whole,
            "chunk boundaries changed the output"
        );
        let names_a_model = [&b"gpt-4.1"[..], b"claude-", b"\\"]
            .iter()
            .any(|n| body.windows(n.len()).any(|w| w == *n))
            || body
                .split(|&b| !b.is_ascii_alphanumeric())
                .any(|w| w == b"a");
        if !names_a_model {
            assert_eq!(whole, body, "nothing mapped: untouched");
        }
    }
}

/// URL paths and queries: never a panic; a rewritten URL differs from the input only
/// where the model name was, and unmapped URLs are never changed.
pub fn target_url_path(data: &[u8]) {
    let Ok(uri) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(
        rewrite(uri, &mut |_: Place, _: &str| None),
        None,
        "nothing mapped: nothing changes"
    );
    if let Some(new) = rewrite(uri, &mut |_: Place, name: &str| Some(format!("{name}-X"))) {
        // Mapping back (strip the marker) must give a URL that maps the same way again.
        let back = rewrite(&new, &mut |_: Place, name: &str| {
            name.strip_suffix("-X").map(str::to_string)
        });
        assert!(
            back.is_some(),
            "the rewritten name is found again at the same place: {uri} -> {new}"
        );
    }
}
