//! Discovery's metrics. Label values are fixed words: `source` is `file`, `database`
//! or `config`; `result` is `success`, `failure` or `unchanged`.

use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::Source;

pub struct DiscoveryMetrics {
    pub rounds: IntCounterVec,
    pub up: IntGaugeVec,
    pub last_success: GaugeVec,
    pub round_seconds: GaugeVec,
    pub skipped: IntGaugeVec,
    pub source_rules: IntGaugeVec,
    pub ambiguous: IntGauge,
    pub stale: IntGauge,
}

impl DiscoveryMetrics {
    pub fn new(registry: &Registry) -> Result<DiscoveryMetrics, prometheus::Error> {
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
            // Fixed, unique names: registration cannot collide (see metrics.rs).
            let _ = r.register(Box::new(m.clone()));
            m
        }
        let rounds = reg(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "modelmap_discovery_rounds_total",
                    "Discovery rounds, by source (database, config) and result (success: rules applied, unchanged: same answer as before, failure: nothing changed, the last good rules stay).",
                ),
                &["source", "result"],
            )?,
        );
        let up = reg(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "modelmap_discovery_up",
                    "1 if the last discovery round of the source succeeded, else 0.",
                ),
                &["source"],
            )?,
        );
        let last_success = reg(
            registry,
            GaugeVec::new(
                Opts::new(
                    "modelmap_discovery_last_success_timestamp_seconds",
                    "Unix time of the last successful discovery round of the source (0: none yet).",
                ),
                &["source"],
            )?,
        );
        let round_seconds = reg(
            registry,
            GaugeVec::new(
                Opts::new(
                    "modelmap_discovery_round_seconds",
                    "Duration of the last discovery round of the source (read, merge, validate, swap).",
                ),
                &["source"],
            )?,
        );
        let skipped = reg(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "modelmap_discovery_skipped_rows",
                    "Rows or entries the last round of the source could not use (garbage), each named in the log.",
                ),
                &["source"],
            )?,
        );
        let source_rules = reg(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "modelmap_mapping_source_rules",
                    "Rules (team entries and aliases) in the applied mapping, by the source they came from (file, database, config).",
                ),
                &["source"],
            )?,
        );
        let ambiguous = reg(
            registry,
            IntGauge::new(
                "modelmap_discovery_ambiguous_names",
                "(team, public name) pairs with several deployments in the gateway; the oldest is mapped.",
            )?,
        );
        let stale = reg(
            registry,
            IntGauge::new(
                "modelmap_mapping_stale_entries",
                "Mapping-file entries whose internal name the gateway no longer has (judged when a discovery source is configured).",
            )?,
        );
        Ok(DiscoveryMetrics {
            rounds,
            up,
            last_success,
            round_seconds,
            skipped,
            source_rules,
            ambiguous,
            stale,
        })
    }

    /// Creates the series of a configured source, so alerts see a 0 before any round.
    pub fn configure(&self, source: Source) {
        let s = source.as_str();
        for result in ["success", "failure", "unchanged"] {
            self.rounds.with_label_values(&[s, result]);
        }
        self.up.with_label_values(&[s]).set(0);
        self.last_success.with_label_values(&[s]).set(0.0);
        self.skipped.with_label_values(&[s]).set(0);
    }
}
