//! The CDR lines of the most recent finished calls, by SIP Call-ID, for `GET /calls/{call-id}`:
//! bounded by count, oldest out first. It holds what the CDR writer gets; it writes nothing.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Calls kept by default.
pub const RECENT_CALLS: usize = 10_000;

/// A bounded ring of CDR lines.
#[derive(Debug)]
pub struct RecentCalls {
    capacity: usize,
    /// Insertion order: (Call-ID, sequence number of that insertion).
    order: VecDeque<(Arc<str>, u64)>,
    by_id: HashMap<Arc<str>, (u64, Arc<str>)>,
    next: u64,
}

impl RecentCalls {
    /// A ring keeping the last `capacity` calls (at least one).
    pub fn new(capacity: usize) -> RecentCalls {
        RecentCalls {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            by_id: HashMap::new(),
            next: 0,
        }
    }

    /// Keeps `line` as the record of `call_id` (a later call reusing the Call-ID replaces it).
    pub fn push(&mut self, call_id: &str, line: Arc<str>) {
        let id: Arc<str> = Arc::from(call_id);
        let seq = self.next;
        self.next += 1;
        self.by_id.insert(id.clone(), (seq, line));
        self.order.push_back((id, seq));
        while self.by_id.len() > self.capacity || self.order.len() > 2 * self.capacity {
            let Some((old, old_seq)) = self.order.pop_front() else {
                break;
            };
            // Only the insertion that is still current removes the entry.
            if self.by_id.get(&old).is_some_and(|(s, _)| *s == old_seq) {
                self.by_id.remove(&old);
            }
        }
    }

    /// The record of `call_id`, if it is recent.
    pub fn get(&self, call_id: &str) -> Option<Arc<str>> {
        self.by_id.get(call_id).map(|(_, line)| line.clone())
    }

    /// Calls kept.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_count_oldest_out_first_and_reuse_replaces() {
        let mut ring = RecentCalls::new(3);
        for i in 0..5 {
            ring.push(&format!("c{i}"), Arc::from(format!("{{\"n\":{i}}}")));
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.get("c0"), None);
        assert_eq!(ring.get("c1"), None);
        assert_eq!(ring.get("c4").as_deref(), Some("{\"n\":4}"));
        // The same Call-ID again: the new record wins and the old insertion does not evict it.
        ring.push("c2", Arc::from("again"));
        ring.push("c5", Arc::from("5"));
        assert_eq!(ring.get("c2").as_deref(), Some("again"));
        assert_eq!(ring.get("c3"), None);
        assert_eq!(ring.len(), 3);
    }
}
