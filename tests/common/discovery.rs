//! Helpers of the discovery tests: a proxy discovering from a database of the shared
//! Postgres, what the gateway was sent, metrics, the CLI.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::postgres::Postgres;
use super::{FakeGateway, Proxy};

pub const INTERVAL: Duration = Duration::from_millis(300);
pub const FILE_ONLY: &str = "version: 1\n";

pub struct Setup {
    pub pg: Arc<Postgres>,
    pub db: String,
    pub gw: FakeGateway,
    pub proxy: Proxy,
}

/// A proxy with `mapping` as its file, discovering from a new database (LiteLLM's
/// schema) every 300 ms; the caller's team is the `x-team` header.
pub fn start(mapping: &str, extra: &[&str]) -> Setup {
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
    pub fn sent(&self, team: &str, model: &str) -> String {
        sent(&self.gw, &self.proxy, team, model)
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.proxy.metrics(), name, labels)
    }
}

/// The model name `gw` received for `model` requested through `proxy` by `team`.
pub fn sent(gw: &FakeGateway, proxy: &Proxy, team: &str, model: &str) -> String {
    let body = format!(r#"{{"model":"{model}"}}"#);
    let resp = proxy
        .client()
        .post("/v1/chat/completions", &[("x-team", team)], body.as_bytes());
    assert_eq!(resp.status, 200, "request through modelmap");
    gw.last().json()["model"]
        .as_str()
        .expect("model")
        .to_string()
}

/// The sum of the samples of `name` with `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
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

/// `/readyz`: status and body.
pub fn readyz(proxy: &Proxy) -> (u16, String) {
    let r = proxy.admin_get("/readyz");
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// The real binary's `discover`/`check`: (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
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
