//! `/metrics` parses as Prometheus text and its counters follow the traffic.

mod common;

use common::{FakeGateway, Proxy, key_digest};
use prometheus_parse::{Scrape, Value};

const KEY: &str = "sk-metrics-team";

fn scrape(proxy: &Proxy) -> Scrape {
    let resp = proxy.admin_get("/metrics");
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "exposition content type"
    );
    let text = String::from_utf8(resp.body).expect("utf8");
    assert!(!text.contains(KEY), "no key in metrics");
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text format")
}

fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            _ => 0.0,
        })
        .sum()
}

#[test]
fn counters_follow_requests_and_labels_come_only_from_the_mapping() {
    let gw = FakeGateway::start();
    let mapping = format!(
        "version: 1\nteams:\n  team-m:\n    models:\n      gpt-4.1: internal-m\naliases:\n  \"alias-*\": gpt-4.1\nkeys:\n  {}: team-m\n",
        key_digest(KEY)
    );
    let proxy = Proxy::start(&gw.url(), &mapping, &[]);
    let before = scrape(&proxy);
    assert_eq!(value(&before, "modelmap_build_info", &[]), 1.0);
    assert_eq!(
        value(&before, "modelmap_mapping_rules", &[("kind", "team_exact")]),
        1.0
    );
    assert_eq!(
        value(
            &before,
            "modelmap_mapping_rules",
            &[("kind", "alias_pattern")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &before,
            "modelmap_mapping_reloads_total",
            &[("result", "success")]
        ),
        1.0
    );
    assert!(
        value(
            &before,
            "modelmap_mapping_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.7e9
    );

    let auth = format!("Bearer {KEY}");
    let mut client = proxy.client();
    for _ in 0..3 {
        assert_eq!(
            client
                .post(
                    "/v1/chat/completions",
                    &[("authorization", &auth)],
                    br#"{"model":"gpt-4.1"}"#
                )
                .status,
            200
        );
    }
    // An alias matched by a pattern, from a caller no table knows: labels stay bounded.
    for i in 0..2 {
        let body = format!(r#"{{"model":"alias-{i}-random"}}"#);
        assert_eq!(
            client.post("/v1/embeddings", &[], body.as_bytes()).status,
            200
        );
    }
    assert_eq!(
        client
            .post("/v1/chat/completions", &[], br#"{"model":"unmapped"}"#)
            .status,
        200
    );

    // Pingora counts a request in its logging phase, after the response has reached
    // the client: wait until the last one is counted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let after = loop {
        let s = scrape(&proxy);
        if value(&s, "modelmap_requests_total", &[]) >= 6.0 || std::time::Instant::now() > deadline
        {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let req = |outcome, family| {
        value(
            &after,
            "modelmap_requests_total",
            &[("outcome", outcome), ("family", family)],
        )
    };
    assert_eq!(req("rewritten", "chat"), 3.0);
    assert_eq!(req("rewritten", "embeddings"), 2.0);
    assert_eq!(req("unchanged", "chat"), 1.0);
    assert_eq!(
        value(
            &after,
            "modelmap_rewrites_total",
            &[
                ("team", "team-m"),
                ("from", "gpt-4.1"),
                ("to", "internal-m")
            ]
        ),
        3.0
    );
    assert_eq!(
        value(
            &after,
            "modelmap_rewrites_total",
            &[("team", "other"), ("from", "alias-*"), ("to", "gpt-4.1")]
        ),
        2.0,
        "pattern rules are labelled with the pattern, unknown callers with `other`"
    );
    assert!(
        !after
            .samples
            .iter()
            .any(|s| s.labels.values().any(|v| v.contains("random"))),
        "no label value comes from a request"
    );
    assert_eq!(
        value(
            &after,
            "modelmap_upstream_responses_total",
            &[("class", "2xx")]
        ),
        6.0
    );
    assert_eq!(
        value(
            &after,
            "modelmap_request_duration_seconds",
            &[("family", "chat")]
        ),
        4.0
    );
}
