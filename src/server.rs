//! Assembles the Pingora server: the proxy loop (`proxy`, a pingora-core `ServerApp`),
//! the admin server, the mapping watcher and discovery (when configured), sharing one
//! store and one metrics registry. `main` runs it until a signal; tests run it on a
//! thread and stop it through [`Running`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::config::Settings;
use crate::discover::service::Plan;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::store::{Reload, Store};
use crate::watch::MappingWatcher;

/// Timeouts longer than this use Tokio timers (see `build`).
const FAST_TIMER_LIMIT_SECS: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {addr} (--{flag}): {source}")]
    Bind {
        flag: &'static str,
        addr: String,
        source: std::io::Error,
    },
}

/// Binds each address once, then lets go, so that a port already in use stops the start
/// with one clear error. Pingora binds its listeners later, on its own threads: there a
/// failure is retried for half a minute and then panics a service thread, leaving a
/// process whose admin server answers `/healthz` while the proxy serves nothing.
fn probe_bind(addrs: [(&'static str, std::net::SocketAddr); 2]) -> Result<(), StartError> {
    for (flag, addr) in addrs {
        std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind {
            flag,
            addr: addr.to_string(),
            source,
        })?;
    }
    Ok(())
}

/// What the running server shares with its owner.
pub struct Parts {
    pub server: Server,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    /// Requests currently in flight (for draining).
    pub in_flight: Arc<AtomicUsize>,
}

/// Builds the server and loads the mapping once. A mapping that fails to load does not
/// stop the start: the proxy runs (passing names through), `/readyz` says not ready, and
/// the watcher applies the file as soon as it is fixed.
pub fn build(settings: Settings) -> Result<Parts, StartError> {
    probe_bind([("listen", settings.listen), ("admin", settings.admin)])?;
    let metrics = Arc::new(Metrics::new()?);
    let discovery = Plan::new(&settings);
    let store = Arc::new(
        Store::new(settings.mapping.clone(), metrics.clone()).with_discovery(discovery.sources()),
    );
    if let Reload::Failed(_) = store.reload(false) {
        tracing::warn!("starting without a mapping: not ready until the file is valid");
    }

    let conf = ServerConf {
        threads: settings.threads,
        // One worker needs no work stealing: a plain single-threaded runtime skips the
        // cross-thread queues and wake-ups.
        work_stealing: settings.threads > 1,
        // Draining is handled by `Drain` below, which exits the process itself. Pingora's
        // fixed grace sleep is only a backstop and must outlast the drain's own deadline:
        // rounding a timeout down (1.5 s to 1 s) let Pingora end the process first.
        grace_period_seconds: Some(backstop_seconds(settings.shutdown_timeout)),
        graceful_shutdown_timeout_seconds: Some(1),
        // Pingora keeps a cancelled fast timer until its deadline: with a 600 s read
        // timeout, every upstream read would pin memory for ten minutes (measured by the
        // soak test as steady RSS growth). Longer timeouts use Tokio's, freed on cancel.
        fast_timeout_to_tokio_threshold_seconds: Some(FAST_TIMER_LIMIT_SECS),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let in_flight = Arc::new(AtomicUsize::new(0));
    let (listen, admin_addr) = (settings.listen.to_string(), settings.admin.to_string());
    let debounce = settings.reload_debounce;
    let proxy = Proxy::new(&settings, store.clone(), metrics.clone(), in_flight.clone());
    let mut proxy = Service::new("modelmap proxy".to_string(), proxy);
    // No L4 read buffer: the loop reads heads into its own buffer and Pingora's sessions
    // read bodies into theirs, so the default 64 KiB per connection only held memory
    // (measured: 75 KiB RSS per idle keep-alive connection with it). Writes stay
    // buffered, so a response head and a short body leave in one packet.
    proxy.add_listener(
        ListenerConfig::tcp(listen.clone()).l4_buffer(L4BufferSettings::new(
            0,
            pingora::protocols::l4::stream::DEFAULT_L4_WRITE_BUFFER_SIZE,
        )),
    );

    let mut admin = Service::new(
        "modelmap admin".to_string(),
        HttpServer::new_app(Admin {
            store: store.clone(),
            metrics: metrics.clone(),
        }),
    );
    admin.add_tcp(&admin_addr);
    admin.threads = Some(1);

    let watcher = background_service(
        "mapping watcher",
        MappingWatcher {
            store: store.clone(),
            debounce,
        },
    );
    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(watcher);
    server.add_services(discovery.services(&store, &metrics));
    tracing::info!(%listen, admin = %admin_addr, "modelmap listening");
    Ok(Parts {
        server,
        store,
        metrics,
        in_flight,
    })
}

/// Whole seconds for Pingora's grace sleep: the drain timeout rounded up, plus one.
fn backstop_seconds(timeout: Duration) -> u64 {
    let whole = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    whole + 1
}

/// Unix signals, with a drain.
///
/// On SIGTERM Pingora stops accepting (the listening sockets close, so new connections
/// are refused), closes idle keep-alive connections, and stops reading new requests
/// from busy ones once their current response ends. In-flight requests, streams
/// included, go on. A thread here exits the process with status 0 as soon as none is in
/// flight, or when the shutdown timeout runs out, whichever comes first: Pingora's own
/// grace period is a fixed sleep that would hold every stop for the whole timeout.
/// A second SIGTERM, or a SIGINT, during the drain exits at once. SIGINT before any
/// SIGTERM is Pingora's fast shutdown.
///
/// The count of requests in flight is exact once the listeners are closed: a request
/// holds its place in the count from the first byte of its head (a head still arriving
/// at SIGTERM is waited for), and after shutdown no connection waits for a new first
/// byte. The thread therefore starts counting after a short pause that lets the
/// shutdown reach every listener and idle connection.
pub struct Drain {
    pub in_flight: Arc<AtomicUsize>,
    pub timeout: Duration,
}

/// Time for Pingora to close the listeners before the in-flight count is trusted.
const SETTLE: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(20);

#[async_trait]
impl ShutdownSignalWatch for Drain {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => ShutdownSignal::FastShutdown,
            _ = term.recv() => {
                let (in_flight, timeout) = (self.in_flight.clone(), self.timeout);
                tracing::info!(?timeout, "SIGTERM: listeners closed; draining in-flight requests");
                std::thread::spawn(move || drain_then_exit(&in_flight, timeout));
                // The server's runtime lives on through the drain, and so does this
                // task: a second signal means "stop now".
                tokio::spawn(async move {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    tracing::warn!("second signal during the drain: exiting now");
                    std::process::exit(0);
                });
                ShutdownSignal::GracefulTerminate
            }
        }
    }
}

