//! Every place a model name travels: multipart forms, URL paths, the realtime query
//! (over a real websocket) and batch files.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::process::ProxyProcess;
use common::{FakeGateway, Framing, Proxy, key_digest};

const KEY: &str = "sk-places-team";

fn mapping() -> String {
    format!(
        "version: 1\nteams:\n  team-p:\n    models:\n      gpt-4.1: model_name_team-p_1\n      whisper-1: model_name_team-p_whisper\n      \"gemini-*\": model_name_team-p_gemini\n      gpt-4o-realtime: model_name_team-p_rt\n  team-q:\n    models:\n      gpt-4.1: model_name_team-q_1\nkeys:\n  {}: team-p\n",
        key_digest(KEY)
    )
}

fn auth() -> String {
    format!("Bearer {KEY}")
}

const BOUNDARY: &str = "modelmap-test-boundary-0123456789";

fn part_head(name: &str, filename: Option<&str>) -> String {
    let file = filename
        .map(|f| format!("; filename=\"{f}\"\r\nContent-Type: application/octet-stream"))
        .unwrap_or_default();
    format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n")
}

fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

#[test]
fn a_50_mib_upload_gets_its_model_field_rewritten_with_flat_memory() {
    let gw = FakeGateway::start();
    let proxy = ProxyProcess::start(&gw.url(), &mapping(), &["--threads", "1"]);
    // Warm up, then note the peak so far.
    let mut client = common::Client::connect(proxy.addr);
    assert_eq!(
        client
            .post(
                "/v1/audio/transcriptions",
                &[("authorization", &auth())],
                b"{}"
            )
            .status,
        200
    );
    let before = proxy.memory_kib("VmHWM");

    let file: Vec<u8> = (0..50 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let tail = format!(
        "\r\n{}whisper-1\r\n--{BOUNDARY}--\r\n",
        part_head("model", None)
    );
    let body = [
        part_head("file", Some("speech.wav")).as_bytes(),
        &file,
        tail.as_bytes(),
    ]
    .concat();
    let ctype = multipart_type();
    let resp = client.request(
        "POST",
        "/v1/audio/transcriptions",
        &[("authorization", &auth()), ("content-type", &ctype)],
        &body,
        Framing::Length,
    );
    assert_eq!(resp.status, 200);
    let after = proxy.memory_kib("VmHWM");

    let got = gw.last();
    let expect_tail = format!(
        "\r\n{}model_name_team-p_whisper\r\n--{BOUNDARY}--\r\n",
        part_head("model", None)
    );
    assert_eq!(
        got.body.len(),
        body.len() - tail.len() + expect_tail.len(),
        "nothing lost or added"
    );
    assert!(
        got.body.ends_with(expect_tail.as_bytes()),
        "the model field after the file is rewritten"
    );
    assert!(
        got.body[..body.len() - tail.len()] == body[..body.len() - tail.len()],
        "the file arrives byte for byte"
    );
    let grown_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    eprintln!(
        "modelmap peak RSS: {before} KiB before, {after} KiB after a 50 MiB upload (+{grown_mib:.1} MiB)"
    );
    assert!(
        grown_mib < 16.0,
        "peak memory grew {grown_mib:.1} MiB for a 50 MiB upload: it is being buffered"
    );
}

#[test]
fn url_paths_are_rewritten_consistently_with_the_body() {
    let gw = FakeGateway::start();
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let cases = [
        (
            "/openai/deployments/gpt%2D4.1/chat/completions?api-version=2024-02-01",
            "/openai/deployments/model_name_team-p_1/chat/completions?api-version=2024-02-01",
        ),
        (
            "/engines/gpt-4.1/completions",
            "/engines/model_name_team-p_1/completions",
        ),
        (
            "/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse",
            "/v1beta/models/model_name_team-p_gemini:streamGenerateContent?alt=sse",
        ),
        (
            "/models/gemini%2D2:countTokens",
            "/models/model_name_team-p_gemini:countTokens",
        ),
        (
            "/openai/deployments/unmapped/chat/completions",
            "/openai/deployments/unmapped/chat/completions",
        ),
    ];
    for (path, expect) in cases {
        let resp = proxy.client().post(
            path,
            &[("authorization", &auth())],
            br#"{"model":"gpt-4.1"}"#,
        );
        assert_eq!(resp.status, 200, "{path}");
        let got = gw.last();
        assert_eq!(got.path, expect);
        assert_eq!(
            got.json()["model"],
            "model_name_team-p_1",
            "body and path agree for {path}"
        );
    }
    // Gemini callers may put their key in ?key=: the team is still found.
    let path = format!("/v1beta/models/gemini-pro:generateContent?key={KEY}");
    assert_eq!(
        proxy
            .client()
            .request("POST", &path, &[], b"{}", Framing::Length)
            .status,
        200
    );
    assert_eq!(
        gw.last().path,
        format!("/v1beta/models/model_name_team-p_gemini:generateContent?key={KEY}")
    );
    let metrics = proxy.metrics();
    assert!(
        metrics.contains(r#"place="path""#),
        "path rewrites are counted by place"
    );
}

/// One websocket session through the proxy: the handshake (with the rewritten query),
/// then frames both ways.
fn websocket_session(proxy: &Proxy, seen: &Mutex<String>) -> Result<(), String> {
    let stream = TcpStream::connect(proxy.addr).expect("connect");
    let request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/v1/realtime?model=gpt-4o-realtime",
        proxy.addr
    ))
    .map(|mut r| {
        r.headers_mut()
            .insert("authorization", auth().parse().expect("header"));
        r
    })
    .expect("request");
    let (mut ws, resp) = tungstenite::client(request, stream).expect("handshake through the proxy");
    assert_eq!(resp.status(), 101);
    assert_eq!(
        *seen.lock().expect("lock"),
        "/v1/realtime?model=model_name_team-p_rt"
    );
    for i in 0..5 {
        let text = format!("{{\"type\":\"session.update\",\"n\":{i}}}");
        ws.send(tungstenite::Message::text(text.clone()))
            .map_err(|e| e.to_string())?;
        let echo = ws.read().map_err(|e| e.to_string())?;
        assert_eq!(echo.into_text().expect("text").as_str(), text);
    }
    // A websocket session outlives the request-body deadline: it is not a slow upload.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    ws.send(tungstenite::Message::binary(vec![0u8, 1, 2, 255]))
        .expect("send binary after the body deadline");
    let echo = ws.read().expect("echo after the body deadline");
    assert_eq!(echo.into_data().as_ref(), &[0u8, 1, 2, 255]);
    let _ = ws.close(None);
    Ok(())
}

