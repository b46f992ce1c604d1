//! `modelmap check` and `modelmap explain`: the same verdicts the proxy reaches, offline.

use std::fmt::Write as _;
use std::path::Path;

use crate::identity::KeyHash;
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
    Key(&'a str),
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
            Some(t)
        }
        Who::Key(k) => {
            let hash = KeyHash::of(k);
            let team = mapping.team_for_key(&hash.0);
            match team {
                Some(t) => {
                    let _ = writeln!(
                        out,
                        "caller: key {}… -> team {t:?} (keys table)",
                        hash.short()
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "caller: key {}… is not in the keys table: aliases only",
                        hash.short()
                    );
                }
            }
            team
        }
        Who::Nobody => {
            let _ = writeln!(out, "caller: no team given: aliases only");
            None
        }
    };
    for name in model.split(',').map(str::trim) {
        let _ = writeln!(out, "model {name:?}:");
        match mapping.resolve(team, name) {
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
                if let (Some(t), Some(team)) = (r.team, team) {
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
