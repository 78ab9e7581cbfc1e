//! The deterministic event queue: earliest time first, ties in insertion order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::time::Time;

pub const DEFAULT_LANE: u8 = 1;

/// `(time, lane, seq)` packed into one integer so the heap compares once:
/// time in the high 64 bits, then 8 bits of lane, then a 56-bit sequence.
struct Entry<E> {
    key: u128,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest event.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

/// A priority queue of events keyed by `(time, lane, insertion sequence)`,
/// so the order of simultaneous events is part of the model, not an accident
/// of the heap. Lanes order classes of simultaneous events (a scrape before a
/// control decision); within a lane, insertion order decides.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
    popped: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
            popped: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedules in the default lane.
    pub fn push(&mut self, time: Time, event: E) {
        self.push_lane(time, DEFAULT_LANE, event);
    }

    pub fn push_lane(&mut self, time: Time, lane: u8, event: E) {
        debug_assert!(self.seq < 1 << 56);
        let key = (time.as_nanos() as u128) << 64 | (lane as u128) << 56 | self.seq as u128;
        self.heap.push(Entry { key, event });
        self.seq += 1;
    }

    pub fn pop(&mut self) -> Option<(Time, E)> {
        let e = self.heap.pop()?;
        self.popped += 1;
        Some((Time::from_nanos((e.key >> 64) as u64), e.event))
    }

    pub fn peek_time(&self) -> Option<Time> {
        self.heap
            .peek()
            .map(|e| Time::from_nanos((e.key >> 64) as u64))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Events processed so far (the benchmark's unit of work).
    pub fn popped(&self) -> u64 {
        self.popped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_break_by_insertion_order() {
        let mut q = EventQueue::default();
        q.push(Time::from_secs(2), "late");
        q.push(Time::from_secs(1), "a");
        q.push(Time::from_secs(1), "b");
        q.push(Time::from_secs(1), "c");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["a", "b", "c", "late"]);
        q.push(Time::from_secs(3), "default");
        q.push_lane(Time::from_secs(3), 0, "first lane");
        q.push_lane(Time::from_secs(3), 2, "last lane");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["first lane", "default", "last lane"]);
        assert_eq!(q.popped(), 7);
    }
}
