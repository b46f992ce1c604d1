//! Discovery from LiteLLM's config file: watched like the mapping file, merged with it,
//! and a config that cannot be read keeps the last good rules.

mod common;

use std::time::Duration;

use common::postgres::eventually;
use common::{FakeGateway, Proxy};

fn config(entries: &[(&str, &str, &str)]) -> String {
    let mut out = String::from("model_list:\n");
    for (internal, team, public) in entries {
        out.push_str(&format!(
            "  - model_name: {internal}\n    litellm_params: {{model: openai/x}}\n    model_info: {{team_id: {team}, team_public_model_name: {public}}}\n"
        ));
    }
    out.push_str("  - model_name: backup-model\n    litellm_params: {model: openai/y}\n");
    out
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

fn failures(proxy: &Proxy) -> usize {
    proxy
        .metrics()
        .lines()
        .filter(|l| {
            l.starts_with("modelmap_discovery_rounds_total{")
                && l.contains("result=\"failure\"")
                && l.contains("source=\"config\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

#[test]
fn the_litellm_config_is_watched_and_a_broken_one_keeps_the_last_good_rules() {
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let litellm = dir.path().join("litellm-config.yaml");
    std::fs::write(
        &litellm,
        config(&[("model_name_team-abc_1", "team-abc", "gpt-4.1")]),
    )
    .expect("write");
    let mapping = "version: 1\naliases:\n  fast: gpt-4.1\n";
    let path = litellm.display().to_string();
    let proxy = Proxy::start(
        &gw.url(),
        mapping,
        &[
            "--discover-config",
            &path,
            "--trusted-team-header",
            "x-team",
        ],
    );
    assert_eq!(
        sent(&gw, &proxy, "team-abc", "gpt-4.1"),
        "model_name_team-abc_1",
        "the config is applied before the first request"
    );
    assert_eq!(
        sent(&gw, &proxy, "team-abc", "fast"),
        "model_name_team-abc_1",
        "the file's alias, then the discovered team entry"
    );

    // An edit (as an editor does it: write elsewhere, rename over).
    let tmp = dir.path().join(".litellm-config.yaml.tmp");
    std::fs::write(
        &tmp,
        config(&[
            ("model_name_team-abc_2", "team-abc", "gpt-4.1"),
            ("model_name_team-xyz_1", "team-xyz", "claude"),
        ]),
    )
    .expect("write");
    std::fs::rename(&tmp, &litellm).expect("rename");
    eventually(Duration::from_secs(5), "the edit is followed", || {
        sent(&gw, &proxy, "team-abc", "gpt-4.1") == "model_name_team-abc_2"
    });
    assert_eq!(
        sent(&gw, &proxy, "team-xyz", "claude"),
        "model_name_team-xyz_1"
    );

    // A config that is not YAML: the last good rules stay, the failure is counted.
    std::fs::write(&litellm, "model_list: [unclosed\n").expect("write");
    eventually(Duration::from_secs(5), "the failure is counted", || {
        failures(&proxy) >= 1
    });
    assert_eq!(
        sent(&gw, &proxy, "team-abc", "gpt-4.1"),
        "model_name_team-abc_2"
    );
    let ready = proxy.admin_get("/readyz");
    let text = String::from_utf8_lossy(&ready.body).into_owned();
    assert_eq!(ready.status, 200, "{text}");
    assert!(
        text.contains("discovery config: failing, serving its last good rules"),
        "{text}"
    );

    // Back to the last good content: the failure clears although nothing else changes.
    std::fs::write(
        &litellm,
        config(&[
            ("model_name_team-abc_2", "team-abc", "gpt-4.1"),
            ("model_name_team-xyz_1", "team-xyz", "claude"),
        ]),
    )
    .expect("write");
    eventually(Duration::from_secs(5), "the failure clears", || {
        String::from_utf8_lossy(&proxy.admin_get("/readyz").body).contains("discovery config: ok")
    });

    std::fs::write(
        &litellm,
        config(&[("model_name_team-abc_3", "team-abc", "gpt-4.1")]),
    )
    .expect("write");
    eventually(Duration::from_secs(5), "fixed", || {
        sent(&gw, &proxy, "team-abc", "gpt-4.1") == "model_name_team-abc_3"
    });
    assert_eq!(
        sent(&gw, &proxy, "team-xyz", "claude"),
        "claude",
        "removed from the config: unmapped"
    );
}
