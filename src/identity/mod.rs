//! Who is calling: the caller's credential, its digest, and the team it belongs to.
//!
//! The team comes from the first of these that applies:
//! 1. the trusted team header, when `--trusted-team-header` names one and the request
//!    carries it (an authenticating ingress sets it and strips it from clients; modelmap
//!    removes it before forwarding);
//! 2. no credential at all: no team;
//! 3. the mapping's `keys` table (digest → team);
//! 4. the master key (`--master-key-hash`): no team, never looked up;
//! 5. a JWT bearer: no team (JWT callers have no key to look up);
//! 6. the gateway's `/key/info`, asked with the caller's own credential and cached by
//!    digest (see [`cache`]); unless `--identity-lookup=false`, which means no team.
//!
//! "No team" means global aliases only. A failed lookup also means no team for this
//! request ([`TeamSource::LookupFailed`]), with a warning and a metric; the proxy turns it
//! into a 503 when `--identity-fail-closed` is set. The key never leaves the request:
//! logs, metrics and the cache see its SHA-256 digest (and logs only its first 8 hex
//! digits).

pub(crate) mod cache;
mod extract;
mod gateway;

use std::sync::Arc;

use http::{HeaderMap, HeaderName};

pub use extract::{Credential, KeyHash, Place, extract, extract_key};
pub use gateway::{Answer, Gateway, LookupError};

use crate::config::Settings;
use crate::mapping::{KeyDigest, Mapping};
use crate::metrics::Metrics;
use cache::{Served, TeamCache};

/// Where a request's team (or its absence) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamSource {
    TrustedHeader,
    KeysTable,
    MasterKey,
    Jwt,
    Gateway,
    /// The gateway lookup failed: treated as no team (or refused, when failing closed).
    LookupFailed,
    /// No credential, or lookups are off.
    Unknown,
}

impl TeamSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TeamSource::TrustedHeader => "trusted_header",
            TeamSource::KeysTable => "keys_table",
            TeamSource::MasterKey => "master_key",
            TeamSource::Jwt => "jwt",
            TeamSource::Gateway => "gateway",
            TeamSource::LookupFailed => "lookup_failed",
            TeamSource::Unknown => "unknown",
        }
    }
}

/// The caller as modelmap sees it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: Option<KeyHash>,
    pub team: Option<String>,
    pub source: TeamSource,
}

/// Values of `modelmap_identity_lookups_total{result}`.
pub const LOOKUP_RESULTS: [&str; 4] = ["hit", "miss", "negative", "error"];

/// Resolves callers to teams; one per proxy, shared by all requests.
pub struct Identity {
    key_header: Option<String>,
    trusted_header: Option<HeaderName>,
    master_key: Option<KeyDigest>,
    lookup: Option<(Gateway, TeamCache)>,
    fail_closed: bool,
    metrics: Arc<Metrics>,
}

impl Identity {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Identity {
        let id = &settings.identity;
        let lookup = id.lookup.then(|| {
            let gateway = Gateway::new(
                settings.upstream.addr,
                settings.upstream.authority(),
                id.timeout,
            );
            let cache = TeamCache::new(
                id.ttl,
                id.negative_ttl,
                id.cache_size,
                metrics.identity_cache_entries.clone(),
            );
            (gateway, cache)
        });
        Identity {
            key_header: id.key_header.clone(),
            trusted_header: id.trusted_team_header.clone(),
            master_key: id.master_key,
            lookup,
            fail_closed: id.fail_closed,
            metrics,
        }
    }

    /// Whether a failed lookup refuses the request (`--identity-fail-closed`).
    pub fn fails_closed(&self) -> bool {
        self.fail_closed
    }

    /// The header to remove before forwarding, if any.
    pub fn trusted_header(&self) -> Option<&HeaderName> {
        self.trusted_header.as_ref()
    }

    /// Finds the caller's team (see the module doc for the order).
    pub async fn identify(
        &self,
        mapping: &Mapping,
        headers: &HeaderMap,
        path_and_query: &str,
    ) -> Caller {
        let credential = extract(headers, self.key_header.as_deref(), path_and_query);
        let key = credential.map(|c| c.hash());
        let caller = |team: Option<String>, source| Caller { key, team, source };

        if let Some(value) = self.trusted_header.as_ref().and_then(|h| headers.get(h)) {
            let team = value
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            return caller(team, TeamSource::TrustedHeader);
        }
        let (Some(credential), Some(hash)) = (credential, key) else {
            return caller(None, TeamSource::Unknown);
        };
        if let Some(team) = mapping.team_for_key(&hash.0) {
            return caller(Some(team.to_owned()), TeamSource::KeysTable);
        }
        if self.master_key == Some(hash.0) {
            return caller(None, TeamSource::MasterKey);
        }
        if credential.is_jwt() {
            return caller(None, TeamSource::Jwt);
        }
        let Some((gateway, cache)) = &self.lookup else {
            return caller(None, TeamSource::Unknown);
        };
        let (outcome, served) = cache
            .get(hash, || async {
                match credential.lookup_header() {
                    Some((name, value)) => gateway.ask(name, value).await,
                    None => Err(LookupError::Transport("credential is not a valid header")),
                }
            })
            .await;
        let result = match (&outcome, served) {
            (Err(_), _) => "error",
            (Ok(_), Served::Cached | Served::Shared) => "hit",
            (Ok(Answer::Valid(_)), Served::Looked) => "miss",
            (Ok(Answer::Invalid), Served::Looked) => "negative",
        };
        self.metrics
            .identity_lookups
            .with_label_values(&[result])
            .inc();
        match outcome {
            Ok(Answer::Valid(team)) => caller(team, TeamSource::Gateway),
            Ok(Answer::Invalid) => caller(None, TeamSource::Gateway),
            Err(e) => {
                let consequence = if self.fail_closed {
                    "refusing the request (--identity-fail-closed)"
                } else {
                    "this request gets global aliases only"
                };
                tracing::warn!(key = %hash.short(), error = %e, "team lookup failed; {consequence}");
                caller(None, TeamSource::LookupFailed)
            }
        }
    }
}
