//! A file being written through the mount: a thread that owns its own
//! client (its own master connection, so the write's lease does not hang on
//! the mount's) and a `FileWriter`, fed the kernel's writes through a
//! bounded channel. The file appears in the namespace, whole, when it is
//! committed: when its last descriptor is closed (`release`) or at
//! `fsync`; its blocks are durable as they are written. A `flush` (every
//! `close`, also of a duplicate descriptor that leaves the file open)
//! waits until the writer has taken every write so far and answers its
//! error, if it had one.
//!
//! Writes must come in order: a stream is written front to back until it
//! is committed (`cache` commits it when a write goes back into it, and
//! changes the file from there as a patch).

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use dfs_client::client::AttributeChange;
use dfs_client::{Client, WriteOptions};
use dfs_engine::msg::Credentials;
use dfs_engine::path::DfsPath;
use dfs_engine::{Error, Result};

/// Writes queued for a file's thread: with the kernel's writes of at most
/// 1 MiB (`max_write`), 8 MiB at most per open file.
const QUEUED_WRITES_MAX: usize = 8;
/// The largest piece of zeros sent for a gap a write leaves.
const ZEROS_BYTES: usize = 1 << 20;

enum Command {
    Data(Vec<u8>),
    /// Answers once every write before it was taken: the first error, if any.
    Check(SyncSender<std::result::Result<(), String>>),
    /// Commits, then applies the attribute change (if it changes any);
    /// answers the file's inode when it could tell.
    Commit(AttributeChange, SyncSender<Result<Option<u64>>>),
}

/// An open file being written.
pub struct WriteHandle {
    path: DfsPath,
    commands: Option<SyncSender<Command>>,
    thread: Option<JoinHandle<()>>,
    written_bytes: u64,
    /// Set once committed (or failed): later writes are refused.
    done: bool,
    /// A write was refused (out of order, or failed): the file is not
    /// what its writer meant, so it is abandoned rather than committed.
    poisoned: bool,
    mode: u32,
    /// Attributes set while the file is written: applied once committed.
    after_commit: AttributeChange,
}

impl WriteHandle {
    /// Opens `path` for writing (replacing a file there with `overwrite`);
    /// returns once the master has accepted the write.
    pub fn open(
        master: &str,
        credentials: Credentials,
        path: DfsPath,
        options: WriteOptions,
        inode: Option<u64>,
    ) -> Result<WriteHandle> {
        let (commands, inbox) = mpsc::sync_channel(QUEUED_WRITES_MAX);
        let (opened_tx, opened) = mpsc::sync_channel(1);
        let master = master.to_string();
        let thread_path = path.clone();
        let mode = options.mode;
        let thread = thread::Builder::new()
            .name("write".into())
            .spawn(move || {
                write_file(
                    &master,
                    credentials,
                    &thread_path,
                    options,
                    inode,
                    opened_tx,
                    inbox,
                )
            })
            .map_err(|e| Error::io("start a writer thread", e))?;
        let handle = WriteHandle {
            path,
            commands: Some(commands),
            thread: Some(thread),
            written_bytes: 0,
            done: false,
            poisoned: false,
            mode,
            after_commit: AttributeChange::default(),
        };
        match opened.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::Invalid(format!(
                "{}: the writer ended before it opened the file",
                handle.path
            ))),
        }
    }

    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    pub fn path(&self) -> &DfsPath {
        &self.path
    }

    pub fn is_committed(&self) -> bool {
        self.done
    }

    /// The permission bits the file will have.
    pub fn mode(&self) -> u32 {
        self.after_commit.mode.unwrap_or(self.mode)
    }

    /// Marks the file as not to be committed: a write was refused.
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Attributes set while the file is written, applied once committed;
    /// a later change of one replaces an earlier.
    pub fn change_after_commit(&mut self, change: AttributeChange) {
        self.after_commit.merge(change);
    }

    /// Appends `data`, which the kernel wants at `offset_bytes`.
    pub fn write(&mut self, offset_bytes: u64, data: &[u8]) -> Result<()> {
        if self.done {
            return Err(Error::Invalid(format!(
                "{}: written and committed already; a file is written once, front to back",
                self.path
            )));
        }
        if offset_bytes < self.written_bytes {
            self.poisoned = true;
            return Err(Error::Invalid(format!(
                "{}: a write at offset {offset_bytes}, but {} bytes were written: files are written front to back",
                self.path, self.written_bytes
            )));
        }
        // A write past the end leaves a gap that reads as zeros.
        while self.written_bytes < offset_bytes {
            let gap = usize::try_from(offset_bytes - self.written_bytes)
                .unwrap_or(usize::MAX)
                .min(ZEROS_BYTES);
            self.send(vec![0u8; gap])?;
        }
        self.send(data.to_vec())
    }

    fn send(&mut self, data: Vec<u8>) -> Result<()> {
        let length = data.len() as u64;
        let sent = self
            .commands
            .as_ref()
            .map(|commands| commands.send(Command::Data(data)));
        if !matches!(sent, Some(Ok(()))) {
            // The thread stopped: its error comes with the commit.
            self.done = true;
            return self.commit().map(drop);
        }
        self.written_bytes += length;
        Ok(())
    }

    /// Waits until the writer took every write so far; its error if one
    /// failed.
    pub fn check(&mut self) -> Result<()> {
        let Some(commands) = self.commands.as_ref() else {
            return Ok(());
        };
        let (answer_tx, answer) = mpsc::sync_channel(1);
        let answered = commands
            .send(Command::Check(answer_tx))
            .ok()
            .and_then(|()| answer.recv().ok());
        match answered {
            Some(Ok(())) => Ok(()),
            Some(Err(message)) => Err(Error::Invalid(message)),
            // The thread stopped: its error comes with the commit.
            None => self.commit().map(drop),
        }
    }

    /// Commits the file: its blocks sealed, the file in the namespace;
    /// its inode when the writer could tell. Committing again does nothing.
    pub fn commit(&mut self) -> Result<Option<u64>> {
        let Some(commands) = self.commands.take() else {
            return Ok(None);
        };
        self.done = true;
        if self.poisoned {
            // Closing the channel abandons the write.
            drop(commands);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
            return Err(Error::Invalid(format!(
                "{}: not written: a write to it was refused or failed, so it is left as it was",
                self.path
            )));
        }
        let (answer_tx, answer) = mpsc::sync_channel(1);
        let change = std::mem::take(&mut self.after_commit);
        let result = match commands.send(Command::Commit(change, answer_tx)) {
            Ok(()) => answer.recv().unwrap_or_else(|_| {
                Err(Error::Invalid(format!(
                    "{}: the writer ended without committing",
                    self.path
                )))
            }),
            Err(_) => Err(Error::Invalid(format!(
                "{}: the writer ended without committing",
                self.path
            ))),
        };
        drop(commands);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        result
    }
}

