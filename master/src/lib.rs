//! The master: the namespace (a state machine of logged ops), its journal
//! and checkpoints, the minion registry and block map (soft state),
//! placement, re-replication and garbage collection (`replication`),
//! `fsck`, file locks and their sessions (soft state: `locks`,
//! `sessions`), the TCP service, and its metrics (`metrics`); the web
//! status page and JSON API (`http`, on the snapshots of `status`).

pub mod checkpoint;
pub mod events;
pub mod fsck;
pub mod http;
pub mod journal;
pub mod locks;
pub mod members;
pub mod metrics;
pub mod namespace;
pub mod recovery;
pub mod registry;
pub mod release;
pub mod replication;
pub mod safe_mode;
pub mod server;
pub mod service;
pub mod sessions;
pub mod status;
pub mod timing;
