//! The replication monitor's state: which blocks to copy where, which
//! replicas to delete, and which reported blocks may be orphans. Soft state
//! like the registry (rebuilt from reports after a restart) and free of
//! threads and I/O: the service calls `plan` every heartbeat interval and
//! hands the queued commands out in heartbeat answers.
//!
//! Copies go minion to minion: the master only picks a healthy source and
//! targets, and bounds how many copies each minion serves and receives at
//! once, so re-replication never takes a minion's whole bandwidth from
//! clients.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use dfs_engine::limits::{
    DELETES_QUEUED_PER_MINION_MAX, DELETE_BLOCKS_PER_COMMAND_MAX, HEARTBEAT_COMMANDS_MAX,
    ORPHAN_CANDIDATES_MAX, REPLICATIONS_PER_SOURCE_MAX, REPLICATIONS_PER_TARGET_MAX,
};
use dfs_engine::msg::{BlockId, MinionCommand, MinionId, MinionState};

use crate::namespace::BlockTarget;
use crate::registry::{place, Registry};

/// A copy handed to a source minion, not yet seen landing everywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
struct InFlight {
    source: MinionId,
    /// Targets whose `BlockStored` has not come yet.
    targets: Vec<MinionId>,
    deadline: Instant,
}

/// What the last `plan` found, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanSummary {
    /// Blocks with fewer live replicas than their target (some in flight).
    pub under_replicated: usize,
    /// Blocks with no live replica at all.
    pub missing: usize,
    /// Surplus replicas told to go.
    pub excess_deleted: usize,
    /// Copies started by this plan.
    pub replications_started: usize,
    /// Copies under way after this plan.
    pub in_flight: usize,
}

pub struct Healer {
    /// Replicate commands waiting for their source's next heartbeat.
    replications: HashMap<MinionId, VecDeque<MinionCommand>>,
    /// Blocks each minion should delete, waiting for its next heartbeat.
    deletes: HashMap<MinionId, BTreeSet<BlockId>>,
    in_flight: HashMap<BlockId, InFlight>,
    /// Reported blocks no file or write referenced, and when first seen so.
    orphan_candidates: HashMap<(MinionId, BlockId), Instant>,
    replication_timeout: Duration,
    orphan_grace: Duration,
}

impl Healer {
    pub fn new(replication_timeout: Duration, orphan_grace: Duration) -> Healer {
        Healer {
            replications: HashMap::new(),
            deletes: HashMap::new(),
            in_flight: HashMap::new(),
            orphan_candidates: HashMap::new(),
            replication_timeout,
            orphan_grace,
        }
    }

    /// Tells `minion` to delete `block` at its next heartbeat.
    pub fn queue_delete(&mut self, minion: MinionId, block: BlockId) {
        let queued = self.deletes.entry(minion).or_default();
        if queued.len() < DELETES_QUEUED_PER_MINION_MAX {
            queued.insert(block);
        } else {
            // Dropped: the minion's next full report shows it as an orphan.
            tracing::debug!(%minion, %block, "delete queue full; left for the next block report");
        }
    }

    /// A block was freed by the namespace: no copy of it is wanted any more.
    pub fn block_freed(&mut self, block: BlockId, holders: &[MinionId]) {
        self.in_flight.remove(&block);
        for &holder in holders {
            self.queue_delete(holder, block);
        }
    }

    /// The commands for `minion`'s heartbeat answer: copies first (they
    /// restore safety), then deletions, at most `HEARTBEAT_COMMANDS_MAX`.
    pub fn take_commands(&mut self, minion: MinionId) -> Vec<MinionCommand> {
        let mut commands = Vec::new();
        if let Some(queue) = self.replications.get_mut(&minion) {
            while commands.len() < HEARTBEAT_COMMANDS_MAX {
                match queue.pop_front() {
                    Some(command) => commands.push(command),
                    None => break,
                }
            }
            if queue.is_empty() {
                self.replications.remove(&minion);
            }
        }
        if let Some(queued) = self.deletes.get_mut(&minion) {
            while commands.len() < HEARTBEAT_COMMANDS_MAX && !queued.is_empty() {
                let blocks: Vec<BlockId> = queued
                    .iter()
                    .copied()
                    .take(DELETE_BLOCKS_PER_COMMAND_MAX)
                    .collect();
                for block in &blocks {
                    queued.remove(block);
                }
                commands.push(MinionCommand::Delete { blocks });
            }
            if queued.is_empty() {
                self.deletes.remove(&minion);
            }
        }
        commands
    }

