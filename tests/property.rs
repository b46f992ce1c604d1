//! Property: for random JSON request bodies fed in random chunk splits, what comes out
//! (of the rewriter, and out of the proxy at the gateway) equals the input with exactly
//! the mapped model values changed. The generator writes the input and the expected
//! output side by side, so the oracle does not share code with the scanner.

mod common;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use modelmap::mapping::Mapping;
use modelmap::rewrite::restore::{Pairs, Restorer, StreamRestorer};
use modelmap::rewrite::{BodyRewriter, JsonRewriter, Names, Profile};
use proptest::prelude::*;

use common::{FakeGateway, Framing, Proxy, key_digest};

const KEY: &str = "sk-property";

fn mapping_text() -> String {
    format!(
        "version: 1\nteams:\n  team-abc:\n    models:\n      gpt-4.1: model_name_team-abc_1\n      \"claude-*\": \"model_name_team-abc_claude\\\"q\"\naliases:\n  AgentX-LLM: gpt-4.1\nkeys:\n  {}: team-abc\n",
        key_digest(KEY)
    )
}

/// A name, and what it becomes as a `model` / as a fallback entry.
type Named = (&'static str, Option<&'static str>, Option<&'static str>);

/// Names the generator uses in requests.
const NAMES: [Named; 6] = [
    (
        "gpt-4.1",
        Some("model_name_team-abc_1"),
        Some("model_name_team-abc_1"),
    ),
    (
        "claude-3-opus",
        Some("model_name_team-abc_claude\"q"),
        Some("model_name_team-abc_claude\"q"),
    ),
    (
        "AgentX-LLM",
        Some("model_name_team-abc_1"),
        Some("model_name_team-abc_1"),
    ),
    ("unmapped", None, None),
    (
        "gpt-4.1,unmapped",
        Some("model_name_team-abc_1,unmapped"),
        None,
    ),
    ("", None, None),
];

/// Names in responses: only what modelmap sent is restored, and only as a `model`.
const RESPONSE_NAMES: [Named; 6] = [
    ("model_name_team-abc_1", Some("gpt-4.1"), None),
    ("model_name_team-abc_claude\"q", Some("claude-3-opus"), None),
    ("backup-ok", None, None),
    ("gpt-4.1", None, None),
    ("model_name_team-abc_1,x", None, None),
    ("", None, None),
];

fn response_pairs() -> Pairs {
    Pairs::new(vec![
        ("model_name_team-abc_1".into(), "gpt-4.1".into()),
        (
            "model_name_team-abc_claude\"q".into(),
            "claude-3-opus".into(),
        ),
    ])
}

#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Num(&'static str),
    Str(String, bool),
    Name(usize, bool),
    Arr(Vec<J>, u8),
    Obj(Vec<(String, bool, J)>, u8),
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        Just("model".to_string()),
        Just("quote\" back\\ nl\n tab\t nul\u{0} emoji \u{1F600} é".to_string()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("model".to_string()),
        1 => Just("fallbacks".to_string()),
        1 => Just("context_window_fallbacks".to_string()),
        1 => Just("target_model_names".to_string()),
        1 => Just("message".to_string()),
        1 => Just("response".to_string()),
        3 => "\\PC{0,8}",
    ]
}

fn value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        prop::sample::select(vec!["0", "-1.5e3", "12345678901234567890", "1E-7", "3.25"])
            .prop_map(J::Num),
        (text(), any::<bool>()).prop_map(|(s, e)| J::Str(s, e)),
        (0..NAMES.len(), any::<bool>()).prop_map(|(i, e)| J::Name(i, e)),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..5), 0u8..4).prop_map(|(v, w)| J::Arr(v, w)),
            (
                prop::collection::vec((key(), any::<bool>(), inner), 0..5),
                0u8..4
            )
                .prop_map(|(v, w)| J::Obj(v, w)),
        ]
    })
}

