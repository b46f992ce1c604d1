//! `modelmap discover`, and `check`/`explain` with `--database-url`/`--config`: one
//! discovery round, offline from the proxy, with the same reading and merging rules.

use std::path::Path;

use super::database::Database;
use super::merge::merge;
use super::render::{check_report, discovered_yaml};
use super::{Found, Source, TeamModel, config_file};
use crate::config::GatewaySources;
use crate::mapping::Mapping;

/// Reads every source given; an error names the source and never the URL's password.
fn fetch(g: &GatewaySources) -> Result<(Vec<(Source, Found)>, String), String> {
    let mut found = Vec::new();
    let mut origins = Vec::new();
    if let Some(url) = &g.database_url {
        let db = Database::parse(url, g.timeout).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        let f = runtime
            .block_on(db.discover(g.timeout))
            .map_err(|e| format!("{e} (at {})", db.label))?;
        origins.push(format!("database {}", db.label));
        found.push((Source::Database, f));
    }
    if let Some(path) = &g.config {
        found.push((
            Source::Config,
            config_file::load(path).map_err(|e| e.to_string())?,
        ));
        origins.push(format!("LiteLLM config {}", path.display()));
    }
    if found.is_empty() {
        return Err("give --database-url URL and/or --config FILE".into());
    }
    Ok((found, origins.join(" and ")))
}

/// The mapping `explain` resolves with: the file, merged with the gateway's team models
/// when a source is given (a missing file then counts as empty, as in `serve`).
pub fn mapping(file: &Path, g: &GatewaySources) -> Result<Mapping, String> {
    if g.database_url.is_none() && g.config.is_none() {
        return Mapping::load(file).map_err(|e| e.report());
    }
    let draft = match std::fs::read_to_string(file) {
        Ok(text) => {
            Some(Mapping::draft(&text, &file.display().to_string()).map_err(|e| e.report())?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let (found, _) = fetch(g)?;
    let refs: Vec<(Source, &Found)> = found.iter().map(|(s, f)| (*s, f)).collect();
    let merged = merge(draft.as_ref(), &refs);
    Mapping::from_draft(&merged.draft, "file merged with the gateway").map_err(|e| e.report())
}

/// The YAML `modelmap discover` prints.
pub fn discover(g: &GatewaySources) -> Result<String, String> {
    let (found, origin) = fetch(g)?;
    let refs: Vec<(Source, &Found)> = found.iter().map(|(s, f)| (*s, f)).collect();
    let merged = merge(None, &refs);
    // The output must be a mapping modelmap accepts.
    Mapping::from_draft(&merged.draft, "discovered").map_err(|e| e.to_string())?;
    let models: Vec<&TeamModel> = found.iter().flat_map(|(_, f)| &f.models).collect();
    Ok(discovered_yaml(&merged, &models, &origin))
}

/// `check FILE` against the gateway: the report, and whether it is clean.
pub fn check(file: &Path, summary: String, g: &GatewaySources) -> Result<(String, bool), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let draft = Mapping::draft(&text, &file.display().to_string()).map_err(|e| e.to_string())?;
    let (found, _) = fetch(g)?;
    let refs: Vec<(Source, &Found)> = found.iter().map(|(s, f)| (*s, f)).collect();
    let merged = merge(Some(&draft), &refs);
    let clean = merged.stale.is_empty() && merged.missing.is_empty();
    let mut out = format!("{summary}\n");
    out.push_str(&check_report(&merged, &file.display().to_string()));
    if let Err(e) = Mapping::from_draft(&merged.draft, "file merged with the gateway") {
        out.push_str(&format!(
            "merged with the gateway's models, the mapping would not apply: {e}\n"
        ));
        return Ok((out, false));
    }
    Ok((out, clean))
}
