//! The mapping file format (version 1) and its validation.
//!
//! The file is YAML (JSON is valid YAML). Every problem found is reported, not only the
//! first, each with the line it is on, so an operator can fix a file in one pass.
//! A file with any problem is rejected whole: a partial mapping is never produced.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{KeyDigest, Mapping, RuleSet};

/// One problem in a mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// 1-based line, or 0 when the parser could not tell.
    pub line: u64,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("{path}: cannot read mapping file: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// On one line (for logs): problems are separated by `; `. [`MappingError::report`]
    /// puts each on a line of its own.
    #[error("{origin}: {}", join(.issues, "; "))]
    Invalid { origin: String, issues: Vec<Issue> },
}

fn join(issues: &[Issue], separator: &str) -> String {
    issues
        .iter()
        .map(Issue::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

impl MappingError {
    /// For a person at a terminal (`modelmap check`): one problem per line.
    pub fn report(&self) -> String {
        match self {
            MappingError::Invalid { origin, issues } if issues.len() > 1 => format!(
                "{origin}: {} problems\n  {}",
                issues.len(),
                join(issues, "\n  ")
            ),
            other => other.to_string(),
        }
    }
}

/// What is wrong, in the file's terms, for a YAML or shape error (the line is reported
/// beside it). The parser's own wording is meant for programmers ("use Option<String>",
/// "set DuplicateKeyPolicy in Options"); its user-facing wording is the fallback.
fn yaml_problem(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::{Error, MessageFormatter, UserMessageFormatter};
    match e.without_snippet() {
        Error::DuplicateMappingKey { key: Some(k), .. } => {
            format!("{k:?} is listed twice in the same section; keep one entry")
        }
        Error::DuplicateMappingKey { key: None, .. } => {
            "a name is listed twice in the same section; keep one entry".into()
        }
        Error::NullIntoString { .. } => {
            "a value is missing (expected a name after the colon)".into()
        }
        Error::Unexpected { expected, .. } if expected.contains("string") => {
            "expected a single name here (a list or a mapping is not allowed)".into()
        }
        Error::InvalidScalar { .. } => "expected a whole number here (`version: 1`)".into(),
        other => {
            let text = UserMessageFormatter.format_message(other);
            text.lines().next().unwrap_or_default().to_string()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    version: Spanned<u32>,
    #[serde(default)]
    teams: Option<BTreeMap<String, Spanned<Option<TeamV1>>>>,
    #[serde(default)]
    aliases: Option<BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    keys: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamV1 {
    #[serde(default)]
    models: Option<BTreeMap<String, Spanned<String>>>,
}

struct Checker {
    issues: Vec<Issue>,
}

impl Checker {
    fn fail(&mut self, line: u64, message: String) {
        self.issues.push(Issue { line, message });
    }

    /// Adds `from -> to` to `rules` if both names are well formed.
    fn rule(&mut self, rules: &mut RuleSet, scope: &str, from: &str, to: &Spanned<String>) {
        let line = to.referenced.line();
        let target = to.value.as_str();
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
    fn chains(&mut self, rules: &RuleSet, scope: &str, lines: &BTreeMap<String, Spanned<String>>) {
        for (from, to) in lines {
            if let Some(next) = rules.lookup(&to.value)
                && next.target != to.value
            {
                self.fail(
                    to.referenced.line(),
                    format!(
                        "{scope} {from:?} -> {:?} is mapped again by {:?} -> {:?}; \
                         chains are not followed, map {from:?} to the final name",
                        to.value, next.key, next.target
                    ),
                );
            }
        }
    }
}

/// Why a name cannot be a model name, if it cannot.
fn name_problem(name: &str) -> Option<&'static str> {
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

pub(super) fn parse(text: &str, origin: &str) -> Result<Mapping, MappingError> {
    let invalid = |issues| MappingError::Invalid {
        origin: origin.to_string(),
        issues,
    };
    if text.trim().is_empty() {
        return Err(invalid(vec![Issue {
            line: 0,
            message: "the file is empty (expected `version: 1`)".into(),
        }]));
    }
    let file: FileV1 = serde_saphyr::from_str(text).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line());
        invalid(vec![Issue {
            line,
            message: yaml_problem(&e),
        }])
    })?;

    let mut check = Checker { issues: Vec::new() };
    if file.version.value != 1 {
        check.fail(
            file.version.referenced.line(),
            format!(
                "unsupported version {} (this modelmap reads version 1)",
                file.version.value
            ),
        );
    }

    let mut mapping = Mapping::default();
    let teams = file.teams.unwrap_or_default();
    for (team, entry) in &teams {
        let scope = format!("team {team:?} model");
        if let Some(problem) = name_problem(team) {
            check.fail(
                entry.referenced.line(),
                format!("team id {team:?}: {problem}"),
            );
            continue;
        }
        let mut rules = RuleSet::default();
        let models = entry
            .value
            .as_ref()
            .and_then(|t| t.models.clone())
            .unwrap_or_default();
        for (from, to) in &models {
            check.rule(&mut rules, &scope, from, to);
        }
        rules.seal();
        check.chains(&rules, &scope, &models);
        for target in rules.targets() {
            if let Some(other) = mapping.owners.insert(target.to_string(), team.clone())
                && &other != team
            {
                let line = models
                    .values()
                    .find(|t| t.value == target)
                    .map_or(0, |t| t.referenced.line());
                check.fail(
                    line,
                    format!("internal name {target:?} is a target of both team {other:?} and team {team:?}"),
                );
            }
        }
        mapping.teams.insert(team.clone(), rules);
    }

    let aliases = file.aliases.unwrap_or_default();
    for (from, to) in &aliases {
        check.rule(&mut mapping.aliases, "alias", from, to);
    }
    mapping.aliases.seal();
    check.chains(&mapping.aliases, "alias", &aliases);

    for (hex, team) in file.keys.unwrap_or_default() {
        let line = team.referenced.line();
        match parse_digest(&hex.to_ascii_lowercase()) {
            None => check.fail(
                line,
                format!(
                    "key {hex:?} is not a SHA-256 hex digest (64 hex characters of sha256(key))"
                ),
            ),
            Some(_) if !teams.contains_key(&team.value) => check.fail(
                line,
                format!(
                    "key {}… names team {:?}, which has no entry under `teams`",
                    &hex[..8.min(hex.len())],
                    team.value
                ),
            ),
            Some(digest) => {
                mapping.keys.insert(digest, team.value);
            }
        }
    }

    if check.issues.is_empty() {
        Ok(mapping)
    } else {
        check.issues.sort_by_key(|i| i.line);
        Err(invalid(check.issues))
    }
}
