//! The real `modelmap` binary as a child process (for what only a process shows: its
//! memory, its signals, its exit code). Killed on drop.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::proxy::free_port;

pub struct ProxyProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl ProxyProcess {
    pub fn start(upstream: &str, mapping: &str, extra: &[&str]) -> ProxyProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mapping.yaml");
        std::fs::write(&path, mapping).expect("write mapping");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let child = Command::new(env!("CARGO_BIN_EXE_modelmap"))
            .args(["--listen", &addr.to_string(), "--admin", &admin.to_string()])
            .args([
                "--upstream",
                upstream,
                "--mapping",
                &path.display().to_string(),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn modelmap");
        let deadline = Instant::now() + Duration::from_secs(10);
        // Both listeners: the admin server may come up after the proxy's.
        while TcpStream::connect(addr).is_err() || TcpStream::connect(admin).is_err() {
            assert!(
                Instant::now() < deadline,
                "modelmap did not start listening"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        ProxyProcess {
            child,
            addr,
            admin,
            dir,
        }
    }

    /// A line of /proc/PID/status in KiB (VmRSS, VmHWM).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)?
                    .trim_start_matches(':')
                    .trim()
                    .strip_suffix(" kB")?
                    .parse()
                    .ok()
            })
            .expect("memory field")
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
