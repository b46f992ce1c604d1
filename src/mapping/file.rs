//! The mapping file format (version 1): YAML text to a [`Draft`].
//!
//! The file is YAML (JSON is valid YAML). Syntax errors and an unsupported version are
//! reported here with their line; everything else (names, patterns, chains, owners,
//! keys) is checked by `validate`, which reports every problem, not only the first,
//! so an operator can fix a file in one pass. A file with any problem is rejected
//! whole: a partial mapping is never produced.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::draft::{Draft, DraftTeam, Entry};

/// One problem in a mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// 1-based line, or 0 when the parser could not tell (or the entry came from
    /// discovery rather than from the file).
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

fn entries(map: Option<BTreeMap<String, Spanned<String>>>) -> BTreeMap<String, Entry> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(from, to)| {
            let line = to.referenced.line();
            (
                from,
                Entry {
                    target: to.value,
                    line,
                },
            )
        })
        .collect()
}

/// Parses mapping text into a draft; `origin` names it in errors.
pub(super) fn draft(text: &str, origin: &str) -> Result<Draft, MappingError> {
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
    if file.version.value != 1 {
        return Err(invalid(vec![Issue {
            line: file.version.referenced.line(),
            message: format!(
                "unsupported version {} (this modelmap reads version 1)",
                file.version.value
            ),
        }]));
    }
    let teams = file
        .teams
        .unwrap_or_default()
        .into_iter()
        .map(|(team, entry)| {
            let line = entry.referenced.line();
            let models = entries(entry.value.and_then(|t| t.models));
            (team, DraftTeam { line, models })
        })
        .collect();
    Ok(Draft {
        teams,
        aliases: entries(file.aliases),
        keys: entries(file.keys),
    })
}
