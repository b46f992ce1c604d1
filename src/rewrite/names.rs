//! Applying a [`Mapping`] to the names found in a request, and remembering what changed.
//!
//! One `Names` serves every place a request names a model (body, path, query, form
//! field, batch lines), so all of them are mapped from the same snapshot for the same
//! caller and stay consistent. The requested and sent names of the request's own model
//! are kept so responses can be restored from them (several names may map to one
//! target, so an inverted map could not tell which one the caller used).
//!
//! With the guard on, each requested name (every part of a comma-separated `model`,
//! every fallback, and names in URLs, forms and batch lines) is checked before it is mapped: a name that the mapping lists as an
//! internal name (a target) of a team other than the caller's, or of any team when the
//! caller has none, is recorded in [`Names::denied`]. Deciding what to do about it is the
//! proxy's job; the check itself is pure. Names reached through a global alias are the
//! operator's choice and are not checked.

use std::sync::Arc;

use super::json::{Field, NameMapper};
use super::py;
use super::unreadable::Unreadable;
use crate::mapping::Mapping;

/// At most this many distinct rules (and restore pairs) are recorded per request;
/// rewrites beyond that still count in `count`.
const MAX_ITEMISED: usize = 32;

/// Where in a request a model name was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The top-level `model` of a JSON body.
    Body,
    /// An entry of `fallbacks` / `context_window_fallbacks`.
    Fallback,
    /// The URL path (Azure deployments, engines, Gemini models).
    Path,
    /// A `model` query parameter.
    Query,
    /// The `model` field of a form (multipart or URL-encoded).
    Form,
    /// `body.model` of a line in an uploaded batch file.
    Batch,
    /// The `x-litellm-model` request header.
    Header,
    /// `target_model_names` (body, form or query), `session.model`, `completion.model`:
    /// names the gateway authorizes on that are not the response's model.
    Target,
}

impl Place {
    pub fn as_str(self) -> &'static str {
        match self {
            Place::Body => "body",
            Place::Fallback => "fallback",
            Place::Path => "path",
            Place::Query => "query",
            Place::Form => "form",
            Place::Batch => "batch",
            Place::Header => "header",
            Place::Target => "target",
        }
    }

    /// Whether the name is the model the response will be about.
    fn is_request_model(self) -> bool {
        matches!(
            self,
            Place::Body | Place::Path | Place::Query | Place::Form | Place::Header
        )
    }

    /// Whether the gateway reads the value as a comma-separated list of models.
    fn is_list(self) -> bool {
        !matches!(self, Place::Fallback | Place::Batch)
    }
}

/// One applied rule, labelled only with text from the mapping file, and how often it
/// applied in this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub place: Place,
    /// The rule's name or pattern as written in the file.
    pub from: String,
    /// The name sent to the gateway.
    pub to: String,
    pub times: u64,
}

/// Why a request must not go upstream, as far as its names are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Another team's internal name (the guard), as the caller sent it.
    Denied(String),
    /// A name the gateway would put into a response header, which it cannot be.
    Invalid(String),
    /// A part of the request that may name a model and that modelmap cannot read
    /// exactly as the gateway would (the guard fails closed).
    Unreadable(Unreadable),
}

/// Maps names for one caller against one mapping snapshot.
#[derive(Debug)]
pub struct Names {
    mapping: Arc<Mapping>,
    team: Option<String>,
    /// Each distinct rule applied (per place), up to [`MAX_ITEMISED`].
    pub applied: Vec<Applied>,
    /// Every value replaced, itemised or not.
    pub count: usize,
    /// The last request model seen: (requested, sent). Last, because the gateway's JSON
    /// parser keeps the last of duplicate keys.
    pub model: Option<(String, String)>,
    /// Every (sent, requested) pair of the request's model, each name of a list on its
    /// own: what responses are restored from.
    pub restores: Vec<(String, String)>,
    guard: bool,
    /// The first reason this request must be refused, if any.
    pub verdict: Option<Verdict>,
}

impl Names {
    pub fn new(mapping: Arc<Mapping>, team: Option<String>) -> Names {
        Names {
            mapping,
            team,
            applied: Vec::new(),
            count: 0,
            model: None,
            restores: Vec::new(),
            guard: false,
            verdict: None,
        }
    }

    /// Turns the guard on (or off).
    pub fn guarded(mut self, on: bool) -> Names {
        self.guard = on;
        self
    }

    pub fn guard(&self) -> bool {
        self.guard
    }

    /// Records that a part of the request that may carry a model name cannot be read as
    /// the gateway reads it. Only the guard refuses for that; without it the request
    /// passes as it is.
    pub fn unreadable(&mut self, why: Unreadable) {
        if self.guard && self.verdict.is_none() {
            self.verdict = Some(Verdict::Unreadable(why));
        }
    }

