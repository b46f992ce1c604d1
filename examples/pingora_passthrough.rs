//! The floor for the benchmark: a stock Pingora reverse proxy that does nothing but
//! forward (no filters, no logging, no metrics), with the same upstream options as
//! modelmap. The gap between this hop and nginx is what Pingora itself costs; the gap
//! between this hop and modelmap is what modelmap's own work costs.
//!
//! Usage: `pingora_passthrough LISTEN UPSTREAM` (both `host:port`), one worker thread.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(5));
        peer.options.read_timeout = Some(Duration::from_secs(600));
        Ok(Box::new(peer))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: pingora_passthrough LISTEN UPSTREAM");
        std::process::exit(64);
    };
    let Ok(upstream) = upstream.parse() else {
        eprintln!("pingora_passthrough: UPSTREAM must be host:port");
        std::process::exit(64);
    };
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        fast_timeout_to_tokio_threshold_seconds: Some(10),
        // A benchmark tool stops at once on SIGTERM (Pingora's default grace is 5 min).
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Passthrough { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
