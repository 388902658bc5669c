//! The minion registry and the block map: soft state, rebuilt from
//! registrations, heartbeats and block reports after a restart, and never
//! written to disk. Also what the master knows of each replica's health:
//! replicas reported corrupt (soft state too: a scrubber reports them
//! again) and the minions being decommissioned (mirrored from the
//! namespace, where that intent is logged).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use dfs_engine::limits::{
    ADDRESS_BYTES_MAX, CORRUPT_REPLICAS_MAX, FAILED_DIRECTORIES_PER_MINION_MAX,
    FAILED_DIRECTORY_TEXT_BYTES_MAX, MINIONS_MAX,
};
use dfs_engine::msg::{
    BlockId, ClusterId, ErrorKind, MinionAddress, MinionId, MinionReport, MinionState,
    MinionTraffic, RemoteError, StoredBlock, TrafficRates,
};

/// Reports of replicas of blocks not committed yet kept until their
/// commit; further ones are dropped (the replica shows up as a candidate
/// orphan, then in the minion's next full report).
pub const EARLY_REPORTS_MAX: usize = 65_536;

/// How the registry tells live from stale from dead.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    pub stale_after: Duration,
    pub dead_after: Duration,
}

#[derive(Clone, Debug)]
pub struct Minion {
    pub id: MinionId,
    pub address: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub last_heartbeat: Instant,
    /// Blocks this minion holds, as far as the master knows.
    pub blocks: BTreeSet<BlockId>,
    /// Data directories it took out of service ("directory: reason"),
    /// since it registered.
    pub failed_directories: Vec<String>,
    /// Its full block report since it registered is in. Only then is it
    /// chosen for new blocks: a block placed on it before could be
    /// committed before the report arrives, and the report, listed
    /// earlier, would drop that location.
    pub reported: bool,
    /// When it last registered: work it had in hand before (copies it
    /// sent or received) died with its previous run.
    pub registered_at: Instant,
    /// Its byte counters at its recent heartbeats, and when: the newest
    /// last, the first the newest one at least `RATE_WINDOW` old.
    pub traffic: VecDeque<(MinionTraffic, Instant)>,
    /// Its traffic over the last `RATE_WINDOW` or so.
    pub rates: TrafficRates,
}

impl Minion {
    /// Live, stale or dead, by its heartbeats alone.
    pub fn state(&self, liveness: Liveness, now: Instant) -> MinionState {
        let age = now.saturating_duration_since(self.last_heartbeat);
        if age < liveness.stale_after {
            MinionState::Live
        } else if age < liveness.dead_after {
            MinionState::Stale
        } else {
            MinionState::Dead
        }
    }

    pub fn address(&self) -> MinionAddress {
        MinionAddress {
            id: self.id,
            address: self.address.clone(),
        }
    }
}

/// What a minion says about itself when it registers or heartbeats.
#[derive(Clone, Copy, Debug, Default)]
pub struct Capacity {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
}

/// What one replica is worth, as the planner and fsck see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replica {
    /// On a live minion in service, not known to be corrupt.
    Live,
    /// On a stale minion in service, not known to be corrupt.
    Stale,
    /// On a live or stale minion being decommissioned, not known to be corrupt.
    Draining { live: bool },
    /// Reported corrupt, on a minion that is not dead.
    Corrupt,
    /// On a dead minion.
    Dead,
}

impl Replica {
    /// Counts towards the block's target (for the planner: stale copies too).
    pub fn counts(self) -> bool {
        matches!(self, Replica::Live | Replica::Stale)
    }

    /// Can be read (and copied from, when live).
    pub fn is_good(self) -> bool {
        matches!(
            self,
            Replica::Live | Replica::Stale | Replica::Draining { .. }
        )
    }
}

/// A block's replicas by kind, for fsck.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCounts {
    pub live: usize,
    pub stale: usize,
    pub draining: usize,
    pub corrupt: usize,
}

/// The answer to a report of a corrupt replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marked {
    New,
    Already,
    /// The minion is not known to hold the block.
    NotHeld,
    /// `CORRUPT_REPLICAS_MAX` replicas are marked already.
    Full,
}

pub struct Registry {
    cluster: ClusterId,
    liveness: Liveness,
    minions: HashMap<MinionId, Minion>,
    /// Block -> minions holding it, in the order they became known.
    locations: HashMap<BlockId, Vec<MinionId>>,
    /// Block -> minions whose replica was reported corrupt. Kept apart from
    /// `locations`: a full block report that still lists the replica does
    /// not make it good again; a fresh copy stored there does.
    corrupt: HashMap<BlockId, BTreeSet<MinionId>>,
    /// Marks in `corrupt`, bounded by `CORRUPT_REPLICAS_MAX`.
    corrupt_count: usize,
    /// Minions being decommissioned, and whether each is drained (every
    /// block it holds fully replicated elsewhere, as the last plan found).
    draining: HashMap<MinionId, bool>,
    /// Blocks whose replicas changed (a location came or went, a replica was
    /// marked or cleared, its minion changed state) since the planner last
    /// took them: the planner looks at these, not at every block. At most
    /// one entry per block the master knows.
    touched: HashSet<BlockId>,
    /// Each minion's liveness when `note_liveness` last looked.
    liveness_seen: HashMap<MinionId, MinionState>,
    /// Replicas reported before their block was committed (a minion's
    /// report can overtake the client's commit), by block: located at the
    /// commit if they match what it records. At most `EARLY_REPORTS_MAX`.
    early: HashMap<BlockId, Vec<(MinionId, StoredBlock)>>,
    early_count: usize,
}

