//! Oracles shared by the fuzz targets. Each target checks, for arbitrary input:
//! no panic; the same output whatever the chunk boundaries; and a semantic oracle
//! computed independently of the code under test (serde_json for JSON).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use modelmap::mapping::Mapping;
use modelmap::rewrite::body::WINDOW;
use modelmap::rewrite::multipart::MultipartRewriter;
use modelmap::rewrite::restore::{Pairs, Restorer, StreamRestorer};
use modelmap::rewrite::{BodyRewriter, Names};
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

/// The request JSON oracle: a valid JSON object comes out as the same object with the
/// mapped values changed; anything else within the validation window comes out as is.
pub fn check_json_oracle(input: &[u8], output: &[u8]) {
    let mut de = serde_json::Deserializer::from_slice(input);
    de.disable_recursion_limit();
    let parsed = serde::Deserialize::deserialize(&mut de).and_then(|v: Value| de.end().map(|()| v));
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
                                if let Some(Value::String(s)) = o.get_mut("model") {
                                    if let Some(t) = map_name(s) {
                                        *s = t.to_string();
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            let mut de = serde_json::Deserializer::from_slice(output);
            de.disable_recursion_limit();
            let got: Value =
                serde::Deserialize::deserialize(&mut de).expect("a valid object stays valid");
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
