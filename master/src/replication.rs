//! The replication monitor's state: which blocks to copy where, which
//! replicas to delete, and which reported replicas may be orphans. Soft
//! state like the registry (rebuilt from reports after a restart) and free
//! of threads and I/O: the service calls `plan` every heartbeat interval and
//! hands the queued commands out in heartbeat answers.
//!
//! A round looks at the blocks that needed work at the last one and at the
//! blocks the registry touched since (a replica came or went, was marked
//! corrupt, its minion changed state or started draining), never at every
//! block: its cost follows what changed, not the size of the namespace.
//!
//! Copies go minion to minion: the master only picks a healthy source and
//! targets, and bounds how many copies each minion serves and receives at
//! once, so re-replication never takes a minion's whole bandwidth from
//! clients.
//!
//! Replicas reported corrupt and replicas on minions being decommissioned
//! do not count towards a block's target. A corrupt replica is never a
//! source and is deleted once the block has its full replication without
//! it (never while it is all there is), or sooner when its minion is the
//! only one left that could take a good copy (a small cluster): then the
//! corrupt replica goes first and a good one is copied there once its
//! deletion is confirmed. A draining minion is the preferred source (it
//! serves no new writes), none of its replicas is deleted as a surplus,
//! and it is drained once every block it holds has its full replication on
//! live minions in service.
//!
//! Invariant: a deletion names one replica (block and generation), and
//! until the minion confirms it (`deleted`), the minion is never chosen as
//! a copy target for that block: a copy landing before the deletion would
//! be deleted with it. Unconfirmed deletions are sent again after a while.
//!
//! Invariant: only replicas on live minions whose full block report is in
//! decide a surplus, that a corrupt replica may go, or that a draining
//! minion is drained; a minion that came back and has not reported yet may
//! still list blocks it lost long ago.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use dfs_engine::limits::{
    DELETES_QUEUED_PER_MINION_MAX, DELETE_BLOCKS_PER_COMMAND_MAX, HEARTBEAT_COMMANDS_MAX,
    ORPHAN_CANDIDATES_MAX, ORPHAN_CANDIDATES_PER_MINION_MAX, REPLICATIONS_PER_SOURCE_MAX,
    REPLICATIONS_PER_TARGET_MAX,
};
use dfs_engine::msg::{
    BlockId, Generation, MinionCommand, MinionId, MinionState, ReplicaId, StoredBlock,
};

use crate::namespace::BlockTarget;
use crate::registry::{place, Registry, Replica};

/// A copy handed to a source minion, not yet seen landing everywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
struct InFlight {
    source: MinionId,
    /// Targets whose `Stored` report has not come yet.
    targets: Vec<MinionId>,
    started: Instant,
    deadline: Instant,
}

/// A deletion not yet confirmed by its minion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Unconfirmed {
    generation: Generation,
    /// When it was handed out, it is sent again at this time unless
    /// confirmed; None while it waits in the queue.
    resend_at: Option<Instant>,
}

/// What the last `plan` found, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanSummary {
    /// Blocks with fewer counted replicas (good, live or stale, in
    /// service) than their target (some in flight).
    pub under_replicated: usize,
    /// Blocks with no good replica on a minion that is not dead.
    pub missing: usize,
    /// Surplus replicas told to go.
    pub excess_deleted: usize,
    /// Corrupt replicas told to go (their blocks are fully replicated, or
    /// their minions are the only places left for a good copy).
    pub corrupt_deleted: usize,
    /// Minions being decommissioned that still hold blocks needed elsewhere.
    pub draining: usize,
    /// Blocks the next round looks at again (still needing work).
    pub watched: usize,
    /// Copies started by this plan.
    pub replications_started: usize,
    /// Copies under way after this plan.
    pub in_flight: usize,
}

pub struct Healer {
    /// Blocks that still needed work (short, in flight, with a corrupt or
    /// draining replica to see to) at the last plan.
    watch: HashSet<BlockId>,
    /// Replicate commands waiting for their source's next heartbeat.
    replications: HashMap<MinionId, VecDeque<MinionCommand>>,
    /// Replicas each minion should delete, waiting for its next heartbeat.
    deletes: HashMap<MinionId, BTreeSet<ReplicaId>>,
    /// Deletions queued or handed out that the minion has not confirmed,
    /// by minion and block: at most one per pair (a minion holds one
    /// replica of a block), bounded with `deletes`.
    unconfirmed: HashMap<(MinionId, BlockId), Unconfirmed>,
    in_flight: HashMap<BlockId, InFlight>,
    /// Reported replicas no file or write references (or not as those
    /// replicas), when they may be deleted, and what was reported.
    orphan_candidates: HashMap<(MinionId, ReplicaId), (Instant, StoredBlock)>,
    /// How many of `orphan_candidates` each minion reported (no zeros),
    /// bounded by `ORPHAN_CANDIDATES_PER_MINION_MAX`.
    orphans_per_minion: HashMap<MinionId, usize>,
    /// The minions holding a file of a block that is no replica the master
    /// counts (a candidate orphan, until its deletion is confirmed or it
    /// turns out referenced): no copy target for that block, since the
    /// file there would refuse the copy. Bounded with `orphan_candidates`.
    strays: HashMap<BlockId, BTreeSet<MinionId>>,
    replication_timeout: Duration,
    orphan_grace: Duration,
    /// Copies that landed on every target since start (`progress`).
    copies_done: u64,
    /// What the last `plan` found (`progress`).
    last_plan: PlanSummary,
}

