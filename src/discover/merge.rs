//! The mapping file and the discovered models, merged into one [`Draft`].
//!
//! Deterministic, whatever the order of rows, files or sources:
//! 1. Start from the file: its teams, entries, patterns, aliases and keys are kept as
//!    written. A file entry wins over a discovered one for the same (team, name).
//! 2. Every (team, public name) the gateway has becomes a team entry `public ->
//!    internal`, unless the file has that exact entry. A team the file does not list is
//!    created. Several deployments under one public name: the oldest by `created_at`
//!    wins, ties broken by the smaller internal name, database rows before config
//!    entries (which have no time); each such case is reported as an [`Ambiguity`].
//! 3. Team aliases (team `model_group_alias`, `model_aliases`) become team entries to
//!    the final name: the alias target is first resolved through the team's entries, so
//!    no chain is created. The file's and the discovered public names win on a clash.
//! 4. Router aliases (global `model_group_alias`) become global aliases unless the file
//!    has the same alias; an alias whose target is itself an alias is skipped (LiteLLM
//!    does not follow chains either).
//!
//! A discovered rule is never a pattern. Exact rules beat patterns at resolution, so a
//! discovered `gpt-4.1` wins over a file pattern `gpt-*` of the same team.

use std::collections::{BTreeMap, BTreeSet};

use super::{Found, Skipped, Source, TeamModel};
use crate::mapping::{Draft, DraftTeam, Entry};

/// Deployments sharing one (team, public name); `chosen` is mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguity {
    pub chosen: TeamModel,
    pub others: Vec<TeamModel>,
}

/// A file entry naming an internal name the gateway does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub team: String,
    pub name: String,
    pub target: String,
    pub line: u64,
}

/// The merge's result and what it noticed.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    pub draft: Draft,
    /// Rules (team entries and aliases) in the draft, by where they came from:
    /// `file`, `database`, `config`.
    pub rules_by_source: BTreeMap<&'static str, usize>,
    pub ambiguous: Vec<Ambiguity>,
    /// Discovered team entries the file overrides: (team, name).
    pub overridden: Vec<(String, String)>,
    /// File entries to internal names no source knows (only when a source was given).
    pub stale: Vec<Stale>,
    /// Gateway team models the file alone does not map: (team, public, chosen internal).
    pub missing: Vec<TeamModel>,
    /// Aliases that could not be used.
    pub skipped: Vec<Skipped>,
}

/// How a single-`*` pattern or exact entry of a draft maps `name`, with the rules'
/// precedence (exact, then the longest literal text, then the pattern text).
fn lookup<'a>(team: &'a DraftTeam, name: &str) -> Option<&'a str> {
    if let Some(e) = team.models.get(name)
        && !name.contains('*')
    {
        return Some(&e.target);
    }
    team.models
        .iter()
        .filter_map(|(pattern, e)| {
            let (prefix, suffix) = pattern.split_once('*')?;
            (name.len() >= prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix))
            .then_some((pattern, e))
        })
        .max_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| b.cmp(a)))
        .map(|(_, e)| e.target.as_str())
}

fn discovered(target: String) -> Entry {
    Entry { target, line: 0 }
}

/// LiteLLM's internal team-model names start with this (never parsed further).
const INTERNAL_PREFIX: &str = "model_name_";