    /// `minion` sealed a copy of `block`; true when that ended a copy (its
    /// source has room for another).
    pub fn landed(&mut self, block: BlockId, minion: MinionId) -> bool {
        let Some(flight) = self.in_flight.get_mut(&block) else {
            return false;
        };
        flight.targets.retain(|&target| target != minion);
        if flight.targets.is_empty() {
            self.in_flight.remove(&block);
            return true;
        }
        false
    }

    /// `minion` reported `block`, which nothing references.
    pub fn note_unreferenced(&mut self, minion: MinionId, block: BlockId, now: Instant) {
        if self.orphan_candidates.len() < ORPHAN_CANDIDATES_MAX {
            self.orphan_candidates.entry((minion, block)).or_insert(now);
        }
    }

    /// Queues the deletion of candidates unreferenced for the whole grace
    /// period; `referenced` is asked again at the end of it. Returns how
    /// many were queued.
    pub fn collect_orphans(&mut self, now: Instant, referenced: impl Fn(BlockId) -> bool) -> usize {
        let due: Vec<(MinionId, BlockId)> = self
            .orphan_candidates
            .iter()
            .filter(|(_, seen)| now.saturating_duration_since(**seen) >= self.orphan_grace)
            .map(|(key, _)| *key)
            .collect();
        let mut queued = 0;
        for (minion, block) in due {
            self.orphan_candidates.remove(&(minion, block));
            if !referenced(block) {
                tracing::info!(%minion, %block, "orphan block: telling its minion to delete it");
                self.queue_delete(minion, block);
                queued += 1;
            }
        }
        queued
    }

    /// Forgets copies past their deadline, so the next plan picks the block
    /// again (with another source or targets if those were the trouble).
    fn expire(&mut self, now: Instant) {
        let replication_timeout = self.replication_timeout;
        self.in_flight.retain(|block, flight| {
            let alive = flight.deadline > now;
            if !alive {
                tracing::warn!(
                    %block,
                    source = %flight.source,
                    "re-replication did not land within {replication_timeout:?}; planning it again"
                );
            }
            alive
        });
    }

    /// Looks at every block: queues copies of under-replicated ones, most
    /// endangered first, within the per-minion bounds, and deletions of
    /// surplus replicas. `random` drives placement.
    pub fn plan(
        &mut self,
        now: Instant,
        blocks: &[BlockTarget],
        registry: &mut Registry,
        mut random: impl FnMut() -> u64,
    ) -> PlanSummary {
        self.expire(now);
        let mut summary = PlanSummary::default();
        // (live replicas, replicas short, block): most endangered first.
        let mut short: Vec<(usize, usize, BlockTarget)> = Vec::new();
        let mut surplus: Vec<(BlockId, usize, Vec<MinionId>)> = Vec::new();
        for need in blocks {
            let target = usize::from(need.replication);
            let holders = registry.holders(need.block);
            let states: Vec<(MinionId, MinionState)> = holders
                .iter()
                .filter_map(|&id| registry.state_of(id, now).map(|state| (id, state)))
                .collect();
            let counted = states
                .iter()
                .filter(|(_, state)| *state != MinionState::Dead)
                .count();
            if counted < target {
                summary.under_replicated += 1;
                if counted == 0 {
                    summary.missing += 1;
                } else if !self.in_flight.contains_key(&need.block) {
                    short.push((counted, target - counted, *need));
                }
                continue;
            }
            // Only live replicas decide a surplus: a stale holder may be
            // about to die, and deleting a live copy then would hurt.
            let live: Vec<MinionId> = states
                .iter()
                .filter(|(_, state)| *state == MinionState::Live)
                .map(|(id, _)| *id)
                .collect();
            if live.len() > target && !self.in_flight.contains_key(&need.block) {
                surplus.push((need.block, target, live));
            }
        }
        for (block, target, mut live) in surplus {
            let excess = live.len() - target;
            // The fullest minions give up their copy.
            live.sort_by_key(|id| {
                Reverse(registry.minion(*id).map_or(0, |minion| minion.used_bytes))
            });
            for id in live.into_iter().take(excess) {
                registry.remove_location(block, id);
                self.queue_delete(id, block);
                summary.excess_deleted += 1;
            }
        }
        short.sort_by_key(|(counted, missing, need)| (*counted, Reverse(*missing), need.block));
        let mut source_load: HashMap<MinionId, usize> = HashMap::new();
        let mut target_load: HashMap<MinionId, usize> = HashMap::new();
        for flight in self.in_flight.values() {
            *source_load.entry(flight.source).or_default() += 1;
            for target in &flight.targets {
                *target_load.entry(*target).or_default() += 1;
            }
        }
        for (_, missing, need) in short {
            let holders: Vec<MinionId> = registry.holders(need.block).to_vec();
            let source = holders
                .iter()
                .copied()
                .filter(|id| registry.state_of(*id, now) == Some(MinionState::Live))
                .filter(|id| {
                    source_load.get(id).copied().unwrap_or(0) < REPLICATIONS_PER_SOURCE_MAX
                })
                .min_by_key(|id| (source_load.get(id).copied().unwrap_or(0), *id));
            let Some(source) = source else {
                continue;
            };
            let mut excluded = holders.clone();
            excluded.extend(
                target_load
                    .iter()
                    .filter(|(_, load)| **load >= REPLICATIONS_PER_TARGET_MAX)
                    .map(|(id, _)| *id),
            );
            let candidates = registry.candidates(need.length_bytes, &excluded, now);
            if candidates.is_empty() {
                continue;
            }
            let targets = place(&candidates, missing, &mut random);
            *source_load.entry(source).or_default() += 1;
            for target in &targets {
                *target_load.entry(target.id).or_default() += 1;
            }
            self.in_flight.insert(
                need.block,
                InFlight {
                    source,
                    targets: targets.iter().map(|t| t.id).collect(),
                    deadline: now + self.replication_timeout,
                },
            );
            self.replications
                .entry(source)
                .or_default()
                .push_back(MinionCommand::Replicate {
                    block: need.block,
                    targets,
                });
            summary.replications_started += 1;
        }
        summary.in_flight = self.in_flight.len();
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Capacity, Liveness};
    use dfs_engine::msg::ClusterId;

