//! Prometheus metrics.
//!
//! Label values are a closed set: outcomes, route families and status classes are fixed
//! words, and team, rule and target labels come only from the loaded mapping file (a
//! team the file does not name is `other`), so no client can grow the series count.
//! Each proxy instance has its own registry, so several can run in one process (tests).

use std::sync::OnceLock;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::mapping::RuleCounts;
use crate::route::Family;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub rewrites: IntCounterVec,
    pub duration: HistogramVec,
    pub upstream_responses: IntCounterVec,
    pub reloads: IntCounterVec,
    pub last_reload: Gauge,
    pub rules: IntGaugeVec,
    pub body_passthrough: IntCounterVec,
    pub in_flight: IntGauge,
    pub connections_open: IntGauge,
    pub connections_refused: IntCounter,
    pub identity_lookups: IntCounterVec,
    pub identity_cache_entries: IntGauge,
    pub guard_rejections: IntCounter,
    /// Requests refused before going upstream because a part that may name a model
    /// could not be read as the gateway reads it (reasons: `Unreadable::as_str`), or
    /// because a name or the framing could not travel (`invalid_model_name`, `framing`).
    pub unreadable: IntCounterVec,
    pub restore_buffered: IntGauge,
    pub restore_over_budget: IntCounter,
    /// Discovery of team models from the gateway (`discover`).
    pub discovery: crate::discover::metrics::DiscoveryMetrics,
    /// The per-request series, each looked up once: `with_label_values` hashes its
    /// labels and takes a lock on every call.
    series: Series,
}

/// Series of the fixed label sets every request touches, resolved on first use (so no
/// series appears before it has a value, as with `with_label_values`).
#[derive(Default)]
struct Series {
    requests: [[OnceLock<IntCounter>; Family::COUNT]; Outcome::COUNT],
    duration: [OnceLock<Histogram>; Family::COUNT],
    upstream: [OnceLock<IntCounter>; STATUS_CLASSES.len()],
}

/// Request outcomes (`modelmap_requests_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// At least one model name was changed.
    Rewritten,
    /// Forwarded without a change.
    Unchanged,
    /// Refused by modelmap itself.
    Rejected,
    /// Failed in modelmap or at the gateway connection.
    Error,
}

