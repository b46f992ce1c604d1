//! A bounded soak: mixed plain and streaming requests on 32 keep-alive connections
//! against a real modelmap process while the mapping is replaced every 100 ms.
//! Asserts: no request fails, every request was rewritten from one mapping version
//! (its `model` and `fallbacks` agree), every stream arrives whole and restored, and
//! memory at the end is where it was after warm-up.
//!
//! `SOAK_SECONDS` sets the length (default 10; the README's figures are from 60).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::process::ProxyProcess;
use common::{Client, FakeGateway, Framing, Recorded, Reply, key_digest, model_of};

const KEY: &str = "sk-soak-team";

fn mapping(version: u64) -> String {
    format!(
        "version: 1\nteams:\n  team-s:\n    models:\n      public: internal-v{version}\n      backup: backup-v{version}\nkeys:\n  {}: team-s\n",
        key_digest(KEY)
    )
}

fn reply(req: &Recorded) -> Reply {
    let json: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let model = model_of(req);
    // The gateway reports an inconsistent request (model and fallback from two mapping
    // versions) as a 409, which the client counts as a failure.
    let fallback = json["fallbacks"][0].as_str().unwrap_or_default();
    if model.trim_start_matches("internal-") != fallback.trim_start_matches("backup-") {
        return Reply::new(
            409,
            "text/plain",
            format!("half-applied mapping: {model} / {fallback}"),
        );
    }
    if json["stream"] == true {
        let events = (0..5)
            .map(|i| format!("data: {{\"model\":\"{model}\",\"n\":{i}}}\n\n").into_bytes())
            .chain([b"data: [DONE]\n\n".to_vec()])
            .collect();
        Reply::stream("text/event-stream", events, Duration::from_millis(2))
    } else {
        Reply::new(
            200,
            "application/json",
            serde_json::json!({"model": model, "object": "chat.completion"}).to_string(),
        )
    }
}

#[test]
fn soak_with_reloads_every_100ms() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let gw = FakeGateway::with(Arc::new(reply));
    let proxy = ProxyProcess::start(
        &gw.url(),
        &mapping(0),
        &["--threads", "2", "--reload-debounce", "20ms"],
    );
    let path = proxy.dir.path().join("mapping.yaml");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, streams) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let first_failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let workers: Vec<_> = (0..32)
        .map(|w| {
            let (stop, ok, failed, streams, first_failure) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                streams.clone(),
                first_failure.clone(),
            );
            let addr = proxy.addr;
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let auth = format!("Bearer {KEY}");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let stream = (w + n).is_multiple_of(2);
                    let body = format!(
                        r#"{{"model":"public","fallbacks":["backup"],"stream":{stream},"n":{n}}}"#
                    );
                    let resp = client.request(
                        "POST",
                        "/v1/chat/completions",
                        &[
                            ("authorization", &auth),
                            ("content-type", "application/json"),
                        ],
                        body.as_bytes(),
                        Framing::Length,
                    );
                    let text = String::from_utf8_lossy(&resp.body).into_owned();
                    let good = resp.status == 200
                        && !text.contains("internal-v")
                        && if stream {
                            text.matches("\"model\":\"public\"").count() == 5
                                && text.ends_with("data: [DONE]\n\n")
                        } else {
                            resp.json()["model"] == "public"
                        };
                    if good {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if stream {
                            streams.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_failure
                            .lock()
                            .expect("lock")
                            .get_or_insert(format!("{} {text}", resp.status));
                    }
                    n += 1;
                }
            })
        })
        .collect();

    // Warm up, then take the memory baseline.
    std::thread::sleep(Duration::from_secs(2));
    let rss_start = proxy.memory_kib("VmRSS");
    let started = Instant::now();
    let mut reloads = 0u64;
    let mut samples = vec![rss_start];
    while started.elapsed() < Duration::from_secs(seconds) {
        if reloads % 50 == 49 {
            samples.push(proxy.memory_kib("VmRSS"));
        }
        reloads += 1;
        let tmp = path.with_extension("tmp");
        // Four versions in turn: every write changes the file (so it is applied), and
        // the set of names stays bounded, as in a real deployment; a new name per write
        // would grow the rewrite metric by a series each time (that is series growth by
        // design, not a leak).
        std::fs::write(&tmp, mapping(reloads % 4)).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let rss_end = proxy.memory_kib("VmRSS");
    samples.push(rss_end);
    eprintln!("soak: RSS every ~5 s (KiB): {samples:?}");
    let hwm = proxy.memory_kib("VmHWM");
    let applied = common::Client::connect(proxy.admin)
        .request("GET", "/metrics", &[], b"", Framing::Length)
        .body;
    let applied = String::from_utf8_lossy(&applied)
        .lines()
        .find_map(|l| {
            l.strip_prefix("modelmap_mapping_reloads_total{result=\"success\"} ")?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    let (ok, failed, streams) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        streams.load(Ordering::Relaxed),
    );
    eprintln!(
        "soak: {seconds}s, {} requests ({streams} streams), {failed} failed, {reloads} mapping writes, {applied} applied, RSS {rss_start} KiB after warm-up -> {rss_end} KiB at the end (peak {hwm} KiB)",
        ok + failed
    );
    assert_eq!(
        failed,
        0,
        "failed requests; first: {:?}",
        first_failure.lock().expect("lock")
    );
    assert!(ok > seconds * 100, "the soak ran ({ok} requests)");
    assert!(
        applied as u64 >= reloads / 2,
        "reloads were applied while traffic flowed ({applied} of {reloads})"
    );
    // Memory may settle in the first half (allocator, pools); it must not keep growing.
    let mid = samples[samples.len() / 2];
    let late = rss_end.saturating_sub(mid);
    assert!(
        late < 2 * 1024,
        "RSS kept growing: +{late} KiB in the second half {samples:?}"
    );
    let grown = rss_end.saturating_sub(rss_start);
    assert!(grown < 8 * 1024, "RSS grew {grown} KiB during the soak");
}
