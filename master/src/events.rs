//! The cluster's significant events, one log line each: a minion going
//! stale, dead, or back to live (its state is otherwise only computed when
//! asked), and healing starting (blocks short of replicas) and finishing
//! (with the copies made and the time it took). Pure: the maintenance
//! thread hands it what it sees each round and logs what it answers.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use dfs_engine::msg::MinionId;

use dfs_engine::msg::MinionState;

/// Minions remembered at most (a registry holds no more).
const MINIONS_REMEMBERED_MAX: usize = dfs_engine::limits::MINIONS_MAX;

/// One event worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A known minion's state changed (a new one is no event: it is
    /// logged when it registers).
    Minion {
        minion: MinionId,
        address: String,
        from: MinionState,
        to: MinionState,
    },
    /// Blocks became short of replicas (or missing) while none were.
    HealingStarted { under_replicated: u64, missing: u64 },
    /// No block is short of replicas any more.
    HealingFinished {
        copies: u64,
        elapsed: Duration,
        most_under_replicated: u64,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Minion {
                minion,
                address,
                from,
                to,
            } => write!(f, "minion {minion}@{address} is {to:?} (was {from:?})"),
            Event::HealingStarted {
                under_replicated,
                missing,
            } => write!(
                f,
                "healing started: {under_replicated} blocks under-replicated, {missing} missing"
            ),
            Event::HealingFinished {
                copies,
                elapsed,
                most_under_replicated,
            } => write!(
                f,
                "healing finished: {copies} copies made in {:.1} s (at most {most_under_replicated} blocks were under-replicated)",
                elapsed.as_secs_f64()
            ),
        }
    }
}

/// Healing under way since `started`.
#[derive(Clone, Copy, Debug)]
struct Healing {
    started: Instant,
    copies_at_start: u64,
    most_under_replicated: u64,
}

/// What was seen last, to tell changes from it.
#[derive(Debug, Default)]
pub struct EventLog {
    states: HashMap<MinionId, MinionState>,
    healing: Option<Healing>,
}

impl EventLog {
    /// The minions' states now (`(id, address, state)`): the changes since
    /// the last call.
    pub fn minions(&mut self, seen: &[(MinionId, String, MinionState)]) -> Vec<Event> {
        let mut events = Vec::new();
        let mut states = HashMap::with_capacity(seen.len().min(MINIONS_REMEMBERED_MAX));
        for (minion, address, state) in seen.iter().take(MINIONS_REMEMBERED_MAX) {
            if let Some(&before) = self.states.get(minion) {
                if before != *state {
                    events.push(Event::Minion {
                        minion: *minion,
                        address: address.clone(),
                        from: before,
                        to: *state,
                    });
                }
            }
            states.insert(*minion, *state);
        }
        self.states = states;
        events
    }

    /// The healer's counts now: blocks short of replicas, missing, and the
    /// copies made since the master started.
    pub fn healing(
        &mut self,
        under_replicated: u64,
        missing: u64,
        copies_done: u64,
        now: Instant,
    ) -> Option<Event> {
        let short = under_replicated + missing;
        match (&mut self.healing, short) {
            (None, 0) => None,
            (None, _) => {
                self.healing = Some(Healing {
                    started: now,
                    copies_at_start: copies_done,
                    most_under_replicated: short,
                });
                Some(Event::HealingStarted {
                    under_replicated,
                    missing,
                })
            }
            (Some(healing), 0) => {
                let event = Event::HealingFinished {
                    copies: copies_done.saturating_sub(healing.copies_at_start),
                    elapsed: now.saturating_duration_since(healing.started),
                    most_under_replicated: healing.most_under_replicated,
                };
                self.healing = None;
                Some(event)
            }
            (Some(healing), _) => {
                healing.most_under_replicated = healing.most_under_replicated.max(short);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(states: &[(u64, MinionState)]) -> Vec<(MinionId, String, MinionState)> {
        states
            .iter()
            .map(|&(id, state)| (MinionId(id), format!("10.0.0.{id}:7071"), state))
            .collect()
    }

    #[test]
    fn a_minion_changing_state_is_one_event_and_staying_is_none() {
        let mut log = EventLog::default();
        assert!(
            log.minions(&seen(&[(1, MinionState::Live)])).is_empty(),
            "new"
        );
        assert!(
            log.minions(&seen(&[(1, MinionState::Live)])).is_empty(),
            "same"
        );
        let events = log.minions(&seen(&[(1, MinionState::Stale), (2, MinionState::Live)]));
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].to_string(),
            "minion 0000000000000001@10.0.0.1:7071 is Stale (was Live)"
        );
        let events = log.minions(&seen(&[(1, MinionState::Dead), (2, MinionState::Live)]));
        assert!(matches!(
            events.as_slice(),
            [Event::Minion {
                to: MinionState::Dead,
                ..
            }]
        ));
        // A minion gone from the registry and back is new again.
        assert!(log.minions(&seen(&[(2, MinionState::Live)])).is_empty());
        assert!(log.minions(&seen(&[(1, MinionState::Live)])).is_empty());
    }

    #[test]
    fn healing_starts_once_and_finishes_with_its_counts() {
        let mut log = EventLog::default();
        let start = Instant::now();
        assert_eq!(log.healing(0, 0, 5, start), None);
        assert_eq!(
            log.healing(3, 1, 5, start),
            Some(Event::HealingStarted {
                under_replicated: 3,
                missing: 1
            })
        );
        assert_eq!(log.healing(9, 0, 7, start), None, "still healing");
        let done = log
            .healing(0, 0, 17, start + Duration::from_millis(2500))
            .expect("finished");
        assert_eq!(
            done.to_string(),
            "healing finished: 12 copies made in 2.5 s (at most 9 blocks were under-replicated)"
        );
        assert_eq!(log.healing(0, 0, 17, start), None);
    }
}
