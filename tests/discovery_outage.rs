//! Discovery when the database goes away, and at scale. The outage test runs a
//! Postgres of its own (it stops and restarts it); see tests/discovery.rs for the rest.

mod common;

use std::time::{Duration, Instant};

use common::postgres::{Postgres, eventually};
use common::process::ProxyProcess;
use common::{Client, FakeGateway, Framing, Proxy};

fn scrape(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("metrics parse");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn sent(gw: &FakeGateway, proxy: &Proxy, team: &str, model: &str) -> String {
    let body = format!(r#"{{"model":"{model}"}}"#);
    let resp = proxy
        .client()
        .post("/v1/chat/completions", &[("x-team", team)], body.as_bytes());
    assert_eq!(resp.status, 200);
    gw.last().json()["model"]
        .as_str()
        .expect("model")
        .to_string()
}

fn readyz(proxy: &Proxy) -> (u16, String) {
    let r = proxy.admin_get("/readyz");
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

#[test]
fn a_database_that_stops_keeps_the_last_good_mapping_and_one_that_is_down_at_start_serves_the_file()
{
    let pg = Postgres::start();
    let db = pg.database();
    let (_, internal) = pg.add_team_model(&db, "team-abc", "gpt-4.1", "now()");
    pg.halt();

    // Down at start: the file alone is served, and the pod is ready.
    let gw = FakeGateway::start();
    let mapping =
        "version: 1\nteams:\n  team-abc:\n    models:\n      from-file: model_name_team-abc_file\n";
    let url = pg.url(&db);
    let proxy = Proxy::start(
        &gw.url(),
        mapping,
        &[
            "--discover-database",
            &url,
            "--discover-interval",
            "300ms",
            "--discover-timeout",
            "500ms",
            "--trusted-team-header",
            "x-team",
        ],
    );
    let failures = |p: &Proxy| {
        scrape(
            &p.metrics(),
            "modelmap_discovery_rounds_total",
            &[("source", "database"), ("result", "failure")],
        )
    };
    eventually(Duration::from_secs(5), "failed rounds are counted", || {
        failures(&proxy) >= 2.0
    });
    assert_eq!(
        sent(&gw, &proxy, "team-abc", "from-file"),
        "model_name_team-abc_file"
    );
    assert_eq!(
        sent(&gw, &proxy, "team-abc", "gpt-4.1"),
        "gpt-4.1",
        "nothing discovered yet"
    );
    let (status, text) = readyz(&proxy);
    eprintln!("/readyz with the database down at start:\n{text}");
    assert_eq!(status, 200, "the file alone is a valid mapping: ready");
    assert!(
        text.contains("discovery database: failing, no rules from it yet"),
        "{text}"
    );

    // The database comes up: its models are mapped.
    pg.resume();
    eventually(
        Duration::from_secs(10),
        "discovered once the database is up",
        || sent(&gw, &proxy, "team-abc", "gpt-4.1") == internal,
    );

    // It stops mid-run: the last good mapping stays, failures are counted.
    pg.halt();
    let before = failures(&proxy);
    eventually(
        Duration::from_secs(5),
        "failures counted while down",
        || failures(&proxy) >= before + 3.0,
    );
    assert_eq!(
        sent(&gw, &proxy, "team-abc", "gpt-4.1"),
        internal,
        "last good kept"
    );
    assert_eq!(
        scrape(
            &proxy.metrics(),
            "modelmap_discovery_up",
            &[("source", "database")]
        ),
        0.0
    );
    let (status, text) = readyz(&proxy);
    eprintln!("/readyz with the database stopped mid-run:\n{text}");
    assert_eq!(status, 200);
    assert!(
        text.contains("discovery database: failing, serving its last good rules"),
        "{text}"
    );

    // And it comes back.
    pg.resume();
    let (_, second) = pg.add_team_model(&db, "team-abc", "gpt-4.1-mini", "now()");
    eventually(Duration::from_secs(10), "recovered", || {
        sent(&gw, &proxy, "team-abc", "gpt-4.1-mini") == second
    });
    assert_eq!(
        scrape(
            &proxy.metrics(),
            "modelmap_discovery_up",
            &[("source", "database")]
        ),
        1.0
    );
    assert!(readyz(&proxy).1.contains("discovery database: ok"));
}

#[test]
fn no_mapping_file_and_no_database_is_not_ready_until_a_round_succeeds() {
    let pg = Postgres::start();
    let db = pg.database();
    pg.add_team_model(&db, "team-abc", "gpt-4.1", "now()");
    pg.halt();
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("mapping.yaml");
    let url = pg.url(&db);
    let proxy = Proxy::start_at(
        &gw.url(),
        dir,
        missing,
        &[
            "--discover-database",
            &url,
            "--discover-interval",
            "300ms",
            "--discover-timeout",
            "500ms",
        ],
    );
    let (status, text) = readyz(&proxy);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("absent (discovered rules only)"), "{text}");
    pg.resume();
    eventually(
        Duration::from_secs(10),
        "ready after the first good round",
        || readyz(&proxy).0 == 200,
    );
}

#[test]
fn ten_thousand_team_models() {
    let pg = Postgres::shared();
    let db = pg.database();
    const N: usize = 10_000;
    let started = Instant::now();
    // Rows in LiteLLM's shape, 2,000 teams of 5 models each.
    pg.psql(
        &db,
        &format!(
            r#"INSERT INTO "LiteLLM_ProxyModelTable"
                (model_id, model_name, litellm_params, model_info, created_by, updated_by)
            SELECT id, 'model_name_team-' || (i % 2000) || '_' || gen_random_uuid(),
                '{{"model": "gAAAAABencrypted", "api_key": "gAAAAABencrypted"}}'::jsonb,
                jsonb_build_object('id', id, 'db_model', false, 'team_id', 'team-' || (i % 2000),
                    'team_public_model_name', 'model-' || (i / 2000), 'member_auto_router', false),
                'default_user_id', 'default_user_id'
            FROM (SELECT i, gen_random_uuid()::text AS id FROM generate_series(0, {last}) i) s"#,
            last = N - 1
        ),
    );
    eprintln!("inserted {N} team models in {:?}", started.elapsed());

    let gw = FakeGateway::start();
    let empty_db = pg.database();
    let url = pg.url(&empty_db);
    let proc = ProxyProcess::start(
        &gw.url(),
        "version: 1\n",
        &[
            "--discover-database",
            &url,
            "--discover-interval",
            "1s",
            "--trusted-team-header",
            "x-team",
        ],
    );
    let metrics = |p: &ProxyProcess| {
        let mut c = Client::connect(p.admin);
        String::from_utf8(c.request("GET", "/metrics", &[], b"", Framing::Length).body)
            .expect("utf8")
    };
    eventually(Duration::from_secs(10), "first (empty) round", || {
        scrape(
            &metrics(&proc),
            "modelmap_discovery_up",
            &[("source", "database")],
        ) == 1.0
    });
    let rss_empty = proc.memory_kib("VmRSS");
    drop(proc);

    let url = pg.url(&db);
    let proc = ProxyProcess::start(
        &gw.url(),
        "version: 1\n",
        &[
            "--discover-database",
            &url,
            "--discover-interval",
            "1s",
            "--trusted-team-header",
            "x-team",
        ],
    );
    eventually(Duration::from_secs(20), "10,000 models mapped", || {
        scrape(
            &metrics(&proc),
            "modelmap_mapping_source_rules",
            &[("source", "database")],
        ) == N as f64
    });
    let applied = scrape(
        &metrics(&proc),
        "modelmap_discovery_round_seconds",
        &[("source", "database")],
    );
    // Let a few more (unchanged) rounds run, then read the figures.
    eventually(Duration::from_secs(10), "later rounds", || {
        scrape(
            &metrics(&proc),
            "modelmap_discovery_rounds_total",
            &[("source", "database"), ("result", "unchanged")],
        ) >= 2.0
    });
    let text = metrics(&proc);
    let round = scrape(
        &text,
        "modelmap_discovery_round_seconds",
        &[("source", "database")],
    );
    let rss = proc.memory_kib("VmRSS");
    let hwm = proc.memory_kib("VmHWM");
    eprintln!(
        "10,000 team models: applying round {:.1} ms, unchanged round {:.1} ms; RSS {} KiB with them vs {} KiB with none (+{} KiB), peak {} KiB",
        applied * 1000.0,
        round * 1000.0,
        rss,
        rss_empty,
        rss.saturating_sub(rss_empty),
        hwm
    );
    let mut c = Client::connect(proc.addr);
    let resp = c.post(
        "/v1/chat/completions",
        &[("x-team", "team-1999")],
        br#"{"model":"model-4"}"#,
    );
    assert_eq!(resp.status, 200);
    let got = gw.last().json()["model"]
        .as_str()
        .expect("model")
        .to_string();
    assert!(got.starts_with("model_name_team-1999_"), "{got}");
    assert!(
        applied < 5.0 && round < 5.0,
        "a round over 10,000 models takes {applied} s (applying), {round} s (unchanged)"
    );
    assert!(
        rss.saturating_sub(rss_empty) < 64 * 1024,
        "memory for 10,000 models: {rss} KiB"
    );
}
