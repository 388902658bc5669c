//! Deletions that wait for durability. An op that frees blocks (a delete, an
//! overwrite, a rename over a file, an abort) changes the namespace at once,
//! but the replicas it freed may only be deleted on minions once the op is
//! durable: a crash before that brings the file back, and its blocks must
//! still be there. Orphans found by the replication monitor wait the same
//! way, for every op applied when they were judged unreferenced. With a
//! consensus log, "durable" becomes "committed"; nothing else changes.
//!
//! Pure: the service pushes what an op freed with the op's sequence, and
//! takes what is released whenever the journal's durable sequence moves.

use std::collections::VecDeque;

use dfs_engine::msg::{MinionId, ReplicaId};

/// What waits for a sequence to be durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freed {
    /// A replica no file references: every holder deletes it.
    Block(ReplicaId),
    /// A replica one minion reported that nothing references.
    Orphan(MinionId, ReplicaId),
}

/// Freed replicas in the order of the sequences they wait for.
#[derive(Debug, Default)]
pub struct DurableGate {
    /// (sequence, what it freed), sequences never decreasing.
    waiting: VecDeque<(u64, Vec<Freed>)>,
}

impl DurableGate {
    /// Holds `freed` until `sequence` is durable.
    pub fn hold(&mut self, sequence: u64, freed: Vec<Freed>) {
        if freed.is_empty() {
            return;
        }
        // Sequences are appended in order; an orphan judged at an older
        // sequence than the last entry waits for the later one (no harm).
        let sequence = self
            .waiting
            .back()
            .map_or(sequence, |(last, _)| sequence.max(*last));
        match self.waiting.back_mut() {
            Some((last, items)) if *last == sequence => items.extend(freed),
            _ => self.waiting.push_back((sequence, freed)),
        }
    }

    /// What waited for sequences up to `durable`.
    pub fn release(&mut self, durable: u64) -> Vec<Freed> {
        let mut released = Vec::new();
        while let Some((sequence, _)) = self.waiting.front() {
            if *sequence > durable {
                break;
            }
            if let Some((_, items)) = self.waiting.pop_front() {
                released.extend(items);
            }
        }
        released
    }

    /// Replicas waiting.
    pub fn len(&self) -> usize {
        self.waiting.iter().map(|(_, items)| items.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_engine::msg::{BlockId, Generation};

    fn block(id: u64) -> Freed {
        Freed::Block(ReplicaId {
            block: BlockId(id),
            generation: Generation(id + 100),
        })
    }

    #[test]
    fn nothing_is_released_before_its_sequence_is_durable() {
        let mut gate = DurableGate::default();
        gate.hold(3, vec![block(1), block(2)]);
        gate.hold(5, vec![block(3)]);
        gate.hold(5, vec![block(4)]);
        gate.hold(6, vec![]);
        assert_eq!(gate.len(), 4);
        assert_eq!(gate.release(2), vec![]);
        assert_eq!(gate.release(4), vec![block(1), block(2)]);
        // An orphan judged at an older sequence waits behind later ones.
        gate.hold(4, vec![block(5)]);
        assert_eq!(gate.release(4), vec![]);
        assert_eq!(gate.release(5), vec![block(3), block(4), block(5)]);
        assert!(gate.is_empty());
        assert_eq!(gate.release(u64::MAX), vec![]);
    }
}
