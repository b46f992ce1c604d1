//! Applying a [`Mapping`] to the names found in a request, and remembering what changed.
//!
//! The requested and sent names of the top-level `model` are kept per request so
//! responses can be restored from them (several names may map to one target, so an
//! inverted map could not tell which one the caller used).
//!
//! With the guard on, each requested name (every part of a comma-separated `model`, and
//! every fallback) is checked before it is mapped: a name that the mapping lists as an
//! internal name (a target) of a team other than the caller's, or of any team when the
//! caller has none, is recorded in [`Names::denied`]. Deciding what to do about it is the
//! proxy's job; the check itself is pure. Names reached through a global alias are the
//! operator's choice and are not checked.

use std::sync::Arc;

use super::json::{Field, NameMapper};
use crate::mapping::Mapping;

/// At most this many rewrites of one request are itemised (for metrics); more are counted.
const MAX_ITEMISED: usize = 32;

/// One applied rule, labelled only with text from the mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub field: Field,
    /// The rule's name or pattern as written in the file.
    pub from: String,
    /// The name sent to the gateway.
    pub to: String,
}

/// Maps names for one caller against one mapping snapshot.
#[derive(Debug)]
pub struct Names {
    mapping: Arc<Mapping>,
    team: Option<String>,
    /// Each rule applied, up to [`MAX_ITEMISED`].
    pub applied: Vec<Applied>,
    /// Every value replaced, itemised or not.
    pub count: usize,
    /// The last top-level `model` seen: (requested, sent). Last, because the gateway's
    /// JSON parser keeps the last of duplicate keys.
    pub model: Option<(String, String)>,
    guard: bool,
    /// The first requested name the guard refused, as the caller sent it.
    pub denied: Option<String>,
}

impl Names {
    pub fn new(mapping: Arc<Mapping>, team: Option<String>) -> Names {
        Names {
            mapping,
            team,
            applied: Vec::new(),
            count: 0,
            model: None,
            guard: false,
            denied: None,
        }
    }

    /// Turns the guard on (or off).
    pub fn guarded(mut self, on: bool) -> Names {
        self.guard = on;
        self
    }

    /// Records `name` if it is another team's internal name.
    fn check(&mut self, name: &str) {
        if !self.guard || self.denied.is_some() {
            return;
        }
        let owner = self.mapping.owner_of(name.trim());
        if owner.is_some() && owner != self.team.as_deref() {
            self.denied = Some(name.trim().to_string());
        }
    }

    pub fn team(&self) -> Option<&str> {
        self.team.as_deref()
    }

    /// Maps one name; records the rule if one applies and changes it.
    pub fn map_one(&mut self, field: Field, name: &str) -> Option<String> {
        let r = self.mapping.resolve(self.team.as_deref(), name)?;
        if r.target == name {
            return None;
        }
        self.count += 1;
        if self.applied.len() < MAX_ITEMISED {
            self.applied.push(Applied {
                field,
                from: r.from_key().to_string(),
                to: r.target.to_string(),
            });
        }
        Some(r.target.to_string())
    }

    /// Maps a `model` value, which may list several models separated by commas.
    fn map_model(&mut self, name: &str) -> Option<String> {
        if !name.contains(',') {
            return self.map_one(Field::Model, name);
        }
        let mut changed = false;
        let parts: Vec<String> = name
            .split(',')
            .map(|part| {
                let trimmed = part.trim();
                match self.map_one(Field::Model, trimmed) {
                    Some(new) => {
                        changed = true;
                        // Keep the caller's spacing around each name.
                        let lead = &part[..part.len() - part.trim_start().len()];
                        let trail = &part[part.trim_end().len()..];
                        format!("{lead}{new}{trail}")
                    }
                    None => part.to_string(),
                }
            })
            .collect();
        changed.then(|| parts.join(","))
    }
}

impl NameMapper for Names {
    fn map(&mut self, field: Field, name: &str) -> Option<String> {
        match field {
            Field::Model => name.split(',').for_each(|part| self.check(part)),
            Field::Fallback => self.check(name),
        }
        match field {
            Field::Model => {
                let new = self.map_model(name);
                let sent = new.clone().unwrap_or_else(|| name.to_string());
                self.model = Some((name.to_string(), sent));
                new
            }
            Field::Fallback => self.map_one(field, name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn unmapped_and_fallbacks() {
        let mut n = names(None);
        assert_eq!(n.map(Field::Model, "a"), None, "team rules need a team");
        assert_eq!(n.map(Field::Fallback, "x").as_deref(), Some("a"));
        assert_eq!(
            n.map(Field::Fallback, "a,x"),
            None,
            "fallback entries are single names"
        );
        assert_eq!(n.model, Some(("a".into(), "a".into())));
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
            n.denied, None,
            "own internal names, public names and aliases pass"
        );

        let mut n = guarded(Some("t"));
        n.map(Field::Model, "a, B-internal ");
        assert_eq!(
            n.denied.as_deref(),
            Some("B-internal"),
            "any part of a list"
        );

        let mut n = guarded(Some("t"));
        n.map(Field::Fallback, "B-internal");
        assert_eq!(n.denied.as_deref(), Some("B-internal"), "fallbacks too");

        let mut n = guarded(None);
        n.map(Field::Model, "A-internal");
        assert_eq!(
            n.denied.as_deref(),
            Some("A-internal"),
            "a team-less caller owns nothing"
        );

        let mut n = Names::new(m.clone(), None);
        n.map(Field::Model, "A-internal");
        assert_eq!(n.denied, None, "guard off");
    }
}