/// A top-level object, sometimes padded past the rewriter's validation window.
fn body() -> impl Strategy<Value = (J, bool)> {
    (
        prop::collection::vec((key(), any::<bool>(), value()), 0..7),
        0u8..4,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(members, ws, pad)| (J::Obj(members, ws), pad))
}

#[derive(Clone, Copy, PartialEq)]
enum Slot {
    Plain,
    Model,
    Fallback,
    FallbackList,
    FallbackObject,
    /// An array under the top-level `model`: its strings are models.
    ModelList,
    /// Any other array inside a fallback object: its strings are fallback names.
    GroupList,
    Wrapper,
    Top,
}

/// JSON string literal; `escape` writes every non-alphanumeric character as \uXXXX.
fn quote(s: &str, escape: bool) -> String {
    if !escape {
        return serde_json::to_string(s).expect("string");
    }
    let mut out = String::from("\"");
    for unit in s.encode_utf16() {
        match char::from_u32(unit as u32) {
            Some(c) if c.is_ascii_alphanumeric() => out.push(c),
            _ => out.push_str(&format!("\\u{unit:04x}")),
        }
    }
    out.push('"');
    out
}

fn ws(style: u8) -> &'static str {
    ["", " ", "\n  ", "\t\r\n "][style as usize % 4]
}

struct Doc {
    input: String,
    expect: String,
    names: &'static [Named],
    response: bool,
    /// A name the gateway would echo in a response header contains a character no header
    /// can carry (a control character other than tab, or one outside Latin-1): the
    /// proxy refuses the request.
    untravelling: bool,
}

impl Doc {
    fn both(&mut self, s: &str) {
        self.input.push_str(s);
        self.expect.push_str(s);
    }

    fn string(&mut self, s: &str, escape: bool, slot: Slot) {
        let original = quote(s, escape);
        let mapped = self
            .names
            .iter()
            .find(|(n, _, _)| *n == s)
            .and_then(|(_, m, f)| match slot {
                Slot::Model => *m,
                Slot::Fallback => *f,
                _ => None,
            });
        if matches!(slot, Slot::Model | Slot::Fallback)
            && s.chars()
                .any(|c| (c < ' ' && c != '\t') || c == '\x7f' || c as u32 > 0xff)
        {
            self.untravelling = true;
        }
        self.input.push_str(&original);
        match mapped {
            Some(new) => self
                .expect
                .push_str(&serde_json::to_string(new).expect("string")),
            None => self.expect.push_str(&original),
        }
    }

    fn value(&mut self, j: &J, slot: Slot) {
        let scalar_slot = |s: Slot| {
            if matches!(s, Slot::Model | Slot::Fallback) {
                s
            } else {
                Slot::Plain
            }
        };
        match j {
            J::Null => self.both("null"),
            J::Bool(b) => self.both(if *b { "true" } else { "false" }),
            J::Num(n) => self.both(n),
            J::Str(s, e) => self.string(s, *e, scalar_slot(slot)),
            J::Name(i, e) => {
                self.string(self.names[*i % self.names.len()].0, *e, scalar_slot(slot))
            }
            J::Arr(items, w) => {
                let child = match slot {
                    Slot::FallbackList => Slot::Fallback,
                    Slot::ModelList => Slot::Model,
                    Slot::GroupList => Slot::Fallback,
                    _ => Slot::Plain,
                };
                self.both("[");
                for (n, item) in items.iter().enumerate() {
                    self.both(if n > 0 { "," } else { "" });
                    self.both(ws(*w));
                    // Object elements of a fallback list have their own `model` slot.
                    let s = match (slot, child, item) {
                        (Slot::FallbackList, Slot::Fallback, J::Obj(..)) => Slot::FallbackObject,
                        (_, _, J::Obj(..) | J::Arr(..)) => Slot::Plain,
                        _ => child,
                    };
                    self.value(item, s);
                }
                self.both(ws(*w));
                self.both("]");
            }
            J::Obj(members, w) => {
                self.both("{");
                for (n, (k, e, v)) in members.iter().enumerate() {
                    self.both(if n > 0 { "," } else { "" });
                    self.both(ws(*w));
                    self.both(&quote(k, *e));
                    self.both(ws(*w));
                    self.both(":");
                    self.both(ws(*w));
                    let s = match (slot, k.as_str(), v, self.response) {
                        (Slot::Top, "model" | "target_model_names", J::Arr(..), false) => {
                            Slot::ModelList
                        }
                        (Slot::Top, "target_model_names", _, false) => Slot::Model,
                        (Slot::Top, "model", _, _) => Slot::Model,
                        (
                            Slot::Top,
                            "fallbacks" | "context_window_fallbacks",
                            J::Arr(..),
                            false,
                        ) => Slot::FallbackList,
                        (Slot::FallbackObject, "model", _, false) => Slot::Fallback,
                        (
                            Slot::FallbackObject,
                            "fallbacks" | "context_window_fallbacks",
                            J::Arr(..),
                            false,
                        ) => Slot::FallbackList,
                        (Slot::FallbackObject, _, J::Arr(..), false) => Slot::GroupList,
                        (Slot::Top, "message" | "response", J::Obj(..), true) => Slot::Wrapper,
                        (Slot::Wrapper, "model", _, true) => Slot::Model,
                        _ => Slot::Plain,
                    };
                    self.value(v, s);
                }
                self.both(ws(*w));
                self.both("}");
            }
        }
    }
}

