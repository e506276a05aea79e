//! `rate_limit` as pacing: the generic cell rate algorithm (GCRA) without burst. A webhook limited
//! to `r` per second gets one send slot every `1/r` seconds; a node takes a few slots at once
//! (at most [`HORIZON_US`] ahead) and sends each at its own time, so the attempts started in any
//! one second stay within the limit (one more at the edges of a window, as with any pacing).
//!
//! The state is one number, the theoretical arrival time (TAT) of the next slot. On SQLite it
//! lives in the lane; on PostgreSQL in `webhooks.rate_tat`, so every node takes slots from the
//! same timeline and the sum over nodes stays within the limit. [`grant`] is the arithmetic for
//! both.

/// How far ahead a node may take slots.
pub const HORIZON_US: i64 = 100_000;
/// A slot not used within this long after its time is dropped (its lane was busy), so a lane
/// that waited cannot send a burst of old slots at once.
pub const SLOT_VALIDITY_US: i64 = 50_000;

/// Microseconds between two slots at `rate` per second.
pub fn step_us(rate: u32) -> i64 {
    // Rounded up: rounding down would fit one slot too many in a second.
    let rate = i64::from(rate.max(1));
    (1_000_000 + rate - 1) / rate
}

/// Up to `want` slots from the timeline `tat` at `now_us`: the time of the first and how many,
/// each `step` after the previous; the new TAT is `first + count * step`.
pub fn grant(tat: Option<i64>, now_us: i64, want: usize, step: i64) -> Grant {
    let first = tat.unwrap_or(now_us).max(now_us);
    let room = (now_us + HORIZON_US - first).div_euclid(step.max(1)) + 1;
    let count = usize::try_from(room.max(0)).unwrap_or(0).min(want);
    let count_i64 = i64::try_from(count).unwrap_or(i64::MAX);
    Grant { first, step, count, tat: first + count_i64 * step }
}

/// Slots taken from a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub first: i64,
    pub step: i64,
    pub count: usize,
    /// The timeline after this grant.
    pub tat: i64,
}

impl Grant {
    pub fn slots(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.count).map(|i| self.first + i64::try_from(i).unwrap_or(0) * self.step)
    }
}

/// The slots a lane holds, oldest first.
#[derive(Debug, Default, Clone)]
pub struct Slots {
    times: std::collections::VecDeque<i64>,
}

impl Slots {
    pub fn add(&mut self, grant: &Grant) {
        self.times.extend(grant.slots());
    }

    /// Drops slots too old to use at `now_us`.
    pub fn expire(&mut self, now_us: i64) {
        while self.times.front().is_some_and(|t| *t + SLOT_VALIDITY_US < now_us) {
            self.times.pop_front();
        }
    }

    /// Takes a slot if one is due at `now_us`.
    pub fn take(&mut self, now_us: i64) -> bool {
        self.expire(now_us);
        match self.times.front() {
            Some(t) if *t <= now_us => {
                self.times.pop_front();
                true
            }
            _ => false,
        }
    }

    /// When the next slot is due (`None`: no slot held).
    pub fn next_at(&self) -> Option<i64> {
        self.times.front().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_evenly_spaced_and_never_beyond_the_horizon() {
        let step = step_us(100); // 10 ms
        let grant = grant(None, 0, 1_000, step);
        assert_eq!(grant.count, 11, "0, 10, …, 100 ms");
        assert_eq!(grant.slots().collect::<Vec<_>>()[..3], [0, 10_000, 20_000]);
        assert_eq!(grant.tat, 110_000);
        let next = super::grant(Some(grant.tat), 0, 1_000, step);
        assert_eq!(next.count, 0, "the timeline is booked up to the horizon");
        let later = super::grant(Some(grant.tat), 50_000, 2, step);
        assert_eq!((later.first, later.count), (110_000, 2));
    }

    #[test]
    fn an_idle_timeline_starts_now_without_a_burst() {
        let step = step_us(5);
        let grant = grant(Some(0), 10_000_000, 100, step);
        assert_eq!((grant.first, grant.count), (10_000_000, 1));
    }

    #[test]
    fn at_most_rate_slots_start_in_any_second() {
        let step = step_us(7);
        let (mut tat, mut times) = (None, Vec::new());
        let mut now = 0;
        while now < 5_000_000 {
            let g = grant(tat, now, 3, step);
            tat = Some(g.tat);
            times.extend(g.slots());
            now += 13_000;
        }
        for start in times.iter() {
            let in_window = times.iter().filter(|t| **t >= *start && **t < start + 1_000_000);
            assert!(in_window.count() <= 7, "more than 7 slots in a second from {start}");
        }
    }

    #[test]
    fn held_slots_are_taken_when_due_and_dropped_when_stale() {
        let mut slots = Slots::default();
        slots.add(&grant(None, 0, 3, 10_000));
        assert!(slots.take(0));
        assert!(!slots.take(5_000), "the next is at 10 ms");
        assert_eq!(slots.next_at(), Some(10_000));
        assert!(slots.take(200_000) || slots.is_empty());
        assert!(slots.is_empty(), "stale slots were dropped, not sent in a burst");
    }
}