impl Outcome {
    const COUNT: usize = Outcome::Error as usize + 1;

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Rewritten => "rewritten",
            Outcome::Unchanged => "unchanged",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Names are fixed and unique, so registration cannot collide; if it ever did, the
    // metric still works and is only missing from the scrape.
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).map(|m| register(&registry, m))
        };
        let requests = counter(
            "modelmap_requests_total",
            "Requests handled, by outcome (rewritten, unchanged, rejected, error) and route family.",
            &["outcome", "family"],
        )?;
        let rewrites = counter(
            "modelmap_rewrites_total",
            "Model names rewritten, by team, place in the request (body, fallback, path, query, form, batch, header, target), matched rule and target (values from the mapping file, else `other`).",
            &["team", "place", "from", "to"],
        )?;
        let upstream_responses = counter(
            "modelmap_upstream_responses_total",
            "Responses received from the gateway, by status class.",
            &["class"],
        )?;
        let reloads = counter(
            "modelmap_mapping_reloads_total",
            "Mapping file loads, by result (success, failure, unchanged).",
            &["result"],
        )?;
        let body_passthrough = counter(
            "modelmap_body_passthrough_total",
            "Request bodies forwarded untouched because they were not a JSON object modelmap could follow.",
            &["family"],
        )?;
        let identity_lookups = counter(
            "modelmap_identity_lookups_total",
            "Gateway team lookups by result: hit (answered without a call of its own: cached, or shared with a lookup in flight), miss (asked the gateway: valid key), negative (asked: 401/403/404), error (the lookup failed; each request that fell back counts).",
            &["result"],
        )?;
        for result in crate::identity::LOOKUP_RESULTS {
            identity_lookups.with_label_values(&[result]);
        }
        let identity_cache_entries = register(
            &registry,
            IntGauge::new(
                "modelmap_identity_cache_entries",
                "Keys in the team cache, lookups in flight included.",
            )?,
        );
        let guard_rejections = register(
            &registry,
            IntCounter::new(
                "modelmap_guard_rejections_total",
                "Requests refused (403) for naming another team's internal model name.",
            )?,
        );
        let unreadable = counter(
            "modelmap_unreadable_requests_total",
            "Requests refused (400) before going upstream: a part that may name a model could not be read exactly as the gateway reads it (guard on), a model name that cannot travel as a header value, or framing the gateway could read differently; by reason.",
            &["reason"],
        )?;
        for why in crate::rewrite::unreadable::Unreadable::ALL {
            unreadable.with_label_values(&[why.as_str()]);
        }
        for reason in ["invalid_model_name", "framing"] {
            unreadable.with_label_values(&[reason]);
        }
        let restore_buffered = register(
            &registry,
            IntGauge::new(
                "modelmap_restore_buffered_bytes",
                "Bytes held right now for restoring whole bodies (error bodies, model lists), within --restore-buffer-budget.",
            )?,
        );
        let restore_over_budget = register(
            &registry,
            IntCounter::new(
                "modelmap_restore_over_budget_total",
                "Response bodies passed through unrestored (never truncated) because --restore-buffer-budget was spent.",
            )?,
        );
        let duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "modelmap_request_duration_seconds",
                    "Time from request start to the end of the response, by route family.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 120.0,
                ]),
                &["family"],
            )?,
        );
        let last_reload = register(
            &registry,
            Gauge::new(
                "modelmap_mapping_last_reload_success_timestamp_seconds",
                "Unix time of the last mapping load that was applied.",
            )?,
        );
        let rules = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "modelmap_mapping_rules",
                    "Rules in the applied mapping, by kind.",
                ),
                &["kind"],
            )?,
        );
        let in_flight = register(
            &registry,
            IntGauge::new(
                "modelmap_requests_in_flight",
                "Requests being handled right now (streams included).",
            )?,
        );
        let connections_open = register(
            &registry,
            IntGauge::new(
                "modelmap_connections_open",
                "Client connections open right now (idle keep-alive connections included).",
            )?,
        );
        let connections_refused = register(
            &registry,
            IntCounter::new(
                "modelmap_connections_refused_total",
                "Client connections answered 503 and closed because --max-connections were open.",
            )?,
        );
        let build = register(
            &registry,
            IntGaugeVec::new(
                Opts::new("modelmap_build_info", "Build information; always 1."),
                &["version"],
            )?,
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let discovery = crate::discover::metrics::DiscoveryMetrics::new(&registry)?;
        Ok(Metrics {
            registry,
            requests,
            rewrites,
            duration,
            upstream_responses,
            reloads,
            last_reload,
            rules,
            body_passthrough,
            in_flight,
            connections_open,
            connections_refused,
            identity_lookups,
            identity_cache_entries,
            guard_rejections,
            unreadable,
            restore_buffered,
            restore_over_budget,
            discovery,
            series: Series::default(),
        })
    }

    /// Counts a finished request and observes its duration.
    pub fn request_done(&self, outcome: Outcome, family: Family, seconds: f64) {
        let labels = [outcome.as_str(), family.as_str()];
        self.series.requests[outcome as usize][family as usize]
            .get_or_init(|| self.requests.with_label_values(&labels))
            .inc();
        self.series.duration[family as usize]
            .get_or_init(|| self.duration.with_label_values(&[family.as_str()]))
            .observe(seconds);
    }

    /// Counts a response from the gateway by its status class.
    pub fn upstream_response(&self, status: u16) {
        let index = class_index(status);
        self.series.upstream[index]
            .get_or_init(|| {
                let class = STATUS_CLASSES[index];
                self.upstream_responses.with_label_values(&[class])
            })
            .inc();
    }

    pub fn set_rules(&self, c: RuleCounts) {
        for (kind, n) in [
            ("teams", c.teams),
            ("team_exact", c.team_exact),
            ("team_pattern", c.team_patterns),
            ("alias_exact", c.alias_exact),
            ("alias_pattern", c.alias_patterns),
            ("keys", c.keys),
        ] {
            self.rules.with_label_values(&[kind]).set(n as i64);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// The `class` labels of `modelmap_upstream_responses_total`.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Where a status code's class is in [`STATUS_CLASSES`].
fn class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}
