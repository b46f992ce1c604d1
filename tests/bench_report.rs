//! The benchmark's verdict (bench/report.py, which bench/run.sh --smoke relies on): a
//! run in which a hop served nothing or had errors fails, however good the rest looks;
//! the scripted peers are compared with modelmap, and idle connections are summarised.

use std::process::Command;

const HEADER: &str = "kind\thop\tsize\tround\trequests\tseconds\tp50_us\tp99_us\tmean_us\tcpu_s\tpeak_kib\tmock_cpu_s\terrors\n";
const HOPS: [&str; 6] = ["direct", "nginx", "njs", "lua", "pingora", "modelmap"];
const IDLE_HEADER: &str =
    "hop\tconns\topen\trss_before_kib\trss_idle_kib\trss_closed_kib\tkib_per_conn\tseconds\n";

/// Results of a smoke run in which every hop answered, except as `edit` changes a row.
fn results(edit: impl Fn(&str, &str, &str) -> Option<(u32, u32)>) -> String {
    let mut out = HEADER.to_string();
    for hop in HOPS {
        for kind in ["load", "latency"] {
            for size in ["1k", "1m"] {
                let (requests, errors) = edit(kind, hop, size).unwrap_or((1000, 0));
                out.push_str(&format!(
                    "{kind}\t{hop}\t{size}\t1\t{requests}\t1\t100\t200\t120\t0.5\t10000\t0.2\t{errors}\n"
                ));
            }
        }
        let (events, _) = edit("sse", hop, "sse").unwrap_or((40, 0));
        out.push_str(&format!(
            "sse\t{hop}\tsse\t1\t{events}\t0\t100\t200\t120\t0\t0\t0\t0\n"
        ));
    }
    out
}

/// Runs the report on `results` in smoke mode; its exit status and output.
fn report(results: &str) -> (bool, String) {
    report_with(results, IDLE_HEADER, true)
}

/// Runs the report on `results` and the idle-connection rows `idle`.
fn report_with(results: &str, idle: &str, smoke: bool) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (r, m, i) = (
        dir.path().join("results.tsv"),
        dir.path().join("memory.tsv"),
        dir.path().join("idle.tsv"),
    );
    std::fs::write(&r, results).expect("write");
    std::fs::write(&m, "hop\tuploads\tsize\tidle_kib\tpeak_kib\tseconds\n").expect("write");
    std::fs::write(&i, idle).expect("write");
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/report.py"))
        .args([&r, &m, &i])
        .args(smoke.then_some("--smoke"))
        .output()
        .expect("python3 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_run_where_every_hop_served_passes() {
    let (ok, out) = report(&results(|_, _, _| None));
    assert!(ok, "{out}");
    assert!(!out.contains("FAILED"), "{out}");
}

#[test]
fn a_hop_at_zero_requests_per_second_fails_the_run() {
    let (ok, out) = report(&results(|kind, hop, size| {
        (kind == "load" && hop == "modelmap" && size == "1m").then_some((0, 0))
    }));
    assert!(!ok, "a dead hop must fail the run:\n{out}");
    assert!(
        out.contains("FAILED: load modelmap 1m round 1: 0 requests"),
        "{out}"
    );
}

#[test]
fn a_hop_with_errors_or_no_stream_events_fails_the_run() {
    let (ok, out) = report(&results(|kind, hop, _| {
        (kind == "latency" && hop == "nginx").then_some((900, 3))
    }));
    assert!(!ok && out.contains("3 errors"), "{out}");
    let (ok, out) = report(&results(|kind, hop, _| {
        (kind == "sse" && hop == "pingora").then_some((0, 0))
    }));
    assert!(
        !ok && out.contains("sse pingora sse round 1: 0 events"),
        "{out}"
    );
}

#[test]
fn modelmap_is_compared_with_each_scripted_peer() {
    let (ok, out) = report(&results(|kind, hop, _| {
        (kind == "load" && hop == "lua").then_some((500, 0))
    }));
    assert!(ok, "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("| 1 KiB | modelmap"))
        .unwrap_or_else(|| panic!("no 1 KiB modelmap row:\n{out}"));
    assert!(
        row.ends_with("| 1.00× | 1.00× | 2.00× |"),
        "modelmap served twice what nginx+Lua did: vs nginx, vs njs, vs Lua:\n{row}"
    );
}

#[test]
fn idle_connections_are_reported_per_connection_and_judged() {
    let idle = format!(
        "{IDLE_HEADER}nginx\t10000\t10000\t4400\t9400\t9400\t0.50\t3.0\n\
         modelmap\t10000\t10000\t9700\t330000\t200000\t32.03\t4.0\n"
    );
    let (ok, out) = report_with(&results(|_, _, _| None), &idle, false);
    assert!(ok, "{out}");
    assert!(
        out.contains("| modelmap (rewrite + restore) | 10000 | 10000 | 9.5 MiB | 322.3 MiB | 195.3 MiB | 32.0 KiB |"),
        "{out}"
    );
    assert!(
        out.contains(
            "NOT MET: 32.0 KiB RSS per idle keep-alive connection (10000 of 10000 open; ≤ 8 KiB)"
        ),
        "{out}"
    );
}
