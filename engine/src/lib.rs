//! What the master, minions and clients share: the wire protocol and its
//! messages, block files, cluster paths, sizes, limits and the error type.
//! Nothing here knows about a namespace or a pipeline.

pub mod auth;
pub mod block_format;
pub mod block_store;
#[cfg(feature = "config-file")]
pub mod config_file;
pub mod crc;
pub mod dir_lock;
pub mod error;
pub mod failpoint;
#[cfg(feature = "http")]
pub mod http_listener;
pub mod identity;
pub mod limits;
#[cfg(feature = "logging")]
pub mod logging;
pub mod msg;
pub mod path;
pub mod rlimit;
pub mod rpc;
pub mod sync;
pub mod tls;
pub mod token;
pub mod units;
pub mod wire;

pub use error::{Error, IoContext, Result};
