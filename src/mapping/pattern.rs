//! Model-name patterns with at most one `*`.
//!
//! A pattern is a literal prefix and suffix around one wildcard that matches any run of
//! characters, including none. Its specificity is the length of its literal text: the
//! longest literal wins, and ties break on the pattern text itself, so neither the order
//! of the file nor a hash map's order can change which rule applies.

use std::cmp::Ordering;

/// A compiled `prefix*suffix` pattern and the name it maps to.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub(crate) text: String,
    star: usize,
    pub(crate) target: String,
}

impl Pattern {
    /// Compiles `text`, which must contain exactly one `*` (checked by the loader).
    pub(crate) fn new(text: String, target: String) -> Pattern {
        let star = text.find('*').unwrap_or(text.len());
        Pattern { text, star, target }
    }

    fn prefix(&self) -> &str {
        &self.text[..self.star]
    }

    fn suffix(&self) -> &str {
        self.text.get(self.star + 1..).unwrap_or("")
    }

    /// Literal characters the pattern pins down; more means more specific.
    fn literal_len(&self) -> usize {
        self.text.len().saturating_sub(1)
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        let (prefix, suffix) = (self.prefix(), self.suffix());
        name.len() >= prefix.len() + suffix.len()
            && name.starts_with(prefix)
            && name.ends_with(suffix)
    }

    /// Precedence order: most specific first, then by text.
    pub(crate) fn precedence(a: &Pattern, b: &Pattern) -> Ordering {
        b.literal_len()
            .cmp(&a.literal_len())
            .then_with(|| a.text.cmp(&b.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        Pattern::new(text.to_string(), format!("to-{text}"))
    }

    #[test]
    fn star_matches_any_run_including_empty() {
        assert!(p("claude-*").matches("claude-"));
        assert!(p("claude-*").matches("claude-3-opus"));
        assert!(p("*-mini").matches("gpt-4o-mini"));
        assert!(p("gpt-*-mini").matches("gpt-4o-mini"));
        assert!(
            !p("gpt-*-mini").matches("gpt-mini"),
            "prefix and suffix may not overlap"
        );
        assert!(!p("claude-*").matches("claud"));
        assert!(p("*").matches(""));
    }

    #[test]
    fn longer_literal_wins_then_text_breaks_ties() {
        let mut v = [p("*"), p("gpt-*"), p("*-mini"), p("gpt-4o*")];
        v.sort_by(Pattern::precedence);
        let order: Vec<&str> = v.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(order, ["gpt-4o*", "*-mini", "gpt-*", "*"]);
    }
}
