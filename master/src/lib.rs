//! The master: the namespace (a state machine of logged ops), its journal
//! and checkpoints, the minion registry and block map (soft state),
//! placement, re-replication and garbage collection (`replication`),
//! `fsck`, file locks and their sessions (soft state: `locks`,
//! `sessions`), and the TCP service.

pub mod checkpoint;
pub mod fsck;
pub mod journal;
pub mod locks;
pub mod members;
pub mod namespace;
pub mod recovery;
pub mod registry;
pub mod release;
pub mod replication;
pub mod safe_mode;
pub mod server;
pub mod service;
pub mod sessions;
pub mod timing;
