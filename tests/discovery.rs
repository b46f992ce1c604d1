//! Discovery against a real Postgres with LiteLLM's own schema (see
//! tests/common/postgres.rs): rows written the way LiteLLM's `/model/new` writes team
//! models reach the proxy's mapping while it runs, and every kind of database trouble
//! leaves the last good mapping in place. The database stopping mid-run is in
//! tests/discovery_outage.rs (it stops the server, so it runs on its own).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::{Postgres, eventually};
use common::{FakeGateway, Proxy};

const INTERVAL: Duration = Duration::from_millis(300);
const FILE_ONLY: &str = "version: 1\n";

struct Setup {
    pg: Arc<Postgres>,
    db: String,
    gw: FakeGateway,
    proxy: Proxy,
}

fn start(mapping: &str, extra: &[&str]) -> Setup {
    let pg = Postgres::shared();
    let db = pg.database();
    let gw = FakeGateway::start();
    let url = pg.url(&db);
    let mut args = vec![
        "--discover-database",
        &url,
        "--discover-interval",
        "300ms",
        "--trusted-team-header",
        "x-team",
    ];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(&gw.url(), mapping, &args);
    Setup { pg, db, gw, proxy }
}

impl Setup {
    /// The model name the gateway received for `model` requested by `team`.
    fn sent(&self, team: &str, model: &str) -> String {
        let body = format!(r#"{{"model":"{model}"}}"#);
        let resp =
            self.proxy
                .client()
                .post("/v1/chat/completions", &[("x-team", team)], body.as_bytes());
        assert_eq!(resp.status, 200, "request through modelmap");
        self.gw.last().json()["model"]
            .as_str()
            .expect("model")
            .to_string()
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.proxy.metrics(), name, labels)
    }
}

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
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

/// The real binary's `discover`/`check`: (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_modelmap"))
        .args(args)
        .env_remove("MODELMAP_DISCOVER_DATABASE_URL")
        .output()
        .expect("run modelmap");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn models_added_deleted_and_readded_while_running_are_followed() {
    let s = start(FILE_ONLY, &[]);
    eventually(Duration::from_secs(5), "first round", || {
        s.metric("modelmap_discovery_up", &[("source", "database")]) == 1.0
    });
    assert_eq!(
        s.sent("team-abc", "gpt-4.1"),
        "gpt-4.1",
        "nothing to map yet"
    );

    let (id, internal) = s.pg.add_team_model(&s.db, "team-abc", "gpt-4.1", "now()");
    let took = eventually(Duration::from_secs(5), "the new model is mapped", || {
        s.sent("team-abc", "gpt-4.1") == internal
    });
    eprintln!("added -> mapped in {took:?} (interval {INTERVAL:?})");
    assert!(
        took <= INTERVAL * 2,
        "mapped within one interval (plus one round): {took:?}"
    );
    assert_eq!(
        s.sent("team-other", "gpt-4.1"),
        "gpt-4.1",
        "another team's caller is not mapped to team-abc's model"
    );

    s.pg.delete_model(&s.db, &id);
    eventually(
        Duration::from_secs(5),
        "a deleted model is unmapped",
        || s.sent("team-abc", "gpt-4.1") == "gpt-4.1",
    );

    let (_, readded) = s.pg.add_team_model(&s.db, "team-abc", "gpt-4.1", "now()");
    assert_ne!(readded, internal, "LiteLLM makes a new uuid on re-adding");
    eventually(
        Duration::from_secs(5),
        "the re-added model's new name",
        || s.sent("team-abc", "gpt-4.1") == readded,
    );
    assert!(
        s.metric(
            "modelmap_discovery_rounds_total",
            &[("source", "database"), ("result", "success")]
        ) >= 4.0
    );
    assert_eq!(
        s.metric("modelmap_mapping_source_rules", &[("source", "database")]),
        1.0
    );
}

