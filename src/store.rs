//! The current mapping, swapped atomically on reload.
//!
//! A request takes one snapshot when it starts and keeps it for its whole life, so a
//! reload in the middle of a request never mixes two mappings in one body. A file that
//! cannot be read or fails validation is never applied: the previous mapping stays, the
//! reason is logged with the file and line, and `modelmap_mapping_reloads_total` counts
//! it. Unchanged content (same SHA-256) is not re-applied.
//!
//! With discovery (`discover`), the mapping is the merge of the file and the last good
//! answer of each discovery source. Any change to one of them re-merges and
//! re-validates the whole; a merge that fails validation is not applied and the
//! change that caused it is dropped (the last good file, or the last good answer of
//! the source, stays). Only the reload paths take the lock; requests never do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::discover::merge::{Merged, merge};
use crate::discover::{Found, Source};
use crate::mapping::{Draft, Mapping, MappingError};
use crate::metrics::Metrics;

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    Applied,
    Unchanged,
    Failed(MappingError),
}

/// What the sources last said (under the store's lock).
#[derive(Default)]
struct Sources {
    digest: Option<[u8; 32]>,
    /// The last applied file; `None` before one is applied, or when an optional file
    /// is absent.
    file: Option<Draft>,
    /// A valid file (or an absent optional one) has been applied at least once.
    file_seen: bool,
    found: BTreeMap<Source, Found>,
    /// Why each failing source failed last (for `/readyz`); removed on success.
    failing: BTreeMap<Source, String>,
}

pub struct Store {
    path: PathBuf,
    current: ArcSwap<Mapping>,
    ready: AtomicBool,
    sources: Mutex<Sources>,
    /// Discovery is configured, so a missing mapping file means "no file entries".
    file_optional: bool,
    discovery: Vec<Source>,
    metrics: Arc<Metrics>,
}

impl Store {
    /// A store with an empty mapping; not ready until a load succeeds.
    pub fn new(path: PathBuf, metrics: Arc<Metrics>) -> Store {
        Store {
            path,
            current: ArcSwap::from_pointee(Mapping::default()),
            ready: AtomicBool::new(false),
            sources: Mutex::new(Sources::default()),
            file_optional: false,
            discovery: Vec::new(),
            metrics,
        }
    }

