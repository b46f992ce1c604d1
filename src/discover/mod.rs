//! Discovery: the team models the gateway itself knows, turned into mapping rules.
//!
//! Two sources, both opt-in:
//! - `database`: LiteLLM's Postgres (`--discover-database`), polled every
//!   `--discover-interval` by a background service ([`service`]); read-only queries.
//! - `config`: LiteLLM's own `config.yaml` (`--discover-config`), watched like the
//!   mapping file (the same watcher).
//!
//! Each source yields a [`Found`]: team models (internal name, team, public name, id,
//! created time), global aliases (router `model_group_alias`) and team aliases. The
//! [`merge`] with the mapping file is deterministic (file entries win for the same
//! team and name; see `merge`'s docs), and the result goes through the mapping's own
//! validation and the store's one-snapshot swap. A round that fails (unreachable,
//! slow, denied, unexpected schema) changes nothing: the last good rules stay.
//! Rows that are not usable team models (garbage) are skipped one by one, named in the
//! log and counted, so one bad row never hides the other teams' models.

pub mod cli;
pub mod config_file;
pub mod database;
pub mod merge;
pub mod metrics;
pub mod render;
pub mod service;

use std::collections::BTreeMap;
use std::fmt;

use crate::mapping::name_problem;

/// Where discovered rules come from (the `source` label of the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Database,
    Config,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Database, Source::Config];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Database => "database",
            Source::Config => "config",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One team-scoped deployment, as the gateway stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamModel {
    pub team: String,
    /// `team_public_model_name`: what the team's callers send.
    pub public: String,
    /// `model_name`: `model_name_{team}_{uuid}`, what the gateway routes on.
    pub internal: String,
    /// `model_id` / `model_info.id`, for people reading `discover` output.
    pub id: Option<String>,
    /// Milliseconds since the Unix epoch (`created_at`); none in a config file.
    pub created_ms: Option<i64>,
    pub source: Source,
}

impl TeamModel {
    /// Which of several deployments under one public name wins: the oldest (it is the
    /// one that has been serving longest, so picking it never moves traffic when a
    /// second one is added), then the smallest internal name. Config entries have no
    /// creation time and sort after database rows.
    fn precedence(&self) -> (bool, i64, &str) {
        (
            self.created_ms.is_none(),
            self.created_ms.unwrap_or(0),
            self.internal.as_str(),
        )
    }

    /// Builds a team model from raw fields, or says why the row cannot be one.
    pub(crate) fn checked(
        team: &str,
        public: &str,
        internal: &str,
        id: Option<String>,
        created_ms: Option<i64>,
        source: Source,
    ) -> Result<TeamModel, String> {
        for (what, value) in [
            ("team_id", team),
            ("team_public_model_name", public),
            ("model_name", internal),
        ] {
            if let Some(problem) = name_problem(value) {
                return Err(format!("{what} {value:?} {problem}"));
            }
        }
        if public.contains('*') || internal.contains('*') {
            return Err(format!(
                "wildcard names ({public:?} -> {internal:?}) are not mapped"
            ));
        }
        if public == internal {
            return Err(format!(
                "public name and internal name are the same ({public:?}): nothing to map"
            ));
        }
        Ok(TeamModel {
            team: team.to_string(),
            public: public.to_string(),
            internal: internal.to_string(),
            id,
            created_ms,
            source,
        })
    }
}

/// A row or entry that was skipped, and why (never includes secrets: only names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The row's `model_id`, or the config entry's position.
    pub at: String,
    pub reason: String,
}

/// What one round of one source found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub models: Vec<TeamModel>,
    /// Router `model_group_alias`: alias -> model group, for every caller.
    pub aliases: BTreeMap<String, String>,
    /// Team-level aliases (team `router_settings.model_group_alias`, team
    /// `model_aliases`): team -> alias -> model group.
    pub team_aliases: BTreeMap<String, BTreeMap<String, String>>,
    pub skipped: Vec<Skipped>,
}

/// A `model_group_alias` map: `{"alias": "target"}` or `{"alias": {"model": "target",
/// "hidden": true}}`, read the way LiteLLM's `resolve_model_group_alias` reads it
/// (malformed entries are skipped, never fatal).
pub(crate) fn alias_map(
    value: Option<&serde_json::Value>,
    at: &str,
    skipped: &mut Vec<Skipped>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(serde_json::Value::Object(map)) = value else {
        return out;
    };
    for (alias, entry) in map {
        let target = match entry {
            serde_json::Value::String(s) => Some(s.as_str()),
            serde_json::Value::Object(o) => o.get("model").and_then(|m| m.as_str()),
            _ => None,
        };
        let problem = match target {
            None | Some("") => Some("no target model".to_string()),
            Some(t) => name_problem(alias)
                .map(|p| format!("alias {alias:?} {p}"))
                .or_else(|| name_problem(t).map(|p| format!("target {t:?} {p}")))
                .or_else(|| {
                    (alias.contains('*') || t.contains('*'))
                        .then(|| "wildcard aliases are not mapped".to_string())
                }),
        };
        match (problem, target) {
            (None, Some(t)) if t != alias => {
                out.insert(alias.clone(), t.to_string());
            }
            (None, _) => {}
            (Some(reason), _) => skipped.push(Skipped {
                at: format!("{at} alias {alias:?}"),
                reason,
            }),
        }
    }
    out
}

/// Typed errors of a discovery round; the round changes nothing when it fails.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("{path}: cannot read LiteLLM config: {source}")]
    ReadConfig {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a LiteLLM config: {reason}")]
    ParseConfig { path: String, reason: String },
    #[error("database: invalid --discover-database URL: {0}")]
    Url(String),
    #[error("database: {0}")]
    Database(String),
    #[error("database: no answer within {0:?}")]
    Timeout(std::time::Duration),
}