    /// Checks every way the gateway may read `name`: whole, stripped, and (at list
    /// places) each entry of the comma list, stripped as Python strips. A superset of
    /// what any one lookup reads, so no reading of it escapes the check.
    fn check(&mut self, place: Place, name: &str) {
        if self.verdict.is_none() && !travels(name) {
            self.verdict = Some(Verdict::Invalid(name.to_string()));
        }
        self.check_owner(place, name);
    }

    /// The guard's half of [`Names::check`].
    fn check_owner(&mut self, place: Place, name: &str) {
        if !self.guard || self.verdict.is_some() {
            return;
        }
        // Each distinct reading once: the name, its stripped form when stripping changes
        // it, and the entries of a list when it is one (a name without a comma is its
        // own only entry).
        let stripped = py::strip(name);
        let bare = (stripped.len() != name.len()).then_some(stripped);
        let parts = (place.is_list() && name.contains(','))
            .then(|| py::list(name))
            .into_iter()
            .flatten();
        for candidate in std::iter::once(name).chain(bare).chain(parts) {
            let owner = self.mapping.owner_of(candidate);
            if owner.is_some() && owner != self.team.as_deref() {
                self.verdict = Some(Verdict::Denied(candidate.to_string()));
                return;
            }
        }
    }

    /// Checks a name the gateway may read at `place` without mapping it (stretches of a
    /// path that no route maps, but that some lookup may read).
    pub fn check_at(&mut self, place: Place, name: &str) {
        self.check_owner(place, name);
    }

    /// Checks the model names a managed file or batch id carries (see `resource_id`).
    pub fn check_resource_id(&mut self, id: &str) {
        if self.guard && self.verdict.is_none() {
            for name in super::resource_id::models(id) {
                self.check_owner(Place::Target, &name);
            }
        }
    }

    pub fn team(&self) -> Option<&str> {
        self.team.as_deref()
    }

    /// The mapping snapshot every name of the request is mapped from.
    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.mapping
    }

    /// Maps one name; records the rule if one applies and changes it.
    fn map_one(&mut self, place: Place, name: &str) -> Option<String> {
        let r = self.mapping.resolve(self.team.as_deref(), name)?;
        if r.target == name {
            return None;
        }
        self.count += 1;
        if place.is_request_model() && self.restores.len() < MAX_ITEMISED {
            self.restores.push((r.target.to_string(), name.to_string()));
        }
        let from = r.from_key();
        let full = self.applied.len() >= MAX_ITEMISED;
        match self
            .applied
            .iter_mut()
            .find(|a| a.place == place && a.from == from && a.to == r.target)
        {
            Some(a) => a.times += 1,
            None if !full => self.applied.push(Applied {
                place,
                from: from.to_string(),
                to: r.target.to_string(),
                times: 1,
            }),
            None => {}
        }
        Some(r.target.to_string())
    }

    /// Maps a model name found at `place`. At list places the value may name several
    /// models separated by commas; each is mapped (after Python's `strip()`, as the
    /// gateway reads it) and the caller's spacing kept.
    pub fn map_at(&mut self, place: Place, name: &str) -> Option<String> {
        self.check(place, name);
        if !place.is_list() {
            return self.map_one(place, name);
        }
        let new = if name.contains(',') || py::strip(name).len() != name.len() {
            let mut changed = false;
            let parts: Vec<String> = name
                .split(',')
                .map(|part| {
                    let bare = py::strip(part);
                    match self.map_one(place, bare) {
                        Some(new) => {
                            changed = true;
                            let lead =
                                &part[..part.len() - part.trim_start_matches(py::is_space).len()];
                            let trail = &part[part.trim_end_matches(py::is_space).len()..];
                            format!("{lead}{new}{trail}")
                        }
                        None => part.to_string(),
                    }
                })
                .collect();
            let joined = changed.then(|| parts.join(","));
            if let Some(list) = &joined
                && place.is_request_model()
            {
                self.restores.push((list.clone(), name.to_string()));
            }
            joined
        } else {
            self.map_one(place, name)
        };
        if place.is_request_model() {
            let sent = new.clone().unwrap_or_else(|| name.to_string());
            self.model = Some((name.to_string(), sent));
        }
        new
    }

    /// A mapper that files every `model` the scanner finds under `place`.
    pub fn at(&mut self, place: Place) -> At<'_> {
        At { names: self, place }
    }
}

