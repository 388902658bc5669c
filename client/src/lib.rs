//! The client library of the file system: namespace calls to the master,
//! pipelined block writes (closed as a whole file or as a patch of one)
//! and verified reads of a file's pieces (blocks, parts of blocks, holes)
//! straight from minions. The `dfs` and `dfs-cp` commands (crate
//! `dfs_cli`) are built on it.
//!
//! Data never passes through the master: a `Client` asks it for names, block
//! allocations and locations, then streams chunks to and from minions itself.

pub mod accounts;
pub mod batch;
pub mod client;
pub mod compact;
pub mod config;
mod durable;
pub mod locks;
pub mod master;
pub mod parallel_write;
mod pool;
pub mod read;
mod readahead;
mod transfer;
pub mod write;
mod xattrs;

pub use client::{Client, ClusterReport, FileBlocks};
pub use compact::Compacted;
pub use config::master_address;
pub use locks::LockConflict;
pub use parallel_write::{put_parallel, LocalFile, RangeSource};
pub use read::{ChecksumSink, FileChecksum, FileReader};
pub use write::{
    temporary_spool, BlockSource, FileWriter, PatchTarget, Seekable, Spooled, Unseekable,
    UnsyncedReplica, WriteOptions, WriteStats, WrittenBlock,
};

pub use dfs_engine::msg::FileRange;
pub use dfs_engine::{Error, Result};