/// Merges `file` (if any) with what the sources found.
pub fn merge(file: Option<&Draft>, found: &[(Source, &Found)]) -> Merged {
    let mut out = Merged {
        draft: file.cloned().unwrap_or_default(),
        ..Merged::default()
    };
    let file_rules = out.draft.aliases.len()
        + out
            .draft
            .teams
            .values()
            .map(|t| t.models.len())
            .sum::<usize>();
    out.rules_by_source.insert("file", file_rules);
    for (source, _) in found {
        out.rules_by_source.insert(source.as_str(), 0);
    }

    // 2. team models, one per (team, public name).
    let mut groups: BTreeMap<(&str, &str), Vec<&TeamModel>> = BTreeMap::new();
    for (_, f) in found {
        for m in &f.models {
            groups.entry((&m.team, &m.public)).or_default().push(m);
        }
    }
    let known: BTreeSet<&str> = groups
        .values()
        .flatten()
        .map(|m| m.internal.as_str())
        .collect();
    for ((team, public), mut models) in groups {
        models.sort_by(|a, b| a.precedence().cmp(&b.precedence()));
        let chosen = models[0];
        if models.len() > 1 {
            out.ambiguous.push(Ambiguity {
                chosen: chosen.clone(),
                others: models[1..].iter().map(|m| (*m).clone()).collect(),
            });
        }
        let file_team = file.and_then(|f| f.teams.get(team));
        if file_team.and_then(|t| lookup(t, public)).is_none() {
            out.missing.push(chosen.clone());
        }
        if file_team.is_some_and(|t| t.models.contains_key(public)) {
            out.overridden.push((team.to_string(), public.to_string()));
            continue;
        }
        out.draft
            .teams
            .entry(team.to_string())
            .or_default()
            .models
            .insert(public.to_string(), discovered(chosen.internal.clone()));
        *out.rules_by_source
            .entry(chosen.source.as_str())
            .or_default() += 1;
    }

    // 3. team aliases, resolved to their final names.
    for (source, f) in found {
        for (team, aliases) in &f.team_aliases {
            for (alias, target) in aliases {
                let rules = out.draft.teams.entry(team.clone()).or_default();
                if rules.models.contains_key(alias) {
                    continue;
                }
                let target = lookup(rules, target).unwrap_or(target).to_string();
                if &target == alias {
                    continue;
                }
                rules.models.insert(alias.clone(), discovered(target));
                *out.rules_by_source.entry(source.as_str()).or_default() += 1;
            }
        }
    }
    out.draft
        .teams
        .retain(|_, t| t.line > 0 || !t.models.is_empty());

    // 4. router aliases.
    let mut all_aliases: BTreeMap<&str, (Source, &str)> = BTreeMap::new();
    for (source, f) in found {
        for (alias, target) in &f.aliases {
            all_aliases.entry(alias).or_insert((*source, target));
        }
        out.skipped.extend(f.skipped.iter().cloned());
    }
    for (alias, (source, target)) in &all_aliases {
        if out.draft.aliases.contains_key(*alias) {
            continue;
        }
        if all_aliases.contains_key(target) || out.draft.aliases.contains_key(*target) {
            out.skipped.push(Skipped {
                at: format!("model_group_alias {alias:?}"),
                reason: format!(
                    "its target {target:?} is itself an alias (chains are not followed)"
                ),
            });
            continue;
        }
        out.draft
            .aliases
            .insert(alias.to_string(), discovered(target.to_string()));
        *out.rules_by_source.entry(source.as_str()).or_default() += 1;
    }

    // Stale file entries, judged only against a gateway that answered.
    if !found.is_empty()
        && let Some(file) = file
    {
        for (team, rules) in &file.teams {
            for (name, entry) in &rules.models {
                if entry.target.starts_with(INTERNAL_PREFIX)
                    && !known.contains(entry.target.as_str())
                {
                    out.stale.push(Stale {
                        team: team.clone(),
                        name: name.clone(),
                        target: entry.target.clone(),
                        line: entry.line,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mapping;

    fn model(team: &str, public: &str, internal: &str, created: Option<i64>) -> TeamModel {
        TeamModel {
            team: team.into(),
            public: public.into(),
            internal: internal.into(),
            id: None,
            created_ms: created,
            source: if created.is_some() {
                Source::Database
            } else {
                Source::Config
            },
        }
    }

    fn target(m: &Mapping, team: &str, name: &str) -> Option<String> {
        m.resolve(Some(team), name).map(|r| r.target.to_string())
    }

    #[test]
    fn file_wins_discovered_fills_in_and_creates_teams() {
        let file = Mapping::draft(
            "version: 1\nteams:\n  t1:\n    models:\n      gpt-4.1: model_name_t1_file\n      \"claude-*\": model_name_t1_claude\naliases:\n  fast: gpt-4.1\n",
            "f.yaml",
        )
        .expect("valid");
        let found = Found {
            models: vec![
                model("t1", "gpt-4.1", "model_name_t1_db", Some(1)),
                model("t1", "mini", "model_name_t1_mini", Some(1)),
                model("t2", "gpt-4.1", "model_name_t2_db", Some(1)),
            ],
            aliases: [("fast".to_string(), "other".to_string())].into(),
            ..Found::default()
        };
        let merged = merge(Some(&file), &[(Source::Database, &found)]);
        let m = Mapping::from_draft(&merged.draft, "merged").expect("valid");
        assert_eq!(
            target(&m, "t1", "gpt-4.1").as_deref(),
            Some("model_name_t1_file")
        );
        assert_eq!(
            target(&m, "t1", "mini").as_deref(),
            Some("model_name_t1_mini")
        );
        assert_eq!(
            target(&m, "t2", "gpt-4.1").as_deref(),
            Some("model_name_t2_db")
        );
        assert_eq!(
            target(&m, "t1", "fast").as_deref(),
            Some("model_name_t1_file"),
            "file alias kept"
        );
        assert_eq!(
            merged.overridden,
            [("t1".to_string(), "gpt-4.1".to_string())]
        );
        assert_eq!(merged.rules_by_source["file"], 3);
        assert_eq!(merged.rules_by_source["database"], 2);
        let stale: Vec<_> = merged.stale.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(stale, ["model_name_t1_claude", "model_name_t1_file"]);
        let missing: Vec<_> = merged.missing.iter().map(|m| m.internal.as_str()).collect();
        assert_eq!(missing, ["model_name_t1_mini", "model_name_t2_db"]);
    }

    #[test]
    fn the_oldest_deployment_wins_whatever_the_row_order() {
        let a = model("t", "gpt", "model_name_t_b", Some(10));
        let b = model("t", "gpt", "model_name_t_a", Some(20));
        let c = model("t", "gpt", "model_name_t_0", None);
        for rows in [
            vec![a.clone(), b.clone(), c.clone()],
            vec![c.clone(), b.clone(), a.clone()],
        ] {
            let found = Found {
                models: rows,
                ..Found::default()
            };
            let merged = merge(None, &[(Source::Database, &found)]);
            assert_eq!(merged.ambiguous.len(), 1);
            assert_eq!(merged.ambiguous[0].chosen.internal, "model_name_t_b");
            assert_eq!(merged.ambiguous[0].others, [b.clone(), c.clone()]);
        }
        let tie = Found {
            models: vec![
                model("t", "gpt", "model_name_t_z", Some(1)),
                model("t", "gpt", "model_name_t_y", Some(1)),
            ],
            ..Found::default()
        };
        let merged = merge(None, &[(Source::Database, &tie)]);
        assert_eq!(
            merged.ambiguous[0].chosen.internal, "model_name_t_y",
            "ties: smaller internal name"
        );
    }

    #[test]
    fn team_aliases_resolve_to_final_names_and_alias_chains_are_skipped() {
        let found = Found {
            models: vec![model("t", "gpt-4.1", "model_name_t_1", Some(1))],
            aliases: [
                ("a".to_string(), "b".to_string()),
                ("b".to_string(), "gpt-4.1".to_string()),
            ]
            .into(),
            team_aliases: [(
                "t".to_string(),
                [("fast".to_string(), "gpt-4.1".to_string())].into(),
            )]
            .into(),
            ..Found::default()
        };
        let merged = merge(None, &[(Source::Database, &found)]);
        let m = Mapping::from_draft(&merged.draft, "merged").expect("valid");
        assert_eq!(target(&m, "t", "fast").as_deref(), Some("model_name_t_1"));
        assert_eq!(target(&m, "t", "b").as_deref(), Some("model_name_t_1"));
        assert!(
            m.resolve(Some("t"), "a").is_none(),
            "a chained alias is not applied"
        );
        assert_eq!(merged.skipped.len(), 1, "{:?}", merged.skipped);
    }
}
