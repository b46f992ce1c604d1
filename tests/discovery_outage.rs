//! Discovery when the database stops and starts again. This test runs a Postgres of
//! its own (it stops and restarts it); tests/discovery.rs has the rest.

mod common;

use std::time::Duration;

use common::discovery::{metric, readyz, sent};
use common::postgres::{Postgres, eventually};
use common::{FakeGateway, Proxy};

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
        metric(
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
        metric(
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
        metric(
            &proxy.metrics(),
            "modelmap_discovery_up",
            &[("source", "database")]
        ),
        1.0
    );
    assert!(readyz(&proxy).1.contains("discovery database: ok"));
}