/// Whether `name` can become a response header value on the gateway: uvicorn's HTTP
/// parser refuses control characters (tab aside) and Starlette encodes header values as
/// Latin-1. LiteLLM echoes the model it was asked for in `x-litellm-model-group`, so a
/// name that cannot travel there fails on the gateway only after it served the request.
fn travels(name: &str) -> bool {
    name.chars()
        .all(|c| c == '\t' || (c >= ' ' && c != '\x7f' && (c as u32) <= 0xff))
}

impl NameMapper for Names {
    fn map(&mut self, field: Field, name: &str) -> Option<String> {
        match field {
            Field::Model => self.map_at(Place::Body, name),
            Field::Fallback => self.map_at(Place::Fallback, name),
            Field::Target => self.map_at(Place::Target, name),
            Field::ResourceId => {
                self.check_resource_id(name);
                None
            }
        }
    }

    fn unreadable(&mut self, why: Unreadable) {
        Names::unreadable(self, why);
    }
}

/// [`Names`] seen through one place (batch lines: their `body.model` is a batch name).
pub struct At<'a> {
    names: &'a mut Names,
    place: Place,
}

impl NameMapper for At<'_> {
    fn map(&mut self, _field: Field, name: &str) -> Option<String> {
        self.names.map_at(self.place, name)
    }

    fn unreadable(&mut self, why: Unreadable) {
        self.names.unreadable(why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(n: &Names) -> Option<&str> {
        match &n.verdict {
            Some(Verdict::Denied(name)) => Some(name),
            _ => None,
        }
    }

    fn names(team: Option<&str>) -> Names {
        let m = Mapping::parse(
            "version: 1\nteams:\n  t:\n    models:\n      a: A-internal\n      \"c-*\": C-internal\naliases:\n  x: a\n",
            "t",
        )
        .expect("valid");
        Names::new(Arc::new(m), team.map(str::to_string))
    }

    #[test]
    fn comma_lists_map_each_name_and_keep_spacing() {
        let mut n = names(Some("t"));
        assert_eq!(
            n.map(Field::Model, "a, c-1 ,zzz").as_deref(),
            Some("A-internal, C-internal ,zzz")
        );
        assert_eq!(n.count, 2);
        assert_eq!(
            n.applied[1].from, "c-*",
            "labels carry the rule text, not the requested name"
        );
        assert_eq!(
            n.model,
            Some(("a, c-1 ,zzz".into(), "A-internal, C-internal ,zzz".into()))
        );
        assert!(n.restores.contains(&("A-internal".into(), "a".into())));
    }

    #[test]
    fn unmapped_fallbacks_and_batch_lines() {
        let mut n = names(None);
        assert_eq!(n.map(Field::Model, "a"), None, "team rules need a team");
        assert_eq!(n.map(Field::Fallback, "x").as_deref(), Some("a"));
        assert_eq!(
            n.map(Field::Fallback, "a,x"),
            None,
            "fallback entries are single names"
        );
        assert_eq!(n.model, Some(("a".into(), "a".into())));
        assert_eq!(
            n.at(Place::Batch).map(Field::Model, "x").as_deref(),
            Some("a")
        );
        assert!(
            n.restores.is_empty(),
            "fallbacks and batch lines are not the response's model"
        );
        assert_eq!(
            n.applied.iter().map(|a| a.place).collect::<Vec<_>>(),
            [Place::Fallback, Place::Batch]
        );
    }

    #[test]
    fn the_guard_refuses_other_teams_internal_names_only() {
        let m = Mapping::parse(
            "version: 1\nteams:\n  t:\n    models:\n      a: A-internal\n  u:\n    models:\n      b: B-internal\naliases:\n  x: B-internal\n",
            "t",
        )
        .expect("valid");
        let m = Arc::new(m);
        let guarded =
            |team: Option<&str>| Names::new(m.clone(), team.map(str::to_string)).guarded(true);

        let mut n = guarded(Some("t"));
        n.map(Field::Model, "A-internal");
        n.map(Field::Model, "a");
        n.map(Field::Model, "x");
        assert_eq!(
            denied(&n),
            None,
            "own internal names, public names and aliases pass"
        );

        let mut n = guarded(Some("t"));
        n.map(Field::Model, "a, B-internal ");
        assert_eq!(denied(&n), Some("B-internal"), "any part of a list");

        let mut n = guarded(Some("t"));
        n.map(Field::Fallback, "B-internal");
        assert_eq!(denied(&n), Some("B-internal"), "fallbacks too");

        let mut n = guarded(None);
        n.map(Field::Model, "A-internal");
        assert_eq!(
            denied(&n),
            Some("A-internal"),
            "a team-less caller owns nothing"
        );

        let mut n = Names::new(m.clone(), None);
        n.map(Field::Model, "A-internal");
        assert_eq!(denied(&n), None, "guard off");
    }
}
