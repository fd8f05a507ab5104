//! Fair admission of queued generations into the engine's cache slots.
//!
//! One HTTP request can carry many generations (prompts × `n`). Fed to the engine first come,
//! first served, a request of 64 prompts holds every slot until it is done and a one-line chat
//! request behind it waits minutes. The engine thread instead keeps queued generations here,
//! grouped by the request they belong to, and fills each free slot from the next group in
//! round-robin order. A group may hold at most `group_cap` slots at once (a few slots stay free
//! for newcomers), so a request that arrives while a big one decodes starts within a step.

use std::collections::{HashMap, VecDeque};

/// Round-robin queue of items in groups, with a per-group bound on admitted items.
#[derive(Debug)]
pub struct FairQueue<T> {
    queued: HashMap<u64, VecDeque<T>>,
    /// Groups with queued items, in the order they get their next turn.
    turn: VecDeque<u64>,
    /// Items taken by [`FairQueue::pop`] and not yet reported [`FairQueue::done`], per group.
    admitted: HashMap<u64, usize>,
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue {
            queued: HashMap::new(),
            turn: VecDeque::new(),
            admitted: HashMap::new(),
            len: 0,
        }
    }
}

impl<T> FairQueue<T> {
    /// Queues `item` at the back of `group`.
    pub fn push(&mut self, group: u64, item: T) {
        let q = self.queued.entry(group).or_default();
        if q.is_empty() {
            self.turn.push_back(group);
        }
        q.push_back(item);
        self.len += 1;
    }

    /// Items waiting (not yet popped).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Items popped and not yet reported done, over all groups.
    pub fn admitted(&self) -> usize {
        self.admitted.values().sum()
    }

    /// The next item in round-robin order from a group holding fewer than `group_cap` admitted
    /// items; it counts as admitted until [`FairQueue::done`]. `None` when every group with
    /// queued items is at its cap (or nothing is queued).
    pub fn pop(&mut self, group_cap: usize) -> Option<(u64, T)> {
        for _ in 0..self.turn.len() {
            let group = self.turn.pop_front()?;
            let held = self.admitted.get(&group).copied().unwrap_or(0);
            if held >= group_cap {
                self.turn.push_back(group);
                continue;
            }
            let q = self
                .queued
                .get_mut(&group)
                .expect("a group in turn has a queue");
            let item = q.pop_front().expect("a group in turn has queued items");
            if q.is_empty() {
                self.queued.remove(&group);
            } else {
                self.turn.push_back(group);
            }
            self.len -= 1;
            *self.admitted.entry(group).or_default() += 1;
            return Some((group, item));
        }
        None
    }

    /// An admitted item of `group` finished, failed or was cancelled: its slot is free.
    pub fn done(&mut self, group: u64) {
        if let Some(n) = self.admitted.get_mut(&group) {
            *n -= 1;
            if *n == 0 {
                self.admitted.remove(&group);
            }
        }
    }

    /// Drops queued items for which `keep` is false (e.g. their caller went away), and the
    /// memory of groups left empty.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut dropped = 0;
        self.queued.retain(|_, q| {
            let before = q.len();
            q.retain(&mut keep);
            dropped += before - q.len();
            !q.is_empty()
        });
        if dropped > 0 {
            self.len -= dropped;
            let queued = &self.queued;
            self.turn.retain(|g| queued.contains_key(g));
            if self.queued.is_empty() {
                self.queued.shrink_to_fit();
                self.turn.shrink_to_fit();
            }
        }
    }
}

/// How many slots one request may hold in an engine of `max_batch` slots: all but an eighth
/// (at least one kept free when there are two or more), so a newcomer starts at once while a
/// lone big request still uses most of the batch.
pub fn group_cap(max_batch: usize) -> usize {
    let reserve = if max_batch >= 2 {
        (max_batch / 8).max(1)
    } else {
        0
    };
    max_batch.saturating_sub(reserve).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_take_turns_instead_of_first_come_first_served() {
        let mut q = FairQueue::default();
        for i in 0..5 {
            q.push(1, format!("big{i}"));
        }
        q.push(2, "small".to_string());
        q.push(3, "other".to_string());
        let order: Vec<String> = std::iter::from_fn(|| q.pop(usize::MAX).map(|(_, s)| s)).collect();
        assert_eq!(
            order,
            ["big0", "small", "other", "big1", "big2", "big3", "big4"]
        );
        assert!(q.is_empty());
        assert_eq!(q.admitted(), 7);
    }

    #[test]
    fn a_group_at_its_cap_leaves_slots_to_others() {
        let mut q = FairQueue::default();
        for i in 0..4 {
            q.push(1, i);
        }
        assert_eq!(q.pop(2), Some((1, 0)));
        assert_eq!(q.pop(2), Some((1, 1)));
        assert_eq!(q.pop(2), None, "group 1 holds its cap");
        q.push(2, 10);
        assert_eq!(q.pop(2), Some((2, 10)));
        q.done(1);
        assert_eq!(q.pop(2), Some((1, 2)));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn retain_drops_cancelled_items_and_their_turns() {
        let mut q = FairQueue::default();
        for i in 0..3 {
            q.push(1, i);
            q.push(2, 10 + i);
        }
        q.retain(|&x| x >= 10);
        assert_eq!(q.len(), 3);
        let order: Vec<i32> = std::iter::from_fn(|| q.pop(9).map(|(_, x)| x)).collect();
        assert_eq!(order, [10, 11, 12]);
    }

    #[test]
    fn caps_keep_room_for_newcomers() {
        assert_eq!(group_cap(1), 1);
        assert_eq!(group_cap(2), 1);
        assert_eq!(group_cap(8), 7);
        assert_eq!(group_cap(32), 28);
    }
}
