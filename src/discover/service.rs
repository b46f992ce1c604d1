//! Running discovery beside the proxy: the database poller (a background service) and
//! the LiteLLM config file (kept applied by the mapping file's own watcher).
//!
//! Neither ever blocks a request: requests read the store's current snapshot, and a
//! round only swaps a new one in when it is done. Merging and validating (CPU work that
//! grows with the number of models) run on Tokio's blocking pool. A failed round is
//! logged, counted (`modelmap_discovery_rounds_total{result="failure"}`), sets
//! `modelmap_discovery_up` to 0 and changes nothing else.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::time::MissedTickBehavior;

use super::database::Database;
use super::{DiscoverError, Found, Source, config_file};
use crate::metrics::Metrics;
use crate::store::{Reload, Store};
use crate::watch::Watched;

/// Applies one round's answer (or its failure) and records it.
fn finish(
    store: &Store,
    metrics: &Metrics,
    source: Source,
    answer: Result<Found, DiscoverError>,
    started: Instant,
) -> Result<Reload, String> {
    let d = &metrics.discovery;
    let label = source.as_str();
    let outcome = match answer {
        Ok(found) => {
            d.skipped
                .with_label_values(&[label])
                .set(found.skipped.len() as i64);
            let models = found.models.len();
            match store.apply_discovered(source, found) {
                Reload::Failed(e) => Err(e.to_string()),
                done => {
                    tracing::debug!(%source, models, ?done, "discovery round");
                    Ok(done)
                }
            }
        }
        Err(e) => {
            store.discovery_failed(source, e.to_string());
            Err(e.to_string())
        }
    };
    d.round_seconds
        .with_label_values(&[label])
        .set(started.elapsed().as_secs_f64());
    match &outcome {
        Ok(done) => {
            let result = if matches!(done, Reload::Unchanged) {
                "unchanged"
            } else {
                "success"
            };
            d.rounds.with_label_values(&[label, result]).inc();
            d.up.with_label_values(&[label]).set(1);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            d.last_success
                .with_label_values(&[label])
                .set(now.as_secs_f64());
            if matches!(done, Reload::Applied) {
                let c = store.snapshot().counts();
                tracing::info!(%source, teams = c.teams, team_rules = c.team_exact + c.team_patterns, "discovered models applied");
            }
        }
        Err(reason) => {
            d.rounds.with_label_values(&[label, "failure"]).inc();
            d.up.with_label_values(&[label]).set(0);
            tracing::error!(%source, error = %reason, "discovery round failed; the last good rules stay in use");
        }
    }
    outcome
}

/// Polls the database every `interval`; each round has `timeout` as a whole.
pub struct DatabaseDiscovery {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub database: Database,
    pub interval: Duration,
    pub timeout: Duration,
}

impl DatabaseDiscovery {
    /// One round: query, then merge and swap on the blocking pool.
    pub async fn round(&self) -> Result<Reload, String> {
        let started = Instant::now();
        let answer = self.database.discover(self.timeout).await;
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        tokio::task::spawn_blocking(move || {
            finish(&store, &metrics, Source::Database, answer, started)
        })
        .await
        .unwrap_or_else(|e| Err(format!("discovery task failed: {e}")))
    }
}

#[async_trait]
impl BackgroundService for DatabaseDiscovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tracing::info!(database = %self.database.label, interval = ?self.interval, "discovering team models from the database");
        let mut tick = tokio::time::interval(self.interval);
        // A slow round delays the next one instead of starting a burst of catch-ups.
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = self.round() => {}
            }
        }
    }
}

/// LiteLLM's config file as a discovery source, for the mapping watcher.
///
/// Every read is compared with the last applied answer by the store (`unchanged` when
/// equal), not by a digest of the file here: a file that was unreadable for a while and
/// comes back with its old content must still clear the failure.
pub struct ConfigDiscovery {
    pub path: PathBuf,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
}

impl ConfigDiscovery {
    pub fn new(path: PathBuf, store: Arc<Store>, metrics: Arc<Metrics>) -> ConfigDiscovery {
        ConfigDiscovery {
            path,
            store,
            metrics,
        }
    }
}

impl Watched for ConfigDiscovery {
    fn path(&self) -> &Path {
        &self.path
    }

    fn reload(&self, _force: bool) {
        let started = Instant::now();
        let answer = config_file::load(&self.path);
        let _ = finish(&self.store, &self.metrics, Source::Config, answer, started);
    }
}

/// What discovery runs, taken from the settings before they move into the proxy.
pub struct Plan {
    database: Option<(Database, Duration, Duration)>,
    config: Option<PathBuf>,
    debounce: Duration,
}

impl Plan {
    pub fn new(settings: &crate::config::Settings) -> Plan {
        Plan {
            database: settings
                .discovery
                .database
                .clone()
                .map(|db| (db, settings.discovery.interval, settings.discovery.timeout)),
            config: settings.discovery.config.clone(),
            debounce: settings.reload_debounce,
        }
    }

    pub fn sources(&self) -> Vec<Source> {
        let mut out = Vec::new();
        if self.database.is_some() {
            out.push(Source::Database);
        }
        if self.config.is_some() {
            out.push(Source::Config);
        }
        out
    }

    /// The background services, after a first synchronous read of the config file (so
    /// config-declared models are mapped from the first request). The database's first
    /// round starts with the server and never delays it.
    pub fn services(
        self,
        store: &Arc<Store>,
        metrics: &Arc<Metrics>,
    ) -> Vec<Box<dyn pingora::services::ServiceWithDependents>> {
        use pingora::services::background::background_service;
        let mut out: Vec<Box<dyn pingora::services::ServiceWithDependents>> = Vec::new();
        if let Some(path) = self.config {
            let config = Arc::new(ConfigDiscovery::new(path, store.clone(), metrics.clone()));
            config.reload(false);
            out.push(Box::new(background_service(
                "discovery: LiteLLM config",
                crate::watch::MappingWatcher {
                    store: config,
                    debounce: self.debounce,
                },
            )));
        }
        if let Some((database, interval, timeout)) = self.database {
            out.push(Box::new(background_service(
                "discovery: database",
                DatabaseDiscovery {
                    store: store.clone(),
                    metrics: metrics.clone(),
                    database,
                    interval,
                    timeout,
                },
            )));
        }
        out
    }
}