impl Drop for WriteHandle {
    fn drop(&mut self) {
        // Never committed: closing the channel abandons the write.
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: opens the file, appends what arrives, commits on
/// request. A failed append is kept and answered at the commit. With the
/// file's `inode` (it was committed before, empty: a descriptor of it
/// closed before anything was written), the stream replaces its contents
/// as a patch of that file, whatever its names are now, keeping its inode;
/// without, it is a new file at the path.
fn write_file(
    master: &str,
    credentials: Credentials,
    path: &DfsPath,
    options: WriteOptions,
    inode: Option<u64>,
    opened: SyncSender<Result<()>>,
    inbox: Receiver<Command>,
) {
    let mut client = match Client::connect_as(master, credentials) {
        Ok(client) => client,
        Err(error) => {
            let _ = opened.send(Err(error));
            return;
        }
    };
    // A file that has an inode is written as that file, whatever its
    // names are by the time it commits.
    let mut writer = match match inode {
        Some(inode) => client.write_to(inode, path, options, false),
        None => client.create(path, options),
    } {
        Ok(writer) => writer,
        Err(error) => {
            let _ = opened.send(Err(error));
            return;
        }
    };
    if opened.send(Ok(())).is_err() {
        return;
    }
    let mut failed: Option<Error> = None;
    let (change, answer) = loop {
        let Ok(command) = inbox.recv() else {
            // The handle went without committing: the write is abandoned.
            return;
        };
        match command {
            Command::Data(data) => {
                if failed.is_none() {
                    if let Err(error) = std::io::Write::write_all(&mut writer, &data) {
                        failed = Some(Error::io(format!("write {path}"), error));
                    }
                }
            }
            Command::Check(answer) => {
                let _ = answer.send(failed.as_ref().map_or(Ok(()), |e| Err(e.to_string())));
            }
            Command::Commit(change, answer) => break (change, answer),
        }
    };
    let result = match failed {
        Some(error) => {
            drop(writer);
            Err(error)
        }
        // A write by inode replaces that file's contents at its close.
        None => writer.finish().map(|stats| {
            stats
                .inode
                .or_else(|| client.stat(path).ok().map(|status| status.inode))
        }),
    };
    let by_inode = inode.is_some();
    let result = result.and_then(|committed| {
        if change == AttributeChange::default() {
            return Ok(committed);
        }
        // A file written by inode may have another name by now, or none:
        // its attributes go by the path only while that still names it.
        let here = !by_inode
            || committed.is_some_and(|committed| {
                client
                    .stat(path)
                    .is_ok_and(|status| status.inode == committed)
            });
        if here {
            client.set_attributes(path, change).map(|()| committed)
        } else {
            Ok(committed)
        }
    });
    let _ = answer.send(result);
}
