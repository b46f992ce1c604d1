//! Hot reload: every way a mapping file changes in practice reaches the proxy without a
//! restart, a bad file never replaces a good one, and requests never fail meanwhile.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{FakeGateway, Proxy};

fn mapping_to(target: &str) -> String {
    format!("version: 1\naliases:\n  public: {target}\n")
}

fn sent_model(gw: &FakeGateway, proxy: &Proxy) -> String {
    let resp = proxy
        .client()
        .post("/v1/chat/completions", &[], br#"{"model":"public"}"#);
    assert_eq!(resp.status, 200);
    gw.last().json()["model"]
        .as_str()
        .expect("model")
        .to_string()
}

/// Waits until requests are sent with `target` (the reload is asynchronous).
fn eventually_sends(gw: &FakeGateway, proxy: &Proxy, target: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = sent_model(gw, proxy);
        if got == target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still sending {got:?}, expected {target:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn reloads(proxy: &Proxy, result: &str) -> f64 {
    let text = proxy.metrics();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("metrics parse");
    scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "modelmap_mapping_reloads_total" && s.labels.get("result") == Some(result)
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn in_place_edit_reloads() {
    let gw = FakeGateway::start();
    let proxy = Proxy::start(&gw.url(), &mapping_to("v1"), &[]);
    assert_eq!(sent_model(&gw, &proxy), "v1");
    std::fs::write(proxy.mapping_path(), mapping_to("v2")).expect("write");
    eventually_sends(&gw, &proxy, "v2");
}

#[test]
fn rename_over_reloads() {
    let gw = FakeGateway::start();
    let proxy = Proxy::start(&gw.url(), &mapping_to("v1"), &[]);
    let tmp = proxy.dir.path().join(".mapping.yaml.swp");
    std::fs::write(&tmp, mapping_to("v2")).expect("write");
    std::fs::rename(&tmp, proxy.mapping_path()).expect("rename over");
    eventually_sends(&gw, &proxy, "v2");
}

/// Lays out a directory the way the kubelet mounts a ConfigMap.
fn configmap_version(dir: &Path, name: &str, content: &str) {
    let version = dir.join(name);
    std::fs::create_dir(&version).expect("version dir");
    std::fs::write(version.join("mapping.yaml"), content).expect("write");
}

/// The kubelet's atomic update: new timestamped directory, `..data_tmp` symlink renamed
/// over `..data`, old directory removed.
fn configmap_swap(dir: &Path, new: &str, old: &str) {
    let tmp = dir.join("..data_tmp");
    symlink(new, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    std::fs::remove_dir_all(dir.join(old)).expect("remove old");
}

#[test]
fn configmap_symlink_swap_reloads() {
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().expect("tempdir");
    configmap_version(
        dir.path(),
        "..2026_11_21_10_00_00.000000001",
        &mapping_to("v1"),
    );
    symlink("..2026_11_21_10_00_00.000000001", dir.path().join("..data")).expect("..data");
    symlink("..data/mapping.yaml", dir.path().join("mapping.yaml")).expect("file link");
    let path = dir.path().join("mapping.yaml");
    let proxy = Proxy::start_at(&gw.url(), dir, path, &[]);
    assert_eq!(sent_model(&gw, &proxy), "v1");

    configmap_version(
        proxy.dir.path(),
        "..2026_11_21_10_01_00.000000002",
        &mapping_to("v2"),
    );
    configmap_swap(
        proxy.dir.path(),
        "..2026_11_21_10_01_00.000000002",
        "..2026_11_21_10_00_00.000000001",
    );
    eventually_sends(&gw, &proxy, "v2");
}

#[test]
fn invalid_file_keeps_the_old_mapping_until_a_valid_one_arrives() {
    let gw = FakeGateway::start();
    let proxy = Proxy::start(&gw.url(), &mapping_to("v1"), &[]);
    let failures_before = reloads(&proxy, "failure");
    std::fs::write(
        proxy.mapping_path(),
        "version: 1\naliases:\n  public: [not, a, name]\n",
    )
    .expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads(&proxy, "failure") <= failures_before {
        assert!(
            Instant::now() < deadline,
            "the failed reload was not counted"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(
        sent_model(&gw, &proxy),
        "v1",
        "the previous mapping stays in use"
    );
    assert_eq!(
        proxy.admin_get("/readyz").status,
        200,
        "still ready: a mapping is loaded"
    );

    std::fs::write(proxy.mapping_path(), mapping_to("v3")).expect("write");
    eventually_sends(&gw, &proxy, "v3");
}

#[test]
fn requests_keep_succeeding_through_a_burst_of_reloads() {
    let gw = FakeGateway::start();
    let proxy = Proxy::start(&gw.url(), &mapping_to("v0"), &[]);
    let path = proxy.mapping_path();
    let writer = std::thread::spawn(move || {
        for i in 0..100 {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, mapping_to(&format!("v{i}"))).expect("write");
            std::fs::rename(&tmp, &path).expect("rename");
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let mut client = proxy.client();
    let mut seen = 0;
    while !writer.is_finished() || seen < 50 {
        let resp = client.post(
            "/v1/chat/completions",
            &[],
            br#"{"model":"public","fallbacks":["public"]}"#,
        );
        assert_eq!(resp.status, 200, "no request fails during reloads");
        let got = gw.last().json();
        assert!(
            got["model"].as_str().is_some_and(|m| m.starts_with('v')),
            "{got}"
        );
        assert_eq!(
            got["model"], got["fallbacks"][0],
            "one request, one mapping snapshot"
        );
        seen += 1;
    }
    writer.join().expect("writer");
    eventually_sends(&gw, &proxy, "v99");
}

#[test]
fn a_missing_mapping_at_start_is_not_ready_until_the_file_appears() {
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mapping.yaml");
    let proxy = Proxy::start_at(&gw.url(), dir, path.clone(), &[]);
    assert_eq!(proxy.admin_get("/readyz").status, 503);
    assert_eq!(proxy.admin_get("/healthz").status, 200);
    assert_eq!(
        sent_model(&gw, &proxy),
        "public",
        "without a mapping, names pass unchanged"
    );
    std::fs::write(&path, mapping_to("v1")).expect("write");
    eventually_sends(&gw, &proxy, "v1");
    assert_eq!(proxy.admin_get("/readyz").status, 200);
}

/// Every reload attempt counted so far, whatever its result.
fn all_reloads(proxy: &Proxy) -> f64 {
    ["success", "unchanged", "failure"]
        .iter()
        .map(|r| reloads(proxy, r))
        .sum()
}

const IDLE_LIMIT: f64 = 4.0;
const INVALID: &str = "version: 1\naliases:\n  public: [not, a, name]\n";

fn configmap_proxy(gw: &FakeGateway, content: &str) -> Proxy {
    let dir = tempfile::tempdir().expect("tempdir");
    configmap_version(dir.path(), "..2026_11_21_10_00_00.000000001", content);
    symlink("..2026_11_21_10_00_00.000000001", dir.path().join("..data")).expect("..data");
    symlink("..data/mapping.yaml", dir.path().join("mapping.yaml")).expect("file link");
    let path = dir.path().join("mapping.yaml");
    Proxy::start_at(&gw.url(), dir, path, &[])
}

/// Four proxies (a valid and an invalid file, each plain and in the ConfigMap layout)
/// left alone for the same 30 s: only the 10 s safety poll may read a file then (three
/// reads, four at a boundary), where modelmap's own reads used to wake its watcher
/// about five times a second, forever.
#[test]
fn an_idle_mapping_is_read_only_by_the_poll() {
    let gw = FakeGateway::start();
    let proxies = [
        (
            "valid file",
            Proxy::start(&gw.url(), &mapping_to("v1"), &[]),
        ),
        ("invalid file", Proxy::start(&gw.url(), INVALID, &[])),
        ("valid ConfigMap", configmap_proxy(&gw, &mapping_to("v1"))),
        ("invalid ConfigMap", configmap_proxy(&gw, INVALID)),
    ];
    // Let the start-up loads (and their own directory events) settle first.
    std::thread::sleep(Duration::from_millis(500));
    let before: Vec<f64> = proxies.iter().map(|(_, p)| all_reloads(p)).collect();
    std::thread::sleep(Duration::from_secs(30));
    for ((what, proxy), before) in proxies.iter().zip(before) {
        let n = all_reloads(proxy) - before;
        assert!(n <= IDLE_LIMIT, "{what}: {n} reloads in 30 idle seconds");
        if what.starts_with("invalid") {
            assert!(
                reloads(proxy, "failure") >= 2.0,
                "{what}: the poll still retries"
            );
        } else {
            assert_eq!(sent_model(&gw, proxy), "v1", "{what}");
        }
    }
}
