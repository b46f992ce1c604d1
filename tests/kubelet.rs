//! A mapping mounted from a Kubernetes ConfigMap, updated the way the kubelet updates
//! it, while requests flow: every update takes effect without a restart, no request
//! fails or mixes two mappings, a bad update keeps the previous mapping, and the
//! metrics the README points operators to confirm each reload.
//!
//! The kubelet never writes the mounted files in place. Its atomic writer
//! (`pkg/volume/util/atomic_writer.go`) keeps the data in a hidden timestamped
//! directory, points the `..data` symlink at it, and exposes each key as a symlink
//! through `..data`. An update writes a new timestamped directory, creates `..data_tmp`
//! pointing at it, renames that over `..data` (the atomic step), adds or removes the
//! per-key symlinks, and finally deletes the old directory.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{FakeGateway, Proxy};
use prometheus_parse::{Scrape, Value};

/// A ConfigMap volume, written as the kubelet writes it.
struct ConfigMapVolume {
    dir: PathBuf,
    updates: usize,
}

impl ConfigMapVolume {
    fn mount(dir: &Path, data: &[(&str, &str)]) -> ConfigMapVolume {
        let mut volume = ConfigMapVolume {
            dir: dir.to_path_buf(),
            updates: 0,
        };
        volume.write(data);
        volume
    }

    /// The kubelet's atomic writer, step by step.
    fn write(&mut self, data: &[(&str, &str)]) {
        let data_link = self.dir.join("..data");
        let old = std::fs::read_link(&data_link).ok();

        // A new timestamped directory (os.MkdirTemp with a "..2006_01_02_15_04_05."
        // pattern), holding every key with the volume's default mode.
        self.updates += 1;
        let ts = format!(
            "..2026_11_21_10_{:02}_{:02}.{}",
            self.updates / 60,
            self.updates % 60,
            1_000_000_000 - self.updates * 7919
        );
        let ts_dir = self.dir.join(&ts);
        std::fs::create_dir(&ts_dir).expect("timestamped dir");
        std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755)).expect("mode");
        for (key, content) in data {
            let file = ts_dir.join(key);
            std::fs::write(&file, content).expect("write key");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("mode");
        }

        // The atomic swap: a temporary symlink renamed over `..data`.
        let tmp_link = self.dir.join("..data_tmp");
        symlink(&ts, &tmp_link).expect("..data_tmp");
        std::fs::rename(&tmp_link, &data_link).expect("rename ..data_tmp over ..data");

        // User-visible symlinks for new keys; stale ones removed.
        for (key, _) in data {
            let visible = self.dir.join(key);
            if std::fs::symlink_metadata(&visible).is_err() {
                symlink(Path::new("..data").join(key), &visible).expect("key symlink");
            }
        }
        for entry in std::fs::read_dir(&self.dir).expect("read volume") {
            let name = entry.expect("entry").file_name();
            let name = name.to_string_lossy();
            if !name.starts_with("..") && !data.iter().any(|(k, _)| *k == name) {
                std::fs::remove_file(self.dir.join(&*name)).expect("remove stale key");
            }
        }

        // The old data directory goes last.
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).expect("remove old data dir");
        }
    }

    fn data_dirs(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .expect("read volume")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..2"))
            .collect()
    }
}

fn mapping(version: usize) -> String {
    format!("version: 1\naliases:\n  public: v{version}\n  also-public: v{version}\n")
}