    /// Declares the discovery sources that will feed this store. With any, a missing
    /// mapping file is no error: the discovered rules alone are the mapping.
    pub fn with_discovery(mut self, sources: Vec<Source>) -> Store {
        self.file_optional = !sources.is_empty();
        for s in &sources {
            self.metrics.discovery.configure(*s);
        }
        self.discovery = sources;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mapping to use for one whole request.
    pub fn snapshot(&self) -> Arc<Mapping> {
        self.current.load_full()
    }

    /// Ready once a mapping with at least one working source (a valid file, or a
    /// successful discovery round) has been applied; stays ready if later loads fail.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The `/readyz` verdict and its explanation.
    pub fn readiness(&self) -> (bool, String) {
        let ready = self.ready();
        let s = self.sources.lock();
        let mut text = if ready {
            "ready\n".to_string()
        } else if self.discovery.is_empty() {
            "not ready: no valid mapping has been loaded yet\n".to_string()
        } else {
            "not ready: no valid mapping file and no successful discovery round yet\n".to_string()
        };
        if s.file.is_none() && self.file_optional {
            text.push_str(&format!(
                "mapping file {}: absent (discovered rules only)\n",
                self.path.display()
            ));
        }
        for source in &self.discovery {
            match (s.failing.get(source), s.found.contains_key(source)) {
                (Some(why), true) => text.push_str(&format!(
                    "discovery {source}: failing, serving its last good rules: {why}\n"
                )),
                (Some(why), false) => text.push_str(&format!(
                    "discovery {source}: failing, no rules from it yet: {why}\n"
                )),
                (None, true) => text.push_str(&format!("discovery {source}: ok\n")),
                (None, false) => text.push_str(&format!("discovery {source}: no round yet\n")),
            }
        }
        (ready, text)
    }

    /// Reads the file and applies it if it changed (or always, when `force`).
    pub fn reload(&self, force: bool) -> Reload {
        // One reload at a time, so the digest and the applied mapping agree.
        let mut s = self.sources.lock();
        let outcome = match std::fs::read(&self.path) {
            // Absent from the start: the discovered rules alone. A file that was
            // applied and then vanished is an error like any unreadable file (the
            // last good one stays), as without discovery.
            Err(e)
                if self.file_optional
                    && s.digest.is_none()
                    && e.kind() == std::io::ErrorKind::NotFound =>
            {
                if s.file_seen && !force {
                    Reload::Unchanged
                } else {
                    tracing::warn!(path = %self.path.display(), "no mapping file: using discovered rules alone");
                    self.swap(&mut s, None, None, None)
                }
            }
            Err(source) => Reload::Failed(MappingError::Read {
                path: self.path.display().to_string(),
                source,
            }),
            Ok(bytes) => {
                let digest: [u8; 32] = Sha256::digest(&bytes).into();
                if !force && s.digest == Some(digest) {
                    Reload::Unchanged
                } else {
                    let text = String::from_utf8_lossy(&bytes);
                    match Mapping::draft(&text, &self.path.display().to_string()) {
                        Ok(draft) => self.swap(&mut s, Some(draft), Some(digest), None),
                        Err(e) => Reload::Failed(e),
                    }
                }
            }
        };
        self.record(&outcome);
        outcome
    }

    /// Applies a discovery source's answer (merged with the file and the other sources).
    pub fn apply_discovered(&self, source: Source, found: Found) -> Reload {
        let mut s = self.sources.lock();
        let outcome = if s.found.get(&source) == Some(&found) {
            Reload::Unchanged
        } else {
            let file = s.file.clone();
            let digest = s.digest;
            self.swap(&mut s, file, digest, Some((source, found)))
        };
        match &outcome {
            Reload::Failed(e) => {
                s.failing.insert(source, e.to_string());
            }
            _ => {
                s.failing.remove(&source);
            }
        }
        outcome
    }

    /// Records a failed discovery round: nothing changes but `/readyz`'s explanation.
    pub fn discovery_failed(&self, source: Source, reason: String) {
        self.sources.lock().failing.insert(source, reason);
    }

    /// Merges, validates and swaps in; on failure nothing in `s` changes.
    fn swap(
        &self,
        s: &mut Sources,
        file: Option<Draft>,
        digest: Option<[u8; 32]>,
        update: Option<(Source, Found)>,
    ) -> Reload {
        let merged = {
            let mut found: Vec<(Source, &Found)> = s
                .found
                .iter()
                .filter(|(src, _)| update.as_ref().is_none_or(|(u, _)| u != *src))
                .map(|(src, f)| (*src, f))
                .collect();
            if let Some((src, f)) = &update {
                found.push((*src, f));
                found.sort_by_key(|(src, _)| *src);
            }
            merge(file.as_ref(), &found)
        };
        let origin = if s.found.is_empty() && update.is_none() {
            self.path.display().to_string()
        } else {
            format!("{} merged with discovered models", self.path.display())
        };
        match Mapping::from_draft(&merged.draft, &origin) {
            Err(e) => Reload::Failed(e),
            Ok(mapping) => {
                self.publish(&merged, &mapping);
                self.current.store(Arc::new(mapping));
                s.file = file;
                s.digest = digest;
                s.file_seen = true;
                if let Some((src, f)) = update {
                    s.found.insert(src, f);
                }
                if s.digest.is_some() || !s.found.is_empty() {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    self.metrics.last_reload.set(now.as_secs_f64());
                    self.ready.store(true, Ordering::Release);
                }
                Reload::Applied
            }
        }
    }

    /// Metrics and log lines about what a merge noticed.
    fn publish(&self, merged: &Merged, mapping: &Mapping) {
        self.metrics.set_rules(mapping.counts());
        let d = &self.metrics.discovery;
        for (source, n) in &merged.rules_by_source {
            d.source_rules.with_label_values(&[source]).set(*n as i64);
        }
        d.ambiguous.set(merged.ambiguous.len() as i64);
        d.stale.set(merged.stale.len() as i64);
        for a in &merged.ambiguous {
            let others: Vec<&str> = a.others.iter().map(|m| m.internal.as_str()).collect();
            tracing::warn!(
                team = %a.chosen.team,
                model = %a.chosen.public,
                chosen = %a.chosen.internal,
                not_mapped = ?others,
                "several deployments under one public name: mapping the oldest"
            );
        }
        for st in &merged.stale {
            tracing::warn!(team = %st.team, model = %st.name, target = %st.target, line = st.line, "stale mapping entry: the gateway has no model by this internal name");
        }
        for sk in &merged.skipped {
            tracing::warn!(at = %sk.at, reason = %sk.reason, "discovered entry skipped");
        }
    }

    fn record(&self, outcome: &Reload) {
        let result = match outcome {
            Reload::Applied => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::TeamModel;

    fn found(team: &str, public: &str, internal: &str) -> Found {
        Found {
            models: vec![TeamModel {
                team: team.into(),
                public: public.into(),
                internal: internal.into(),
                id: None,
                created_ms: Some(0),
                source: Source::Database,
            }],
            ..Found::default()
        }
    }

    fn target(store: &Store, team: &str, name: &str) -> Option<String> {
        store
            .snapshot()
            .resolve(Some(team), name)
            .map(|r| r.target.to_string())
    }

    #[test]
    fn a_round_that_breaks_validation_is_dropped_and_the_last_good_one_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mapping.yaml");
        std::fs::write(
            &path,
            "version: 1\nteams:\n  team-b:\n    models:\n      x: model_name_team-a_1\n",
        )
        .expect("write");
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let store = Store::new(path, metrics).with_discovery(vec![Source::Database]);
        assert!(matches!(store.reload(false), Reload::Applied));
        let good = found("team-a", "gpt", "model_name_team-a_2");
        assert!(matches!(
            store.apply_discovered(Source::Database, good.clone()),
            Reload::Applied
        ));
        assert!(matches!(
            store.apply_discovered(Source::Database, good),
            Reload::Unchanged
        ));

        // The gateway now says team-a owns the name the file gives team-b.
        let clash = found("team-a", "gpt", "model_name_team-a_1");
        let Reload::Failed(e) = store.apply_discovered(Source::Database, clash) else {
            panic!("two teams owning one internal name must not validate");
        };
        assert!(e.to_string().contains("is a target of both"), "{e}");
        assert_eq!(
            target(&store, "team-a", "gpt").as_deref(),
            Some("model_name_team-a_2"),
            "the last good round stays"
        );
        let (ready, text) = store.readiness();
        assert!(ready, "{text}");
        assert!(
            text.contains("discovery database: failing, serving its last good rules"),
            "{text}"
        );
    }

    #[test]
    fn without_a_file_the_store_is_ready_only_after_a_good_round() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let store = Store::new(dir.path().join("absent.yaml"), metrics)
            .with_discovery(vec![Source::Config]);
        assert!(matches!(store.reload(false), Reload::Applied));
        assert!(matches!(store.reload(false), Reload::Unchanged));
        assert!(!store.ready(), "an absent file is no source");
        store.apply_discovered(Source::Config, found("t", "gpt", "model_name_t_1"));
        assert!(store.ready());
        assert_eq!(
            target(&store, "t", "gpt").as_deref(),
            Some("model_name_t_1")
        );
    }
}
