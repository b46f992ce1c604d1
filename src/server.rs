//! Assembles the Pingora server: the proxy, the admin server and the mapping watcher,
//! sharing one store and one metrics registry. `main` runs it until a signal; tests run
//! it on a thread and stop it through [`Running`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::proxy::http_proxy_service_with_name;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::proxy::ModelMap;
use crate::store::{Reload, Store};
use crate::watch::MappingWatcher;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create metrics: {0}")]
    Metrics(#[from] prometheus::Error),
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
    let metrics = Arc::new(Metrics::new()?);
    let store = Arc::new(Store::new(settings.args.mapping.clone(), metrics.clone()));
    if let Reload::Failed(_) = store.reload(false) {
        tracing::warn!("starting without a mapping: not ready until the file is valid");
    }

    let conf = ServerConf {
        threads: settings.args.threads,
        // One worker needs no work stealing: a plain single-threaded runtime skips the
        // cross-thread queues and wake-ups.
        work_stealing: settings.args.threads > 1,
        // Draining is handled by `Drain` below; Pingora's fixed grace sleep is its cap.
        grace_period_seconds: Some(settings.args.shutdown_timeout.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let in_flight = Arc::new(AtomicUsize::new(0));
    let listen = settings.args.listen.clone();
    let admin_addr = settings.args.admin.clone();
    let debounce = settings.args.reload_debounce;
    let proxy = ModelMap::new(settings, store.clone(), metrics.clone(), in_flight.clone());
    let mut proxy = http_proxy_service_with_name(&server.configuration, proxy, "modelmap proxy");
    proxy.add_tcp(&listen);

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
    tracing::info!(%listen, admin = %admin_addr, "modelmap listening");
    Ok(Parts {
        server,
        store,
        metrics,
        in_flight,
    })
}

/// Unix signals, with a drain: on SIGTERM the listeners close (Pingora) and the process
/// exits as soon as no request is in flight, or when the shutdown timeout runs out.
pub struct Drain {
    pub in_flight: Arc<AtomicUsize>,
    pub timeout: Duration,
}

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
                let in_flight = self.in_flight.clone();
                let deadline = Instant::now() + self.timeout;
                std::thread::spawn(move || {
                    // Let Pingora close the listeners first, then wait for the last request.
                    std::thread::sleep(Duration::from_millis(100));
                    while in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    tracing::info!("drained; exiting");
                    std::process::exit(0);
                });
                tracing::info!(timeout = ?self.timeout, "SIGTERM: draining in-flight requests");
                ShutdownSignal::GracefulTerminate
            }
        }
    }
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