/// Every session must work: the upgrade race of pingora-proxy 0.9.1 (sessions reset
/// right after the 101) is gone with modelmap's own loop (see `proxy/upgrade.rs`).
#[test]
fn realtime_websocket_gets_its_model_query_rewritten_and_frames_flow_both_ways() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(String::new()));
    let seen_by_server = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = seen_by_server.clone();
            std::thread::spawn(move || {
                #[allow(clippy::result_large_err)] // the shape tungstenite's callback requires
                let record = |req: &tungstenite::handshake::server::Request, resp| {
                    *seen.lock().expect("lock") = req.uri().to_string();
                    Ok(resp)
                };
                let Ok(mut ws) = tungstenite::accept_hdr(stream, record) else {
                    return;
                };
                while let Ok(msg) = ws.read() {
                    if msg.is_close() || ws.send(msg).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start(
        &format!("http://{upstream}"),
        &mapping(),
        &["--client-body-timeout", "1s"],
    );
    for session in 0..3 {
        if let Err(e) = websocket_session(&proxy, &seen) {
            panic!("websocket session {session} failed: {e}");
        }
    }
}

#[test]
fn batch_files_of_10000_lines_are_rewritten_line_by_line() {
    let gw = FakeGateway::start();
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let line = |i: usize, model: &str| {
        format!(
            "{{\"custom_id\":\"req-{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"line {i}\"}}]}}}}\n"
        )
    };
    let file: String = (0..10_000).map(|i| line(i, "gpt-4.1")).collect();
    let expect: String = (0..10_000)
        .map(|i| line(i, "model_name_team-p_1"))
        .collect();
    let wrap = |content: &str| {
        let mut body = Vec::new();
        write!(body, "{}batch\r\n", part_head("purpose", None)).expect("write");
        write!(
            body,
            "{}{content}\r\n--{BOUNDARY}--\r\n",
            part_head("file", Some("batch.jsonl"))
        )
        .expect("write");
        body
    };
    let ctype = multipart_type();
    let cuts: Vec<usize> = (1..file.len()).step_by(8191).collect();
    let resp = proxy.client().request(
        "POST",
        "/v1/files",
        &[("authorization", &auth()), ("content-type", &ctype)],
        &wrap(&file),
        Framing::Chunked(&cuts),
    );
    assert_eq!(resp.status, 200);
    let got = gw.last();
    assert!(
        got.body == wrap(&expect),
        "every line's body.model is rewritten, nothing else"
    );
    // Rewrites are counted in the logging phase, just after the response is sent (and
    // after the request itself): wait for the count rather than read it at once.
    let batch_line = || {
        proxy
            .metrics_after(1)
            .lines()
            .find(|l| l.starts_with("modelmap_rewrites_total") && l.contains(r#"place="batch""#))
            .map(str::to_string)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut batch = batch_line();
    while batch.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        batch = batch_line();
    }
    let batch = batch.expect("batch rewrites counted");
    assert!(batch.ends_with(" 10000"), "{batch}");
}

#[test]
fn the_guard_refuses_another_teams_internal_name_in_urls_and_forms() {
    let gw = FakeGateway::start();
    let proxy = Proxy::start(&gw.url(), &mapping(), &[]);
    let before = gw.requests().len();
    let path = "/openai/deployments/model_name_team-q_1/chat/completions";
    let resp = proxy
        .client()
        .post(path, &[("authorization", &auth())], b"{}");
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json()["error"]["code"], "team_model_access_denied");
    let resp = proxy.client().request(
        "GET",
        "/v1/realtime?model=model_name_team-q_1",
        &[("authorization", &auth())],
        b"",
        Framing::Length,
    );
    assert_eq!(resp.status, 403);
    let body = format!(
        "{}model_name_team-q_1\r\n--{BOUNDARY}--\r\n",
        part_head("model", None)
    );
    let ctype = multipart_type();
    let resp = proxy.client().request(
        "POST",
        "/v1/audio/transcriptions",
        &[("authorization", &auth()), ("content-type", &ctype)],
        body.as_bytes(),
        Framing::Length,
    );
    assert_eq!(resp.status, 403);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        gw.requests().len(),
        before,
        "no refused request reached the gateway"
    );
    // The caller's own internal name is fine.
    let own = "/openai/deployments/model_name_team-p_1/chat/completions";
    assert_eq!(
        proxy
            .client()
            .post(own, &[("authorization", &auth())], b"{}")
            .status,
        200
    );
}
