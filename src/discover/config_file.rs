//! Team models declared in LiteLLM's own `config.yaml` (config-only mode).
//!
//! A `model_list` entry is a team model when its `model_info` carries both `team_id`
//! and `team_public_model_name`; its `model_name` is then the internal name the router
//! keys it by. Entries without `team_id` are the gateway's shared models and are not
//! mapped. An entry with `team_id` but no usable public name is skipped and reported.
//! `router_settings.model_group_alias` becomes global aliases. The file is read whole
//! each time; a file that is not YAML, or whose `model_list` is not a list, fails the
//! round (the last good rules stay).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{DiscoverError, Found, Skipped, Source, TeamModel, alias_map};

#[derive(Deserialize)]
struct LiteLlmConfig {
    #[serde(default)]
    model_list: Option<Vec<Value>>,
    #[serde(default)]
    router_settings: Option<Value>,
}

/// Reads and interprets a LiteLLM config file.
pub fn load(path: &Path) -> Result<Found, DiscoverError> {
    let text = std::fs::read_to_string(path).map_err(|source| DiscoverError::ReadConfig {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Interprets LiteLLM config text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Found, DiscoverError> {
    let config: LiteLlmConfig =
        serde_saphyr::from_str(text).map_err(|e| DiscoverError::ParseConfig {
            path: origin.to_string(),
            reason: e.to_string().lines().next().unwrap_or_default().to_string(),
        })?;
    let mut found = Found::default();
    for (i, entry) in config.model_list.unwrap_or_default().iter().enumerate() {
        let at = format!("{origin}: model_list[{i}]");
        let info = entry.get("model_info");
        let Some(team) = info.and_then(|m| m.get("team_id")).filter(|t| !t.is_null()) else {
            continue; // a shared model, not a team's
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let checked = match (
            team.as_str(),
            text(info.and_then(|m| m.get("team_public_model_name"))),
            text(entry.get("model_name")),
        ) {
            (None, _, _) => Err("team_id is not a string".to_string()),
            (_, None, _) => Err("team_id without a team_public_model_name".to_string()),
            (_, _, None) => Err("no model_name".to_string()),
            (Some(team), Some(public), Some(internal)) => TeamModel::checked(
                team,
                &public,
                &internal,
                text(info.and_then(|m| m.get("id"))),
                None,
                Source::Config,
            ),
        };
        match checked {
            Ok(model) => found.models.push(model),
            Err(reason) => found.skipped.push(Skipped { at, reason }),
        }
    }
    let settings = config.router_settings.unwrap_or(Value::Null);
    found.aliases = alias_map(
        settings.get("model_group_alias"),
        &format!("{origin}: router_settings.model_group_alias"),
        &mut found.skipped,
    );
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
model_list:
  - model_name: model_name_team-abc_f1c7df87-b987-416b-ba42-757afbcc5395
    litellm_params: {model: openai/x, api_key: os.environ/KEY}
    model_info:
      id: dep-1
      team_id: team-abc
      team_public_model_name: gpt-4.1
  - model_name: backup-model
    litellm_params: {model: openai/y}
  - model_name: model_name_team-abc_broken
    model_info: {team_id: team-abc}
  - model_name: "model_name_t_2"
    model_info: {team_id: 7, team_public_model_name: x}
router_settings:
  model_group_alias:
    AgentX-LLM: backup-model
    hidden-one: {model: gpt-4.1, hidden: true}
    bad: 3
"#;

    #[test]
    fn team_entries_become_models_and_router_aliases_become_aliases() {
        let found = parse(CONFIG, "config.yaml").expect("parses");
        assert_eq!(found.models.len(), 1, "{found:?}");
        let m = &found.models[0];
        assert_eq!(
            (m.team.as_str(), m.public.as_str(), m.id.as_deref()),
            ("team-abc", "gpt-4.1", Some("dep-1"))
        );
        assert_eq!(
            found.aliases.get("AgentX-LLM").map(String::as_str),
            Some("backup-model")
        );
        assert_eq!(
            found.aliases.get("hidden-one").map(String::as_str),
            Some("gpt-4.1")
        );
        let reasons: Vec<_> = found.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "team_id without a team_public_model_name",
                "team_id is not a string",
                "no target model"
            ]
        );
    }

    #[test]
    fn a_file_that_is_not_a_config_fails_whole() {
        let e = parse("model_list: 3\n", "c.yaml").expect_err("not a list");
        assert!(e.to_string().contains("c.yaml"), "{e}");
        assert!(
            parse("", "c.yaml")
                .expect("empty is no models")
                .models
                .is_empty()
        );
    }
}
