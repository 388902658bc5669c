//! The minion registry and the block map: soft state, rebuilt from
//! registrations, heartbeats and block reports after a restart, and never
//! written to disk.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use dfs_engine::limits::{ADDRESS_BYTES_MAX, MINIONS_MAX};
use dfs_engine::msg::{
    BlockId, ClusterId, ErrorKind, MinionAddress, MinionId, MinionReport, MinionState, RemoteError,
};

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
}

impl Minion {
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

pub struct Registry {
    cluster: ClusterId,
    liveness: Liveness,
    minions: HashMap<MinionId, Minion>,
    /// Block -> minions holding it, in the order they became known.
    locations: HashMap<BlockId, Vec<MinionId>>,
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
        now: Instant,
    ) -> Result<(), RemoteError> {
        let minion = self.minions.get_mut(&id).ok_or_else(|| Self::unknown(id))?;
        minion.capacity_bytes = capacity.capacity_bytes;
        minion.used_bytes = capacity.used_bytes;
        minion.available_bytes = capacity.available_bytes;
        minion.last_heartbeat = now;
        Ok(())
    }

    /// Takes part of a block report; `first` forgets what was known before.
    /// Only blocks for which `known` is true are recorded; the others are
    /// returned (orphans, unless a write is about to commit them).
    pub fn block_report(
        &mut self,
        id: MinionId,
        blocks: &[BlockId],
        first: bool,
        known: impl Fn(BlockId) -> bool,
    ) -> Result<Vec<BlockId>, RemoteError> {
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
        let mut unknown = Vec::new();
        for &block in blocks {
            if known(block) {
                self.add_location(block, id);
            } else {
                unknown.push(block);
            }
        }
        Ok(unknown)
    }

    /// Records that `id` holds `block` (from a commit or a report).
    pub fn add_location(&mut self, block: BlockId, id: MinionId) -> bool {
        let Some(minion) = self.minions.get_mut(&id) else {
            return false;
        };
        if minion.blocks.insert(block) {
            self.locations.entry(block).or_default().push(id);
        }
        true
    }

    /// Records that `id` no longer holds `block` (it was told to delete it).
    pub fn remove_location(&mut self, block: BlockId, id: MinionId) {
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
        let holders = self.locations.remove(&block).unwrap_or_default();
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
    }

    /// Where a block can be read: live minions first, then stale ones; dead
    /// minions are left out.
    pub fn locations(&self, block: BlockId, now: Instant) -> Vec<MinionAddress> {
        let mut found: Vec<(MinionState, MinionAddress)> = self
            .locations
            .get(&block)
            .into_iter()
            .flatten()
            .filter_map(|id| self.minions.get(id))
            .map(|m| (m.state(self.liveness, now), m.address()))
            .filter(|(state, _)| *state != MinionState::Dead)
            .collect();
        found.sort_by_key(|(state, _)| *state != MinionState::Live);
        found.into_iter().map(|(_, address)| address).collect()
    }

    pub fn is_registered(&self, id: MinionId) -> bool {
        self.minions.contains_key(&id)
    }

    /// Live minions that could take a block of `block_bytes`, except `excluded`.
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
            .filter(|m| !excluded.contains(&m.id))
            .filter(|m| m.available_bytes >= block_bytes)
            .collect();
        found.sort_by_key(|m| m.id);
        found
    }

    pub fn reports(&self, now: Instant) -> Vec<MinionReport> {
        let mut reports: Vec<MinionReport> = self
            .minions
            .values()
            .map(|m| MinionReport {
                id: m.id,
                address: m.address.clone(),
                state: m.state(self.liveness, now),
                capacity_bytes: m.capacity_bytes,
                used_bytes: m.used_bytes,
                available_bytes: m.available_bytes,
                block_count: m.blocks.len() as u64,
                last_heartbeat_age_ms: now.saturating_duration_since(m.last_heartbeat).as_millis()
                    as u64,
                failed_directories: Vec::new(),
            })
            .collect();
        reports.sort_by(|a, b| a.address.cmp(&b.address).then(a.id.cmp(&b.id)));
        reports
    }
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
            .heartbeat(MinionId(5), capacity(1), now)
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
        let unknown = r
            .block_report(MinionId(1), &[BlockId(2), BlockId(3)], true, |b| {
                b != BlockId(3)
            })
            .expect("report");
        assert_eq!(unknown, [BlockId(3)]);
        assert!(r.locations(BlockId(1), now).is_empty());
        assert_eq!(r.locations(BlockId(2), now).len(), 1);
        assert!(r.block_report(MinionId(4), &[], true, |_| true).is_err());
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
}
