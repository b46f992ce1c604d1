//! A mapping before validation, and the validation that turns it into a [`Mapping`].
//!
//! A [`Draft`] is what a mapping file says, or what a file and the gateway's discovered
//! models say together (see `discover::merge`): plain names, each with the file line it
//! came from (0 when it came from discovery). Every source goes through the same
//! [`validate`], so a merged mapping obeys exactly the rules a file does. Every problem
//! is reported, not only the first; a draft with any problem yields no mapping at all.

use std::collections::BTreeMap;

use super::file::{Issue, MappingError};
use super::{KeyDigest, Mapping, RuleSet};

/// One `name -> target` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub target: String,
    /// 1-based line in the mapping file; 0 for a discovered entry.
    pub line: u64,
}

/// One team's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DraftTeam {
    /// The line of the team's key in the file; 0 for a discovered team.
    pub line: u64,
    pub models: BTreeMap<String, Entry>,
}

/// A mapping as written, not yet validated. Maps are ordered, so validation and its
/// messages never depend on the order of a file or of database rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Draft {
    pub teams: BTreeMap<String, DraftTeam>,
    pub aliases: BTreeMap<String, Entry>,
    /// sha256 hex -> team id.
    pub keys: BTreeMap<String, Entry>,
}

struct Checker {
    issues: Vec<Issue>,
}

impl Checker {
    fn fail(&mut self, line: u64, message: String) {
        self.issues.push(Issue { line, message });
    }

    /// Adds `from -> to` to `rules` if both names are well formed.
    fn rule(&mut self, rules: &mut RuleSet, scope: &str, from: &str, to: &Entry) {
        let line = to.line;
        let target = to.target.as_str();
        let mut ok = true;
        for (what, name) in [("name", from), ("target", target)] {
            if let Some(problem) = name_problem(name) {
                self.fail(line, format!("{scope} {what} {name:?}: {problem}"));
                ok = false;
            }
        }
        if target.contains('*') {
            self.fail(
                line,
                format!("{scope} {from:?}: target {target:?} may not contain '*' (targets are literal names)"),
            );
            ok = false;
        }
        let stars = from.matches('*').count();
        if stars > 1 {
            self.fail(
                line,
                format!("{scope} {from:?}: a pattern may contain one '*', this one has {stars}"),
            );
            ok = false;
        }
        if !ok {
            return;
        }
        if stars == 1 {
            rules.insert_pattern(from.to_string(), target.to_string());
        } else {
            rules.insert_exact(from.to_string(), target.to_string());
        }
    }

    /// Rejects a rule set in which a target would be mapped again to something else.
    fn chains(&mut self, rules: &RuleSet, scope: &str, lines: &BTreeMap<String, Entry>) {
        for (from, to) in lines {
            if let Some(next) = rules.lookup(&to.target)
                && next.target != to.target
            {
                self.fail(
                    to.line,
                    format!(
                        "{scope} {from:?} -> {:?} is mapped again by {:?} -> {:?}; \
                         chains are not followed, map {from:?} to the final name",
                        to.target, next.key, next.target
                    ),
                );
            }
        }
    }
}

/// Why a name cannot be a model name, if it cannot.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.trim() != name {
        Some("has leading or trailing white space")
    } else if name.contains(',') {
        Some("contains ',' (a comma separates models in one request)")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    }
}

fn parse_digest(hex: &str) -> Option<KeyDigest> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Validates and compiles a draft; `origin` names it in errors.
pub(super) fn validate(draft: &Draft, origin: &str) -> Result<Mapping, MappingError> {
    let mut check = Checker { issues: Vec::new() };
    let mut mapping = Mapping::default();
    for (team, entry) in &draft.teams {
        let scope = format!("team {team:?} model");
        if let Some(problem) = name_problem(team) {
            check.fail(entry.line, format!("team id {team:?}: {problem}"));
            continue;
        }
        let mut rules = RuleSet::default();
        for (from, to) in &entry.models {
            check.rule(&mut rules, &scope, from, to);
        }
        rules.seal();
        check.chains(&rules, &scope, &entry.models);
        for target in rules.targets() {
            if let Some(other) = mapping.owners.insert(target.to_string(), team.clone())
                && &other != team
            {
                let line = entry
                    .models
                    .values()
                    .find(|t| t.target == target)
                    .map_or(0, |t| t.line);
                check.fail(
                    line,
                    format!("internal name {target:?} is a target of both team {other:?} and team {team:?}"),
                );
            }
        }
        mapping.teams.insert(team.clone(), rules);
    }

    let lengths = mapping.owners.keys().map(String::len);
    mapping.owner_lengths = (
        lengths.clone().min().unwrap_or(0),
        lengths.max().unwrap_or(0),
    );
    for (from, to) in &draft.aliases {
        check.rule(&mut mapping.aliases, "alias", from, to);
    }
    mapping.aliases.seal();
    check.chains(&mapping.aliases, "alias", &draft.aliases);

    for (hex, team) in &draft.keys {
        let line = team.line;
        match parse_digest(&hex.to_ascii_lowercase()) {
            None => check.fail(
                line,
                format!(
                    "key {hex:?} is not a SHA-256 hex digest (64 hex characters of sha256(key))"
                ),
            ),
            Some(_) if !draft.teams.contains_key(&team.target) => check.fail(
                line,
                format!(
                    "key {}… names team {:?}, which has no entry under `teams`",
                    &hex[..8.min(hex.len())],
                    team.target
                ),
            ),
            Some(digest) => {
                mapping.keys.insert(digest, team.target.clone());
            }
        }
    }

    if check.issues.is_empty() {
        Ok(mapping)
    } else {
        check.issues.sort_by_key(|i| i.line);
        Err(MappingError::Invalid {
            origin: origin.to_string(),
            issues: check.issues,
        })
    }
}
