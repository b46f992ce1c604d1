//! Starting the real binary with addresses it cannot have: it must stop at once with one
//! clear line and a non-zero status, never run half-started (a live admin server saying
//! healthy in front of a proxy that serves nothing).

mod common;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::proxy::free_port;

/// Runs `modelmap` with `args`, killing it if it is still up after `limit`.
fn run_for(args: &[&str], limit: Duration) -> (Option<Output>, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mapping = dir.path().join("mapping.yaml");
    std::fs::write(&mapping, "version: 1\n").expect("mapping");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelmap"))
        .args(["--upstream", "http://127.0.0.1:9", "--mapping"])
        .arg(&mapping)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("MODELMAP_LOG", "info")
        .spawn()
        .expect("spawn modelmap");
    while started.elapsed() < limit {
        if child.try_wait().expect("try_wait").is_some() {
            let out = child.wait_with_output().expect("output");
            return (Some(out), started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    (None, started.elapsed())
}

fn error_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&out.stdout).lines())
        .filter(|l| l.contains("ERROR") || l.contains("panicked"))
        .map(str::to_string)
        .collect()
}

fn assert_refused(args: &[&str], code: i32, says: &str) {
    let (out, took) = run_for(args, Duration::from_secs(5));
    let out = out.unwrap_or_else(|| panic!("still running after {took:?} with {args:?}"));
    assert_eq!(out.status.code(), Some(code), "exit status with {args:?}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "one clear line, got {errors:#?}");
    assert!(
        errors[0].contains(says),
        "{:?} should say {says:?}",
        errors[0]
    );
}

#[test]
fn a_listen_port_in_use_exits_at_once() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = taken.local_addr().expect("addr").to_string();
    let admin = format!("127.0.0.1:{}", free_port());
    assert_refused(
        &["--listen", &taken, "--admin", &admin],
        1,
        &format!("cannot listen on {taken} (--listen)"),
    );
}

#[test]
fn an_admin_port_in_use_exits_at_once() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = taken.local_addr().expect("addr").to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    assert_refused(
        &["--listen", &listen, "--admin", &taken],
        1,
        &format!("cannot listen on {taken} (--admin)"),
    );
}

#[test]
fn listen_and_admin_on_one_port_are_refused_as_configuration() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    assert_refused(&["--listen", &addr, "--admin", &addr], 64, "its own port");
    let wildcard = format!("0.0.0.0:{port}");
    assert_refused(
        &["--listen", &wildcard, "--admin", &addr],
        64,
        "its own port",
    );
}
