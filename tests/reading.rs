//! The request families the gateway reads model names from, sent byte for byte through
//! the real proxy: a caller with no team never gets another team's internal name to the
//! gateway (refused with 403 or 400 instead), and a team caller's public name arrives
//! mapped at the same place, however the request spells it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{FakeGateway, Proxy, key_digest};

const TEAM_KEY: &str = "sk-reading-team";
const NO_TEAM_KEY: &str = "sk-reading-nobody";
const OTHER: &str = "model_name_team-b_5e6f";
const PUBLIC: &str = "gpt-4.1";
const INTERNAL: &str = "model_name_team-a_1a2b";

fn setup() -> (FakeGateway, Proxy) {
    let mapping = format!(
        "version: 1\nteams:\n  team-a:\n    models:\n      {PUBLIC}: {INTERNAL}\n  team-b:\n    models:\n      other-public: {OTHER}\nkeys:\n  {}: team-a\n",
        key_digest(TEAM_KEY)
    );
    let gw = FakeGateway::start();
    let proxy = Proxy::start(&gw.url(), &mapping, &["--identity-lookup=false"]);
    (gw, proxy)
}

/// Sends `head` (request line and headers, without the blank line) and `body`, with the
/// caller's key and `connection: close`; returns the status and the body.
fn send(proxy: &Proxy, key: &str, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(proxy.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req =
        format!("{head}\r\nhost: x\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n")
            .into_bytes();
    req.extend_from_slice(body);
    stream.write_all(&req).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

/// A request of one family, built around the model name `n`.
struct Family {
    what: &'static str,
    build: fn(&str) -> (String, Vec<u8>),
}

fn json_head(path: &str, ct: &str, len: usize) -> String {
    format!("POST {path} HTTP/1.1\r\ncontent-type: {ct}\r\ncontent-length: {len}")
}

fn json(path: &str, ct: &str, body: String) -> (String, Vec<u8>) {
    (json_head(path, ct, body.len()), body.into_bytes())
}

fn multipart(ct_params: &str, part_headers: &str, n: &str) -> (String, Vec<u8>) {
    let body = format!(
        "--BND\r\n{part_headers}\r\n\r\n{n}\r\n--BND\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--BND--\r\n"
    );
    json(
        "/v1/audio/transcriptions",
        &format!("multipart/form-data; {ct_params}"),
        body,
    )
}

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Families in which a team caller's public name must arrive mapped.
const MAPPED: &[Family] = &[
    Family {
        what: "urlencoded form (curl -d)",
        build: |n| {
            json(
                "/v1/chat/completions",
                "application/x-www-form-urlencoded",
                format!("messages=hi&model={n}"),
            )
        },
    },
    Family {
        what: "urlencoded form, percent-encoded field name",
        build: |n| {
            json(
                "/v1/chat/completions",
                "Application/X-WWW-Form-Urlencoded; charset=utf-8",
                format!("mod%65l={n}"),
            )
        },
    },
    Family {
        what: "multipart/mixed is read as JSON",
        build: |n| {
            json(
                "/v1/chat/completions",
                "multipart/mixed; boundary=x",
                format!(r#"{{"model":"{n}"}}"#),
            )
        },
    },
    Family {
        what: "text/plain is read as JSON",
        build: |n| {
            json(
                "/v1/chat/completions",
                "text/plain",
                format!(r#"{{"model":"{n}"}}"#),
            )
        },
    },
    Family {
        what: "?model= on an inference route wins over the body",
        build: |n| {
            json(
                &format!("/v1/chat/completions?model={n}"),
                "application/json",
                r#"{"model":"harmless"}"#.into(),
            )
        },
    },
    Family {
        what: "percent-encoded query parameter name",
        build: |n| {
            json(
                &format!("/v1/embeddings?mod%65l={n}"),
                "application/json",
                "{}".into(),
            )
        },
    },
    Family {
        what: "x-litellm-model header",
        build: |n| {
            (
                format!("GET /v1/files HTTP/1.1\r\nx-litellm-model: {n}"),
                Vec::new(),
            )
        },
    },
    Family {
        what: "target_model_names in the body",
        build: |n| {
            json(
                "/v1/files",
                "application/json",
                format!(r#"{{"target_model_names":"x, {n}"}}"#),
            )
        },
    },
    Family {
        what: "percent-encoded Azure path",
        build: |n| {
            json(
                &format!("/openai/deployment%73/{n}/chat/completions"),
                "application/json",
                "{}".into(),
            )
        },
    },
    Family {
        what: "percent-encoded Gemini method",
        build: |n| {
            json(
                &format!("/v1beta/models/{n}%3AgenerateContent"),
                "application/json",
                "{}".into(),
            )
        },
    },
    Family {
        what: "percent-encoded realtime route",
        build: |n| (format!("GET /v1/realtim%65?model={n} HTTP/1.1"), Vec::new()),
    },
    Family {
        what: "a model list",
        build: |n| {
            json(
                "/v1/chat/completions",
                "application/json",
                format!(r#"{{"model":["x","{n}"]}}"#),
            )
        },
    },
    Family {
        what: "a chunked form whose last piece is sent before the end",
        build: |n| {
            (
                "POST /v1/chat/completions HTTP/1.1\r\ncontent-type: application/x-www-form-urlencoded\r\ntransfer-encoding: chunked".into(),
                format!("9\r\nmessages=\r\n{:x}\r\nhi&model={n}&i\r\n5\r\nnput=\r\n0\r\n\r\n", 11 + n.len()).into_bytes(),
            )
        },
    },
    Family {
        what: "multipart: the last Content-Disposition counts",
        build: |n| {
            multipart(
                "boundary=BND",
                "Content-Disposition: form-data; name=\"prompt\"\r\ncontent-disposition: form-data; name=\"model\"",
                n,
            )
        },
    },
    Family {
        what: "multipart: a quoted ';' in a parameter, a repeated boundary",
        build: |n| {
            multipart(
                "boundary=\"zz;z\"; boundary=BND",
                "Content-Disposition: form-data; x=\"a;b\"; name=model",
                n,
            )
        },
    },
];

/// Families that carry a name modelmap does not map but must refuse when it is another
/// team's, or requests it cannot read at all.
const REFUSED_ONLY: &[Family] = &[
    Family {
        what: "a comma list separated by Python white space",
        build: |n| {
            json(
                "/v1/chat/completions",
                "application/json",
                format!(r#"{{"model":"x,\u001f{n}\u001e"}}"#),
            )
        },
    },
    Family {
        what: "a managed file id carrying a model",
        build: |n| {
            let id = format!(
                "file-{}",
                b64(&format!("litellm:application/jsonl;model,{n}"))
            );
            json(
                "/v1/batches",
                "application/json",
                format!(r#"{{"input_file_id":"{id}","endpoint":"/v1/chat/completions"}}"#),
            )
        },
    },
    Family {
        what: "JSON nested deeper than modelmap follows, before the model",
        build: |n| {
            let depth = 5000;
            json(
                "/v1/chat/completions",
                "application/json",
                format!(
                    r#"{{"x":{}{},"model":"{n}"}}"#,
                    "[".repeat(depth),
                    "]".repeat(depth)
                ),
            )
        },
    },
    Family {
        what: "a comma list longer than modelmap looks up",
        build: |n| {
            json(
                "/v1/chat/completions",
                "application/json",
                format!(r#"{{"model":"{}{n}"}}"#, "a,".repeat(10_000)),
            )
        },
    },
    Family {
        what: "a multipart charset that is not UTF-8",
        build: |n| {
            multipart(
                "boundary=BND; charset=utf-16",
                "Content-Disposition: form-data; name=model",
                n,
            )
        },
    },
    Family {
        what: "a compressed body",
        build: |n| {
            let body = format!(r#"{{"model":"{n}"}}"#);
            (
                format!(
                    "POST /v1/chat/completions HTTP/1.1\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: {}",
                    body.len()
                ),
                body.into_bytes(),
            )
        },
    },
    Family {
        what: "Content-Length as a list of equal values",
        build: |n| {
            let body = format!(r#"{{"model":"{n}"}}"#);
            let len = body.len();
            (
                format!(
                    "POST /v1/chat/completions HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: {len},{len}"
                ),
                body.into_bytes(),
            )
        },
    },
];

#[test]
fn a_caller_without_a_team_never_reaches_another_teams_internal_name() {
    let (gw, proxy) = setup();
    for family in MAPPED.iter().chain(REFUSED_ONLY) {
        let before = gw.requests().len();
        let (head, body) = (family.build)(OTHER);
        let (status, answer) = send(&proxy, NO_TEAM_KEY, &head, &body);
        assert!(
            status == 403 || status == 400,
            "{}: got {status} {answer}",
            family.what
        );
        assert!(answer.contains("\"code\""), "{}: {answer}", family.what);
        let leaked: Vec<_> = gw.requests()[before..]
            .iter()
            .filter(|r| format!("{r:?}").contains(OTHER) || r.body_str().contains(OTHER))
            .map(|r| r.path.clone())
            .collect();
        assert!(
            leaked.is_empty(),
            "{}: reached the gateway: {leaked:?}",
            family.what
        );
    }
}

#[test]
fn a_team_callers_public_name_arrives_mapped_at_every_place() {
    let (gw, proxy) = setup();
    for family in MAPPED {
        let before = gw.requests().len();
        let (head, body) = (family.build)(PUBLIC);
        let (status, answer) = send(&proxy, TEAM_KEY, &head, &body);
        assert_eq!(status, 200, "{}: {answer}", family.what);
        let got = gw.requests();
        let sent = got
            .get(before)
            .unwrap_or_else(|| panic!("{}: nothing sent", family.what));
        let seen = format!("{} {:?} {}", sent.path, sent.headers, sent.body_str());
        assert!(seen.contains(INTERNAL), "{}: {seen}", family.what);
        assert!(
            !seen.contains(PUBLIC),
            "{}: the public name is still there: {seen}",
            family.what
        );
        assert_eq!(gw.garbage(), 0, "{}: framed wrong upstream", family.what);
    }
}
