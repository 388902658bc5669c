//! Background compaction: a file whose commit left it cut into many small
//! pieces is written again as whole blocks by a thread of the mount's own
//! (its own client), without holding up the close that cut it. The
//! compaction applies only if nobody changed the file meanwhile
//! (`Client::compact`), so it never undoes a writer's change. At most
//! `COMPACT_QUEUE_MAX` files wait; more are left for a later commit.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

use dfs_client::{Client, Compacted};
use dfs_engine::msg::Credentials;
use dfs_engine::path::DfsPath;
use dfs_engine::Result;

/// Files waiting for the compaction thread.
const COMPACT_QUEUE_MAX: usize = 16;

#[derive(Clone)]
pub struct Compactor {
    queue: SyncSender<DfsPath>,
}

impl Compactor {
    /// Starts the compaction thread, which connects to `master` when it
    /// first has a file to compact.
    pub fn start(master: &str, credentials: Credentials) -> Result<Compactor> {
        let (queue, inbox) = mpsc::sync_channel(COMPACT_QUEUE_MAX);
        let master = master.to_string();
        thread::Builder::new()
            .name("compact".into())
            .spawn(move || compact_files(&master, credentials, inbox))
            .map_err(|e| dfs_engine::Error::io("start the compaction thread", e))?;
        Ok(Compactor { queue })
    }

    /// Asks for `path` to be compacted; dropped when the queue is full.
    pub fn offer(&self, path: DfsPath) {
        let _ = self.queue.try_send(path);
    }
}

fn compact_files(master: &str, credentials: Credentials, inbox: Receiver<DfsPath>) {
    let mut client: Option<Client> = None;
    // Ends when the mount (every sender) is gone.
    while let Ok(path) = inbox.recv() {
        if client.is_none() {
            match Client::connect_as(master, credentials.clone()) {
                Ok(connected) => client = Some(connected),
                Err(error) => {
                    eprintln!("dfs-mount: compact {path}: {error}");
                    continue;
                }
            }
        }
        let Some(connected) = client.as_mut() else {
            continue;
        };
        match connected.compact(&path, false) {
            Ok(Compacted::Done { before, after }) => {
                eprintln!("dfs-mount: compacted {path}: {before} pieces written again as {after}")
            }
            Ok(Compacted::NotNeeded { .. } | Compacted::Raced) => {}
            Err(error) => {
                eprintln!("dfs-mount: compact {path}: {error}");
                // A fresh connection for the next one.
                client = None;
            }
        }
    }
}