fn metric(proxy: &Proxy, name: &str, label: Option<(&str, &str)>) -> f64 {
    let text = proxy.metrics();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("metrics parse");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The version the gateway last saw, from any client.
fn last_version(gw: &FakeGateway) -> Option<usize> {
    let last = gw.requests().pop()?;
    last.json()["model"]
        .as_str()?
        .strip_prefix('v')?
        .parse()
        .ok()
}

#[test]
fn configmap_updates_apply_without_restart_while_requests_flow() {
    const CLIENTS: usize = 4;
    const UPDATES: usize = 8;
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut volume = ConfigMapVolume::mount(
        dir.path(),
        &[("mapping.yaml", &mapping(0)), ("notes.txt", "first")],
    );
    let path = dir.path().join("mapping.yaml");
    let proxy = Arc::new(Proxy::start_at(&gw.url(), dir, path, &[]));
    assert_eq!(proxy.admin_get("/readyz").status, 200);
    assert_eq!(
        metric(
            &proxy,
            "modelmap_mapping_reloads_total",
            Some(("result", "success"))
        ),
        1.0
    );

    // Clients send requests without pause for the whole test, each on its own
    // keep-alive connection (and a new connection now and then).
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (proxy, stop, sent) = (proxy.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut client = proxy.client();
                let mut failures = Vec::new();
                let started = Instant::now();
                let mut seq = 0usize;
                while !stop.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(60) {
                    if seq % 50 == 49 {
                        client = proxy.client();
                    }
                    let (id_s, seq_s) = (id.to_string(), seq.to_string());
                    let resp = client.post(
                        "/v1/chat/completions",
                        &[("x-client", &id_s), ("x-seq", &seq_s)],
                        br#"{"model":"public","fallbacks":["also-public"]}"#,
                    );
                    if resp.status != 200 || resp.json()["model"] != "public" {
                        failures.push(format!(
                            "{} {}",
                            resp.status,
                            String::from_utf8_lossy(&resp.body)
                        ));
                    }
                    seq += 1;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                failures
            })
        })
        .collect();
    wait_for("traffic", Duration::from_secs(10), || {
        last_version(&gw) == Some(0)
    });

    let mut expected_success = 1.0;
    let mut last_applied = metric(
        &proxy,
        "modelmap_mapping_last_reload_success_timestamp_seconds",
        None,
    );
    for version in 1..=UPDATES {
        // Reload timestamps are whole-second apart at best; let the clock move.
        std::thread::sleep(Duration::from_millis(50));
        let before = sent.load(Ordering::Relaxed);
        volume.write(&[("mapping.yaml", &mapping(version)), ("notes.txt", "first")]);
        wait_for(
            &format!("v{version} to reach the gateway"),
            Duration::from_secs(10),
            || last_version(&gw) == Some(version),
        );
        expected_success += 1.0;
        // The new mapping is in use a moment before its reload is counted.
        wait_for("the reload to be counted", Duration::from_secs(5), || {
            metric(
                &proxy,
                "modelmap_mapping_reloads_total",
                Some(("result", "success")),
            ) >= expected_success
        });
        assert_eq!(
            metric(
                &proxy,
                "modelmap_mapping_reloads_total",
                Some(("result", "success"))
            ),
            expected_success,
            "each kubelet update is applied exactly once"
        );
        let applied = metric(
            &proxy,
            "modelmap_mapping_last_reload_success_timestamp_seconds",
            None,
        );
        assert!(
            applied > last_applied,
            "the last-success timestamp moves forward"
        );
        last_applied = applied;
        assert!(
            sent.load(Ordering::Relaxed) > before,
            "requests kept flowing during update {version}"
        );
        assert_eq!(
            volume.data_dirs().len(),
            1,
            "the old data directory is gone, as the kubelet leaves it"
        );
    }

    // A bad edit (`kubectl edit` with a typo) arrives the same way: it is refused, the
    // previous mapping stays in use and the failure is counted.
    let failures_before = metric(
        &proxy,
        "modelmap_mapping_reloads_total",
        Some(("result", "failure")),
    );
    volume.write(&[
        ("mapping.yaml", "version: 1\naliases:\n  public: [oops\n"),
        ("notes.txt", "first"),
    ]);
    wait_for(
        "the failed reload to be counted",
        Duration::from_secs(10),
        || {
            metric(
                &proxy,
                "modelmap_mapping_reloads_total",
                Some(("result", "failure")),
            ) > failures_before
        },
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        last_version(&gw),
        Some(UPDATES),
        "the previous mapping stays"
    );
    assert_eq!(proxy.admin_get("/readyz").status, 200, "still ready");

    // The fix arrives by the same road.
    let fixed = UPDATES + 1;
    volume.write(&[("mapping.yaml", &mapping(fixed)), ("notes.txt", "first")]);
    wait_for("the fixed mapping", Duration::from_secs(10), || {
        last_version(&gw) == Some(fixed)
    });
    wait_for("the fix to be counted", Duration::from_secs(5), || {
        metric(
            &proxy,
            "modelmap_mapping_reloads_total",
            Some(("result", "success")),
        ) >= expected_success + 1.0
    });

    // An update that changes another key only: the mapping is read again, found
    // unchanged, and not applied again.
    let unchanged_before = metric(
        &proxy,
        "modelmap_mapping_reloads_total",
        Some(("result", "unchanged")),
    );
    let success_before = metric(
        &proxy,
        "modelmap_mapping_reloads_total",
        Some(("result", "success")),
    );
    volume.write(&[("mapping.yaml", &mapping(fixed)), ("notes.txt", "second")]);
    wait_for("an unchanged reload", Duration::from_secs(10), || {
        metric(
            &proxy,
            "modelmap_mapping_reloads_total",
            Some(("result", "unchanged")),
        ) > unchanged_before
    });
    assert_eq!(
        metric(
            &proxy,
            "modelmap_mapping_reloads_total",
            Some(("result", "success"))
        ),
        success_before,
        "same content, not applied again"
    );

    stop.store(true, Ordering::Release);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.join().expect("client thread"));
    }
    assert!(failures.is_empty(), "no request failed: {failures:?}");

    // Every request used one mapping for its whole life, and each client saw the
    // versions only move forward.
    let mut seen: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for req in gw.requests() {
        let body = req.json();
        let model = body["model"].as_str().expect("model").to_string();
        assert_eq!(
            body["fallbacks"][0].as_str(),
            Some(model.as_str()),
            "one request, one mapping snapshot"
        );
        let version: usize = model
            .strip_prefix('v')
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a mapped name, got {model:?}"));
        let client = req.header("x-client").expect("client id").to_string();
        let seq: usize = req.header("x-seq").expect("seq").parse().expect("number");
        seen.entry(client).or_default().push((seq, version));
    }
    assert_eq!(seen.len(), CLIENTS);
    for (client, mut list) in seen {
        list.sort();
        assert!(
            list.windows(2).all(|w| w[0].1 <= w[1].1),
            "client {client} saw an older mapping after a newer one"
        );
    }
    assert!(
        sent.load(Ordering::Relaxed) >= 100,
        "enough traffic to mean something"
    );
}
