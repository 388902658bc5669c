//! The master: the namespace (a state machine of logged ops), the minion
//! registry and block map (soft state), placement, and the TCP service.

pub mod checkpoint;
pub mod namespace;
pub mod registry;
pub mod server;
pub mod service;