fn render(body: &(J, bool)) -> (String, String) {
    let (input, expect, _) = render_request(body);
    (input, expect)
}

/// The request, what the gateway should receive, and whether the proxy refuses it.
fn render_request(body: &(J, bool)) -> (String, String, bool) {
    let mut doc = Doc {
        input: String::new(),
        expect: String::new(),
        names: &NAMES,
        response: false,
        untravelling: false,
    };
    doc.value(&padded(body), Slot::Top);
    (doc.input, doc.expect, doc.untravelling)
}

fn padded((top, pad): &(J, bool)) -> J {
    match (top, pad) {
        (J::Obj(members, w), true) => {
            let mut members = members.clone();
            members.insert(0, ("pad".into(), false, J::Str("p".repeat(70_000), false)));
            J::Obj(members, *w)
        }
        _ => top.clone(),
    }
}

fn render_with(
    (top, pad): &(J, bool),
    names: &'static [Named],
    response: bool,
) -> (String, String) {
    let mut doc = Doc {
        input: String::new(),
        expect: String::new(),
        names,
        response,
        untravelling: false,
    };
    doc.value(&padded(&(top.clone(), *pad)), Slot::Top);
    (doc.input, doc.expect)
}

fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut v: Vec<usize> = raw.iter().map(|c| c % (len + 1)).collect();
    v.sort_unstable();
    v
}

fn rewrite(input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mapping = Arc::new(Mapping::parse(&mapping_text(), "prop").expect("valid"));
    let mut rw = BodyRewriter::new();
    let mut names = Names::new(mapping, Some("team-abc".into()));
    let mut out = Vec::new();
    let mut last = 0;
    for &cut in cuts {
        out.extend_from_slice(&rw.feed(
            Some(Bytes::copy_from_slice(&input[last..cut])),
            false,
            &mut names,
        ));
        last = cut;
    }
    out.extend_from_slice(&rw.feed(
        Some(Bytes::copy_from_slice(&input[last..])),
        true,
        &mut names,
    ));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn rewriter_changes_exactly_the_mapped_values(doc in body(), raw_cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let (input, expect) = render(&doc);
        let out = rewrite(input.as_bytes(), &cuts(input.len(), &raw_cuts));
        prop_assert_eq!(String::from_utf8_lossy(&out), expect.as_str());
        let parsed: serde_json::Value = serde_json::from_slice(&out).expect("output is JSON");
        let expected: serde_json::Value = serde_json::from_str(&expect).expect("expected is JSON");
        prop_assert_eq!(parsed, expected);
    }
}

