//! The mapping: which name the gateway should see for a name a caller requested.
//!
//! Resolution of `(team, requested)` is fixed and independent of file order:
//! 1. the team's exact entry, then its patterns (longest literal text first, ties broken
//!    by the pattern text);
//! 2. else a global alias (exact, then patterns, same rule), after which the team's
//!    entries are applied once more to the alias target;
//! 3. else no rule applies and the name is sent unchanged.
//!
//! Chains longer than that (a team target that another rule of the same team would map
//! again, an alias whose target is itself aliased) are rejected when the file is loaded,
//! so a lookup never loops and never depends on how often it is applied.
//! A [`Mapping`] is immutable once built; hot reload swaps whole mappings (see `store`).

mod draft;
mod file;
mod pattern;

use std::collections::HashMap;
use std::path::Path;

pub(crate) use draft::name_problem;
pub use draft::{Draft, DraftTeam, Entry};
pub use file::{Issue, MappingError};
use pattern::Pattern;

/// SHA-256 of a virtual key, as LiteLLM stores it.
pub type KeyDigest = [u8; 32];

/// Exact names and patterns of one scope (a team, or the global aliases).
#[derive(Debug, Default, Clone)]
pub(crate) struct RuleSet {
    exact: HashMap<String, String>,
    patterns: Vec<Pattern>,
}

/// The rule that matched: the name or pattern as written in the file, and its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule<'a> {
    pub key: &'a str,
    pub target: &'a str,
    pub pattern: bool,
}

impl RuleSet {
    fn insert_exact(&mut self, from: String, to: String) {
        self.exact.insert(from, to);
    }

    fn insert_pattern(&mut self, from: String, to: String) {
        self.patterns.push(Pattern::new(from, to));
    }

    fn seal(&mut self) {
        self.patterns.sort_by(Pattern::precedence);
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Rule<'_>> {
        if let Some((key, target)) = self.exact.get_key_value(name) {
            return Some(Rule {
                key,
                target,
                pattern: false,
            });
        }
        self.patterns
            .iter()
            .find(|p| p.matches(name))
            .map(|p| Rule {
                key: &p.text,
                target: &p.target,
                pattern: true,
            })
    }

    fn len(&self) -> (usize, usize) {
        (self.exact.len(), self.patterns.len())
    }

    fn targets(&self) -> impl Iterator<Item = &str> {
        self.exact
            .values()
            .map(String::as_str)
            .chain(self.patterns.iter().map(|p| p.target.as_str()))
    }
}

/// How a requested name was resolved: at most one alias step and one team step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution<'a> {
    pub alias: Option<Rule<'a>>,
    pub team: Option<Rule<'a>>,
    /// The name to send to the gateway.
    pub target: &'a str,
}

impl<'a> Resolution<'a> {
    /// The rule text the requested name matched first (alias or team entry).
    pub fn from_key(&self) -> &'a str {
        self.alias.or(self.team).map_or(self.target, |r| r.key)
    }
}

/// Rule counts, for metrics and for `modelmap check`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RuleCounts {
    pub teams: usize,
    pub team_exact: usize,
    pub team_patterns: usize,
    pub alias_exact: usize,
    pub alias_patterns: usize,
    pub keys: usize,
}

/// A validated, compiled mapping file.
#[derive(Debug, Default, Clone)]
pub struct Mapping {
    teams: HashMap<String, RuleSet>,
    aliases: RuleSet,
    keys: HashMap<KeyDigest, String>,
    /// Internal name -> the team whose rules send it (for guards and explanations).
    owners: HashMap<String, String>,
    /// The shortest and longest internal names: the guard reads many stretches of a
    /// request (every run of path segments) that cannot be one, and skips hashing them.
    owner_lengths: (usize, usize),
}

impl Mapping {
    /// Reads, parses and validates a mapping file. Errors name the file, line and entry.
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|source| MappingError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Mapping::parse(&text, &path.display().to_string())
    }

    /// Parses and validates mapping text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Mapping, MappingError> {
        Mapping::from_draft(&Mapping::draft(text, origin)?, origin)
    }

    /// Parses mapping text without validating it (syntax and version only), so other
    /// sources can be merged in before [`Mapping::from_draft`].
    pub fn draft(text: &str, origin: &str) -> Result<Draft, MappingError> {
        file::draft(text, origin)
    }

    /// Validates and compiles a draft: the same checks for a file and for a merge.
    pub fn from_draft(draft: &Draft, origin: &str) -> Result<Mapping, MappingError> {
        draft::validate(draft, origin)
    }

    /// Resolves `requested` for a caller of `team` (or of no team).
    pub fn resolve<'a>(&'a self, team: Option<&str>, requested: &'a str) -> Option<Resolution<'a>> {
        let rules = team.and_then(|t| self.teams.get(t));
        if let Some(rule) = rules.and_then(|r| r.lookup(requested)) {
            return Some(Resolution {
                alias: None,
                team: Some(rule),
                target: rule.target,
            });
        }
        let alias = self.aliases.lookup(requested)?;
        let team_rule = rules.and_then(|r| r.lookup(alias.target));
        Some(Resolution {
            alias: Some(alias),
            team: team_rule,
            target: team_rule.map_or(alias.target, |r| r.target),
        })
    }

    /// The team a key digest belongs to, from the file's `keys` table.
    pub fn team_for_key(&self, digest: &KeyDigest) -> Option<&str> {
        self.keys.get(digest).map(String::as_str)
    }

    /// Whether `team` has an entry in the file (label values come only from the file).
    pub fn has_team(&self, team: &str) -> bool {
        self.teams.contains_key(team)
    }

    /// The team whose rules send `internal` to the gateway, if any.
    pub fn owner_of(&self, internal: &str) -> Option<&str> {
        let (shortest, longest) = self.owner_lengths;
        if internal.len() < shortest || internal.len() > longest {
            return None;
        }
        self.owners.get(internal).map(String::as_str)
    }

    /// Concrete names a caller of `team` may request, with the name each is sent as:
    /// the team's exact entries, then the exact global aliases. Patterns name no
    /// concrete model and are not listed.
    pub fn listable<'a>(&'a self, team: Option<&str>) -> Vec<(&'a str, &'a str)> {
        let mut out: Vec<(&str, &str)> = team
            .and_then(|t| self.teams.get(t))
            .map(|r| {
                r.exact
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_unstable();
        let mut aliases: Vec<(&str, &str)> = self
            .aliases
            .exact
            .keys()
            .filter_map(|alias| {
                self.resolve(team, alias)
                    .map(|r| (alias.as_str(), r.target))
            })
            .collect();
        aliases.sort_unstable();
        out.extend(aliases);
        out
    }

    pub fn counts(&self) -> RuleCounts {
        let mut c = RuleCounts {
            teams: self.teams.len(),
            keys: self.keys.len(),
            ..RuleCounts::default()
        };
        for rules in self.teams.values() {
            let (e, p) = rules.len();
            c.team_exact += e;
            c.team_patterns += p;
        }
        (c.alias_exact, c.alias_patterns) = self.aliases.len();
        c
    }
}

#[cfg(test)]
mod tests;