fn refuse(kind: ErrorKind, message: String) -> RemoteError {
    RemoteError::new(kind, message)
}

impl Registry {
    pub fn new(cluster: ClusterId, liveness: Liveness) -> Registry {
        Registry {
            cluster,
            liveness,
            minions: HashMap::new(),
            locations: HashMap::new(),
            corrupt: HashMap::new(),
            corrupt_count: 0,
            draining: HashMap::new(),
            touched: HashSet::new(),
            liveness_seen: HashMap::new(),
            early: HashMap::new(),
            early_count: 0,
        }
    }

    /// Keeps the report of a replica of a block not committed yet, for its
    /// commit. False when too many are kept.
    pub fn note_early(&mut self, minion: MinionId, stored: StoredBlock) -> bool {
        if self.early_count >= EARLY_REPORTS_MAX {
            return false;
        }
        let reports = self.early.entry(stored.block).or_default();
        if !reports.iter().any(|(id, _)| *id == minion) {
            reports.push((minion, stored));
            self.early_count += 1;
        }
        true
    }

    /// The replicas of `block` reported before its commit (forgotten here).
    pub fn take_early(&mut self, block: BlockId) -> Vec<(MinionId, StoredBlock)> {
        let reports = self.early.remove(&block).unwrap_or_default();
        self.early_count -= reports.len();
        reports
    }

    /// The planner should look at `block` again.
    pub fn touch(&mut self, block: BlockId) {
        self.touched.insert(block);
    }

    fn touch_minion(&mut self, id: MinionId) {
        if let Some(minion) = self.minions.get(&id) {
            self.touched.extend(minion.blocks.iter().copied());
        }
    }

    /// The blocks touched since the last call.
    pub fn take_touched(&mut self) -> HashSet<BlockId> {
        std::mem::take(&mut self.touched)
    }

    /// Touches the blocks of every minion whose liveness changed (live,
    /// stale, dead) since the last call: time alone changes it.
    pub fn note_liveness(&mut self, now: Instant) {
        let mut changed = Vec::new();
        for minion in self.minions.values() {
            let state = minion.state(self.liveness, now);
            if self.liveness_seen.insert(minion.id, state) != Some(state) {
                changed.push(minion.id);
            }
        }
        let minions = &self.minions;
        self.liveness_seen.retain(|id, _| minions.contains_key(id));
        for id in changed {
            self.touch_minion(id);
        }
    }

    pub fn cluster(&self) -> ClusterId {
        self.cluster
    }

    pub fn liveness(&self) -> Liveness {
        self.liveness
    }

    /// A minion (re)joins. Refused: another cluster's minion, an id that a
    /// live minion at another address already has (unless `takeover`: the
    /// caller found that address no longer answers), a full registry.
    pub fn register(
        &mut self,
        id: MinionId,
        cluster: Option<ClusterId>,
        address: &str,
        capacity: Capacity,
        takeover: bool,
        now: Instant,
    ) -> Result<(), RemoteError> {
        if let Some(cluster) = cluster {
            if cluster != self.cluster {
                return Err(refuse(
                    ErrorKind::WrongCluster,
                    format!(
                        "minion {id} belongs to cluster {cluster}, this master runs cluster {}",
                        self.cluster
                    ),
                ));
            }
        }
        if address.is_empty() || address.len() > ADDRESS_BYTES_MAX || !address.contains(':') {
            return Err(refuse(
                ErrorKind::InvalidArgument,
                format!("minion {id}: invalid address {address:?}"),
            ));
        }
        if let Some(existing) = self.minions.get(&id) {
            let live = existing.state(self.liveness, now) == MinionState::Live;
            if live && existing.address != address && !takeover {
                return Err(refuse(
                    ErrorKind::DuplicateMinion,
                    format!(
                        "minion id {id} is already registered by a live minion at {}; refusing {address} (copied data directory?)",
                        existing.address
                    ),
                ));
            }
        }
        // A different minion that took over a dead one's address replaces it.
        let replaced: Vec<MinionId> = self
            .minions
            .values()
            .filter(|m| m.address == address && m.id != id)
            .map(|m| m.id)
            .collect();
        for old in replaced {
            self.forget(old);
        }
        if !self.minions.contains_key(&id) && self.minions.len() >= MINIONS_MAX {
            return Err(refuse(
                ErrorKind::Busy,
                format!("registry full ({MINIONS_MAX} minions)"),
            ));
        }
        let blocks = self
            .minions
            .remove(&id)
            .map(|m| m.blocks)
            .unwrap_or_default();
        self.minions.insert(
            id,
            Minion {
                id,
                address: address.to_string(),
                capacity_bytes: capacity.capacity_bytes,
                used_bytes: capacity.used_bytes,
                available_bytes: capacity.available_bytes,
                last_heartbeat: now,
                blocks,
                // A restarted minion says again what still fails.
                failed_directories: Vec::new(),
                reported: false,
                registered_at: now,
                traffic: VecDeque::new(),
                rates: TrafficRates::default(),
            },
        );
        Ok(())
    }

    fn unknown(id: MinionId) -> RemoteError {
        refuse(
            ErrorKind::UnknownMinion,
            format!("minion {id} is not registered"),
        )
    }

    /// The address a registered minion registered with.
    pub fn address_of(&self, id: MinionId) -> Option<String> {
        self.minions.get(&id).map(|m| m.address.clone())
    }