impl Healer {
    pub fn new(replication_timeout: Duration, orphan_grace: Duration) -> Healer {
        Healer {
            watch: HashSet::new(),
            replications: HashMap::new(),
            deletes: HashMap::new(),
            unconfirmed: HashMap::new(),
            in_flight: HashMap::new(),
            orphan_candidates: HashMap::new(),
            orphans_per_minion: HashMap::new(),
            strays: HashMap::new(),
            replication_timeout,
            orphan_grace,
            copies_done: 0,
            last_plan: PlanSummary::default(),
        }
    }

    /// Tells `minion` to delete `replica` at its next heartbeat; until it
    /// confirms, it is no copy target for the block.
    pub fn queue_delete(&mut self, minion: MinionId, replica: ReplicaId) {
        let queued = self.deletes.entry(minion).or_default();
        if queued.len() >= DELETES_QUEUED_PER_MINION_MAX {
            // Dropped: the minion's next full report shows it again.
            tracing::debug!(%minion, %replica, "delete queue full; left for the next block report");
            return;
        }
        queued.insert(replica);
        self.unconfirmed.insert(
            (minion, replica.block),
            Unconfirmed {
                generation: replica.generation,
                resend_at: None,
            },
        );
    }

    /// True while `minion` has a deletion of a replica of `block` it has
    /// not confirmed.
    pub fn has_pending_delete(&self, minion: MinionId, block: BlockId) -> bool {
        self.unconfirmed.contains_key(&(minion, block))
    }

    /// `minion` says `replica` is gone from it: a deletion it was asked
    /// for is done (or it was not there).
    pub fn deleted(&mut self, minion: MinionId, replica: ReplicaId) {
        let key = (minion, replica.block);
        if self
            .unconfirmed
            .get(&key)
            .is_some_and(|pending| pending.generation == replica.generation)
        {
            self.unconfirmed.remove(&key);
        }
        if let Some(queued) = self.deletes.get_mut(&minion) {
            queued.remove(&replica);
            if queued.is_empty() {
                self.deletes.remove(&minion);
            }
        }
        self.forget_candidate(minion, replica);
        self.forget_stray(minion, replica.block);
    }

