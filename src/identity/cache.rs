//! Teams the gateway told us about, by key digest, with one lookup in flight per key.
//!
//! - Keyed by [`KeyHash`]: the raw key is never stored. A lookup in flight is driven by
//!   the future of a request that holds the key anyway, and only for as long as it runs.
//! - A valid key's answer (team or no team) lives for the positive TTL; "unknown or
//!   invalid" (401/403/404) for the shorter negative TTL. Errors are not cached: the requests
//!   that were waiting on the failed lookup all get its error, the next request tries
//!   again.
//! - Single flight: every request for a key that has no fresh answer awaits the same
//!   lookup (a [`tokio::sync::OnceCell`]). If the request driving it goes away (client
//!   disconnect), one of the waiters takes over with its own credential.
//! - Bounded: at most `capacity` entries (in-flight lookups included). When full, expired
//!   answers are dropped first, then the answers closest to expiry (a sixteenth of them
//!   at a time, so eviction stays cheap under churn). Lookups in flight are never evicted;
//!   if the cache is full of them, a new key is looked up without being cached.
//!   Expired answers otherwise leave lazily (on their next use, or when room is needed).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::IntGauge;
use tokio::sync::OnceCell;

use super::KeyHash;
use super::gateway::{Answer, LookupError};

pub type Outcome = Result<Answer, LookupError>;

type Flight = OnceCell<Outcome>;

enum Slot {
    Ready { answer: Answer, expires: Instant },
    Pending(Arc<Flight>),
}

/// How a request got its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// From a fresh cached answer.
    Cached,
    /// This request ran the lookup.
    Looked,
    /// Another request's lookup, awaited.
    Shared,
}

pub struct TeamCache {
    slots: Mutex<HashMap<KeyHash, Slot>>,
    ttl: Duration,
    negative_ttl: Duration,
    capacity: usize,
    size: IntGauge,
}

impl TeamCache {
    pub fn new(ttl: Duration, negative_ttl: Duration, capacity: usize, size: IntGauge) -> Self {
        TeamCache {
            slots: Mutex::new(HashMap::new()),
            ttl,
            negative_ttl,
            capacity,
            size,
        }
    }

