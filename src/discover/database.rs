//! Team models read from LiteLLM's Postgres database, read-only.
//!
//! One round is one connection and one `READ ONLY` transaction with four `SELECT`s:
//! - `"LiteLLM_ProxyModelTable"`: `model_id`, `model_name` (the internal name),
//!   `model_info` (`team_id`, `team_public_model_name`, as `/model/new` writes them;
//!   LiteLLM reads the column both as a JSON object and as a JSON string holding one,
//!   and so does this), `created_at`;
//! - `"LiteLLM_Config"` row `router_settings`: the router's `model_group_alias`;
//! - `"LiteLLM_TeamTable"`: each team's `router_settings.model_group_alias`, and through
//!   `model_id`, `"LiteLLM_ModelTable".aliases` (the team's `model_aliases`, where legacy
//!   team models keep `{public: internal}`).
//!
//! Rows are ordered, so an unchanged database gives an equal answer and the round stops
//! at the comparison (`unchanged`) instead of re-merging.
//!
//! The whole round has one deadline: a slow database fails the round instead of
//! holding it. Any error (connect, auth, permission, missing table or column) fails
//! the whole round, so the last good rules stay. A row that is not a usable team model
//! is skipped and reported, so it cannot hide the other rows. The URL, which holds the
//! password, is never logged: only its host and database name are.

use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Config, NoTls};

use super::{DiscoverError, Found, Skipped, Source, TeamModel, alias_map};

const MODELS: &str = r#"
    SELECT model_id, model_name, model_info::text,
           (extract(epoch FROM created_at) * 1000)::int8
    FROM "LiteLLM_ProxyModelTable"
    WHERE model_info::text LIKE '%team_id%'
    ORDER BY model_id"#;
const ROUTER_SETTINGS: &str =
    r#"SELECT param_value::text FROM "LiteLLM_Config" WHERE param_name = 'router_settings'"#;
const TEAM_ALIASES: &str = r#"
    SELECT t.team_id, t.router_settings::text, m.aliases::text
    FROM "LiteLLM_TeamTable" t
    LEFT JOIN "LiteLLM_ModelTable" m ON m.id = t.model_id
    WHERE t.router_settings::text LIKE '%model_group_alias%' OR m.aliases IS NOT NULL
    ORDER BY t.team_id"#;

/// A validated `--discover-database` URL.
#[derive(Clone)]
pub struct Database {
    config: Config,
    /// `host/dbname`, for logs (no user, no password).
    pub label: String,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({})", self.label)
    }
}

impl Database {
    /// Parses a Postgres URL (`postgresql://user:pass@host:port/db?sslmode=…`).
    /// `sslmode=require` is refused: this build has no TLS backend for Postgres, and
    /// silently connecting in plain text would break the URL's promise.
    pub fn parse(url: &str, connect_timeout: Duration) -> Result<Database, DiscoverError> {
        let mut config = Config::from_str(url).map_err(|e| DiscoverError::Url(e.to_string()))?;
        if config.get_ssl_mode() == SslMode::Require {
            return Err(DiscoverError::Url(
                "sslmode=require: this modelmap has no TLS support for Postgres; use \
                 sslmode=disable (or prefer, which falls back to plain) on the pod's network"
                    .into(),
            ));
        }
        config.connect_timeout(connect_timeout);
        config.application_name("modelmap-discovery");
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let label = format!("{host}/{}", config.get_dbname().unwrap_or(""));
        Ok(Database { config, label })
    }

    /// One discovery round, bounded by `deadline` as a whole.
    pub async fn discover(&self, deadline: Duration) -> Result<Found, DiscoverError> {
        tokio::time::timeout(deadline, self.round())
            .await
            .map_err(|_| DiscoverError::Timeout(deadline))?
    }

