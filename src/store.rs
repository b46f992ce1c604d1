//! The current mapping, swapped atomically on reload.
//!
//! A request takes one snapshot when it starts and keeps it for its whole life, so a
//! reload in the middle of a request never mixes two mappings in one body. A file that
//! cannot be read or fails validation is never applied: the previous mapping stays, the
//! reason is logged with the file and line, and `modelmap_mapping_reloads_total` counts
//! it. Unchanged content (same SHA-256) is not re-applied.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::mapping::{Mapping, MappingError};
use crate::metrics::Metrics;

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    Applied,
    Unchanged,
    Failed(MappingError),
}

pub struct Store {
    path: PathBuf,
    current: ArcSwap<Mapping>,
    ready: AtomicBool,
    digest: Mutex<Option<[u8; 32]>>,
    metrics: Arc<Metrics>,
}

impl Store {
    /// A store with an empty mapping; not ready until a load succeeds.
    pub fn new(path: PathBuf, metrics: Arc<Metrics>) -> Store {
        Store {
            path,
            current: ArcSwap::from_pointee(Mapping::default()),
            ready: AtomicBool::new(false),
            digest: Mutex::new(None),
            metrics,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mapping to use for one whole request.
    pub fn snapshot(&self) -> Arc<Mapping> {
        self.current.load_full()
    }

    /// Ready once any mapping has been applied; stays ready if later loads fail.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Reads the file and applies it if it changed (or always, when `force`).
    pub fn reload(&self, force: bool) -> Reload {
        // One reload at a time, so the digest and the applied mapping agree.
        let mut last = self.digest.lock();
        let outcome = match std::fs::read(&self.path) {
            Err(source) => Reload::Failed(MappingError::Read {
                path: self.path.display().to_string(),
                source,
            }),
            Ok(bytes) => {
                let digest: [u8; 32] = Sha256::digest(&bytes).into();
                if !force && *last == Some(digest) {
                    Reload::Unchanged
                } else {
                    let text = String::from_utf8_lossy(&bytes);
                    match Mapping::parse(&text, &self.path.display().to_string()) {
                        Ok(mapping) => {
                            self.metrics.set_rules(mapping.counts());
                            self.current.store(Arc::new(mapping));
                            *last = Some(digest);
                            self.ready.store(true, Ordering::Release);
                            Reload::Applied
                        }
                        Err(e) => Reload::Failed(e),
                    }
                }
            }
        };
        self.record(&outcome);
        outcome
    }

    fn record(&self, outcome: &Reload) {
        let result = match outcome {
            Reload::Applied => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                self.metrics.last_reload.set(now.as_secs_f64());
                let c = self.snapshot().counts();
                tracing::info!(
                    path = %self.path.display(),
                    teams = c.teams,
                    team_rules = c.team_exact + c.team_patterns,
                    aliases = c.alias_exact + c.alias_patterns,
                    keys = c.keys,
                    "mapping applied"
                );
                "success"
            }
            Reload::Unchanged => "unchanged",
            Reload::Failed(e) => {
                tracing::error!(error = %e, "mapping not applied; the previous mapping stays in use");
                "failure"
            }
        };
        self.metrics.reloads.with_label_values(&[result]).inc();
    }
}
