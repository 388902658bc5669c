//! Making blocks durable after the fact. A write without `sync` is
//! answered once every member holds the block in memory; a later `fsync`
//! asks each member that stored one of its blocks to flush it
//! (`SyncReplicas`), as a `sync` write would have before its answer. A
//! block a member no longer holds (freed since, or lost, which healing
//! repairs) needs nothing.

use std::collections::{BTreeMap, BTreeSet};

use dfs_engine::limits::SYNC_REPLICAS_MAX;
use dfs_engine::msg::{MinionAddress, MinionRequest, MinionResponse, ReplicaId};
use dfs_engine::{Error, Result};

use crate::client::{unexpected, Client};
use crate::transfer::{minion_message, receive_answer};
use crate::write::UnsyncedReplica;

impl Client {
    /// Asks every member that stored one of `blocks` to flush it, one
    /// exchange per member (per `SYNC_REPLICAS_MAX` replicas). As a write
    /// goes on without a member that fails it, a member that fails here
    /// is warned of and left to healing (its copy counts as lost), so long
    /// as another member made the block durable or no longer holds it; a
    /// block that no member made durable fails the call, naming it and why.
    pub fn make_durable(&mut self, blocks: &[UnsyncedReplica]) -> Result<()> {
        let mut by_member: BTreeMap<&str, (&MinionAddress, Vec<ReplicaId>)> = BTreeMap::new();
        for block in blocks {
            for member in &block.members {
                by_member
                    .entry(member.address.as_str())
                    .or_insert_with(|| (member, Vec::new()))
                    .1
                    .push(block.replica);
            }
        }
        let mut durable: BTreeSet<ReplicaId> = BTreeSet::new();
        let mut failures: Vec<String> = Vec::new();
        for (member, replicas) in by_member.into_values() {
            for group in replicas.chunks(SYNC_REPLICAS_MAX) {
                match self.sync_on(member, group) {
                    // Flushed there, or not held there (nothing to flush).
                    Ok(()) => durable.extend(group.iter().copied()),
                    Err(error) => {
                        let message = minion_message(member, &error);
                        self.warn(&format!("fsync: {message}"));
                        failures.push(message);
                    }
                }
            }
        }
        let lost: Vec<ReplicaId> = blocks
            .iter()
            .map(|block| block.replica)
            .filter(|replica| !durable.contains(replica))
            .collect();
        if lost.is_empty() {
            return Ok(());
        }
        // Named up to a few; the members' reasons are one per member.
        const NAMED: usize = 3;
        let mut named: Vec<String> = lost.iter().take(NAMED).map(|r| r.to_string()).collect();
        if lost.len() > NAMED {
            named.push(format!("{} more", lost.len() - NAMED));
        }
        failures.truncate(NAMED);
        Err(Error::Invalid(format!(
            "no member made {} durable: {}",
            named.join(", "),
            failures.join("; ")
        )))
    }

    /// One `SyncReplicas` exchange with `member`.
    fn sync_on(&mut self, member: &MinionAddress, replicas: &[ReplicaId]) -> Result<()> {
        let mut connection = self.minions.connect(&member.address)?;
        let request = MinionRequest::SyncReplicas {
            replicas: replicas.to_vec(),
        };
        let request_id = connection.send(self.credentials(), request)?;
        let mut buffer = Vec::new();
        match receive_answer(&mut connection, &[request_id], &mut buffer) {
            Ok(MinionResponse::Durable { not_held: _ }) => {
                self.minions.keep(connection);
                Ok(())
            }
            Ok(other) => Err(unexpected("SyncReplicas", &other)),
            Err(error) => {
                // A refusal leaves the connection usable; anything else
                // drops it.
                if matches!(error, Error::Remote(_)) {
                    self.minions.keep(connection);
                }
                Err(error)
            }
        }
    }
}