    async fn round(&self) -> Result<Found, DiscoverError> {
        let db = |e: tokio_postgres::Error| DiscoverError::Database(describe(&e));
        let (mut client, connection) = self.config.connect(NoTls).await.map_err(db)?;
        // The connection task ends when the client is dropped at the end of the round
        // (or when the deadline drops this future).
        let conn = tokio::spawn(async move {
            let _ = connection.await;
        });
        let result = async {
            let tx = client
                .build_transaction()
                .read_only(true)
                .start()
                .await
                .map_err(db)?;
            let models = tx.query(MODELS, &[]).await.map_err(db)?;
            let settings = tx.query(ROUTER_SETTINGS, &[]).await.map_err(db)?;
            let teams = tx.query(TEAM_ALIASES, &[]).await.map_err(db)?;
            let mut found = Found::default();
            for row in &models {
                let id: String = row.try_get(0).map_err(db)?;
                let internal: String = row.try_get(1).map_err(db)?;
                let info: Option<String> = row.try_get(2).map_err(db)?;
                let created: Option<i64> = row.try_get(3).map_err(db)?;
                match team_model(&id, &internal, info.as_deref(), created) {
                    Ok(Some(model)) => found.models.push(model),
                    Ok(None) => {}
                    Err(reason) => found.skipped.push(Skipped {
                        at: format!("LiteLLM_ProxyModelTable model_id {id:?}"),
                        reason,
                    }),
                }
            }
            for row in &settings {
                let value = json(row.try_get::<_, Option<String>>(0).map_err(db)?.as_deref());
                found.aliases = alias_map(
                    value.get("model_group_alias"),
                    "LiteLLM_Config router_settings.model_group_alias",
                    &mut found.skipped,
                );
            }
            for row in &teams {
                let team: String = row.try_get(0).map_err(db)?;
                let settings = json(row.try_get::<_, Option<String>>(1).map_err(db)?.as_deref());
                let aliases = json(row.try_get::<_, Option<String>>(2).map_err(db)?.as_deref());
                let at = format!("LiteLLM_TeamTable team {team:?}");
                let mut map = alias_map(
                    settings.get("model_group_alias"),
                    &format!("{at} router_settings.model_group_alias"),
                    &mut found.skipped,
                );
                // model_aliases first, so the team's router alias wins on a clash (it is
                // the one the gateway applies last).
                let mut merged = alias_map(
                    Some(&aliases),
                    &format!("{at} model_aliases"),
                    &mut found.skipped,
                );
                merged.append(&mut map);
                if !merged.is_empty() {
                    found.team_aliases.insert(team, merged);
                }
            }
            tx.commit().await.map_err(db)?;
            Ok(found)
        }
        .await;
        drop(client);
        let _ = conn.await;
        result
    }
}

/// A JSON column read as text: an object, or a JSON string that holds one.
fn json(text: Option<&str>) -> Value {
    let value = text
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .unwrap_or(Value::Null);
    match value {
        Value::String(inner) => serde_json::from_str(&inner).unwrap_or(Value::Null),
        other => other,
    }
}

/// The team model a `LiteLLM_ProxyModelTable` row describes; `Ok(None)` for a row of
/// a shared (non-team) model.
fn team_model(
    id: &str,
    internal: &str,
    info: Option<&str>,
    created_ms: Option<i64>,
) -> Result<Option<TeamModel>, String> {
    let info = json(info);
    if !info.is_object() {
        return Err("model_info is not a JSON object".into());
    }
    let team = match info.get("team_id") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(t)) => t,
        Some(_) => return Err("model_info.team_id is not a string".into()),
    };
    let Some(public) = info.get("team_public_model_name").and_then(Value::as_str) else {
        return Err("model_info.team_id without a team_public_model_name".into());
    };
    TeamModel::checked(
        team,
        public,
        internal,
        Some(id.to_string()),
        created_ms,
        Source::Database,
    )
    .map(Some)
}

/// An error's text with the server's code and message (never the URL).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_as_litellm_writes_them_and_garbage_is_explained() {
        let info = r#"{"id": "m1", "db_model": true, "team_id": "team-abc", "team_public_model_name": "gpt-4.1"}"#;
        let m = team_model("m1", "model_name_team-abc_u", Some(info), Some(5))
            .expect("valid")
            .expect("a team model");
        assert_eq!(
            (m.team.as_str(), m.public.as_str()),
            ("team-abc", "gpt-4.1")
        );
        let as_string = serde_json::to_string(info).expect("json");
        assert!(
            team_model("m1", "model_name_team-abc_u", Some(&as_string), None)
                .expect("a JSON string holding the object is read too")
                .is_some()
        );
        assert_eq!(
            team_model("m2", "gpt-4o", Some(r#"{"id": "m2"}"#), None),
            Ok(None)
        );
        assert!(team_model("m3", "x", Some("[1]"), None).is_err());
        assert!(team_model("m4", "x", Some(r#"{"team_id": "t"}"#), None).is_err());
        let e = team_model(
            "m5",
            "model_name_t_u",
            Some(r#"{"team_id": "t", "team_public_model_name": "a, b"}"#),
            None,
        )
        .expect_err("a comma cannot be a model name");
        assert!(e.contains("','"), "{e}");
    }

    #[test]
    fn urls_are_checked_without_echoing_the_password() {
        let d = Database::parse(
            "postgresql://modelmap:s3cret@db.internal:5432/litellm",
            Duration::from_secs(1),
        )
        .expect("valid");
        assert_eq!(d.label, "db.internal/litellm");
        assert!(!format!("{d:?}").contains("s3cret"));
        let e = Database::parse("postgresql://h/db?sslmode=require", Duration::from_secs(1))
            .expect_err("no TLS backend");
        assert!(e.to_string().contains("sslmode=require"), "{e}");
        assert!(
            Database::parse("postgresql://h/db?sslmode=bogus", Duration::from_secs(1)).is_err()
        );
    }
}