    /// Forgets a candidate orphan; what it was, if it was one.
    fn forget_candidate(
        &mut self,
        minion: MinionId,
        replica: ReplicaId,
    ) -> Option<(Instant, StoredBlock)> {
        let candidate = self.orphan_candidates.remove(&(minion, replica))?;
        match self.orphans_per_minion.get_mut(&minion) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                self.orphans_per_minion.remove(&minion);
            }
            None => unreachable!("a candidate orphan of {minion} was not counted"),
        }
        Some(candidate)
    }

    fn forget_stray(&mut self, minion: MinionId, block: BlockId) {
        if let Some(minions) = self.strays.get_mut(&block) {
            minions.remove(&minion);
            if minions.is_empty() {
                self.strays.remove(&block);
            }
        }
    }

    /// A replica no file references any more, durably: no copy of it is
    /// wanted; `holders` are told to delete it.
    pub fn block_freed(&mut self, replica: ReplicaId, holders: &[MinionId]) {
        self.in_flight.remove(&replica.block);
        for &holder in holders {
            self.queue_delete(holder, replica);
        }
    }

    /// The commands for `minion`'s heartbeat answer: copies first (they
    /// restore safety), then deletions, at most `HEARTBEAT_COMMANDS_MAX`.
    /// Deletions handed out are sent again at `now` plus the replication
    /// timeout unless confirmed by then.
    pub fn take_commands(&mut self, minion: MinionId, now: Instant) -> Vec<MinionCommand> {
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
        let resend_at = now + self.replication_timeout;
        if let Some(queued) = self.deletes.get_mut(&minion) {
            while commands.len() < HEARTBEAT_COMMANDS_MAX && !queued.is_empty() {
                let replicas: Vec<ReplicaId> = queued
                    .iter()
                    .copied()
                    .take(DELETE_BLOCKS_PER_COMMAND_MAX)
                    .collect();
                for replica in &replicas {
                    queued.remove(replica);
                    if let Some(pending) = self.unconfirmed.get_mut(&(minion, replica.block)) {
                        pending.resend_at = Some(resend_at);
                    }
                }
                commands.push(MinionCommand::Delete { replicas });
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
            self.copies_done += 1;
            return true;
        }
        false
    }

    /// `minion`'s replica of `block` was found corrupt: a copy from it
    /// cannot succeed (the copy reads through the CRC-checking reader), so
    /// one planned or under way is dropped and planned again from another
    /// source at the next round instead of after the timeout.
    pub fn source_is_corrupt(&mut self, block: BlockId, minion: MinionId) {
        if self
            .in_flight
            .get(&block)
            .is_some_and(|flight| flight.source == minion)
        {
            self.in_flight.remove(&block);
        }
        if let Some(queue) = self.replications.get_mut(&minion) {
            queue.retain(|command| {
                !matches!(command, MinionCommand::Replicate { replica, .. } if replica.block == block)
            });
            if queue.is_empty() {
                self.replications.remove(&minion);
            }
        }
    }

    /// `minion` reported `stored`, which nothing references (or not as
    /// this replica: another generation, length or CRC32C, when `mismatch`
    /// says so). An unknown one may still be committed by a write on its
    /// way, so it waits out the grace period; a mismatch never becomes a
    /// replica and goes at the next round.
    pub fn note_unreferenced(
        &mut self,
        minion: MinionId,
        stored: StoredBlock,
        mismatch: bool,
        now: Instant,
    ) {
        let key = (minion, stored.replica());
        if self.orphan_candidates.contains_key(&key) {
            return;
        }
        let reported = self.orphans_per_minion.get(&minion).copied().unwrap_or(0);
        if self.orphan_candidates.len() >= ORPHAN_CANDIDATES_MAX
            || reported >= ORPHAN_CANDIDATES_PER_MINION_MAX
        {
            return;
        }
        let due = if mismatch {
            now
        } else {
            now + self.orphan_grace
        };
        self.orphan_candidates.insert(key, (due, stored));
        self.orphans_per_minion.insert(minion, reported + 1);
        self.strays.entry(stored.block).or_default().insert(minion);
    }

    /// The candidates unreferenced for the whole grace period and still
    /// unreferenced now (`referenced` is asked again), forgotten here: the
    /// caller has them deleted once everything it applied is durable.
    pub fn collect_orphans(
        &mut self,
        now: Instant,
        referenced: impl Fn(&StoredBlock) -> bool,
    ) -> Vec<(MinionId, ReplicaId)> {
        let due: Vec<(MinionId, ReplicaId)> = self
            .orphan_candidates
            .iter()
            .filter(|(_, (due, _))| *due <= now)
            .map(|(key, _)| *key)
            .collect();
        let mut orphans = Vec::new();
        for key in due {
            if let Some((_, stored)) = self.forget_candidate(key.0, key.1) {
                if referenced(&stored) {
                    // A replica after all: its minion is a holder.
                    self.forget_stray(key.0, key.1.block);
                } else {
                    // A stray until its deletion is confirmed.
                    orphans.push(key);
                }
            }
        }
        orphans
    }

    /// Forgets copies whose source or a target still to land is dead or
    /// gone, or registered again since the copy was planned: the copy died
    /// with that minion's run and would otherwise hold its block until the
    /// timeout. A stale minion (stopped, swapping) may still finish it.
    fn forget_lost_copies(&mut self, registry: &Registry, now: Instant) {
        let lost = |id: MinionId, started: Instant| match registry.minion(id) {
            None => true,
            Some(minion) => {
                minion.registered_at > started
                    || minion.state(registry.liveness(), now) == MinionState::Dead
            }
        };
        self.in_flight.retain(|block, flight| {
            let kept = !lost(flight.source, flight.started)
                && !flight.targets.iter().any(|&id| lost(id, flight.started));
            if !kept {
                tracing::info!(
                    %block,
                    source = %flight.source,
                    "a copy under way was lost with a minion that died or restarted; planning it again"
                );
            }
            kept
        });
    }

    /// Forgets copies past their deadline, so the next plan picks the block
    /// again (with another source or targets if those were the trouble),
    /// and queues again deletions handed out and not confirmed in time.
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
        let mut again = Vec::new();
        for (&(minion, block), pending) in &mut self.unconfirmed {
            if pending.resend_at.is_some_and(|at| at <= now) {
                pending.resend_at = None;
                again.push((
                    minion,
                    ReplicaId {
                        block,
                        generation: pending.generation,
                    },
                ));
            }
        }
        for (minion, replica) in again {
            tracing::debug!(%minion, %replica, "deletion not confirmed in time; sending it again");
            self.deletes.entry(minion).or_default().insert(replica);
        }
    }

    /// The blocks the next plan should look at, in id order: those that
    /// needed work at the last one and those whose replicas changed since.
    pub fn blocks_to_plan(&mut self, registry: &mut Registry, now: Instant) -> Vec<BlockId> {
        registry.note_liveness(now);
        self.watch.extend(registry.take_touched());
        let mut blocks: Vec<BlockId> = self.watch.iter().copied().collect();
        blocks.sort();
        blocks
    }

    /// Minions that may not receive a copy of `block`: its holders, those
    /// with a deletion of it not yet confirmed, and those holding a stray
    /// file of it.
    fn not_targets(&self, registry: &Registry, block: BlockId) -> Vec<MinionId> {
        let mut excluded: Vec<MinionId> = registry.holders(block).to_vec();
        excluded.extend(self.strays.get(&block).into_iter().flatten().copied());
        excluded.extend(
            self.unconfirmed
                .keys()
                .filter(|(_, pending)| *pending == block)
                .map(|(minion, _)| *minion),
        );
        excluded
    }

    /// Looks at `blocks` (all that may need work, see `blocks_to_plan`):
    /// queues copies of under-replicated ones, most endangered first, within
    /// the per-minion bounds, deletions of surplus and of corrupt replicas,
    /// and finds which draining minions are drained. Those that still need
    /// work are looked at again next time. `random` drives placement.
    pub fn plan(
        &mut self,
        now: Instant,
        blocks: &[BlockTarget],
        registry: &mut Registry,
        mut random: impl FnMut() -> u64,
    ) -> PlanSummary {
        self.expire(now);
        self.forget_lost_copies(registry, now);
        let mut summary = PlanSummary::default();
        // (counted replicas, replicas short, block): most endangered first.
        let mut short: Vec<(usize, usize, BlockTarget)> = Vec::new();
        let mut surplus: Vec<(ReplicaId, usize, Vec<MinionId>)> = Vec::new();
        let mut corrupt: Vec<(ReplicaId, Vec<MinionId>)> = Vec::new();
        // Draining minions holding a block not yet fully replicated without them.
        let mut undrained: HashSet<MinionId> = HashSet::new();
        let mut watch: HashSet<BlockId> = HashSet::new();
        for need in blocks {
            let block = need.block();
            let replica = need.stored.replica();
            let target = usize::from(need.replication);
            let replicas = registry.replicas(block, now);
            let counted = replicas.iter().filter(|(_, r)| r.counts()).count();
            // Only live replicas on minions whose report is in decide that
            // a block has enough without a corrupt or draining copy, or
            // more than enough: a stale holder may be about to die, and a
            // minion that came back may list blocks it lost. Draining
            // minions' copies are not live replicas in service.
            let deciding: Vec<MinionId> = replicas
                .iter()
                .filter(|(_, r)| *r == Replica::Live)
                .map(|(id, _)| *id)
                .filter(|id| registry.minion(*id).is_some_and(|minion| minion.reported))
                .collect();
            let in_flight = self.in_flight.contains_key(&block);
            let has_corrupt = replicas.iter().any(|(_, r)| *r == Replica::Corrupt);
            let draining: Vec<MinionId> = replicas
                .iter()
                .filter(|(_, r)| matches!(r, Replica::Draining { .. }))
                .map(|(id, _)| *id)
                .collect();
            if counted < target || in_flight || (deciding.len() < target && has_corrupt) {
                watch.insert(block);
            }
            if deciding.len() < target {
                if !draining.is_empty() {
                    watch.insert(block);
                }
                undrained.extend(draining);
            } else if has_corrupt {
                // Also the copies on dead minions: they hear it if they return.
                corrupt.push((replica, registry.corrupt_holders(block)));
            }
            if counted < target {
                summary.under_replicated += 1;
                if !replicas.iter().any(|(_, r)| r.is_good()) {
                    summary.missing += 1;
                } else if !in_flight {
                    short.push((counted, target - counted, *need));
                }
                continue;
            }
            if deciding.len() > target && !in_flight {
                surplus.push((replica, target, deciding));
            }
        }
        for (replica, holders) in corrupt {
            for id in holders {
                tracing::info!(block = %replica.block, minion = %id, "deleting a corrupt replica: the block is fully replicated without it");
                self.delete_corrupt(registry, id, replica);
                summary.corrupt_deleted += 1;
            }
        }
        for (replica, target, mut live) in surplus {
            let excess = live.len() - target;
            // The fullest minions give up their copy.
            live.sort_by_key(|id| {
                Reverse(registry.minion(*id).map_or(0, |minion| minion.used_bytes))
            });
            for id in live.into_iter().take(excess) {
                registry.remove_location(replica.block, id);
                self.queue_delete(id, replica);
                summary.excess_deleted += 1;
            }
        }
        for id in registry.draining_minions() {
            let drained = !undrained.contains(&id);
            registry.set_drained(id, drained);
            if !drained {
                summary.draining += 1;
            }
        }
        short.sort_by_key(|(counted, missing, need)| (*counted, Reverse(*missing), need.block()));
        let mut source_load: HashMap<MinionId, usize> = HashMap::new();
        let mut target_load: HashMap<MinionId, usize> = HashMap::new();
        for flight in self.in_flight.values() {
            *source_load.entry(flight.source).or_default() += 1;
            for target in &flight.targets {
                *target_load.entry(*target).or_default() += 1;
            }
        }
        for (_, missing, need) in short {
            let block = need.block();
            let excluded = self.not_targets(registry, block);
            summary.corrupt_deleted += self.make_room(registry, &need, missing, &excluded, now);
            let replicas = registry.replicas(block, now);
            // Draining minions first: they take no new writes. Never a
            // corrupt replica: a copy is read through the CRC-checking
            // reader and would fail anyway.
            let source = replicas
                .iter()
                .filter_map(|(id, replica)| match replica {
                    Replica::Draining { live: true } => Some((0, *id)),
                    Replica::Live => Some((1, *id)),
                    _ => None,
                })
                .filter(|(_, id)| {
                    source_load.get(id).copied().unwrap_or(0) < REPLICATIONS_PER_SOURCE_MAX
                })
                .min_by_key(|(rank, id)| (*rank, source_load.get(id).copied().unwrap_or(0), *id))
                .map(|(_, id)| id);
            let Some(source) = source else {
                continue;
            };
            let mut excluded = excluded;
            excluded.extend(
                target_load
                    .iter()
                    .filter(|(_, load)| **load >= REPLICATIONS_PER_TARGET_MAX)
                    .map(|(id, _)| *id),
            );
            let candidates = registry.candidates(need.length_bytes(), &excluded, now);
            if candidates.is_empty() {
                continue;
            }
            let targets = place(&candidates, missing, &mut random);
            *source_load.entry(source).or_default() += 1;
            for target in &targets {
                *target_load.entry(target.id).or_default() += 1;
            }
            self.in_flight.insert(
                block,
                InFlight {
                    source,
                    targets: targets.iter().map(|t| t.id).collect(),
                    started: now,
                    deadline: now + self.replication_timeout,
                },
            );
            self.replications
                .entry(source)
                .or_default()
                .push_back(MinionCommand::Replicate {
                    replica: need.stored,
                    targets,
                });
            summary.replications_started += 1;
        }
        summary.in_flight = self.in_flight.len();
        summary.watched = watch.len();
        self.watch = watch;
        self.last_plan = summary;
        summary
    }

    /// Where healing stands, for the status page: copies waiting for their
    /// source's heartbeat, copies handed out and not landed everywhere yet,
    /// copies done since start, and the last plan's counts.
    pub(crate) fn progress(&self) -> crate::status::HealingProgress {
        let queued: usize = self.replications.values().map(VecDeque::len).sum();
        crate::status::HealingProgress {
            copies_queued: queued as u64,
            copies_in_flight: self.in_flight.len().saturating_sub(queued) as u64,
            copies_done: self.copies_done,
            under_replicated_blocks: self.last_plan.under_replicated as u64,
            missing_blocks: self.last_plan.missing as u64,
        }
    }

    /// Deletes `minion`'s corrupt replica: no longer a location, no longer
    /// marked (the replica is going), and the minion is no copy target for
    /// the block until it confirms.
    fn delete_corrupt(&mut self, registry: &mut Registry, minion: MinionId, replica: ReplicaId) {
        registry.remove_location(replica.block, minion);
        registry.clear_corrupt(replica.block, minion);
        self.queue_delete(minion, replica);
    }

    /// A block is `missing` replicas short, and fewer minions than that
    /// could take a copy (whatever their load): when some of those that
    /// cannot hold a corrupt replica of it (a small cluster), as many of
    /// those as needed delete theirs first, so that a good copy can be
    /// copied there once the deletion is confirmed. Never while no good
    /// replica is left to copy from. Returns how many were told.
    fn make_room(
        &mut self,
        registry: &mut Registry,
        need: &BlockTarget,
        missing: usize,
        excluded: &[MinionId],
        now: Instant,
    ) -> usize {
        let block = need.block();
        let possible = registry
            .candidates(need.length_bytes(), excluded, now)
            .len();
        if possible >= missing {
            return 0;
        }
        let good_source = registry.replicas(block, now).iter().any(|(_, replica)| {
            matches!(replica, Replica::Live | Replica::Draining { live: true })
        });
        if !good_source {
            return 0;
        }
        // Corrupt holders that could take a good copy once theirs is gone:
        // live, in service, reported.
        let ready: Vec<MinionId> = registry
            .corrupt_holders(block)
            .into_iter()
            .filter(|id| {
                registry.state_of(*id, now) == Some(dfs_engine::msg::MinionState::Live)
                    && !registry.is_draining(*id)
                    && registry.minion(*id).is_some_and(|minion| minion.reported)
            })
            .take(missing - possible)
            .collect();
        for &id in &ready {
            tracing::info!(%block, minion = %id, "deleting a corrupt replica first: its minion is the only place left for a good copy");
            self.delete_corrupt(registry, id, need.stored.replica());
        }
        ready.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Capacity, Liveness};
    use dfs_engine::msg::{ClusterId, MinionState};

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
            // Its (empty) block report is in: it may take new blocks.
            registry.finish_block_report(MinionId(id));
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

    /// The generation these tests give block `block`.
    fn generation(block: u64) -> Generation {
        Generation(block + 1000)
    }

    fn replica(block: u64) -> ReplicaId {
        ReplicaId {
            block: BlockId(block),
            generation: generation(block),
        }
    }

    fn target(block: u64, replication: u8) -> BlockTarget {
        BlockTarget {
            stored: StoredBlock {
                block: BlockId(block),
                generation: generation(block),
                length_bytes: 1 << 20,
                crc32c: 0,
            },
            replication,
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
                MinionCommand::Replicate { replica, .. } => Some(replica.block.0),
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
        let from_one = replicated_blocks(&healer.take_commands(MinionId(1), Instant::now()));
        assert_eq!(from_one, [11, 12]);
        let from_two = replicated_blocks(&healer.take_commands(MinionId(2), Instant::now()));
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
            for command in healer.take_commands(MinionId(source), Instant::now()) {
                let MinionCommand::Replicate { replica, targets } = command else {
                    panic!("only copies expected");
                };
                let block = replica.block;
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
                .heartbeat(MinionId(id), roomy(), Default::default(), later)
                .expect("beat");
        }
        let mut healer = healer();
        let stale = healer.plan(later, &blocks, &mut registry, counter());
        assert_eq!(stale.under_replicated, 0, "a stale copy still counts");
        let much_later = start + DEAD_AFTER + Duration::from_secs(1);
        for id in [1, 2, 4, 5] {
            registry
                .heartbeat(MinionId(id), roomy(), Default::default(), much_later)
                .expect("beat");
        }
        let dead = healer.plan(much_later, &blocks, &mut registry, counter());
        assert_eq!(dead.under_replicated, 1);
        assert_eq!(dead.replications_started, 1);
        // The copy lands: the target's report ends the flight.
        let commands = healer.take_commands(MinionId(1), Instant::now());
        let commands = if commands.is_empty() {
            healer.take_commands(MinionId(2), Instant::now())
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
        let _ = healer.take_commands(MinionId(1), Instant::now());
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
                .heartbeat(MinionId(id), roomy(), Default::default(), after)
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
                healer.take_commands(MinionId(id), Instant::now()),
                [MinionCommand::Delete {
                    replicas: vec![replica(3)]
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

    /// The single copy command `healer` queued for `source`, as (block, target ids).
    fn copy_from(healer: &mut Healer, source: u64) -> Option<(BlockId, Vec<u64>)> {
        let commands = healer.take_commands(MinionId(source), Instant::now());
        match commands.as_slice() {
            [] => None,
            [MinionCommand::Replicate { replica, targets }] => {
                Some((replica.block, targets.iter().map(|t| t.id.0).collect()))
            }
            other => panic!("one copy expected from {source}: {other:?}"),
        }
    }

    fn deletes(healer: &mut Healer, minion: u64) -> Vec<u64> {
        healer
            .take_commands(MinionId(minion), Instant::now())
            .into_iter()
            .flat_map(|command| match command {
                MinionCommand::Delete { replicas } => replicas
                    .into_iter()
                    .map(|r| r.block.0)
                    .collect::<Vec<u64>>(),
                MinionCommand::Replicate { .. } => panic!("deletes only"),
            })
            .collect()
    }

    #[test]
    fn a_corrupt_replica_is_replaced_from_a_good_one_then_deleted() {
        let start = Instant::now();
        let mut registry = cluster(5, start);
        for id in [1, 2, 3] {
            registry.add_location(BlockId(8), MinionId(id));
        }
        registry.mark_corrupt(BlockId(8), MinionId(1));
        let blocks = [target(8, 3)];
        let mut healer = healer();
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!(
            (
                summary.under_replicated,
                summary.missing,
                summary.corrupt_deleted
            ),
            (1, 0, 0)
        );
        assert_eq!(
            copy_from(&mut healer, 1),
            None,
            "never from the corrupt copy"
        );
        let (block, targets) = copy_from(&mut healer, 2)
            .or_else(|| copy_from(&mut healer, 3))
            .expect("a copy from a good replica");
        assert_eq!(block, BlockId(8));
        assert_eq!(targets.len(), 1);
        assert!(targets[0] == 4 || targets[0] == 5, "{targets:?}");
        assert!(deletes(&mut healer, 1).is_empty(), "kept until replaced");
        // The copy lands: three good replicas, so the bad one goes.
        registry.add_location(BlockId(8), MinionId(targets[0]));
        healer.landed(BlockId(8), MinionId(targets[0]));
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!((summary.under_replicated, summary.corrupt_deleted), (0, 1));
        assert_eq!(deletes(&mut healer, 1), [8]);
        assert!(!registry.holders(BlockId(8)).contains(&MinionId(1)));
        assert!(!registry.is_corrupt(BlockId(8), MinionId(1)));
        let again = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!(again, PlanSummary::default());
    }

    #[test]
    fn a_copy_from_a_replica_found_corrupt_is_planned_again_from_another() {
        let start = Instant::now();
        let mut registry = cluster(4, start);
        for id in [1, 2] {
            registry.add_location(BlockId(5), MinionId(id));
        }
        let blocks = [target(5, 3)];
        let mut healer = healer();
        healer.plan(start, &blocks, &mut registry, counter());
        let source = if healer.replications.contains_key(&MinionId(1)) {
            1
        } else {
            2
        };
        registry.mark_corrupt(BlockId(5), MinionId(source));
        healer.source_is_corrupt(BlockId(5), MinionId(source));
        assert!(healer
            .take_commands(MinionId(source), Instant::now())
            .is_empty());
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!(summary.replications_started, 1);
        let other = 3 - source;
        let (block, targets) = copy_from(&mut healer, other).expect("from the good replica");
        assert_eq!((block, targets.len()), (BlockId(5), 2));
    }

    #[test]
    fn when_every_replica_is_corrupt_nothing_is_copied_or_deleted() {
        let start = Instant::now();
        let mut registry = cluster(4, start);
        for id in [1, 2] {
            registry.add_location(BlockId(9), MinionId(id));
            registry.mark_corrupt(BlockId(9), MinionId(id));
        }
        let mut healer = healer();
        let summary = healer.plan(start, &[target(9, 2)], &mut registry, counter());
        assert_eq!(
            (
                summary.under_replicated,
                summary.missing,
                summary.corrupt_deleted
            ),
            (1, 1, 0)
        );
        assert_eq!(summary.replications_started, 0);
        for id in 1..=4 {
            assert!(healer
                .take_commands(MinionId(id), Instant::now())
                .is_empty());
        }
        assert_eq!(registry.holders(BlockId(9)), [MinionId(1), MinionId(2)]);
    }

    #[test]
    fn a_draining_minion_is_copied_from_first_keeps_its_copies_and_ends_drained() {
        let start = Instant::now();
        let mut registry = cluster(5, start);
        // Block 1 on 1, 2, 3; block 2 only on the draining minion 1.
        for id in [1, 2, 3] {
            registry.add_location(BlockId(1), MinionId(id));
        }
        registry.add_location(BlockId(2), MinionId(1));
        registry.set_draining(MinionId(1), true);
        let blocks = [target(1, 3), target(2, 2)];
        let mut healer = healer();
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!(
            (summary.under_replicated, summary.missing, summary.draining),
            (2, 0, 1)
        );
        // Both copies come from the draining minion (within its bound) and
        // go to minions in service that do not hold the block.
        let commands = healer.take_commands(MinionId(1), Instant::now());
        assert_eq!(commands.len(), REPLICATIONS_PER_SOURCE_MAX.min(2));
        for command in commands {
            let MinionCommand::Replicate { replica, targets } = command else {
                panic!("copies only");
            };
            let block = replica.block;
            let wanted = if block == BlockId(2) { 2 } else { 1 };
            assert_eq!(targets.len(), wanted, "{block}");
            for target in targets {
                assert_ne!(target.id, MinionId(1));
                assert!(!registry.holders(block).contains(&target.id));
                registry.add_location(block, target.id);
                healer.landed(block, target.id);
            }
        }
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!(summary.under_replicated, 0);
        assert_eq!(summary.excess_deleted, 0, "a draining copy is no surplus");
        assert_eq!(summary.draining, 0);
        assert!(deletes(&mut healer, 1).is_empty());
        assert_eq!(
            registry.reported_state(registry.minion(MinionId(1)).expect("known"), start),
            MinionState::Decommissioned
        );
        // Back in service: block 1 has four live copies and loses one.
        registry.set_draining(MinionId(1), false);
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!(summary.excess_deleted, 2, "one of block 1, one of block 2");
    }

    /// What `blocks_to_plan` gives, planned as the service does.
    fn round(
        healer: &mut Healer,
        registry: &mut Registry,
        targets: &[BlockTarget],
        now: Instant,
    ) -> (Vec<u64>, PlanSummary) {
        let looked: Vec<BlockId> = healer.blocks_to_plan(registry, now);
        let needs: Vec<BlockTarget> = targets
            .iter()
            .filter(|t| looked.contains(&t.block()))
            .copied()
            .collect();
        let summary = healer.plan(now, &needs, registry, counter());
        (looked.iter().map(|b| b.0).collect(), summary)
    }

    #[test]
    fn a_round_looks_only_at_blocks_that_changed_or_still_need_work() {
        let start = Instant::now();
        let mut registry = cluster(3, start);
        for block in 1..=3 {
            for id in [1, 2, 3] {
                registry.add_location(BlockId(block), MinionId(id));
            }
        }
        let targets = [target(1, 3), target(2, 3), target(3, 3)];
        let mut planner = healer();
        // Everything is new at first; then nothing changed.
        let (looked, summary) = round(&mut planner, &mut registry, &targets, start);
        assert_eq!((looked, summary.watched), (vec![1, 2, 3], 0));
        let (looked, _) = round(&mut planner, &mut registry, &targets, start);
        assert!(looked.is_empty());
        // A corrupt replica: that block, until it has nowhere to be copied
        // to and stays short, so it is looked at every round.
        registry.mark_corrupt(BlockId(2), MinionId(1));
        let (looked, summary) = round(&mut planner, &mut registry, &targets, start);
        assert_eq!((looked, summary.under_replicated), (vec![2], 1));
        let (looked, _) = round(&mut planner, &mut registry, &targets, start);
        assert_eq!(looked, [2]);
        // Time makes minion 3 stale, then dead: its blocks are looked at
        // when its state changes.
        let later = start + STALE_AFTER + Duration::from_secs(1);
        for id in [1, 2] {
            registry
                .heartbeat(MinionId(id), roomy(), Default::default(), later)
                .expect("beat");
        }
        let (looked, summary) = round(&mut planner, &mut registry, &targets, later);
        assert_eq!((looked, summary.under_replicated), (vec![1, 2, 3], 1));
        let much_later = start + DEAD_AFTER + Duration::from_secs(1);
        for id in [1, 2] {
            registry
                .heartbeat(MinionId(id), roomy(), Default::default(), much_later)
                .expect("beat");
        }
        let (looked, summary) = round(&mut planner, &mut registry, &targets, much_later);
        assert_eq!((looked, summary.under_replicated), (vec![1, 2, 3], 3));
        assert_eq!(summary.watched, 3);
        // Draining a minion looks at its blocks.
        let mut registry = cluster(4, start);
        registry.add_location(BlockId(7), MinionId(4));
        let mut planner = healer();
        round(&mut planner, &mut registry, &[target(7, 1)], start);
        registry.set_draining(MinionId(4), true);
        let (looked, summary) = round(&mut planner, &mut registry, &[target(7, 1)], start);
        assert_eq!((looked, summary.replications_started), (vec![7], 1));
    }

    #[test]
    fn one_minion_fills_only_its_share_of_the_orphan_candidates() {
        let start = Instant::now();
        let mut healer = healer();
        let flood = ORPHAN_CANDIDATES_PER_MINION_MAX as u64 + 10;
        for block in 0..flood {
            healer.note_unreferenced(MinionId(1), target(block, 1).stored, true, start);
        }
        assert_eq!(
            healer.orphan_candidates.len(),
            ORPHAN_CANDIDATES_PER_MINION_MAX
        );
        // Another minion's are still watched.
        healer.note_unreferenced(MinionId(2), target(flood, 1).stored, true, start);
        assert_eq!(healer.orphans_per_minion.get(&MinionId(2)), Some(&1));
        // Once some are collected, the first may report more.
        let collected = healer.collect_orphans(start, |stored| stored.block.0 % 2 == 0);
        // The odd blocks; the even ones (minion 2's too) turned out referenced.
        assert_eq!(collected.len(), ORPHAN_CANDIDATES_PER_MINION_MAX / 2);
        assert!(healer.orphan_candidates.is_empty());
        assert!(healer.orphans_per_minion.is_empty());
        healer.note_unreferenced(MinionId(1), target(flood + 1, 1).stored, true, start);
        assert_eq!(healer.orphans_per_minion.get(&MinionId(1)), Some(&1));
    }

    #[test]
    fn orphans_wait_for_the_grace_period_and_a_second_look() {
        let start = Instant::now();
        let mut healer = healer();
        healer.note_unreferenced(MinionId(1), target(1, 1).stored, false, start);
        healer.note_unreferenced(MinionId(1), target(2, 1).stored, false, start);
        // Seen again later: the first sighting counts.
        healer.note_unreferenced(
            MinionId(1),
            target(1, 1).stored,
            false,
            start + Duration::from_secs(3),
        );
        assert_eq!(
            healer.collect_orphans(start + Duration::from_secs(4), |_| false),
            vec![]
        );
        // Block 2 became referenced meanwhile (a commit arrived): kept.
        let due = healer.collect_orphans(start + Duration::from_secs(5), |stored| {
            stored.block == BlockId(2)
        });
        assert_eq!(due, vec![(MinionId(1), replica(1))]);
        // The caller queues them once durable.
        assert!(healer.take_commands(MinionId(1), Instant::now()).is_empty());
        assert!(healer.orphan_candidates.is_empty());
    }

    #[test]
    fn heartbeat_answers_are_bounded() {
        let mut healer = healer();
        let count = (HEARTBEAT_COMMANDS_MAX + 3) * DELETE_BLOCKS_PER_COMMAND_MAX;
        for block in 0..count as u64 {
            healer.queue_delete(MinionId(1), replica(block));
        }
        let first = healer.take_commands(MinionId(1), Instant::now());
        assert_eq!(first.len(), HEARTBEAT_COMMANDS_MAX);
        let mut deleted = 0;
        for command in first {
            let MinionCommand::Delete { replicas } = command else {
                panic!("deletes only");
            };
            assert!(replicas.len() <= DELETE_BLOCKS_PER_COMMAND_MAX);
            deleted += replicas.len();
        }
        let rest = healer.take_commands(MinionId(1), Instant::now());
        assert_eq!(rest.len(), 3);
        assert_eq!(
            deleted,
            HEARTBEAT_COMMANDS_MAX * DELETE_BLOCKS_PER_COMMAND_MAX
        );
        assert!(healer.take_commands(MinionId(1), Instant::now()).is_empty());
    }

    #[test]
    fn freed_blocks_are_deleted_from_every_holder_and_leave_the_flight() {
        let start = Instant::now();
        let mut registry = cluster(3, start);
        registry.add_location(BlockId(4), MinionId(1));
        let mut healer = healer();
        healer.plan(start, &[target(4, 2)], &mut registry, counter());
        let _ = healer.take_commands(MinionId(1), Instant::now());
        let holders = registry.forget_block(BlockId(4));
        healer.block_freed(replica(4), &holders);
        assert!(healer.in_flight.is_empty());
        assert_eq!(
            healer.take_commands(MinionId(1), Instant::now()),
            [MinionCommand::Delete {
                replicas: vec![replica(4)]
            }]
        );
    }

    #[test]
    fn a_minion_whose_report_is_not_in_decides_no_surplus_and_no_corrupt_deletion() {
        let start = Instant::now();
        let mut registry = cluster(5, start);
        // Block 1 on 1, 2, 3 and 4; block 2 (target 2) on 4 and 5, and
        // corrupt on 1.
        for id in [1, 2, 3, 4] {
            registry.add_location(BlockId(1), MinionId(id));
        }
        for id in [1, 4, 5] {
            registry.add_location(BlockId(2), MinionId(id));
        }
        registry.mark_corrupt(BlockId(2), MinionId(1));
        // Minion 4 comes back: its old list stands until its report is in.
        registry
            .register(MinionId(4), None, "m4:1", roomy(), false, start)
            .expect("register again");
        let blocks = [target(1, 3), target(2, 2)];
        let mut healer = healer();
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!((summary.excess_deleted, summary.corrupt_deleted), (0, 0));
        for id in 1..=5 {
            assert!(deletes(&mut healer, id).is_empty(), "minion {id}");
        }
        // Its report: it lost both. Block 1 has its three, block 2 is short
        // and copied from 5; the corrupt replica stays until then.
        registry
            .block_report(MinionId(4), &[], true)
            .expect("report");
        registry.finish_block_report(MinionId(4));
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!(
            (
                summary.excess_deleted,
                summary.corrupt_deleted,
                summary.replications_started
            ),
            (0, 0, 1)
        );
        assert_eq!(
            copy_from(&mut healer, 5).map(|(block, _)| block),
            Some(BlockId(2))
        );
        assert!(deletes(&mut healer, 1).is_empty());
    }

    #[test]
    fn a_corrupt_replica_on_the_only_target_goes_first_and_the_copy_waits_for_its_confirmation() {
        let start = Instant::now();
        let mut registry = cluster(3, start);
        for id in [1, 2, 3] {
            registry.add_location(BlockId(6), MinionId(id));
        }
        registry.mark_corrupt(BlockId(6), MinionId(1));
        let blocks = [target(6, 3)];
        let mut healer = healer();
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!(
            (summary.corrupt_deleted, summary.replications_started),
            (1, 0)
        );
        assert_eq!(deletes(&mut healer, 1), [6]);
        // Until minion 1 confirms (this replica, not another generation),
        // no copy goes there: it would land before the deletion.
        healer.deleted(
            MinionId(1),
            ReplicaId {
                block: BlockId(6),
                generation: Generation(1),
            },
        );
        for _ in 0..3 {
            let summary = healer.plan(start, &blocks, &mut registry, counter());
            assert_eq!(summary.replications_started, 0);
            assert!(healer.has_pending_delete(MinionId(1), BlockId(6)));
        }
        healer.deleted(MinionId(1), replica(6));
        assert!(!healer.has_pending_delete(MinionId(1), BlockId(6)));
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!(summary.replications_started, 1);
        let copy = copy_from(&mut healer, 2).or_else(|| copy_from(&mut healer, 3));
        assert_eq!(copy, Some((BlockId(6), vec![1])));
    }

    #[test]
    fn a_copy_whose_minion_restarted_is_planned_again_at_once() {
        let start = Instant::now();
        let mut registry = cluster(4, start);
        for id in [1, 2] {
            registry.add_location(BlockId(7), MinionId(id));
        }
        let blocks = [target(7, 3)];
        let mut healer = healer();
        let summary = healer.plan(start, &blocks, &mut registry, counter());
        assert_eq!(summary.replications_started, 1);
        let (source, first) = [1, 2]
            .into_iter()
            .find_map(|id| copy_from(&mut healer, id).map(|copy| (id, copy)))
            .expect("a copy from 1 or 2");
        assert_eq!(first.0, BlockId(7));

        // Nothing new while the copy is under way.
        let later = start + Duration::from_secs(1);
        let summary = healer.plan(later, &blocks, &mut registry, counter());
        assert_eq!((summary.replications_started, summary.in_flight), (0, 1));

        // Its source restarts: the copy died with it, and is planned again
        // now rather than after the 30 s timeout.
        let restarted = start + Duration::from_secs(2);
        registry
            .register(
                MinionId(source),
                None,
                &format!("m{source}:1"),
                roomy(),
                false,
                restarted,
            )
            .expect("register again");
        registry
            .block_report(MinionId(source), &[BlockId(7)], true)
            .expect("report");
        registry.finish_block_report(MinionId(source));
        let summary = healer.plan(restarted, &blocks, &mut registry, counter());
        assert_eq!(summary.replications_started, 1);
    }
}
