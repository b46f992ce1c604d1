//! The request body rewriter alone, against the naive way (parse the whole body into a
//! `serde_json::Value`, change `model`, serialise it again).
//!
//! `cargo bench --bench rewrite` (add `-- --quick` for a short run). Bodies are chat
//! requests with escapes and raw UTF-8, `model` last (the worst case for a streaming
//! scanner: the whole body must be scanned before the name is found), fed in 64 KiB
//! pieces as the proxy receives them, through the same [`BodyRewriter`] and [`Names`]
//! (a real mapping, a fresh record per body) the proxy uses. Throughput is reported per
//! body byte.

#[path = "../bench/common.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use modelmap::mapping::Mapping;
use modelmap::rewrite::restore::{Pairs, Restorer, StreamRestorer};
use modelmap::rewrite::{BodyRewriter, Names};

const REQUESTED: &str = "gpt-4.1";
const INTERNAL: &str = "model_name_team-bench_f1c7df87-b987-416b-ba42-757afbcc5395";
const PIECE: usize = 64 * 1024;

fn mapping() -> Arc<Mapping> {
    let text = format!(
        "version: 1\nteams:\n  team-bench:\n    models:\n      {REQUESTED}: {INTERNAL}\n      \"claude-*\": model_name_team-bench_9a8b\naliases:\n  AgentX-LLM: openrouter/qwen/qwen3.5-flash-02-23\n"
    );
    Arc::new(Mapping::parse(&text, "bench").expect("bench mapping is valid"))
}

/// The body as the proxy sees it: pieces of one buffer, not copies.
fn pieces(body: &Bytes) -> Vec<Bytes> {
    (0..body.len())
        .step_by(PIECE)
        .map(|at| body.slice(at..(at + PIECE).min(body.len())))
        .collect()
}

fn stream(mapping: &Arc<Mapping>, pieces: &[Bytes]) -> usize {
    let mut names = Names::new(mapping.clone(), Some("team-bench".to_string()));
    let mut rw = BodyRewriter::new();
    let last = pieces.len() - 1;
    let mut sent = 0;
    for (i, p) in pieces.iter().enumerate() {
        sent += rw.feed(Some(p.clone()), i == last, &mut names).len();
    }
    sent
}

fn naive(body: &[u8]) -> Vec<u8> {
    let mut doc: serde_json::Value = serde_json::from_slice(body).expect("valid JSON");
    if let Some(model) = doc.get_mut("model")
        && model == REQUESTED
    {
        *model = serde_json::Value::from(INTERNAL);
    }
    serde_json::to_vec(&doc).expect("serialises")
}

fn bodies(c: &mut Criterion) {
    let mapping = mapping();
    let mut group = c.benchmark_group("rewrite");
    for (name, size) in [
        ("1KiB", 1 << 10),
        ("64KiB", 64 << 10),
        ("1MiB", 1 << 20),
        ("16MiB", 16 << 20),
    ] {
        let body = Bytes::from(common::chat_body(size, REQUESTED));
        assert_eq!(body.len(), size, "bench body has the intended size");
        let parts = pieces(&body);
        // Both ways must do the job before they are timed.
        let expected = size + INTERNAL.len() - REQUESTED.len();
        assert_eq!(
            stream(&mapping, &parts),
            expected,
            "the scanner rewrites model"
        );
        let out = naive(&body);
        assert!(
            common::find_model(&out) == Some(INTERNAL),
            "the naive way rewrites model"
        );

        group.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(3));
        } else {
            group.sample_size(50);
            group.measurement_time(Duration::from_secs(2));
        }
        group.warm_up_time(Duration::from_millis(500));
        group.bench_with_input(BenchmarkId::new("scanner", name), &parts, |b, parts| {
            b.iter(|| stream(&mapping, black_box(parts)))
        });
        group.bench_with_input(BenchmarkId::new("serde_json", name), &body, |b, body| {
            b.iter(|| naive(black_box(body)))
        });
    }
    group.finish();
}

/// One stream event restored (what a proxy does for each event of a response stream).
fn stream_event(c: &mut Criterion) {
    let pairs = Pairs::new(vec![(INTERNAL.to_string(), REQUESTED.to_string())]);
    let event = Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"{INTERNAL}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token \"}}}}]}}\n\n"
    ));
    let mut restorer = Restorer::Stream(StreamRestorer::new(pairs));
    let out = restorer.feed(Some(event.clone()), false);
    assert!(
        common::find_model(&out) == Some(REQUESTED),
        "the event is restored"
    );
    let mut group = c.benchmark_group("restore");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sse_event", |b| {
        b.iter(|| restorer.feed(Some(black_box(event.clone())), false))
    });
    group.finish();
}

criterion_group!(benches, bodies, stream_event);
criterion_main!(benches);