    pub fn heartbeat(
        &mut self,
        id: MinionId,
        capacity: Capacity,
        traffic: MinionTraffic,
        now: Instant,
    ) -> Result<(), RemoteError> {
        let minion = self.minions.get_mut(&id).ok_or_else(|| Self::unknown(id))?;
        minion.capacity_bytes = capacity.capacity_bytes;
        minion.used_bytes = capacity.used_bytes;
        minion.available_bytes = capacity.available_bytes;
        minion.last_heartbeat = now;
        let samples = &mut minion.traffic;
        if samples
            .back()
            .is_some_and(|(last, _)| went_back(last, &traffic))
        {
            // Counters start again with a restarted minion.
            samples.clear();
        }
        samples.push_back((traffic, now));
        while samples.len() > TRAFFIC_SAMPLES_MAX
            || samples
                .get(1)
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= RATE_WINDOW)
        {
            samples.pop_front();
        }
        minion.rates = match (samples.front(), samples.back()) {
            (Some(first), Some(last)) => rates_between(*first, *last),
            _ => TrafficRates::default(),
        };
        Ok(())
    }

    /// Takes part of a block report: `replicas` are the reported blocks the
    /// caller found to be replicas of referenced blocks; `first` forgets
    /// what was known of the minion before.
    pub fn block_report(
        &mut self,
        id: MinionId,
        replicas: &[BlockId],
        first: bool,
    ) -> Result<(), RemoteError> {
        if !self.minions.contains_key(&id) {
            return Err(Self::unknown(id));
        }
        if first {
            let old = self
                .minions
                .get_mut(&id)
                .map(|m| std::mem::take(&mut m.blocks))
                .unwrap_or_default();
            for block in old {
                self.remove_location(block, id);
            }
        }
        for &block in replicas {
            self.add_location(block, id);
        }
        Ok(())
    }

    /// Records that `id` holds `block` (from a commit or a report).
    pub fn add_location(&mut self, block: BlockId, id: MinionId) -> bool {
        let Some(minion) = self.minions.get_mut(&id) else {
            return false;
        };
        if minion.blocks.insert(block) {
            self.locations.entry(block).or_default().push(id);
            self.touched.insert(block);
        }
        true
    }

    /// Records that `id` no longer holds `block` (it was told to delete it).
    pub fn remove_location(&mut self, block: BlockId, id: MinionId) {
        self.touched.insert(block);
        if let Some(minion) = self.minions.get_mut(&id) {
            minion.blocks.remove(&block);
        }
        if let Some(holders) = self.locations.get_mut(&block) {
            holders.retain(|&m| m != id);
            if holders.is_empty() {
                self.locations.remove(&block);
            }
        }
    }

    /// Forgets a block everywhere (its file was deleted); returns the
    /// minions that held it, to be told to delete it.
    pub fn forget_block(&mut self, block: BlockId) -> Vec<MinionId> {
        if let Some(marked) = self.corrupt.remove(&block) {
            self.corrupt_count -= marked.len();
        }
        self.touched.remove(&block);
        let mut holders = self.locations.remove(&block).unwrap_or_default();
        for (minion, _) in self.take_early(block) {
            if !holders.contains(&minion) {
                holders.push(minion);
            }
        }
        for id in &holders {
            if let Some(minion) = self.minions.get_mut(id) {
                minion.blocks.remove(&block);
            }
        }
        holders
    }

    /// The minions known to hold `block`, in any state.
    pub fn holders(&self, block: BlockId) -> &[MinionId] {
        self.locations.get(&block).map_or(&[], Vec::as_slice)
    }

    pub fn minion(&self, id: MinionId) -> Option<&Minion> {
        self.minions.get(&id)
    }

    /// The state of a registered minion now.
    pub fn state_of(&self, id: MinionId, now: Instant) -> Option<MinionState> {
        self.minions.get(&id).map(|m| m.state(self.liveness, now))
    }

    fn forget(&mut self, id: MinionId) {
        if let Some(minion) = self.minions.remove(&id) {
            for block in minion.blocks {
                self.remove_location(block, id);
            }
        }
        self.corrupt_count -= drop_corrupt_marks(&mut self.corrupt, id, |_| false);
    }

    /// A minion's full block report ended: marks of corrupt replicas it no
    /// longer reported (it removed them itself) are forgotten, so a fresh
    /// copy there later starts clean.
    pub fn finish_block_report(&mut self, id: MinionId) {
        let Some(minion) = self.minions.get_mut(&id) else {
            return;
        };
        minion.reported = true;
        let held = &minion.blocks;
        self.corrupt_count -=
            drop_corrupt_marks(&mut self.corrupt, id, |block| held.contains(&block));
    }

    /// What `id`'s replica of `block` is worth now (`id` is assumed to
    /// hold it; an unregistered minion counts as dead).
    pub fn replica(&self, block: BlockId, id: MinionId, now: Instant) -> Replica {
        let Some(minion) = self.minions.get(&id) else {
            return Replica::Dead;
        };
        let state = minion.state(self.liveness, now);
        if state == MinionState::Dead {
            return Replica::Dead;
        }
        if self.is_corrupt(block, id) {
            return Replica::Corrupt;
        }
        if self.draining.contains_key(&id) {
            return Replica::Draining {
                live: state == MinionState::Live,
            };
        }
        if state == MinionState::Live {
            Replica::Live
        } else {
            Replica::Stale
        }
    }

    /// Every known replica of `block` with what it is worth.
    pub fn replicas(&self, block: BlockId, now: Instant) -> Vec<(MinionId, Replica)> {
        self.holders(block)
            .iter()
            .map(|&id| (id, self.replica(block, id, now)))
            .collect()
    }

    /// A block's replicas counted by kind (dead ones in none).
    pub fn replica_counts(&self, block: BlockId, now: Instant) -> ReplicaCounts {
        let mut counts = ReplicaCounts::default();
        for &id in self.holders(block) {
            match self.replica(block, id, now) {
                Replica::Live => counts.live += 1,
                Replica::Stale => counts.stale += 1,
                Replica::Draining { .. } => counts.draining += 1,
                Replica::Corrupt => counts.corrupt += 1,
                Replica::Dead => {}
            }
        }
        counts
    }

    /// Where a block can be read, best first: live minions in service,
    /// live minions being drained, then stale ones. Dead minions and
    /// corrupt replicas are left out, unless no good replica is left: then
    /// the corrupt ones are all there is to try.
    pub fn locations(&self, block: BlockId, now: Instant) -> Vec<MinionAddress> {
        let rank = |replica: Replica| match replica {
            Replica::Live => Some(0),
            Replica::Draining { live: true } => Some(1),
            Replica::Stale | Replica::Draining { live: false } => Some(2),
            Replica::Corrupt => Some(3),
            Replica::Dead => None,
        };
        let mut found: Vec<(u8, MinionAddress)> = self
            .holders(block)
            .iter()
            .filter_map(|&id| {
                let rank = rank(self.replica(block, id, now))?;
                Some((rank, self.minions.get(&id)?.address()))
            })
            .collect();
        found.sort_by_key(|(rank, _)| *rank);
        if found.iter().any(|(rank, _)| *rank < 3) {
            found.retain(|(rank, _)| *rank < 3);
        }
        found.into_iter().map(|(_, address)| address).collect()
    }

    pub fn is_corrupt(&self, block: BlockId, id: MinionId) -> bool {
        self.corrupt
            .get(&block)
            .is_some_and(|ids| ids.contains(&id))
    }

    /// Marks `id`'s replica of `block` corrupt: no longer handed out nor
    /// counted, and deleted once the block is fully replicated without it.
    pub fn mark_corrupt(&mut self, block: BlockId, id: MinionId) -> Marked {
        if !self.holders(block).contains(&id) {
            return Marked::NotHeld;
        }
        if self.is_corrupt(block, id) {
            return Marked::Already;
        }
        if self.corrupt_count >= CORRUPT_REPLICAS_MAX {
            return Marked::Full;
        }
        self.corrupt.entry(block).or_default().insert(id);
        self.corrupt_count += 1;
        self.touched.insert(block);
        Marked::New
    }

    /// Forgets a corrupt mark: the replica was deleted, or a fresh copy was
    /// sealed on that minion.
    pub fn clear_corrupt(&mut self, block: BlockId, id: MinionId) {
        if let Some(ids) = self.corrupt.get_mut(&block) {
            if ids.remove(&id) {
                self.corrupt_count -= 1;
                self.touched.insert(block);
            }
            if ids.is_empty() {
                self.corrupt.remove(&block);
            }
        }
    }

    /// The minions holding a replica of `block` marked corrupt.
    pub fn corrupt_holders(&self, block: BlockId) -> Vec<MinionId> {
        self.holders(block)
            .iter()
            .copied()
            .filter(|&id| self.is_corrupt(block, id))
            .collect()
    }

    /// Starts or ends the draining of `id` (registered or not: the intent
    /// outlives a minion's absence).
    pub fn set_draining(&mut self, id: MinionId, draining: bool) {
        let changed = if draining {
            !self.draining.contains_key(&id) && self.draining.insert(id, false).is_none()
        } else {
            self.draining.remove(&id).is_some()
        };
        if changed {
            self.touch_minion(id);
        }
    }

    pub fn is_draining(&self, id: MinionId) -> bool {
        self.draining.contains_key(&id)
    }

    /// The minions being decommissioned.
    pub fn draining_minions(&self) -> Vec<MinionId> {
        let mut ids: Vec<MinionId> = self.draining.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Records whether a draining minion is drained (a plan found it so).
    pub fn set_drained(&mut self, id: MinionId, drained: bool) {
        if let Some(state) = self.draining.get_mut(&id) {
            *state = drained;
        }
    }

    /// The state `dfs admin report` shows: a live minion being drained is
    /// decommissioning, or decommissioned once drained; otherwise its
    /// liveness.
    pub fn reported_state(&self, minion: &Minion, now: Instant) -> MinionState {
        let state = minion.state(self.liveness, now);
        match self.draining.get(&minion.id) {
            Some(false) if state == MinionState::Live => MinionState::Decommissioning,
            Some(true) if state == MinionState::Live => MinionState::Decommissioned,
            None if state == MinionState::Live && !minion.reported => MinionState::Joining,
            _ => state,
        }
    }

    /// Notes that a data directory of `id` failed; the same directory again
    /// replaces its note. Returns false when the notes are full (the
    /// failure is only logged then).
    pub fn directory_failed(
        &mut self,
        id: MinionId,
        directory: &str,
        reason: &str,
    ) -> Result<bool, RemoteError> {
        let minion = self.minions.get_mut(&id).ok_or_else(|| Self::unknown(id))?;
        let note = cut(
            &format!("{directory}: {reason}"),
            FAILED_DIRECTORY_TEXT_BYTES_MAX,
        );
        let prefix = format!("{directory}: ");
        if let Some(existing) = minion
            .failed_directories
            .iter_mut()
            .find(|existing| existing.starts_with(&prefix))
        {
            *existing = note;
            return Ok(true);
        }
        if minion.failed_directories.len() >= FAILED_DIRECTORIES_PER_MINION_MAX {
            return Ok(false);
        }
        minion.failed_directories.push(note);
        Ok(true)
    }

    pub fn is_registered(&self, id: MinionId) -> bool {
        self.minions.contains_key(&id)
    }

    /// Live minions in service, with their block report in, that could
    /// take a block of `block_bytes`, except `excluded`.
    pub fn candidates(
        &self,
        block_bytes: u64,
        excluded: &[MinionId],
        now: Instant,
    ) -> Vec<&Minion> {
        let mut found: Vec<&Minion> = self
            .minions
            .values()
            .filter(|m| m.state(self.liveness, now) == MinionState::Live)
            .filter(|m| m.reported)
            .filter(|m| !self.draining.contains_key(&m.id))
            .filter(|m| !excluded.contains(&m.id))
            .filter(|m| m.available_bytes >= block_bytes)
            .collect();
        found.sort_by_key(|m| m.id);
        found
    }

    /// Blocks with at least one known location.
    pub fn located_block_count(&self) -> usize {
        self.locations.len()
    }

    /// Blocks with at least one replica reported corrupt (status page).
    pub(crate) fn corrupt_block_count(&self) -> usize {
        self.corrupt.len()
    }

    /// Live minions whose full block report is in, and those whose is not.
    pub fn report_counts(&self, now: Instant) -> (usize, usize) {
        let live = self
            .minions
            .values()
            .filter(|m| m.state(self.liveness, now) == MinionState::Live);
        live.fold((0, 0), |(reported, joining), minion| {
            if minion.reported {
                (reported + 1, joining)
            } else {
                (reported, joining + 1)
            }
        })
    }

    /// The minions' byte counters at their last heartbeats, added up (a
    /// minion that restarted counts from 0 again).
    pub fn traffic_totals(&self) -> MinionTraffic {
        self.minions
            .values()
            .filter_map(|minion| minion.traffic.back())
            .fold(MinionTraffic::default(), |sum, (traffic, _)| {
                MinionTraffic {
                    read_bytes: sum.read_bytes.saturating_add(traffic.read_bytes),
                    written_bytes: sum.written_bytes.saturating_add(traffic.written_bytes),
                    forwarded_bytes: sum.forwarded_bytes.saturating_add(traffic.forwarded_bytes),
                    copied_bytes: sum.copied_bytes.saturating_add(traffic.copied_bytes),
                }
            })
    }

    pub fn reports(&self, now: Instant) -> Vec<MinionReport> {
        let mut reports: Vec<MinionReport> = self
            .minions
            .values()
            .map(|m| MinionReport {
                id: m.id,
                address: m.address.clone(),
                state: self.reported_state(m, now),
                capacity_bytes: m.capacity_bytes,
                used_bytes: m.used_bytes,
                available_bytes: m.available_bytes,
                block_count: m.blocks.len() as u64,
                last_heartbeat_age_ms: now.saturating_duration_since(m.last_heartbeat).as_millis()
                    as u64,
                failed_directories: m.failed_directories.clone(),
                rates: m.rates,
            })
            .collect();
        reports.sort_by(|a, b| a.address.cmp(&b.address).then(a.id.cmp(&b.id)));
        reports
    }
}

