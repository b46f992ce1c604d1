//! Runs the real proxy in-process against a mapping written to a temp directory.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use modelmap::config::{Cli, Settings};
use modelmap::server::Running;

use super::client::{Client, Framing, Response};

pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub running: Running,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Proxy {
    /// Starts the proxy in front of `upstream` with `mapping` as its file.
    pub fn start(upstream: &str, mapping: &str, extra: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mapping.yaml");
        std::fs::write(&path, mapping).expect("write mapping");
        Proxy::start_at(upstream, dir, path, extra)
    }

    pub fn start_at(
        upstream: &str,
        dir: tempfile::TempDir,
        path: PathBuf,
        extra: &[&str],
    ) -> Proxy {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut args = vec![
            "modelmap".to_string(),
            "--listen".into(),
            addr.to_string(),
            "--admin".into(),
            admin.to_string(),
            "--upstream".into(),
            upstream.into(),
            "--mapping".into(),
            path.display().to_string(),
            "--reload-debounce".into(),
            "50ms".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let cli = Cli::try_parse_from(args).expect("valid flags");
        let settings = Settings::from_args(cli.serve).expect("valid settings");
        let running = Running::start(settings).expect("proxy starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() || TcpStream::connect(admin).is_err() {
            assert!(Instant::now() < deadline, "proxy did not start listening");
            std::thread::sleep(Duration::from_millis(10));
        }
        Proxy {
            addr,
            admin,
            dir,
            running,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn mapping_path(&self) -> PathBuf {
        self.dir.path().join("mapping.yaml")
    }

    pub fn admin_get(&self, path: &str) -> Response {
        Client::connect(self.admin).request("GET", path, &[], b"", Framing::Length)
    }

    pub fn metrics(&self) -> String {
        String::from_utf8(self.admin_get("/metrics").body).expect("utf8 metrics")
    }

    /// The metrics once `requests` requests have been counted (a request is counted in
    /// its logging phase, just after its response is sent).
    pub fn metrics_after(&self, requests: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.metrics();
            let counted: f64 = text
                .lines()
                .filter(|l| l.starts_with("modelmap_requests_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            if counted >= requests as f64 || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
