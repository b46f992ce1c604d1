//! Hot reload of the mapping file (and of any other watched file, such as LiteLLM's
//! config for discovery: the same machinery through [`Watched`]).
//!
//! The file's *directory* is watched, not the file: editors replace files by renaming
//! over them, and Kubernetes updates a mounted ConfigMap by writing a new timestamped
//! directory and atomically swapping the `..data` symlink, so the file's own inode never
//! sees an event. Any change in the directory starts a quiet period (debounce); when
//! events stop, the file is read, skipped if its content is unchanged, validated, and
//! swapped in. A slow poll backs up the watcher in case an event is ever lost (a
//! directory removed and recreated, an overflowing queue). SIGHUP forces a reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher as _};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::store::Store;

/// Safety-net poll interval.
const POLL: Duration = Duration::from_secs(10);
/// A burst of events longer than this still reloads.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

/// A file the watcher keeps applied.
pub trait Watched: Send + Sync + 'static {
    fn path(&self) -> &Path;
    /// Reads the file and applies it if it changed (always, when `force`). Blocking.
    fn reload(&self, force: bool);
}

impl Watched for Store {
    fn path(&self) -> &Path {
        Store::path(self)
    }

    fn reload(&self, force: bool) {
        Store::reload(self, force);
    }
}

pub struct MappingWatcher {
    pub store: Arc<dyn Watched>,
    pub debounce: Duration,
}

fn watch_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl MappingWatcher {
    /// Starts the OS watcher; events arrive on the returned channel.
    fn start_notify(&self) -> (Option<notify::RecommendedWatcher>, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel(1);
        let dir = watch_dir(self.store.path());
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                // A full channel already holds a wake-up; that is all we need.
                let _ = tx.try_send(());
            }
        })
        .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
        match watcher {
            Ok(w) => (Some(w), rx),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the mapping directory; polling every {}s instead", POLL.as_secs());
                (None, rx)
            }
        }
    }
}

#[async_trait]
impl BackgroundService for MappingWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (_watcher, mut events) = self.start_notify();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut poll = tokio::time::interval(POLL);
        poll.tick().await;
        loop {
            let force = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = events.recv() => {
                    self.settle(&mut events).await;
                    false
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!(path = %self.store.path().display(), "SIGHUP: reloading");
                    true
                }
                _ = poll.tick() => false,
            };
            let store = self.store.clone();
            // File reads and parsing are blocking work: keep them off the async workers.
            let _ = tokio::task::spawn_blocking(move || store.reload(force)).await;
        }
    }
}

impl MappingWatcher {
    /// Waits until no event has arrived for the debounce period (bounded overall).
    async fn settle(&self, events: &mut mpsc::Receiver<()>) {
        let hard_stop = Instant::now() + MAX_DEBOUNCE;
        loop {
            let quiet_until = (Instant::now() + self.debounce).min(hard_stop);
            tokio::select! {
                Some(()) = events.recv() => {
                    if Instant::now() >= hard_stop {
                        return;
                    }
                }
                _ = sleep_until(quiet_until) => return,
            }
        }
    }
}