fn restore(mut r: Restorer, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last = 0;
    for &cut in cuts {
        out.extend_from_slice(&r.feed(Some(Bytes::copy_from_slice(&input[last..cut])), false));
        last = cut;
    }
    out.extend_from_slice(&r.feed(Some(Bytes::copy_from_slice(&input[last..])), true));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn json_responses_change_exactly_the_restored_values(doc in body(), raw_cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let (input, expect) = render_with(&doc, &RESPONSE_NAMES, true);
        let r = Restorer::Json(JsonRewriter::with_profile(Profile::Response), response_pairs());
        let out = restore(r, input.as_bytes(), &cuts(input.len(), &raw_cuts));
        prop_assert_eq!(String::from_utf8_lossy(&out), expect.as_str());
    }

    #[test]
    fn json_responses_restored_in_place_keep_their_length(doc in body(), raw_cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let (input, expect) = render_with(&doc, &RESPONSE_NAMES, true);
        prop_assume!(response_pairs().restore_fits());
        let rw = JsonRewriter::with_profile(Profile::Response).keeping_length();
        let r = Restorer::Json(rw, response_pairs());
        prop_assert!(r.keeps_length());
        let out = restore(r, input.as_bytes(), &cuts(input.len(), &raw_cuts));
        prop_assert_eq!(out.len(), input.len(), "same length, so Content-Length stays true");
        // The same bytes as a plain restore, plus spaces (only spaces) after values.
        let (mut i, expect) = (0, expect.as_bytes());
        for &b in &out {
            if i < expect.len() && expect[i] == b {
                i += 1;
            } else {
                prop_assert_eq!(b, b' ', "only white space is added");
            }
        }
        prop_assert_eq!(i, expect.len(), "every byte of the plain restore is there");
    }

    #[test]
    fn stream_events_change_exactly_the_restored_values(docs in prop::collection::vec(body(), 1..5), raw_cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let (mut input, mut expect) = (String::new(), String::new());
        for doc in &docs {
            // One line per event, as gateways send them: no line breaks in the JSON.
            let (i, e) = render_with(&(doc.0.clone(), false), &RESPONSE_NAMES, true);
            let (i, e) = (i.replace(['\n', '\r'], " "), e.replace(['\n', '\r'], " "));
            input.push_str(&format!("data: {i}\n\n"));
            expect.push_str(&format!("data: {e}\n\n"));
        }
        input.push_str("data: [DONE]\n\n");
        expect.push_str("data: [DONE]\n\n");
        let r = Restorer::Stream(StreamRestorer::new(response_pairs()));
        let out = restore(r, input.as_bytes(), &cuts(input.len(), &raw_cuts));
        prop_assert_eq!(String::from_utf8_lossy(&out), expect.as_str());
    }
}

struct Shared {
    gw: FakeGateway,
    proxy: Proxy,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let gw = FakeGateway::start();
        let proxy = Proxy::start(&gw.url(), &mapping_text(), &[]);
        Shared { gw, proxy }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn proxy_delivers_exactly_the_mapped_values(doc in body(), raw_cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let s = shared();
        let (input, expect, refused) = render_request(&doc);
        let cuts = cuts(input.len(), &raw_cuts);
        let auth = format!("Bearer {KEY}");
        let mut client = s.proxy.client();
        let resp = client.request("POST", "/v1/chat/completions", &[("authorization", &auth)], input.as_bytes(), Framing::Chunked(&cuts));
        if refused {
            prop_assert_eq!(resp.status, 400);
            prop_assert_eq!(&resp.json()["error"]["code"], "invalid_model_name");
        } else {
            prop_assert_eq!(resp.status, 200);
            prop_assert_eq!(s.gw.last().body_str(), expect);
        }
        prop_assert_eq!(s.gw.garbage(), 0, "every body framed exactly once upstream");
    }
}