#[test]
fn the_file_overrides_discovered_entries_and_check_flags_stale_and_missing() {
    let mapping = "version: 1\nteams:\n  team-abc:\n    models:\n      gpt-4.1: model_name_team-abc_from-the-file\n      old: model_name_team-abc_deleted-long-ago\naliases:\n  fast: gpt-4.1\n";
    let s = start(mapping, &[]);
    let (_, db_gpt) = s.pg.add_team_model(&s.db, "team-abc", "gpt-4.1", "now()");
    let (_, mini) =
        s.pg.add_team_model(&s.db, "team-abc", "gpt-4.1-mini", "now()");
    let (_, other) = s.pg.add_team_model(&s.db, "team-new", "gpt-4.1", "now()");
    eventually(Duration::from_secs(5), "discovered models applied", || {
        s.sent("team-abc", "gpt-4.1-mini") == mini
    });
    assert_eq!(
        s.sent("team-abc", "gpt-4.1"),
        "model_name_team-abc_from-the-file",
        "the file wins for the same (team, name)"
    );
    assert_eq!(
        s.sent("team-abc", "fast"),
        "model_name_team-abc_from-the-file",
        "file alias, then the team's entry"
    );
    assert_eq!(
        s.sent("team-new", "gpt-4.1"),
        other,
        "a team only the database knows is created"
    );
    assert_eq!(
        s.sent("team-new", "fast"),
        other,
        "the file's global alias reaches discovered teams too"
    );
    assert_eq!(s.metric("modelmap_mapping_stale_entries", &[]), 2.0);
    assert_eq!(
        s.metric("modelmap_mapping_source_rules", &[("source", "file")]),
        3.0
    );
    assert_eq!(
        s.metric("modelmap_mapping_source_rules", &[("source", "database")]),
        2.0
    );

    let file = s.proxy.mapping_path();
    let url = s.pg.url(&s.db);
    let (code, out, err) = cli(&[
        "check",
        file.to_str().expect("path"),
        "--database-url",
        &url,
    ]);
    eprintln!("{out}{err}");
    assert_eq!(code, 1, "stale and missing entries fail the check");
    assert!(out.contains("line 5: stale: team \"team-abc\" model \"gpt-4.1\" -> \"model_name_team-abc_from-the-file\""), "{out}");
    assert!(
        out.contains("stale: team \"team-abc\" model \"old\""),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "missing: team \"team-abc\" model \"gpt-4.1-mini\" is in the gateway as \"{mini}\""
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "missing: team \"team-new\" model \"gpt-4.1\" is in the gateway as \"{other}\""
        )),
        "{out}"
    );
    assert!(out.contains("2 stale, 2 missing"), "{out}");
    assert!(!out.contains(&db_gpt) || out.contains("missing"), "{out}");

    let (code, yaml, err) = cli(&["discover", "--database-url", &url]);
    assert_eq!(code, 0, "{err}");
    eprintln!("{yaml}");
    let seeded = modelmap::mapping::Mapping::parse(&yaml, "discover output")
        .expect("discover prints a valid mapping file");
    assert_eq!(
        seeded
            .resolve(Some("team-abc"), "gpt-4.1")
            .map(|r| r.target),
        Some(db_gpt.as_str())
    );
    assert!(
        yaml.contains("# id ") && yaml.contains("created 20"),
        "commented with id and time: {yaml}"
    );

    // A file that now matches the gateway passes.
    std::fs::write(&file, &yaml).expect("write");
    let (code, out, _) = cli(&[
        "check",
        file.to_str().expect("path"),
        "--database-url",
        &url,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 stale, 0 missing"), "{out}");
}

#[test]
fn two_deployments_under_one_public_name_map_to_the_oldest() {
    let s = start(FILE_ONLY, &[]);
    let (_, newer) = s.pg.add_team_model(&s.db, "team-abc", "gpt-4.1", "now()");
    let (_, older) =
        s.pg.add_team_model(&s.db, "team-abc", "gpt-4.1", "now() - interval '1 day'");
    eventually(Duration::from_secs(5), "the oldest is mapped", || {
        s.sent("team-abc", "gpt-4.1") == older
    });
    assert_eq!(s.metric("modelmap_discovery_ambiguous_names", &[]), 1.0);
    let (code, yaml, _) = cli(&["discover", "--database-url", &s.pg.url(&s.db)]);
    assert_eq!(code, 0);
    assert!(
        yaml.contains("AMBIGUOUS: 2 deployments under \"gpt-4.1\""),
        "{yaml}"
    );
    assert!(
        yaml.contains(&format!("#   {newer} (")),
        "the other one is shown: {yaml}"
    );
    assert!(yaml.contains(&format!("gpt-4.1: {older}")), "{yaml}");
}

#[test]
fn garbage_rows_are_skipped_and_a_wrong_schema_keeps_the_last_good_mapping() {
    let s = start(FILE_ONLY, &[]);
    let (_, good) = s.pg.add_team_model(&s.db, "team-abc", "gpt-4.1", "now()");
    s.pg.psql(
        &s.db,
        r#"INSERT INTO "LiteLLM_ProxyModelTable" (model_id, model_name, litellm_params, model_info, created_by, updated_by) VALUES
           ('g1', 'model_name_team-abc_g1', '{}', '{"team_id": "team-abc"}', 'x', 'x'),
           ('g2', 'model_name_team-abc_g2', '{}', '"{\"team_id\": 5}"', 'x', 'x'),
           ('g3', 'model_name_team-abc_g3', '{}', '{"team_id": "team-abc", "team_public_model_name": "a,b"}', 'x', 'x'),
           ('g4', 'shared-model', '{}', '{"id": "g4"}', 'x', 'x')"#,
    );
    eventually(
        Duration::from_secs(5),
        "good rows mapped despite garbage",
        || {
            s.sent("team-abc", "gpt-4.1") == good
                && s.metric("modelmap_discovery_skipped_rows", &[("source", "database")]) == 3.0
        },
    );

    // Schema not as expected: the round fails, the last good mapping stays.
    let failures = |s: &Setup| {
        s.metric(
            "modelmap_discovery_rounds_total",
            &[("source", "database"), ("result", "failure")],
        )
    };
    s.pg.psql(
        &s.db,
        r#"ALTER TABLE "LiteLLM_ProxyModelTable" RENAME COLUMN model_name TO renamed"#,
    );
    eventually(Duration::from_secs(5), "failures counted", || {
        failures(&s) >= 2.0
    });
    assert_eq!(
        s.metric("modelmap_discovery_up", &[("source", "database")]),
        0.0
    );
    assert_eq!(
        s.sent("team-abc", "gpt-4.1"),
        good,
        "the last good mapping stays"
    );
    let ready = s.proxy.admin_get("/readyz");
    let text = String::from_utf8_lossy(&ready.body).into_owned();
    assert_eq!(ready.status, 200, "{text}");
    assert!(
        text.contains("discovery database: failing, serving its last good rules"),
        "{text}"
    );
    assert!(
        text.contains("SQLSTATE 42703"),
        "the server's reason is shown: {text}"
    );
    s.pg.psql(
        &s.db,
        r#"ALTER TABLE "LiteLLM_ProxyModelTable" RENAME COLUMN renamed TO model_name"#,
    );
    eventually(Duration::from_secs(5), "recovers", || {
        s.metric("modelmap_discovery_up", &[("source", "database")]) == 1.0
    });
}

#[test]
fn the_documented_read_only_role_is_enough_and_a_role_without_it_is_refused() {
    let pg = Postgres::shared();
    let db = pg.database();
    let role = format!("modelmap_ro_{}", db.rsplit('_').next().unwrap_or("0"));
    pg.psql(&db, &format!("CREATE ROLE {role} LOGIN"));
    pg.psql(&db, &format!("REVOKE ALL ON SCHEMA public FROM {role}"));
    let url = format!("postgresql://{role}@127.0.0.1:{}/{db}", pg.port);
    let (code, _, err) = cli(&["discover", "--database-url", &url]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("permission denied") && err.contains("42501"),
        "{err}"
    );
    assert!(
        !err.contains("postgresql://"),
        "the URL is never echoed: {err}"
    );

    // The grants docs/discovery.md lists, verbatim.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/discovery.md"))
        .expect("docs/discovery.md");
    let grants: String = doc
        .lines()
        .skip_while(|l| !l.starts_with("GRANT USAGE ON SCHEMA"))
        .take_while(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("modelmap_ro", &role);
    assert!(
        grants.contains("GRANT SELECT"),
        "grants found in the doc: {grants}"
    );
    pg.psql(&db, &grants);
    pg.add_team_model(&db, "team-abc", "gpt-4.1", "now()");
    let (code, yaml, err) = cli(&["discover", "--database-url", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(yaml.contains("team-abc:"), "{yaml}");
}

#[test]
fn a_slow_database_fails_the_round_without_slowing_requests() {
    let s = start(FILE_ONLY, &["--discover-timeout", "400ms"]);
    let (_, good) = s.pg.add_team_model(&s.db, "team-abc", "gpt-4.1", "now()");
    eventually(Duration::from_secs(5), "mapped", || {
        s.sent("team-abc", "gpt-4.1") == good
    });
    // Hold a lock that makes every discovery query wait for 3 s.
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '%s' 'BEGIN; LOCK TABLE \"LiteLLM_ProxyModelTable\" IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;' | psql -q -h 127.0.0.1 -p {} -U postgres -d {} >/dev/null",
            s.pg.port, s.db
        ))
        .spawn()
        .expect("psql holding a lock");
    let failures = |s: &Setup| {
        s.metric(
            "modelmap_discovery_rounds_total",
            &[("source", "database"), ("result", "failure")],
        )
    };
    eventually(Duration::from_secs(3), "a round times out", || {
        failures(&s) >= 1.0
    });
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(
            s.sent("team-abc", "gpt-4.1"),
            good,
            "last good mapping while the database is stuck"
        );
        slowest = slowest.max(t.elapsed());
    }
    eprintln!("slowest of 20 requests during stuck rounds: {slowest:?}");
    assert!(
        slowest < Duration::from_millis(200),
        "requests are not held by discovery: {slowest:?}"
    );
    let _ = holder.wait();
    eventually(Duration::from_secs(5), "recovers after the lock", || {
        s.metric("modelmap_discovery_up", &[("source", "database")]) == 1.0
    });
}

#[test]
fn team_and_router_aliases_in_the_database_resolve_to_internal_names() {
    let s = start(FILE_ONLY, &[]);
    let (_, gpt) = s.pg.add_team_model(&s.db, "team-abc", "gpt-4.1", "now()");
    let (_, mini) =
        s.pg.add_team_model(&s.db, "team-abc", "gpt-4.1-mini", "now()");
    // Where LiteLLM keeps them: the team's router_settings.model_group_alias, the team's
    // model_aliases (LiteLLM_ModelTable, through team.model_id), and the router's
    // model_group_alias in the config table.
    s.pg.psql(
        &s.db,
        r#"WITH m AS (INSERT INTO "LiteLLM_ModelTable" (aliases, created_by, updated_by)
                      VALUES ('{"legacy": "gpt-4.1-mini"}', 'admin', 'admin') RETURNING id)
           INSERT INTO "LiteLLM_TeamTable" (team_id, model_id, router_settings, updated_at)
           SELECT 'team-abc', id,
                  '{"model_group_alias": {"fast": "gpt-4.1", "quiet": {"model": "gpt-4.1-mini", "hidden": true}}}',
                  now() FROM m;
           INSERT INTO "LiteLLM_Config" (param_name, param_value)
           VALUES ('router_settings', '{"model_group_alias": {"AgentX-LLM": "gpt-4.1"}}')"#,
    );
    eventually(Duration::from_secs(5), "team aliases mapped", || {
        s.sent("team-abc", "fast") == gpt
    });
    assert_eq!(
        s.sent("team-abc", "quiet"),
        mini,
        "the {{model, hidden}} form"
    );
    assert_eq!(s.sent("team-abc", "legacy"), mini, "model_aliases");
    assert_eq!(
        s.sent("team-abc", "AgentX-LLM"),
        gpt,
        "router alias, then the team's model"
    );
    assert_eq!(
        s.sent("team-other", "AgentX-LLM"),
        "gpt-4.1",
        "router alias for everyone"
    );
    assert_eq!(
        s.sent("team-other", "fast"),
        "fast",
        "a team's alias is only the team's"
    );
}
