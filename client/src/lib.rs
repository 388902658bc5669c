//! The client side of the file system: the `dfs_client` library (namespace
//! calls to the master, pipelined block writes and verified block reads
//! straight from minions) and the logic behind the `dfs` command.
//!
//! Data never passes through the master: a `Client` asks it for names, block
//! allocations and locations, then streams chunks to and from minions itself.

pub mod batch;
pub mod cli;
pub mod client;
pub mod config;
pub mod cp;
pub mod format;
pub mod local;
pub mod master;
pub mod parallel_write;
mod pool;
pub mod read;
mod readahead;
mod transfer;
pub mod write;

pub use client::{Client, ClusterReport, FileBlocks};
pub use config::master_address;
pub use parallel_write::{put_parallel, LocalFile, RangeSource};
pub use read::{ChecksumSink, FileChecksum, FileReader};
pub use write::{
    temporary_spool, BlockSource, FileWriter, Seekable, Spooled, Unseekable, WriteOptions,
    WriteStats, WrittenBlock,
};

pub use dfs_engine::{Error, Result};
