//! `modelmap check` and `modelmap explain`: the same verdicts the proxy reaches, offline.

use std::fmt::Write as _;
use std::path::Path;

use crate::identity::{Answer, KeyHash, LookupError};
use crate::mapping::{Mapping, MappingError};

/// The text `modelmap check` prints for a file that would be applied.
pub fn check(path: &Path) -> Result<String, MappingError> {
    let m = Mapping::load(path)?;
    let c = m.counts();
    Ok(format!(
        "{}: ok: {} teams, {} team rules ({} patterns), {} aliases ({} patterns), {} keys",
        path.display(),
        c.teams,
        c.team_exact + c.team_patterns,
        c.team_patterns,
        c.alias_exact + c.alias_patterns,
        c.alias_patterns,
        c.keys
    ))
}

/// Where the caller's team comes from, for `explain`.
pub enum Who<'a> {
    Team(&'a str),
    /// A key, and the gateway's answer for it when it was asked (`--ask-gateway`).
    Key(&'a str, Option<Result<Answer, LookupError>>),
    Nobody,
}

/// The rule chain and result for `model`, one paragraph per comma-separated name.
pub fn explain(mapping: &Mapping, who: Who<'_>, model: &str) -> String {
    let mut out = String::new();
    let team = match who {
        Who::Team(t) => {
            let known = if mapping.has_team(t) {
                ""
            } else {
                " (not in the mapping: aliases only)"
            };
            let _ = writeln!(out, "caller: team {t:?}{known}");
            Some(t.to_owned())
        }
        Who::Key(k, gateway) => {
            let hash = KeyHash::of(k);
            let short = hash.short();
            match (mapping.team_for_key(&hash.0), gateway) {
                (Some(t), _) => {
                    let _ = writeln!(out, "caller: key {short}… -> team {t:?} (keys table)");
                    Some(t.to_owned())
                }
                (None, None) => {
                    let _ = writeln!(
                        out,
                        "caller: key {short}… is not in the keys table: aliases only (--ask-gateway asks /key/info)"
                    );
                    None
                }
                (None, Some(Ok(Answer::Valid(Some(t))))) => {
                    let known = if mapping.has_team(&t) {
                        ""
                    } else {
                        " (not in the mapping: aliases only)"
                    };
                    let _ = writeln!(
                        out,
                        "caller: key {short}… -> team {t:?} (gateway /key/info){known}"
                    );
                    Some(t)
                }
                (None, Some(Ok(Answer::Valid(None)))) => {
                    let _ = writeln!(
                        out,
                        "caller: key {short}… has no team (gateway /key/info): aliases only"
                    );
                    None
                }
                (None, Some(Ok(Answer::Invalid))) => {
                    let _ = writeln!(
                        out,
                        "caller: key {short}… has no key record at the gateway (401/403/404 from /key/info): aliases only"
                    );
                    None
                }
                (None, Some(Err(e))) => {
                    let _ = writeln!(
                        out,
                        "caller: key {short}… is not in the keys table and the gateway lookup failed ({e}): aliases only"
                    );
                    None
                }
            }
        }
        Who::Nobody => {
            let _ = writeln!(out, "caller: no team given: aliases only");
            None
        }
    };
    for name in model.split(',').map(str::trim) {
        let _ = writeln!(out, "model {name:?}:");
        match mapping.resolve(team.as_deref(), name) {
            None => {
                let _ = writeln!(out, "  no rule matches: sent unchanged");
            }
            Some(r) => {
                let mut step = 1;
                if let Some(a) = r.alias {
                    let kind = if a.pattern { "pattern" } else { "exact" };
                    let _ = writeln!(out, "  {step}. alias {kind} {:?} -> {:?}", a.key, a.target);
                    step += 1;
                }
                if let (Some(t), Some(team)) = (r.team, team.as_deref()) {
                    let kind = if t.pattern { "pattern" } else { "exact" };
                    let _ = writeln!(
                        out,
                        "  {step}. team {team:?} {kind} {:?} -> {:?}",
                        t.key, t.target
                    );
                }
                let _ = writeln!(out, "  result: {:?}", r.target);
            }
        }
    }
    out
}