/// How far back a minion's rates look: long enough that a burst shows
/// for a while on the status page, short enough to follow the traffic.
const RATE_WINDOW: Duration = Duration::from_secs(2);
/// Heartbeats' counters kept per minion at most.
const TRAFFIC_SAMPLES_MAX: usize = 64;

/// True when a counter of `after` is below the same one of `before`.
fn went_back(before: &MinionTraffic, after: &MinionTraffic) -> bool {
    after.read_bytes < before.read_bytes
        || after.written_bytes < before.written_bytes
        || after.forwarded_bytes < before.forwarded_bytes
        || after.copied_bytes < before.copied_bytes
}

/// A minion's traffic between two heartbeats' counters, in bytes per
/// second: 0 for a counter that went back (the minion restarted) and over
/// no time.
fn rates_between(
    (before, then): (MinionTraffic, Instant),
    (after, now): (MinionTraffic, Instant),
) -> TrafficRates {
    let seconds = now.saturating_duration_since(then).as_secs_f64();
    let rate = |before: u64, after: u64| {
        if seconds <= 0.0 {
            return 0;
        }
        (after.saturating_sub(before) as f64 / seconds) as u64
    };
    TrafficRates {
        read_bytes_per_s: rate(before.read_bytes, after.read_bytes),
        written_bytes_per_s: rate(before.written_bytes, after.written_bytes),
        forwarded_bytes_per_s: rate(before.forwarded_bytes, after.forwarded_bytes),
        copied_bytes_per_s: rate(before.copied_bytes, after.copied_bytes),
    }
}

