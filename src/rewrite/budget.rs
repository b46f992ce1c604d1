//! One memory budget for every body held whole for restoring (error bodies, model
//! lists), across all requests at once.
//!
//! Each such body may hold up to 4 MiB by itself; without a shared bound, memory grows
//! with the number of concurrent error responses (40 at once took 80 MiB). A body takes
//! its bytes from the budget as it grows (and one body-sized copy more for restoring it
//! at its end) and gives them back when its response ends, however it ends: what is
//! sent is still in memory until it has been written. A body that finds the budget spent is not restored: what it held
//! and the rest of it pass through unchanged, never truncated, and
//! `modelmap_restore_over_budget_total` counts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::{IntCounter, IntGauge};

/// The shared budget; cheap to clone.
#[derive(Clone)]
pub struct Budget(Arc<Inner>);

struct Inner {
    limit: usize,
    used: AtomicUsize,
    /// Mirrors `used`, for `/metrics`.
    gauge: Option<IntGauge>,
    over: Option<IntCounter>,
}

impl Budget {
    /// A budget of `limit` bytes, reported on `gauge` (bytes held) and `over` (bodies
    /// passed unrestored because it was spent).
    pub fn new(limit: usize, gauge: IntGauge, over: IntCounter) -> Budget {
        Budget(Arc::new(Inner {
            limit,
            used: AtomicUsize::new(0),
            gauge: Some(gauge),
            over: Some(over),
        }))
    }

    /// No shared bound (each body is still bounded by itself), nothing reported.
    pub fn unlimited() -> Budget {
        Budget(Arc::new(Inner {
            limit: usize::MAX,
            used: AtomicUsize::new(0),
            gauge: None,
            over: None,
        }))
    }

    /// Bytes held right now.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Acquire)
    }

    fn try_take(&self, n: usize) -> bool {
        let taken = self
            .0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.0.limit)
            });
        if let Ok(before) = taken {
            self.report(before + n);
        }
        taken.is_ok()
    }

    fn give_back(&self, n: usize) {
        if n > 0 {
            let before = self.0.used.fetch_sub(n, Ordering::AcqRel);
            self.report(before - n);
        }
    }

    fn report(&self, used: usize) {
        if let Some(g) = &self.0.gauge {
            g.set(i64::try_from(used).unwrap_or(i64::MAX));
        }
    }

    pub(super) fn count_over(&self) {
        if let Some(c) = &self.0.over {
            c.inc();
        }
    }
}

/// The bytes one body holds from the budget; given back on drop.
pub struct Hold {
    budget: Budget,
    held: usize,
}

impl Hold {
    pub fn new(budget: Budget) -> Hold {
        Hold { budget, held: 0 }
    }

    pub fn held(&self) -> usize {
        self.held
    }

    /// Grows the hold to `total` bytes; false (holding what it held) if the budget
    /// cannot spare them.
    pub fn grow_to(&mut self, total: usize) -> bool {
        if total <= self.held {
            return true;
        }
        let ok = self.budget.try_take(total - self.held);
        if ok {
            self.held = total;
        }
        ok
    }

    /// Gives every byte back (the body was sent or given up).
    pub fn release(&mut self) {
        self.budget.give_back(std::mem::take(&mut self.held));
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::restore::{Buffered, Pairs, Restorer};
    use bytes::Bytes;

    fn budget(limit: usize) -> Budget {
        let g = IntGauge::new("g", "g").expect("gauge");
        let c = IntCounter::new("c", "c").expect("counter");
        Budget::new(limit, g, c)
    }

    #[test]
    fn holds_share_the_limit_and_give_back_on_drop() {
        let b = budget(100);
        let mut one = Hold::new(b.clone());
        let mut two = Hold::new(b.clone());
        assert!(one.grow_to(60));
        assert!(!two.grow_to(41), "only 40 left");
        assert!(two.grow_to(40));
        assert_eq!(b.used(), 100);
        drop(one);
        assert_eq!(b.used(), 40);
        assert!(two.grow_to(100));
        two.release();
        assert_eq!(b.used(), 0);
    }

    fn error_restorer(b: &Budget, length: Option<usize>) -> Restorer {
        let pairs = Pairs::new(vec![("internal-x".into(), "public".into())]);
        Restorer::Error(Buffered::within(pairs, b.clone(), length))
    }

    #[test]
    fn a_body_past_the_budget_passes_whole_and_unchanged() {
        let body = Bytes::from(format!("{{\"error\":\"internal-x {}\"}}", "y".repeat(1000)));
        let b = budget(3000);
        // With a known length: the body and its restored copy are taken at once.
        let mut first = error_restorer(&b, Some(body.len()));
        let mut second = error_restorer(&b, Some(body.len()));
        assert_eq!(b.used(), 2 * body.len(), "only the first fits");
        let (head, tail) = (body.slice(..500), body.slice(500..));
        assert_eq!(
            second.feed(Some(head.clone()), false),
            head,
            "passes at once"
        );
        assert_eq!(second.feed(Some(tail.clone()), true), tail);
        assert!(first.feed(Some(head), false).is_empty(), "held");
        let out = first.feed(Some(tail), true);
        assert!(out.starts_with(b"{\"error\":\"public "), "restored");
        drop((first, second));
        assert_eq!(b.used(), 0, "given back when the responses end");

        // Unknown length: held while it fits, then everything passes unchanged.
        let b = budget(600);
        let mut r = error_restorer(&b, None);
        let mut out = Vec::new();
        for piece in body.chunks(256) {
            out.extend_from_slice(&r.feed(Some(Bytes::copy_from_slice(piece)), false));
        }
        out.extend_from_slice(&r.feed(None, true));
        assert_eq!(out, body, "never truncated, never half-restored");
    }

    #[test]
    fn a_zero_budget_holds_nothing() {
        let mut h = Hold::new(budget(0));
        assert!(h.grow_to(0));
        assert!(!h.grow_to(1));
    }
}
