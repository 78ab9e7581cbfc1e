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

/// The time in a key's high 64 bits.
fn time_of(key: u128) -> Time {
    Time::from_nanos((key >> 64) as u64)
}

/// A priority queue of events keyed by `(time, lane, insertion sequence)`,
/// so the order of simultaneous events is part of the model, not an accident
/// of the heap. Lanes order classes of simultaneous events (a scrape before a
/// control decision); within a lane, insertion order decides.
///
/// A popped event leaves the heap lazily: its entry stays at the top until
/// the next push takes its place (one sift down, where a pop and a push
/// are a sift to the bottom and two sifts up) or the next pop removes it;
/// a peek reads past it. Most handlers schedule a follow-up (a pod's next
/// CPU completion, the next request's), so most pops and pushes pair up.
/// The order of events is the same either way: keys are unique, so the
/// heap's shape never decides it.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
    popped: u64,
    /// The top entry was popped and is waiting to be replaced or removed.
    taken: bool,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
            popped: 0,
            taken: false,
        }
    }
}

impl<E: Copy> EventQueue<E> {
    /// Schedules in the default lane.
    pub fn push(&mut self, time: Time, event: E) {
        self.push_lane(time, DEFAULT_LANE, event);
    }

    pub fn push_lane(&mut self, time: Time, lane: u8, event: E) {
        debug_assert!(self.seq < 1 << 56);
        let key = (time.as_nanos() as u128) << 64 | (lane as u128) << 56 | self.seq as u128;
        let entry = Entry { key, event };
        if self.taken {
            self.taken = false;
            // Dropping the guard sifts the new entry down into place.
            *self.heap.peek_mut().expect("a taken entry is in the heap") = entry;
        } else {
            self.heap.push(entry);
        }
        self.seq += 1;
    }

    pub fn pop(&mut self) -> Option<(Time, E)> {
        self.settle();
        let e = self.heap.peek()?;
        self.taken = true;
        self.popped += 1;
        Some((time_of(e.key), e.event))
    }

    pub fn peek_time(&self) -> Option<Time> {
        let entries = self.heap.as_slice();
        let first = if self.taken {
            // The earliest pending entry is the taken top's earlier child;
            // leaving the top in place lets a push that comes first (the
            // next client arrival's, say) still take its place.
            match entries.get(1..3).or_else(|| entries.get(1..)) {
                Some([a, b]) => a.key.min(b.key),
                Some([a]) => a.key,
                _ => return None,
            }
        } else {
            entries.first()?.key
        };
        Some(time_of(first))
    }

    /// Removes a popped entry that no push replaced.
    fn settle(&mut self) {
        if self.taken {
            self.taken = false;
            self.heap.pop();
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len() - usize::from(self.taken)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    /// A push right after a pop takes the popped entry's place; the order
    /// is the one a plain ordered map gives, however pops and pushes
    /// interleave.
    #[test]
    fn interleaved_pops_and_pushes_keep_time_lane_and_insertion_order() {
        let mut q = EventQueue::default();
        let mut plain = std::collections::BTreeMap::new();
        let mut state = 7u64;
        let mut draw = |n: u64| {
            state = crate::rng::splitmix64(state);
            state % n
        };
        let (mut now, mut seq, mut id) = (0u64, 0u64, 0u32);
        for _ in 0..20_000 {
            match draw(3) {
                0 | 1 => {
                    let (t, lane) = (now + draw(50), draw(3) as u8);
                    q.push_lane(Time::from_nanos(t), lane, id);
                    plain.insert((t, lane, seq), id);
                    seq += 1;
                    id += 1;
                }
                _ => {
                    let got = q.pop();
                    let want = plain.pop_first();
                    assert_eq!(
                        got.map(|(t, e)| (t.as_nanos(), e)),
                        want.map(|((t, _, _), e)| (t, e))
                    );
                    if let Some((t, _)) = got {
                        now = t.as_nanos();
                    }
                }
            }
            assert_eq!(q.len(), plain.len());
            // Now and then, often right after a pop: a peek reads past a
            // popped entry that no push has replaced yet.
            if draw(8) == 0 {
                assert_eq!(
                    q.peek_time().map(Time::as_nanos),
                    plain.keys().next().map(|k| k.0)
                );
            }
        }
    }
}