    const STALE_AFTER: Duration = Duration::from_secs(10);
    const DEAD_AFTER: Duration = Duration::from_secs(60);

    fn cluster(minions: u64, start: Instant) -> Registry {
        let mut registry = Registry::new(
            ClusterId(1),
            Liveness {
                stale_after: STALE_AFTER,
                dead_after: DEAD_AFTER,
            },
        );
        for id in 1..=minions {
            registry
                .register(
                    MinionId(id),
                    None,
                    &format!("m{id}:1"),
                    Capacity {
                        capacity_bytes: 1 << 40,
                        // Minion 1 is the fullest, then 2, ...
                        used_bytes: (100 - id) << 30,
                        available_bytes: 1 << 39,
                    },
                    false,
                    start,
                )
                .expect("register");
        }
        registry
    }

    fn roomy() -> Capacity {
        Capacity {
            capacity_bytes: 1 << 40,
            used_bytes: 0,
            available_bytes: 1 << 39,
        }
    }

    fn target(block: u64, replication: u8) -> BlockTarget {
        BlockTarget {
            block: BlockId(block),
            replication,
            length_bytes: 1 << 20,
        }
    }

    fn counter() -> impl FnMut() -> u64 {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    fn healer() -> Healer {
        Healer::new(Duration::from_secs(30), Duration::from_secs(5))
    }

    fn replicated_blocks(commands: &[MinionCommand]) -> Vec<u64> {
        commands
            .iter()
            .filter_map(|c| match c {
                MinionCommand::Replicate { block, .. } => Some(block.0),
                MinionCommand::Delete { .. } => None,
            })
            .collect()
    }

    #[test]
    fn the_most_endangered_blocks_are_copied_first_within_the_source_bound() {
        let start = Instant::now();
        let mut registry = cluster(6, start);
        // Every block is on minion 1 (the only source), with other holders:
        // block 10 has 2 of 3, block 11 has 1 of 3, block 12 has 1 of 2,
        // block 13 has 3 of 3.
        let holders: [(u64, &[u64]); 4] = [(10, &[1, 2]), (11, &[1]), (12, &[1]), (13, &[1, 2, 3])];
        for (block, ids) in holders {
            for id in ids {
                registry.add_location(BlockId(block), MinionId(*id));
            }
        }
        let blocks = [target(10, 3), target(11, 3), target(12, 2), target(13, 3)];
        let mut healer = healer();
        let mut random = counter();
        let summary = healer.plan(start, &blocks, &mut registry, &mut random);
        assert_eq!(summary.under_replicated, 3);
        assert_eq!(summary.missing, 0);
        // Blocks 11 and 12 have one copy left: they go first (11 lacks more);
        // block 10 waits for minion 1 to have a free source slot... unless
        // minion 2 can serve it, which it can.
        let from_one = replicated_blocks(&healer.take_commands(MinionId(1)));
        assert_eq!(from_one, [11, 12]);
        let from_two = replicated_blocks(&healer.take_commands(MinionId(2)));
        assert_eq!(from_two, [10]);
        assert_eq!(summary.replications_started, 3);
        // Nothing is planned twice while in flight.
        let again = healer.plan(start, &blocks, &mut registry, &mut random);
        assert_eq!(again.replications_started, 0);
        assert_eq!(again.in_flight, 3);
    }

    #[test]
    fn targets_exclude_holders_and_respect_the_target_bound() {
        let start = Instant::now();
        let mut registry = cluster(4, start);
        let blocks: Vec<BlockTarget> = (0..6).map(|b| target(b, 3)).collect();
        for b in 0..6 {
            registry.add_location(BlockId(b), MinionId(1 + b % 2));
        }
        let mut healer = healer();
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        let mut received: HashMap<MinionId, usize> = HashMap::new();
        let mut sent: HashMap<MinionId, usize> = HashMap::new();
        for source in 1..=4 {
            for command in healer.take_commands(MinionId(source)) {
                let MinionCommand::Replicate { block, targets } = command else {
                    panic!("only copies expected");
                };
                *sent.entry(MinionId(source)).or_default() += 1;
                assert!(registry.holders(block).contains(&MinionId(source)));
                for t in targets {
                    assert!(
                        !registry.holders(block).contains(&t.id),
                        "{block} to a holder"
                    );
                    *received.entry(t.id).or_default() += 1;
                }
            }
        }
        assert!(
            sent.values().all(|n| *n <= REPLICATIONS_PER_SOURCE_MAX),
            "{sent:?}"
        );
        assert!(
            received.values().all(|n| *n <= REPLICATIONS_PER_TARGET_MAX),
            "{received:?}"
        );
        assert!(summary.replications_started > 0);
        assert_eq!(summary.under_replicated, 6);
    }

    #[test]
    fn dead_holders_do_not_count_and_stale_ones_do() {
        let start = Instant::now();
        let mut registry = cluster(5, start);
        for id in [1, 2, 3] {
            registry.add_location(BlockId(7), MinionId(id));
        }
        let blocks = [target(7, 3)];
        let later = start + STALE_AFTER + Duration::from_secs(1);
        // Keep 1 and 2 (and the spare minions 4, 5) beating; 3 goes quiet.
        for id in [1, 2, 4, 5] {
            registry
                .heartbeat(MinionId(id), roomy(), later)
                .expect("beat");
        }
        let mut healer = healer();
        let stale = healer.plan(later, &blocks, &mut registry, counter());
        assert_eq!(stale.under_replicated, 0, "a stale copy still counts");
        let much_later = start + DEAD_AFTER + Duration::from_secs(1);
        for id in [1, 2, 4, 5] {
            registry
                .heartbeat(MinionId(id), roomy(), much_later)
                .expect("beat");
        }
        let dead = healer.plan(much_later, &blocks, &mut registry, counter());
        assert_eq!(dead.under_replicated, 1);
        assert_eq!(dead.replications_started, 1);
        // The copy lands: the target's report ends the flight.
        let commands = healer.take_commands(MinionId(1));
        let commands = if commands.is_empty() {
            healer.take_commands(MinionId(2))
        } else {
            commands
        };
        let Some(MinionCommand::Replicate { targets, .. }) = commands.first() else {
            panic!("a copy was planned: {commands:?}");
        };
        assert_eq!(targets.len(), 1);
        assert!(healer.landed(BlockId(7), targets[0].id));
        assert!(healer.in_flight.is_empty());
        assert!(
            !healer.landed(BlockId(7), targets[0].id),
            "a duplicate report"
        );
    }

    #[test]
    fn copies_that_never_land_are_planned_again_after_the_timeout() {
        let start = Instant::now();
        let mut registry = cluster(3, start);
        registry.add_location(BlockId(1), MinionId(1));
        let blocks = [target(1, 2)];
        let mut healer = healer();
        assert_eq!(
            healer
                .plan(start, &blocks, &mut registry, counter())
                .replications_started,
            1
        );
        let _ = healer.take_commands(MinionId(1));
        let before = start + Duration::from_secs(29);
        assert_eq!(
            healer
                .plan(before, &blocks, &mut registry, counter())
                .replications_started,
            0
        );
        let after = start + Duration::from_secs(31);
        for id in 1..=3 {
            registry
                .heartbeat(MinionId(id), roomy(), after)
                .expect("beat");
        }
        assert_eq!(
            healer
                .plan(after, &blocks, &mut registry, counter())
                .replications_started,
            1
        );
    }

    #[test]
    fn surplus_replicas_go_from_the_fullest_minions() {
        let start = Instant::now();
        let mut registry = cluster(5, start);
        for id in 1..=5 {
            registry.add_location(BlockId(3), MinionId(id));
        }
        let blocks = [target(3, 3)];
        let mut healer = healer();
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!(summary.excess_deleted, 2);
        // Minions 1 and 2 use the most space.
        for id in [1, 2] {
            assert_eq!(
                healer.take_commands(MinionId(id)),
                [MinionCommand::Delete {
                    blocks: vec![BlockId(3)]
                }]
            );
        }
        assert_eq!(
            registry.holders(BlockId(3)),
            [MinionId(3), MinionId(4), MinionId(5)]
        );
        let again = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!(again.excess_deleted, 0);
    }

    #[test]
    fn orphans_wait_for_the_grace_period_and_a_second_look() {
        let start = Instant::now();
        let mut healer = healer();
        healer.note_unreferenced(MinionId(1), BlockId(1), start);
        healer.note_unreferenced(MinionId(1), BlockId(2), start);
        // Seen again later: the first sighting counts.
        healer.note_unreferenced(MinionId(1), BlockId(1), start + Duration::from_secs(3));
        assert_eq!(
            healer.collect_orphans(start + Duration::from_secs(4), |_| false),
            0
        );
        // Block 2 became referenced meanwhile (a commit arrived): kept.
        let queued = healer.collect_orphans(start + Duration::from_secs(5), |b| b == BlockId(2));
        assert_eq!(queued, 1);
        assert_eq!(
            healer.take_commands(MinionId(1)),
            [MinionCommand::Delete {
                blocks: vec![BlockId(1)]
            }]
        );
        assert!(healer.orphan_candidates.is_empty());
    }

    #[test]
    fn heartbeat_answers_are_bounded() {
        let mut healer = healer();
        let count = (HEARTBEAT_COMMANDS_MAX + 3) * DELETE_BLOCKS_PER_COMMAND_MAX;
        for block in 0..count as u64 {
            healer.queue_delete(MinionId(1), BlockId(block));
        }
        let first = healer.take_commands(MinionId(1));
        assert_eq!(first.len(), HEARTBEAT_COMMANDS_MAX);
        let mut deleted = 0;
        for command in first {
            let MinionCommand::Delete { blocks } = command else {
                panic!("deletes only");
            };
            assert!(blocks.len() <= DELETE_BLOCKS_PER_COMMAND_MAX);
            deleted += blocks.len();
        }
        let rest = healer.take_commands(MinionId(1));
        assert_eq!(rest.len(), 3);
        assert_eq!(
            deleted,
            HEARTBEAT_COMMANDS_MAX * DELETE_BLOCKS_PER_COMMAND_MAX
        );
        assert!(healer.take_commands(MinionId(1)).is_empty());
    }

    #[test]
    fn freed_blocks_are_deleted_from_every_holder_and_leave_the_flight() {
        let start = Instant::now();
        let mut registry = cluster(3, start);
        registry.add_location(BlockId(4), MinionId(1));
        let mut healer = healer();
        healer.plan(start, &[target(4, 2)], &mut registry, counter());
        let _ = healer.take_commands(MinionId(1));
        let holders = registry.forget_block(BlockId(4));
        healer.block_freed(BlockId(4), &holders);
        assert!(healer.in_flight.is_empty());
        assert_eq!(
            healer.take_commands(MinionId(1)),
            [MinionCommand::Delete {
                blocks: vec![BlockId(4)]
            }]
        );
    }
}
