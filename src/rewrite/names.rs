//! Model names found at places in a request, the one interface every rewriter maps them
//! through, and its implementation for a request.
//!
//! Every rewriter (JSON bodies and batch lines, URL-encoded and multipart forms, URLs,
//! the model header, response restoring) finds values and hands each to a
//! [`NameMapper`] with the [`Place`] it was found at; the mapper decides the new value
//! and records what it saw. The rewriters only find and write back: what a name maps to,
//! whether it is allowed, and what to remember for the response are the mapper's. A
//! value at [`Place::Id`] (a managed file or batch id) is shown to the mapper to check
//! and is never replaced, whatever the mapper answers.
//!
//! One [`Names`] serves every place of a request, so all of them are mapped from the
//! same snapshot for the same caller and stay consistent. The requested and sent names
//! of the request's own model are kept so responses can be restored from them (several
//! names may map to one target, so an inverted map could not tell which one the caller
//! used).
//!
//! With the guard on, each requested name (every part of a comma-separated `model`,
//! every fallback, and names in URLs, forms and batch lines) is checked before it is
//! mapped: a name that the mapping lists as an internal name (a target) of a team other
//! than the caller's, or of any team when the caller has none, is recorded in
//! [`Names::verdict`]. Deciding what to do about it is the proxy's job; the check itself
//! is pure. Names reached through a global alias are the operator's choice and are not
//! checked.

use std::sync::Arc;

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
    /// A managed file or batch id (`file_id`, `input_file_id`, … in a body or form, or a
    /// path segment) that may carry model names inside (see `resource_id`): checked,
    /// never replaced.
    Id,
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
            Place::Id => "id",
        }
    }

    /// Whether a value found here may be replaced: every place but [`Place::Id`].
    pub fn replaceable(self) -> bool {
        self != Place::Id
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

/// Decides the new value of each model name a rewriter finds, and sees what the guard
/// needs to see. Every rewriter takes its mapper as `&mut impl NameMapper` (the JSON
/// scanner is hot: no dynamic dispatch), so [`Names`], the response's restore pairs
/// and a test's closure all go through the same calls.
pub trait NameMapper {
    /// The replacement for `name` found at `place`, or `None` to keep the original
    /// bytes. At [`Place::Id`] the value is a managed id: the mapper may check the
    /// names it carries, and rewriters never replace it.
    fn map_at(&mut self, place: Place, name: &str) -> Option<String>;

    /// A value the gateway may read a model name from at `place` that is not mapped
    /// (stretches of a path that no route maps but some lookup may read, managed ids in
    /// a path): checked only.
    fn check_at(&mut self, _place: Place, _name: &str) {}

    /// A part of the request that may name a model could not be read as the gateway
    /// reads it (a limit, an encoding, an undecodable string).
    fn unreadable(&mut self, _why: Unreadable) {}

    /// Whether [`NameMapper::check_at`] can have any effect (for [`Names`], whether the
    /// guard is on): a caller may skip finding values that would only be checked.
    fn checks(&self) -> bool {
        true
    }
}

/// A closure maps names (tests, fuzz oracles); it checks nothing.
impl<F: FnMut(Place, &str) -> Option<String>> NameMapper for F {
    fn map_at(&mut self, place: Place, name: &str) -> Option<String> {
        self(place, name)
    }

    fn checks(&self) -> bool {
        false
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

    /// Checks the model names a managed file or batch id carries (see `resource_id`).
    fn check_resource_id(&mut self, id: &str) {
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
    fn map_name(&mut self, place: Place, name: &str) -> Option<String> {
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
    fn map_at(&mut self, place: Place, name: &str) -> Option<String> {
        if place == Place::Id {
            self.check_resource_id(name);
            return None;
        }
        self.map_name(place, name)
    }

    /// Checks without mapping; only the guard checks, so with it off this does nothing.
    fn check_at(&mut self, place: Place, name: &str) {
        match place {
            Place::Id => self.check_resource_id(name),
            _ => self.check_owner(place, name),
        }
    }

    /// Only the guard refuses for an unreadable part; without it the request passes as
    /// it is.
    fn unreadable(&mut self, why: Unreadable) {
        if self.guard && self.verdict.is_none() {
            self.verdict = Some(Verdict::Unreadable(why));
        }
    }

    fn checks(&self) -> bool {
        self.guard
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
            n.map_at(Place::Body, "a, c-1 ,zzz").as_deref(),
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
        assert_eq!(n.map_at(Place::Body, "a"), None, "team rules need a team");
        assert_eq!(n.map_at(Place::Fallback, "x").as_deref(), Some("a"));
        assert_eq!(
            n.map_at(Place::Fallback, "a,x"),
            None,
            "fallback entries are single names"
        );
        assert_eq!(n.model, Some(("a".into(), "a".into())));
        assert_eq!(n.map_at(Place::Batch, "x").as_deref(), Some("a"));
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
        n.map_at(Place::Body, "A-internal");
        n.map_at(Place::Body, "a");
        n.map_at(Place::Body, "x");
        assert_eq!(
            denied(&n),
            None,
            "own internal names, public names and aliases pass"
        );

        let mut n = guarded(Some("t"));
        n.map_at(Place::Body, "a, B-internal ");
        assert_eq!(denied(&n), Some("B-internal"), "any part of a list");

        let mut n = guarded(Some("t"));
        n.map_at(Place::Fallback, "B-internal");
        assert_eq!(denied(&n), Some("B-internal"), "fallbacks too");

        let mut n = guarded(None);
        n.map_at(Place::Body, "A-internal");
        assert_eq!(
            denied(&n),
            Some("A-internal"),
            "a team-less caller owns nothing"
        );

        let mut n = Names::new(m.clone(), None);
        n.map_at(Place::Body, "A-internal");
        assert_eq!(denied(&n), None, "guard off");
    }
}
