//! Hot reload of the mapping file (and of any other watched file, such as LiteLLM's
//! config for discovery: the same machinery through [`Watched`]).
//!
//! The file's *directory* is watched, not the file: editors replace files by renaming
//! over them, and Kubernetes updates a mounted ConfigMap by writing a new timestamped
//! directory and atomically swapping the `..data` symlink, so the file's own inode never
//! sees an event. A change that can alter what the path reads (the file created,
//! written, renamed or removed, or the `..data` link swapped) starts a quiet period
//! (debounce); when events stop, the file is read, skipped if its content is unchanged, validated, and
//! swapped in. A slow poll backs up the watcher in case an event is ever lost (a
//! directory removed and recreated, an overflowing queue). SIGHUP forces a reload.
//!
//! Reading the file is itself an event in its directory (open, access, close without
//! write): those are ignored, or every reload would wake the watcher and the file would
//! be re-read several times a second, forever. So is any event about another file in
//! the directory. An idle file is read only by the poll, and an invalid one retried only
//! by the poll.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::event::{AccessKind, AccessMode, EventKind};
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

/// The directory entries whose change can alter what the mapping path reads: the file's
/// own name, and the kubelet's `..data` link (and the `..data_tmp` renamed over it).
fn relevant_names(path: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = ["..data", "..data_tmp"].map(OsString::from).into();
    names.extend(path.file_name().map(OsString::from));
    names
}

/// Whether an event may have changed the file: a creation, a write, a rename or a
/// removal of one of `names`. Reads (open, access, close without writing) never do.
fn matters(event: &notify::Event, names: &[OsString]) -> bool {
    let writes = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        // Unknown kinds: reading once too often is cheaper than missing a change.
        EventKind::Any | EventKind::Other => true,
    };
    // No paths: an event about the watch itself (the directory gone, a rescan).
    writes
        && (event.paths.is_empty()
            || event
                .paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n))))
}

impl MappingWatcher {
    /// Starts the OS watcher; events arrive on the returned channel.
    fn start_notify(&self) -> (Option<notify::RecommendedWatcher>, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel(1);
        let dir = watch_dir(self.store.path());
        let names = relevant_names(self.store.path());
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let wake = match res {
                Ok(event) => matters(&event, &names),
                // A watcher error (an overflowing queue) may have lost a change.
                Err(_) => true,
            };
            if wake {
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
        // A change made between the first load and the watch being armed raised no
        // event: look once now (unchanged content is skipped), not at the first poll.
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.reload(false)).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, ModifyKind, RenameMode};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut e = notify::Event::new(kind);
        e.paths = paths.iter().map(PathBuf::from).collect();
        e
    }

    #[test]
    fn reads_and_other_files_do_not_wake_the_watcher() {
        let names = relevant_names(Path::new("/etc/modelmap/mapping.yaml"));
        let file = "/etc/modelmap/mapping.yaml";
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert!(!matters(&event(kind, &[file]), &names), "{kind:?}");
        }
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert!(!matters(
            &event(write, &["/etc/modelmap/notes.log"]),
            &names
        ));
    }

    #[test]
    fn writes_renames_and_the_configmap_swap_wake_the_watcher() {
        let names = relevant_names(Path::new("/etc/modelmap/mapping.yaml"));
        let cases = [
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                vec!["/etc/modelmap/mapping.yaml"],
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                vec!["/etc/modelmap/mapping.yaml"],
            ),
            (
                EventKind::Create(CreateKind::File),
                vec!["/etc/modelmap/mapping.yaml"],
            ),
            (
                EventKind::Remove(notify::event::RemoveKind::Any),
                vec!["/etc/modelmap/mapping.yaml"],
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                vec![
                    "/etc/modelmap/.mapping.yaml.swp",
                    "/etc/modelmap/mapping.yaml",
                ],
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                vec!["/etc/modelmap/..data"],
            ),
            (EventKind::Other, vec![]),
        ];
        for (kind, paths) in cases {
            assert!(matters(&event(kind, &paths), &names), "{kind:?} {paths:?}");
        }
    }
}