/// Waits until no request is in flight, or the timeout, then exits with status 0.
fn drain_then_exit(in_flight: &AtomicUsize, timeout: Duration) -> ! {
    let deadline = Instant::now() + timeout;
    std::thread::sleep(SETTLE.min(timeout));
    loop {
        let n = in_flight.load(Ordering::Acquire);
        if n == 0 {
            tracing::info!("drained; exiting");
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!(
                in_flight = n,
                "shutdown timeout: exiting with requests still in flight"
            );
            break;
        }
        std::thread::sleep(POLL.min(left));
    }
    std::process::exit(0)
}

struct Stop(watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for Stop {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
        ShutdownSignal::FastShutdown
    }
}

/// A server running on a thread of this process; stops when dropped.
pub struct Running {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    pub fn start(settings: Settings) -> Result<Running, StartError> {
        let parts = build(settings)?;
        let (stop, rx) = watch::channel(false);
        let (store, metrics) = (parts.store.clone(), parts.metrics.clone());
        let thread = std::thread::spawn(move || {
            parts.server.run(RunArgs {
                shutdown_signal: Box::new(Stop(rx)),
            })
        });
        Ok(Running {
            store,
            metrics,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingoras_grace_sleep_outlasts_the_drain_deadline() {
        for (timeout, secs) in [(0, 1), (1_500, 3), (30_000, 31), (29_001, 31)] {
            assert_eq!(
                backstop_seconds(Duration::from_millis(timeout)),
                secs,
                "{timeout} ms"
            );
        }
    }
}