    /// The answer for `key`: cached, shared with a lookup in flight, or from `lookup`.
    pub async fn get<F, Fut>(&self, key: KeyHash, lookup: F) -> (Outcome, Served)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let flight = {
            let mut slots = self.slots.lock();
            let now = Instant::now();
            let flight = match slots.get(&key) {
                Some(Slot::Ready { answer, expires }) if *expires > now => {
                    return (Ok(answer.clone()), Served::Cached);
                }
                Some(Slot::Pending(flight)) => flight.clone(),
                _ => {
                    slots.remove(&key);
                    let flight = Arc::new(Flight::new());
                    if self.make_room(&mut slots, now) {
                        slots.insert(key, Slot::Pending(flight.clone()));
                    }
                    flight
                }
            };
            self.size.set(slots.len() as i64);
            flight
        };
        let mut ran = false;
        let outcome = flight
            .get_or_init(|| {
                ran = true;
                lookup()
            })
            .await
            .clone();
        self.settle(key, &flight, &outcome);
        let served = if ran { Served::Looked } else { Served::Shared };
        (outcome, served)
    }

    /// Replaces the finished flight with its answer (or drops it, for an error). Every
    /// waiter calls this; only the first finds the flight still in place.
    fn settle(&self, key: KeyHash, flight: &Arc<Flight>, outcome: &Outcome) {
        let mut slots = self.slots.lock();
        let ours = matches!(slots.get(&key), Some(Slot::Pending(f)) if Arc::ptr_eq(f, flight));
        if !ours {
            return;
        }
        let ttl = match outcome {
            Ok(Answer::Valid(_)) => Some(self.ttl),
            Ok(Answer::Invalid) => Some(self.negative_ttl),
            Err(_) => None,
        };
        match (ttl.filter(|t| !t.is_zero()), outcome) {
            (Some(ttl), Ok(answer)) => {
                slots.insert(
                    key,
                    Slot::Ready {
                        answer: answer.clone(),
                        expires: Instant::now() + ttl,
                    },
                );
            }
            _ => {
                slots.remove(&key);
            }
        }
        self.size.set(slots.len() as i64);
    }

    /// Makes room for one more entry; false if none can be made.
    fn make_room(&self, slots: &mut HashMap<KeyHash, Slot>, now: Instant) -> bool {
        if slots.len() < self.capacity {
            return true;
        }
        slots.retain(|_, s| !matches!(s, Slot::Ready { expires, .. } if *expires <= now));
        if slots.len() < self.capacity {
            return true;
        }
        let mut ready: Vec<(Instant, KeyHash)> = slots
            .iter()
            .filter_map(|(k, s)| match s {
                Slot::Ready { expires, .. } => Some((*expires, *k)),
                Slot::Pending(_) => None,
            })
            .collect();
        if ready.is_empty() {
            return false;
        }
        let n = (ready.len() / 16).max(1);
        if n < ready.len() {
            ready.select_nth_unstable_by_key(n - 1, |(expires, _)| *expires);
        }
        for (_, k) in &ready[..n] {
            slots.remove(k);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    impl TeamCache {
        fn len(&self) -> usize {
            self.slots.lock().len()
        }

        fn is_empty(&self) -> bool {
            self.len() == 0
        }
    }

    fn cache(ttl_ms: u64, neg_ms: u64, capacity: usize) -> TeamCache {
        let gauge = IntGauge::new("t", "t").expect("gauge");
        TeamCache::new(
            Duration::from_millis(ttl_ms),
            Duration::from_millis(neg_ms),
            capacity,
            gauge,
        )
    }

    fn team(t: &str) -> Outcome {
        Ok(Answer::Valid(Some(t.to_string())))
    }

    #[tokio::test]
    async fn answers_are_reused_until_their_ttl() {
        let c = cache(100, 20, 10);
        let k = KeyHash::of("sk-a");
        let (o, s) = c.get(k, || async { team("t") }).await;
        assert_eq!((o, s), (team("t"), Served::Looked));
        let (o, s) = c.get(k, || async { team("other") }).await;
        assert_eq!((o, s), (team("t"), Served::Cached));
        tokio::time::sleep(Duration::from_millis(120)).await;
        let (o, s) = c.get(k, || async { team("u") }).await;
        assert_eq!(
            (o, s),
            (team("u"), Served::Looked),
            "expired answers are looked up again"
        );

        let k = KeyHash::of("sk-bad");
        let _ = c.get(k, || async { Ok(Answer::Invalid) }).await;
        assert_eq!(c.get(k, || async { team("x") }).await.1, Served::Cached);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            c.get(k, || async { team("x") }).await,
            (team("x"), Served::Looked),
            "negative answers expire on their own, shorter TTL"
        );
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let c = cache(1000, 1000, 10);
        let k = KeyHash::of("sk-a");
        let (o, _) = c.get(k, || async { Err(LookupError::Status(500)) }).await;
        assert!(o.is_err());
        assert!(c.is_empty());
        assert_eq!(c.get(k, || async { team("t") }).await.1, Served::Looked);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_lookup_in_flight_per_key() {
        let c = Arc::new(cache(1000, 1000, 10));
        let calls = Arc::new(AtomicUsize::new(0));
        let k = KeyHash::of("sk-a");
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (c, calls) = (c.clone(), calls.clone());
                tokio::spawn(async move {
                    c.get(k, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        team("t")
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task").0, team("t"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_over() {
        let c = Arc::new(cache(1000, 1000, 10));
        let k = KeyHash::of("sk-a");
        let leader = {
            let c = c.clone();
            tokio::spawn(async move {
                c.get(k, || async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    team("never")
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        let (o, s) = c.get(k, || async { team("t") }).await;
        assert_eq!((o, s), (team("t"), Served::Looked));
    }

    #[tokio::test]
    async fn size_is_bounded_and_the_soonest_to_expire_go_first() {
        let c = cache(10_000, 10, 4);
        for i in 0..4 {
            let _ = c
                .get(KeyHash::of(&format!("k{i}")), || async { team("t") })
                .await;
        }
        assert_eq!(c.len(), 4);
        let _ = c
            .get(KeyHash::of("neg"), || async { Ok(Answer::Invalid) })
            .await;
        assert_eq!(c.len(), 4, "one evicted to make room");
        let _ = c.get(KeyHash::of("k9"), || async { team("t") }).await;
        assert_eq!(c.len(), 4);
        assert_eq!(
            c.get(KeyHash::of("k9"), || async { team("x") }).await.1,
            Served::Cached
        );

        let none = cache(1000, 1000, 0);
        let _ = none.get(KeyHash::of("a"), || async { team("t") }).await;
        assert!(none.is_empty(), "capacity 0 caches nothing");
    }
}