/// Forgets `id`'s marks in `corrupt` of blocks for which `keep` is false;
/// returns how many went.
fn drop_corrupt_marks(
    corrupt: &mut HashMap<BlockId, BTreeSet<MinionId>>,
    id: MinionId,
    keep: impl Fn(BlockId) -> bool,
) -> usize {
    let mut dropped = 0;
    corrupt.retain(|&block, ids| {
        if !keep(block) && ids.remove(&id) {
            dropped += 1;
        }
        !ids.is_empty()
    });
    dropped
}

/// `text` cut to at most `bytes_max` bytes, on a char boundary.
pub fn cut(text: &str, bytes_max: usize) -> String {
    let mut end = text.len().min(bytes_max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Picks up to `count` distinct minions, each draw weighted by available
/// space so that used space evens out; `random` yields uniform u64s.
pub fn place(
    candidates: &[&Minion],
    count: usize,
    mut random: impl FnMut() -> u64,
) -> Vec<MinionAddress> {
    let mut pool: Vec<&Minion> = candidates.to_vec();
    let mut chosen = Vec::with_capacity(count.min(pool.len()));
    while chosen.len() < count && !pool.is_empty() {
        // Weights in MiB (plus one so an empty-looking minion can still be
        // drawn) keep the sum far from overflow.
        let weights: Vec<u64> = pool.iter().map(|m| (m.available_bytes >> 20) + 1).collect();
        let total: u64 = weights.iter().sum();
        let mut point = random() % total;
        let mut index = 0;
        for (i, weight) in weights.iter().enumerate() {
            if point < *weight {
                index = i;
                break;
            }
            point -= weight;
        }
        chosen.push(pool.swap_remove(index).address());
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new(
            ClusterId(7),
            Liveness {
                stale_after: Duration::from_secs(10),
                dead_after: Duration::from_secs(60),
            },
        )
    }

    fn capacity(available_mib: u64) -> Capacity {
        Capacity {
            capacity_bytes: 100 << 30,
            used_bytes: 0,
            available_bytes: available_mib << 20,
        }
    }

    #[test]
    fn registration_rules() {
        let mut r = registry();
        let now = Instant::now();
        r.register(MinionId(1), None, "127.0.0.1:1", capacity(10), false, now)
            .expect("first start");
        r.register(
            MinionId(1),
            Some(ClusterId(7)),
            "127.0.0.1:1",
            capacity(10),
            false,
            now,
        )
        .expect("re-register");
        let wrong = r
            .register(
                MinionId(2),
                Some(ClusterId(8)),
                "127.0.0.1:2",
                capacity(10),
                false,
                now,
            )
            .expect_err("wrong cluster");
        assert_eq!(wrong.kind, ErrorKind::WrongCluster);
        let duplicate = r
            .register(
                MinionId(1),
                Some(ClusterId(7)),
                "127.0.0.1:9",
                capacity(10),
                false,
                now,
            )
            .expect_err("duplicate");
        assert_eq!(duplicate.kind, ErrorKind::DuplicateMinion);
        let bad = r
            .register(MinionId(3), None, "nonsense", capacity(1), false, now)
            .expect_err("address");
        assert_eq!(bad.kind, ErrorKind::InvalidArgument);
        let unknown = r
            .heartbeat(MinionId(5), capacity(1), Default::default(), now)
            .expect_err("unknown");
        assert_eq!(unknown.kind, ErrorKind::UnknownMinion);
        // Once the old holder of the id is dead, the id may move.
        let later = now + Duration::from_secs(120);
        r.register(
            MinionId(1),
            Some(ClusterId(7)),
            "127.0.0.1:9",
            capacity(10),
            false,
            later,
        )
        .expect("dead minion's id moves");
    }

    #[test]
    fn locations_prefer_live_and_skip_dead() {
        let mut r = registry();
        let start = Instant::now();
        r.register(MinionId(1), None, "a:1", capacity(1), false, start)
            .expect("register");
        r.register(MinionId(2), None, "b:1", capacity(1), false, start)
            .expect("register");
        let later = start + Duration::from_secs(20);
        r.register(MinionId(3), None, "c:1", capacity(1), false, later)
            .expect("register");
        for id in [1, 2, 3] {
            assert!(r.add_location(BlockId(9), MinionId(id)));
        }
        assert!(
            !r.add_location(BlockId(9), MinionId(99)),
            "unknown minions are ignored"
        );
        let found: Vec<u64> = r
            .locations(BlockId(9), later)
            .iter()
            .map(|m| m.id.0)
            .collect();
        assert_eq!(found, [3, 1, 2], "live first, then stale");
        let much_later = start + Duration::from_secs(65);
        let found: Vec<u64> = r
            .locations(BlockId(9), much_later)
            .iter()
            .map(|m| m.id.0)
            .collect();
        assert_eq!(found, [3], "dead minions are left out");
        r.forget_block(BlockId(9));
        assert!(r.locations(BlockId(9), later).is_empty());
    }

    #[test]
    fn block_report_replaces_what_was_known() {
        let mut r = registry();
        let now = Instant::now();
        r.register(MinionId(1), None, "a:1", capacity(1), false, now)
            .expect("register");
        r.add_location(BlockId(1), MinionId(1));
        r.block_report(MinionId(1), &[BlockId(2)], true)
            .expect("report");
        assert!(r.locations(BlockId(1), now).is_empty());
        assert_eq!(r.locations(BlockId(2), now).len(), 1);
        assert!(r.block_report(MinionId(4), &[], true).is_err());
    }

    #[test]
    fn early_reports_wait_for_their_commit_and_are_bounded() {
        let mut r = registry();
        let stored = |block: u64| StoredBlock {
            block: BlockId(block),
            generation: dfs_engine::msg::Generation(block + 1),
            length_bytes: 5,
            crc32c: 6,
        };
        assert!(r.note_early(MinionId(1), stored(1)));
        assert!(
            r.note_early(MinionId(1), stored(1)),
            "a repeat is kept once"
        );
        assert!(r.note_early(MinionId(2), stored(1)));
        assert_eq!(
            r.take_early(BlockId(1)),
            vec![(MinionId(1), stored(1)), (MinionId(2), stored(1))]
        );
        assert_eq!(r.take_early(BlockId(1)), vec![]);
        for block in 0..EARLY_REPORTS_MAX as u64 {
            assert!(r.note_early(MinionId(1), stored(block)));
        }
        assert!(!r.note_early(MinionId(2), stored(0)), "over the bound");
        // A freed block's early reporters are told to delete it too.
        r.register(MinionId(1), None, "a:1", capacity(1), false, Instant::now())
            .expect("register");
        assert_eq!(r.forget_block(BlockId(3)), vec![MinionId(1)]);
        assert!(r.note_early(MinionId(2), stored(0)), "room again");
    }

    fn addresses(found: &[MinionAddress]) -> Vec<u64> {
        found.iter().map(|m| m.id.0).collect()
    }

    #[test]
    fn corrupt_replicas_are_handed_out_only_when_nothing_else_is_left() {
        let mut r = registry();
        let now = Instant::now();
        for (id, address) in [(1, "a:1"), (2, "b:1"), (3, "c:1"), (4, "d:1")] {
            r.register(MinionId(id), None, address, capacity(1), false, now)
                .expect("register");
            assert!(r.add_location(BlockId(5), MinionId(id)));
        }
        r.set_draining(MinionId(2), true);
        assert_eq!(r.mark_corrupt(BlockId(5), MinionId(3)), Marked::New);
        assert_eq!(r.mark_corrupt(BlockId(5), MinionId(3)), Marked::Already);
        assert_eq!(r.mark_corrupt(BlockId(6), MinionId(3)), Marked::NotHeld);
        // In service first, then draining; the corrupt copy is left out.
        assert_eq!(addresses(&r.locations(BlockId(5), now)), [1, 4, 2]);
        assert_eq!(
            r.replica_counts(BlockId(5), now),
            ReplicaCounts {
                live: 2,
                stale: 0,
                draining: 1,
                corrupt: 1
            }
        );
        for id in [1, 2, 4] {
            r.mark_corrupt(BlockId(5), MinionId(id));
        }
        assert_eq!(
            addresses(&r.locations(BlockId(5), now)).len(),
            4,
            "all corrupt: all of them, rather than nothing to try"
        );
        // A fresh copy stored on a minion clears its mark; deleting the
        // block clears them all.
        r.clear_corrupt(BlockId(5), MinionId(1));
        assert_eq!(addresses(&r.locations(BlockId(5), now)), [1]);
        r.forget_block(BlockId(5));
        assert_eq!(r.corrupt_count, 0);
        assert!(r.corrupt.is_empty());
    }

    #[test]
    fn corrupt_marks_are_bounded_and_end_with_the_replica() {
        let mut r = registry();
        let now = Instant::now();
        r.register(MinionId(1), None, "a:1", capacity(1), false, now)
            .expect("register");
        for block in 0..=CORRUPT_REPLICAS_MAX as u64 {
            r.add_location(BlockId(block), MinionId(1));
        }
        for block in 0..CORRUPT_REPLICAS_MAX as u64 {
            assert_eq!(r.mark_corrupt(BlockId(block), MinionId(1)), Marked::New);
        }
        let over = BlockId(CORRUPT_REPLICAS_MAX as u64);
        assert_eq!(r.mark_corrupt(over, MinionId(1)), Marked::Full);
        // A full report that no longer lists a block (the minion removed
        // its copy) forgets that mark.
        r.block_report(MinionId(1), &[BlockId(0), over], true)
            .expect("report");
        r.finish_block_report(MinionId(1));
        assert_eq!(r.corrupt_count, 1);
        assert!(
            r.is_corrupt(BlockId(0), MinionId(1)),
            "still reported, still bad"
        );
        assert_eq!(r.mark_corrupt(over, MinionId(1)), Marked::New);
    }

    #[test]
    fn draining_minions_take_no_new_blocks_and_report_their_progress() {
        let mut r = registry();
        let now = Instant::now();
        for (id, address) in [(1, "a:1"), (2, "b:1")] {
            r.register(MinionId(id), None, address, capacity(10), false, now)
                .expect("register");
            r.finish_block_report(MinionId(id));
        }
        // The intent may come before the minion registers (a restart).
        r.set_draining(MinionId(1), true);
        r.set_draining(MinionId(9), true);
        assert_eq!(r.draining_minions(), [MinionId(1), MinionId(9)]);
        let candidates: Vec<MinionId> = r.candidates(1, &[], now).iter().map(|m| m.id).collect();
        assert_eq!(candidates, [MinionId(2)]);
        let state = |r: &Registry, id| {
            r.reports(now)
                .into_iter()
                .find(|m| m.id == MinionId(id))
                .map(|m| m.state)
        };
        assert_eq!(state(&r, 1), Some(MinionState::Decommissioning));
        r.set_drained(MinionId(1), true);
        assert_eq!(state(&r, 1), Some(MinionState::Decommissioned));
        // A dead draining minion shows as dead.
        let later = now + Duration::from_secs(61);
        assert_eq!(
            r.reported_state(r.minion(MinionId(1)).expect("known"), later),
            MinionState::Dead
        );
        r.set_draining(MinionId(1), false);
        assert_eq!(state(&r, 1), Some(MinionState::Live));
        assert_eq!(r.candidates(1, &[], now).len(), 2);
    }

    #[test]
    fn failed_directories_are_noted_once_each_and_bounded() {
        let mut r = registry();
        let now = Instant::now();
        r.register(MinionId(1), None, "a:1", capacity(1), false, now)
            .expect("register");
        assert!(r
            .directory_failed(MinionId(1), "/d0", "Input/output error")
            .expect("known"));
        assert!(r
            .directory_failed(MinionId(1), "/d0", "gone")
            .expect("known"));
        let long = "x".repeat(1000);
        assert!(r
            .directory_failed(MinionId(1), "/d1", &long)
            .expect("known"));
        for index in 2..FAILED_DIRECTORIES_PER_MINION_MAX {
            assert!(r
                .directory_failed(MinionId(1), &format!("/d{index}"), "bad")
                .expect("known"));
        }
        assert!(!r
            .directory_failed(MinionId(1), "/more", "bad")
            .expect("known"));
        let notes = r.reports(now).remove(0).failed_directories;
        assert_eq!(notes.len(), FAILED_DIRECTORIES_PER_MINION_MAX);
        assert_eq!(notes[0], "/d0: gone");
        assert_eq!(notes[1].len(), FAILED_DIRECTORY_TEXT_BYTES_MAX);
        let unknown = r
            .directory_failed(MinionId(2), "/d", "bad")
            .expect_err("unknown minion");
        assert_eq!(unknown.kind, ErrorKind::UnknownMinion);
        // A restarted minion starts with a clean slate.
        r.register(MinionId(1), None, "a:1", capacity(1), false, now)
            .expect("register again");
        assert!(r.reports(now)[0].failed_directories.is_empty());
    }

    #[test]
    fn a_minion_takes_new_blocks_only_once_its_block_report_is_in() {
        let now = Instant::now();
        let mut r = registry();
        r.register(MinionId(1), None, "a:1", capacity(10), false, now)
            .expect("register");
        assert!(
            r.candidates(1, &[], now).is_empty(),
            "registered, no report yet"
        );
        r.block_report(MinionId(1), &[], true).expect("report");
        assert!(
            r.candidates(1, &[], now).is_empty(),
            "a report not finished"
        );
        r.finish_block_report(MinionId(1));
        assert_eq!(r.candidates(1, &[], now).len(), 1);
        let joined = r.minion(MinionId(1)).expect("known");
        assert_eq!(r.reported_state(joined, now), MinionState::Live);
        // Registering again (a restart) waits for the next report.
        r.register(MinionId(1), None, "a:1", capacity(10), false, now)
            .expect("register again");
        assert!(r.candidates(1, &[], now).is_empty());
    }

    #[test]
    fn placement_is_distinct_and_weighted() {
        let mut r = registry();
        let now = Instant::now();
        r.register(MinionId(1), None, "a:1", capacity(1000), false, now)
            .expect("register");
        r.register(MinionId(2), None, "b:1", capacity(10), false, now)
            .expect("register");
        r.register(MinionId(3), None, "c:1", capacity(0), false, now)
            .expect("register");
        for id in 1..=3 {
            r.finish_block_report(MinionId(id));
        }
        let candidates = r.candidates(1 << 20, &[], now);
        assert_eq!(candidates.len(), 2, "a full minion is not a candidate");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut first_is_big = 0;
        for _ in 0..1000 {
            let chosen = place(&candidates, 3, &mut random);
            assert_eq!(chosen.len(), 2);
            assert_ne!(chosen[0].id, chosen[1].id);
            if chosen[0].id == MinionId(1) {
                first_is_big += 1;
            }
        }
        assert!(
            first_is_big > 900,
            "the emptier minion is drawn first most often: {first_is_big}"
        );
        let excluded = r.candidates(1 << 20, &[MinionId(1)], now);
        assert_eq!(excluded.len(), 1);
    }

    #[test]
    fn rates_are_the_counters_growth_over_the_time_between_heartbeats() {
        let then = Instant::now();
        let before = MinionTraffic {
            read_bytes: 100,
            written_bytes: 1_000,
            forwarded_bytes: 0,
            copied_bytes: 50,
        };
        let after = MinionTraffic {
            read_bytes: 100 + 2_000,
            written_bytes: 1_000 + 4_000,
            forwarded_bytes: 0,
            copied_bytes: 10,
        };
        let rates = rates_between((before, then), (after, then + Duration::from_secs(2)));
        assert_eq!(
            rates,
            TrafficRates {
                read_bytes_per_s: 1_000,
                written_bytes_per_s: 2_000,
                forwarded_bytes_per_s: 0,
                // A counter that went back: the minion restarted.
                copied_bytes_per_s: 0,
            }
        );
        assert_eq!(
            rates_between((before, then), (after, then)),
            TrafficRates::default(),
            "no time, no rate"
        );
    }

    #[test]
    fn rates_look_back_over_the_window_and_start_again_after_a_restart() {
        let mut registry = registry();
        let start = Instant::now();
        registry
            .register(MinionId(5), None, "h:1", capacity(1), false, start)
            .expect("register");
        let beat = |registry: &mut Registry, read_bytes: u64, ms: u64| {
            let traffic = MinionTraffic {
                read_bytes,
                ..MinionTraffic::default()
            };
            let at = start + Duration::from_millis(ms);
            registry
                .heartbeat(MinionId(5), capacity(1), traffic, at)
                .expect("heartbeat");
            registry.reports(at)[0].rates.read_bytes_per_s
        };
        assert_eq!(beat(&mut registry, 0, 0), 0, "one sample, no rate");
        assert_eq!(beat(&mut registry, 1_000, 500), 2_000);
        // A burst stays in the rate for the window, then leaves it.
        assert_eq!(beat(&mut registry, 1_000, 1_000), 1_000);
        assert_eq!(beat(&mut registry, 1_000, 2_000), 500);
        assert_eq!(beat(&mut registry, 1_000, 2_500), 0);
        // A restarted minion's counters begin again: no rate from before.
        assert_eq!(beat(&mut registry, 10, 3_000), 0);
        assert_eq!(beat(&mut registry, 110, 3_100), 1_000);
        let samples = registry.minion(MinionId(5)).expect("known").traffic.len();
        assert!(samples <= TRAFFIC_SAMPLES_MAX);
    }
}
