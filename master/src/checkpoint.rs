//! Checkpoints: the whole namespace in one file named after the last journal
//! sequence it contains, written to a temporary file, synced and renamed, so
//! a crash at any moment leaves the old checkpoints intact. Also the data
//! directory: its lock, its format file, and the refusal of directories that
//! are not ours. Layouts in docs/format.md.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use dfs_engine::dir_lock::{DirLock, LOCK_FILE};
use dfs_engine::limits::CHECKPOINT_BYTES_MAX;
use dfs_engine::msg::ClusterId;
use dfs_engine::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};

use crate::journal::{self, sync_directory};
use crate::namespace::{
    Namespace, NamespaceRecord, NamespaceV3, NamespaceV4, NamespaceV6, NamespaceV7, NamespaceV8,
    NamespaceV9, NamespaceWriter,
};
use dfs_engine::failpoint;

const CHECKPOINT_PREFIX: &str = "checkpoint-";
const TEMP_SUFFIX: &str = ".tmp";
/// "DFSC" read as a little-endian u32.
const CHECKPOINT_MAGIC: u32 = u32::from_le_bytes(*b"DFSC");
/// Version 10 records which open writes were opened by inode (a mount's
/// write of a file whatever its names are); version 9 keeps inode times in
/// nanoseconds; version 8 added the files
/// kept while open somewhere; version 7 files
/// made of pieces of blocks and holes (extent maps) and extended
/// attributes;
/// version 6 added symbolic links and several names (hard links) of one
/// file; version 5 gave every block its generation (older blocks: 0);
/// version 4 added the set of decommissioning minions to the namespace.
const CHECKPOINT_VERSION: u16 = 10;
/// Older versions, still read, with the same records but for their last
/// namespace fields and their times in milliseconds (scaled as read):
/// version 9 is version 10 without the inodes of writes (`NamespaceV9`),
/// version 8 is version 9 in milliseconds (`NamespaceV8`), 7 is 8 without
/// the files kept open (`NamespaceV7`), 5 and 6 are 7 without extended
/// attributes (`NamespaceV6`; 5 without symbolic links or hard links).
const CHECKPOINT_VERSION_9: u16 = 9;
const CHECKPOINT_VERSION_8: u16 = 8;
const CHECKPOINT_VERSION_7: u16 = 7;
const CHECKPOINT_VERSION_6: u16 = 6;
const CHECKPOINT_VERSION_5: u16 = 5;
const CHECKPOINT_VERSION_4: u16 = 4;
const CHECKPOINT_VERSION_3: u16 = 3;
const HEADER_BYTES: usize = 24;

/// The file that marks a directory as a master's, with its format version.
pub const FORMAT_FILE: &str = "format";
const FORMAT_TEXT: &str = "dfs-master data directory\nversion 1\n";

/// What a checkpoint holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub cluster: ClusterId,
    /// The last journal record whose op is in `namespace` (0: none).
    pub last_sequence: u64,
    pub namespace: Namespace,
}

/// A checkpoint as read, whose namespace has the layout `N` of its version
/// (`NamespaceRecord` for this one, the types of `legacy.rs` for older).
#[derive(Deserialize)]
struct CheckpointOf<N> {
    cluster: ClusterId,
    last_sequence: u64,
    namespace: N,
}

impl<N: Into<Namespace>> CheckpointOf<N> {
    fn upgrade(self) -> Checkpoint {
        Checkpoint {
            cluster: self.cluster,
            last_sequence: self.last_sequence,
            namespace: self.namespace.into(),
        }
    }
}

/// The same fields as written, the namespace converted entry by entry, so a
/// live namespace is written without a copy.
#[derive(Serialize)]
struct CheckpointRef<'a> {
    cluster: ClusterId,
    last_sequence: u64,
    namespace: NamespaceWriter<'a>,
}

/// The file name of the checkpoint that ends at `last_sequence`.
pub fn checkpoint_name(last_sequence: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{last_sequence:016x}")
}

/// The sequence a checkpoint file name announces, if it is one.
pub fn parse_checkpoint_name(name: &str) -> Option<u64> {
    crate::journal::parse_sequence_name(name, CHECKPOINT_PREFIX)
}

fn is_checkpoint_file(name: &str) -> bool {
    let base = name
        .strip_suffix(TEMP_SUFFIX)
        .or_else(|| name.strip_suffix(journal::CORRUPT_SUFFIX))
        .unwrap_or(name);
    parse_checkpoint_name(base).is_some()
}

/// Header: magic u32, version u16, reserved u16, payload_bytes u64,
/// payload_crc u32, header_crc u32 (over the first 20 bytes); all LE.
fn encode_header(payload: &[u8]) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[0..4].copy_from_slice(&CHECKPOINT_MAGIC.to_le_bytes());
    header[4..6].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    header[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[16..20].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let crc = crc32c::crc32c(&header[..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A whole checkpoint file's bytes.
pub fn encode(cluster: ClusterId, last_sequence: u64, namespace: &Namespace) -> Result<Vec<u8>> {
    let payload = postcard::to_stdvec(&CheckpointRef {
        cluster,
        last_sequence,
        namespace: NamespaceWriter(namespace),
    })
    .map_err(|e| Error::Invalid(format!("encode checkpoint: {e}")))?;
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.extend_from_slice(&encode_header(&payload));
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(array)
}

/// Decodes a whole checkpoint file's bytes.
pub fn decode(bytes: &[u8], name: &str) -> Result<Checkpoint> {
    let corrupted = |detail: String| Error::corrupted(format!("checkpoint {name}"), detail);
    if bytes.len() < HEADER_BYTES {
        return Err(corrupted(format!(
            "{} bytes is shorter than its header",
            bytes.len()
        )));
    }
    let header = &bytes[..HEADER_BYTES];
    if le_u32(&header[0..4]) != CHECKPOINT_MAGIC {
        return Err(corrupted("bad magic (not a checkpoint file)".into()));
    }
    if le_u32(&header[20..24]) != crc32c::crc32c(&header[..20]) {
        return Err(corrupted("header checksum mismatch".into()));
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if ![
        CHECKPOINT_VERSION,
        CHECKPOINT_VERSION_9,
        CHECKPOINT_VERSION_8,
        CHECKPOINT_VERSION_7,
        CHECKPOINT_VERSION_6,
        CHECKPOINT_VERSION_5,
        CHECKPOINT_VERSION_4,
        CHECKPOINT_VERSION_3,
    ]
    .contains(&version)
    {
        return Err(corrupted(format!("unsupported version {version}")));
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&header[8..16]);
    let payload_bytes = u64::from_le_bytes(length);
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() as u64 != payload_bytes {
        return Err(corrupted(format!(
            "header announces {payload_bytes} payload bytes, file has {}",
            payload.len()
        )));
    }
    if crc32c::crc32c(payload) != le_u32(&header[16..20]) {
        return Err(corrupted("payload checksum mismatch".into()));
    }
    let undecodable = |e: postcard::Error| corrupted(format!("undecodable payload: {e}"));
    let checkpoint: Checkpoint = if version == CHECKPOINT_VERSION_3 {
        postcard::from_bytes::<CheckpointOf<NamespaceV3>>(payload)
            .map_err(undecodable)?
            .upgrade()
    } else if version == CHECKPOINT_VERSION_4 {
        postcard::from_bytes::<CheckpointOf<NamespaceV4>>(payload)
            .map_err(undecodable)?
            .upgrade()
    } else if version == CHECKPOINT_VERSION_9 {
        postcard::from_bytes::<CheckpointOf<NamespaceV9>>(payload)
            .map_err(undecodable)?
            .upgrade()
    } else if version == CHECKPOINT_VERSION_8 {
        postcard::from_bytes::<CheckpointOf<NamespaceV8>>(payload)
            .map_err(undecodable)?
            .upgrade()
    } else if version == CHECKPOINT_VERSION_7 {
        postcard::from_bytes::<CheckpointOf<NamespaceV7>>(payload)
            .map_err(undecodable)?
            .upgrade()
    } else if version == CHECKPOINT_VERSION_5 || version == CHECKPOINT_VERSION_6 {
        postcard::from_bytes::<CheckpointOf<NamespaceV6>>(payload)
            .map_err(undecodable)?
            .upgrade()
    } else {
        postcard::from_bytes::<CheckpointOf<NamespaceRecord>>(payload)
            .map_err(undecodable)?
            .upgrade()
    };
    checkpoint
        .namespace
        .check_invariants()
        .map_err(|e| corrupted(format!("namespace invariant broken: {e}")))?;
    Ok(checkpoint)
}

/// The checkpoints in `dir` as (last sequence, path), newest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        if let Some(sequence) = entry.file_name().to_str().and_then(parse_checkpoint_name) {
            found.push((sequence, entry.path()));
        }
    }
    found.sort_by_key(|(sequence, _)| std::cmp::Reverse(*sequence));
    Ok(found)
}

/// Loads one checkpoint file; its content must match its name.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let shown = path.display().to_string();
    let mut file = File::open(path).with_context(|| format!("open {shown}"))?;
    let length = file
        .metadata()
        .with_context(|| format!("stat {shown}"))?
        .len();
    if length > CHECKPOINT_BYTES_MAX {
        return Err(Error::corrupted(
            format!("checkpoint {shown}"),
            format!("{length} bytes is over the limit of {CHECKPOINT_BYTES_MAX}"),
        ));
    }
    let mut bytes = Vec::with_capacity(length as usize);
    file.read_to_end(&mut bytes)
        .with_context(|| format!("read {shown}"))?;
    let checkpoint = decode(&bytes, &shown)?;
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_checkpoint_name);
    if named != Some(checkpoint.last_sequence) {
        return Err(Error::corrupted(
            format!("checkpoint {shown}"),
            format!(
                "holds sequence {} but its name says otherwise",
                checkpoint.last_sequence
            ),
        ));
    }
    Ok(checkpoint)
}

/// Writes a checkpoint durably: temp file, fsync, rename, directory fsync.
/// Returns its path.
pub fn store(
    dir: &Path,
    cluster: ClusterId,
    last_sequence: u64,
    namespace: &Namespace,
) -> Result<PathBuf> {
    let bytes = encode(cluster, last_sequence, namespace)?;
    let name = checkpoint_name(last_sequence);
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let mut file = File::create(&temp).with_context(|| format!("create {}", temp.display()))?;
    failpoint::hit("checkpoint-temp-created");
    file.write_all(&bytes)
        .with_context(|| format!("write {}", temp.display()))?;
    failpoint::hit("checkpoint-before-sync");
    file.sync_all()
        .with_context(|| format!("sync {}", temp.display()))?;
    drop(file);
    failpoint::hit("checkpoint-before-rename");
    let target = dir.join(&name);
    fs::rename(&temp, &target)
        .with_context(|| format!("rename checkpoint into {}", target.display()))?;
    failpoint::hit("checkpoint-after-rename");
    sync_directory(dir)?;
    failpoint::hit("checkpoint-after-directory-sync");
    Ok(target)
}

/// Removes checkpoints beyond the newest `keep`, then the journal segments
/// that the oldest kept one does not need. Oldest first, so a crash in
/// between leaves a contiguous journal. Never removes the segment appended
/// to (`active_first`).
pub fn remove_obsolete(dir: &Path, keep: usize, active_first: Option<u64>) -> Result<()> {
    let checkpoints = list(dir)?;
    for (_, path) in checkpoints.iter().skip(keep).rev() {
        fs::remove_file(path).with_context(|| format!("remove {}", path.display()))?;
        failpoint::hit("checkpoint-removed-old");
    }
    let Some((oldest_kept, _)) = checkpoints.iter().take(keep).next_back() else {
        return Ok(());
    };
    let segments = journal::list_segments(dir)?;
    // Segment i holds sequences first_i..first_(i+1)-1; it is needed while
    // that range reaches past the oldest kept checkpoint.
    for pair in segments.windows(2) {
        let (segment, next) = (&pair[0], &pair[1]);
        if next.first_sequence > oldest_kept + 1 || active_first == Some(segment.first_sequence) {
            break;
        }
        fs::remove_file(&segment.path)
            .with_context(|| format!("remove {}", segment.path.display()))?;
        failpoint::hit("checkpoint-removed-segment");
    }
    sync_directory(dir)
}

/// Whether a data directory was found ready or had to be made one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    Existing,
    New,
}

/// The master's data directory, locked for as long as this value lives.
pub struct DataDir {
    path: PathBuf,
    _lock: DirLock,
}

impl DataDir {
    /// Creates `path` if needed and takes its lock; a directory in use by
    /// another master, or one that holds files that are not ours, is
    /// refused. An empty directory becomes a master's (format file written).
    pub fn open(path: &Path) -> Result<(DataDir, Opened)> {
        fs::create_dir_all(path)
            .with_context(|| format!("create data directory {}", path.display()))?;
        let data_dir = DataDir {
            path: path.to_path_buf(),
            _lock: DirLock::acquire(path, "master")?,
        };
        if data_dir.check_contents()? {
            return Ok((data_dir, Opened::Existing));
        }
        let temp = path.join(format!("{FORMAT_FILE}{TEMP_SUFFIX}"));
        fs::write(&temp, FORMAT_TEXT)
            .and_then(|()| File::open(&temp).and_then(|f| f.sync_all()))
            .with_context(|| format!("write {}", temp.display()))?;
        fs::rename(&temp, path.join(FORMAT_FILE))
            .with_context(|| format!("rename {}", temp.display()))?;
        sync_directory(path)?;
        Ok((data_dir, Opened::New))
    }

    /// Locks an existing master data directory without changing it.
    pub fn open_existing(path: &Path) -> Result<DataDir> {
        if !path.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: no such directory",
                path.display()
            )));
        }
        let data_dir = DataDir {
            path: path.to_path_buf(),
            _lock: DirLock::acquire(path, "master")?,
        };
        if !data_dir.check_contents()? {
            return Err(Error::Invalid(format!(
                "{} is not a dfs-master data directory (no {FORMAT_FILE} file)",
                path.display()
            )));
        }
        Ok(data_dir)
    }

    /// True if the directory is a master's; false if it is empty (but for
    /// our lock); an error if it holds anything else.
    fn check_contents(&self) -> Result<bool> {
        let mut names = Vec::new();
        for entry in
            fs::read_dir(&self.path).with_context(|| format!("list {}", self.path.display()))?
        {
            let entry = entry.with_context(|| format!("list {}", self.path.display()))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        let format_path = self.path.join(FORMAT_FILE);
        if !names.iter().any(|n| n == FORMAT_FILE) {
            let others: Vec<&String> = names
                .iter()
                .filter(|n| *n != LOCK_FILE && **n != format!("{FORMAT_FILE}{TEMP_SUFFIX}"))
                .collect();
            if others.is_empty() {
                return Ok(false);
            }
            return Err(Error::Invalid(format!(
                "{} is not a dfs-master data directory: it has no {FORMAT_FILE} file but holds {}",
                self.path.display(),
                others
                    .iter()
                    .take(3)
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let text =
            fs::read(&format_path).with_context(|| format!("read {}", format_path.display()))?;
        if text != FORMAT_TEXT.as_bytes() {
            return Err(Error::Invalid(format!(
                "{}: not a dfs-master format file of version 1",
                format_path.display()
            )));
        }
        for name in &names {
            let ours = name == LOCK_FILE
                || name == FORMAT_FILE
                || is_checkpoint_file(name)
                || journal::is_journal_file(name);
            if !ours {
                return Err(Error::Invalid(format!(
                    "{} holds {name}, which is not a dfs-master file; refusing to use it",
                    self.path.display()
                )));
            }
        }
        Ok(true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes temporary files that an interrupted checkpoint or segment
    /// creation left behind.
    pub fn remove_temporary_files(&self) -> Result<()> {
        for entry in
            fs::read_dir(&self.path).with_context(|| format!("list {}", self.path.display()))?
        {
            let entry = entry.with_context(|| format!("list {}", self.path.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TEMP_SUFFIX) {
                fs::remove_file(entry.path())
                    .with_context(|| format!("remove {}", entry.path().display()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::Op;
    use dfs_engine::msg::{EntryKind, FileRange, Generation, MinionId, XattrSet};
    use dfs_engine::path::DfsPath;

    fn sample() -> Namespace {
        let mut namespace = Namespace::new(5);
        namespace
            .apply(&Op::Mkdir {
                path: "/a/b".into(),
                parents: true,
                mode: 0o755,
                owner: "u".into(),
                group: "g".into(),
                time_ms: 6,
            })
            .expect("mkdir");
        namespace
    }

    #[test]
    fn store_then_load_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(list(dir.path()).expect("empty dir").is_empty());
        let path = store(dir.path(), ClusterId(42), 7, &sample()).expect("store");
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some("checkpoint-0000000000000007")
        );
        let loaded = load(&path).expect("load");
        assert_eq!(
            loaded,
            Checkpoint {
                cluster: ClusterId(42),
                last_sequence: 7,
                namespace: sample()
            }
        );
        assert_eq!(list(dir.path()).expect("list"), vec![(7, path.clone())]);
        // A renamed checkpoint no longer matches its content.
        let renamed = dir.path().join(checkpoint_name(8));
        fs::rename(&path, &renamed).expect("rename");
        let error = load(&renamed).expect_err("name mismatch");
        assert!(error.to_string().contains("name says otherwise"), "{error}");
    }

    #[test]
    fn a_version_3_checkpoint_still_loads() {
        // Written by the master before version 4: /dir/sub and a 14-byte
        // /dir/file of one block, last sequence 5.
        let bytes = include_bytes!("../tests/fixtures/checkpoint-v3-0000000000000005");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 3);
        let loaded = decode(bytes, "fixture").expect("version 3 decodes");
        assert_eq!(loaded.last_sequence, 5);
        let namespace = &loaded.namespace;
        assert!(namespace.draining().is_empty());
        let file = DfsPath::parse("/dir/file").expect("path");
        let (status, blocks) = namespace.file_blocks(&file).expect("the file is there");
        assert_eq!((status.size_bytes, blocks.len()), (14, 1));
        assert_eq!(
            blocks[0].crc32c,
            crc32c::crc32c(b"hello fixture\n"),
            "the block CRC of version 3 is kept"
        );
        let sub = DfsPath::parse("/dir/sub").expect("path");
        assert_eq!(
            namespace.status(&sub).expect("directory").kind,
            EntryKind::Directory
        );
        // Written again, it is the current version and reads back the same.
        let again = encode(loaded.cluster, 5, namespace).expect("encode");
        assert_eq!(u16::from_le_bytes([again[4], again[5]]), CHECKPOINT_VERSION);
        assert_eq!(decode(&again, "again").expect("decodes"), loaded);
    }

    #[test]
    fn a_version_4_checkpoint_loads_with_generation_0() {
        // Written by the master before version 5 (block generations): the
        // 14-byte /dir/file of one block, the open write 2 of /dir/open with
        // a committed 4-byte block 2 and an allocated block 3, and minion
        // abc decommissioning; last sequence 10.
        let bytes = include_bytes!("../tests/fixtures/checkpoint-v4-000000000000000a");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 4);
        let loaded = decode(bytes, "fixture").expect("version 4 decodes");
        assert_eq!(loaded.last_sequence, 10);
        let namespace = &loaded.namespace;
        assert!(namespace.is_draining(dfs_engine::msg::MinionId(0xabc)));
        let file = DfsPath::parse("/dir/file").expect("path");
        let (status, blocks) = namespace.file_blocks(&file).expect("the file is there");
        assert_eq!((status.size_bytes, blocks.len()), (14, 1));
        assert_eq!(blocks[0].generation, dfs_engine::msg::Generation::LEGACY);
        assert_eq!(blocks[0].crc32c, crc32c::crc32c(b"hello fixture\n"));
        let open = namespace.write(2).expect("the open write is there");
        assert_eq!(open.path, "/dir/open");
        assert_eq!(open.blocks.len(), 1);
        assert_eq!(
            open.blocks[0].generation,
            dfs_engine::msg::Generation::LEGACY
        );
        assert_eq!(
            open.pending.iter().collect::<Vec<_>>(),
            vec![(
                &dfs_engine::msg::BlockId(3),
                &dfs_engine::msg::Generation::LEGACY
            )]
        );
        assert_eq!(namespace.next_block_id(), dfs_engine::msg::BlockId(4));
        // Written again, it is the current version and reads back the same.
        let again = encode(loaded.cluster, 10, namespace).expect("encode");
        assert_eq!(u16::from_le_bytes([again[4], again[5]]), CHECKPOINT_VERSION);
        assert_eq!(decode(&again, "again").expect("decodes"), loaded);
    }

    /// The namespace of the version 5 fixture: /dir/file of one 14-byte
    /// block (generation 77), the open write 2 of /dir/open with a
    /// committed 4-byte block 2 and an allocated block 3, and minion abc
    /// decommissioning.
    fn version_5_namespace() -> Namespace {
        // Made before a new root was open to all.
        let mut namespace = Namespace::new(1).with_root_mode(0o755);
        let ops = [
            Op::Mkdir {
                path: "/dir".into(),
                parents: false,
                mode: 0o755,
                owner: "ann".into(),
                group: "lab".into(),
                time_ms: 2,
            },
            Op::OpenWrite {
                write: 1,
                path: "/dir/file".into(),
                replication: 3,
                block_bytes: 1 << 20,
                overwrite: false,
                mode: 0o644,
                owner: "ann".into(),
                group: "lab".into(),
                time_ms: 3,
            },
            Op::AllocateBlockStamped {
                write: 1,
                block: dfs_engine::msg::BlockId(1),
                generation: dfs_engine::msg::Generation(77),
            },
            Op::CommitBlock {
                write: 1,
                block: dfs_engine::msg::BlockId(1),
                length_bytes: 14,
                crc32c: crc32c::crc32c(b"hello fixture\n"),
            },
            Op::CloseWrite {
                write: 1,
                time_ms: 4,
            },
            Op::OpenWrite {
                write: 2,
                path: "/dir/open".into(),
                replication: 2,
                block_bytes: 1 << 20,
                overwrite: false,
                mode: 0o600,
                owner: "bob".into(),
                group: "lab".into(),
                time_ms: 5,
            },
            Op::AllocateBlockStamped {
                write: 2,
                block: dfs_engine::msg::BlockId(2),
                generation: dfs_engine::msg::Generation(78),
            },
            Op::CommitBlock {
                write: 2,
                block: dfs_engine::msg::BlockId(2),
                length_bytes: 4,
                crc32c: crc32c::crc32c(b"open"),
            },
            Op::AllocateBlockStamped {
                write: 2,
                block: dfs_engine::msg::BlockId(3),
                generation: dfs_engine::msg::Generation(79),
            },
            Op::Decommission {
                minion: MinionId(0xabc),
            },
        ];
        for op in ops {
            namespace.apply(&op).expect("apply");
        }
        namespace
    }

    #[test]
    fn a_version_5_checkpoint_still_loads() {
        let bytes = include_bytes!("../tests/fixtures/checkpoint-v5-000000000000000a");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 5);
        let loaded = decode(bytes, "fixture").expect("version 5 decodes");
        assert_eq!(loaded.cluster, ClusterId(0x5eed));
        assert_eq!(loaded.last_sequence, 10);
        assert_eq!(loaded.namespace, version_5_namespace());
        let open = loaded.namespace.write(2).expect("the open write is there");
        assert_eq!(open.blocks[0].generation, dfs_engine::msg::Generation(78));
        // Written again, it is the current version and reads back the same.
        let again = encode(loaded.cluster, 10, &loaded.namespace).expect("encode");
        assert_eq!(u16::from_le_bytes([again[4], again[5]]), CHECKPOINT_VERSION);
        assert_eq!(decode(&again, "again").expect("decodes"), loaded);
    }

    /// The version 5 namespace with a symbolic link /dir/link to "file"
    /// and a second name /dir/hard of /dir/file.
    fn version_6_namespace() -> Namespace {
        let mut namespace = version_5_namespace();
        for op in [
            Op::Symlink {
                path: "/dir/link".into(),
                target: "file".into(),
                owner: "ann".into(),
                group: "lab".into(),
                time_ms: 6,
            },
            Op::Link {
                source: "/dir/file".into(),
                target: "/dir/hard".into(),
                time_ms: 7,
            },
        ] {
            namespace.apply(&op).expect("apply");
        }
        namespace
    }

    #[test]
    fn a_version_6_checkpoint_loads() {
        let bytes = include_bytes!("../tests/fixtures/checkpoint-v6-000000000000000c");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 6);
        let loaded = decode(bytes, "fixture").expect("version 6 decodes");
        assert_eq!(loaded.last_sequence, 12);
        assert_eq!(loaded.namespace, version_6_namespace());
        let file = DfsPath::parse("/dir/hard").expect("path");
        assert_eq!(loaded.namespace.status(&file).expect("stat").links, 2);
        let link = DfsPath::parse("/dir/link").expect("path");
        assert_eq!(loaded.namespace.read_link(&link).expect("a link"), "file");
        // Written again, it is the current version and reads back the same.
        let again = encode(loaded.cluster, 12, &loaded.namespace).expect("encode");
        assert_eq!(u16::from_le_bytes([again[4], again[5]]), CHECKPOINT_VERSION);
        assert_eq!(decode(&again, "again").expect("decodes"), loaded);
    }

    /// The namespace of the version 7 fixture: the version 6 one, then
    /// /dir/file patched by write 3 (bytes 4..8 replaced by block 4, then
    /// extended to 20 bytes with a hole), and /dir given the extended
    /// attribute user.note.
    fn version_7_namespace() -> Namespace {
        let mut namespace = version_6_namespace();
        for op in [
            Op::OpenWrite {
                write: 3,
                path: "/dir/file".into(),
                replication: 3,
                block_bytes: 1 << 20,
                overwrite: true,
                mode: 0o644,
                owner: "ann".into(),
                group: "lab".into(),
                time_ms: 8,
            },
            Op::AllocateBlockStamped {
                write: 3,
                block: namespace.next_block_id(),
                generation: Generation(3),
            },
            Op::CommitBlock {
                write: 3,
                block: namespace.next_block_id(),
                length_bytes: 4,
                crc32c: crc32c::crc32c(b"HELL"),
            },
            Op::SetXattr {
                path: "/dir".into(),
                name: "user.note".into(),
                value: b"lab data".to_vec(),
                how: XattrSet::Create,
                time_ms: 10,
            },
            Op::PatchWrite {
                write: 3,
                ranges: vec![FileRange {
                    offset_bytes: 4,
                    length_bytes: 4,
                }],
                size_bytes: 20,
                if_version: None,
                time_ms: 9,
            },
        ] {
            namespace.apply(&op).expect("apply");
        }
        namespace
    }

    /// The namespace of the version 8 fixture: the version 7 one, with
    /// /dir/file kept open and then removed by both its names (it stays,
    /// nameless, with its blocks).
    fn version_8_namespace() -> Namespace {
        let mut namespace = version_7_namespace();
        let file = DfsPath::parse("/dir/file").expect("path");
        let inode = namespace.status(&file).expect("stat").inode;
        for op in [
            Op::Sustain { inode },
            Op::Delete {
                path: "/dir/file".into(),
                recursive: false,
                time_ms: 11,
            },
            Op::Delete {
                path: "/dir/hard".into(),
                recursive: false,
                time_ms: 12,
            },
        ] {
            namespace.apply(&op).expect("apply");
        }
        namespace
    }

    /// The namespace of the version 10 fixture: the version 8 one, with a
    /// write opened by inode of its nameless file (write 4), one block of
    /// it committed.
    fn version_10_namespace() -> Namespace {
        let mut namespace = version_8_namespace();
        let inode = *namespace
            .sustained()
            .collect::<Vec<_>>()
            .first()
            .expect("kept");
        for op in [
            Op::OpenInodeWrite {
                write: 4,
                inode,
                path: "/dir/file".into(),
                replication: 3,
                block_bytes: 1 << 20,
                owner: "ann".into(),
                group: "lab".into(),
                time_ms: 13,
            },
            Op::AllocateBlockStamped {
                write: 4,
                block: namespace.next_block_id(),
                generation: Generation(4),
            },
            Op::CommitBlock {
                write: 4,
                block: namespace.next_block_id(),
                length_bytes: 2,
                crc32c: crc32c::crc32c(b"HI"),
            },
        ] {
            namespace.apply(&op).expect("apply");
        }
        namespace
    }

    #[test]
    fn a_version_10_checkpoint_loads_and_is_written_byte_for_byte() {
        let bytes = include_bytes!("../tests/fixtures/checkpoint-v10-0000000000000013");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 10);
        let loaded = decode(bytes, "fixture").expect("version 10 decodes");
        assert_eq!(loaded.last_sequence, 19);
        assert_eq!(loaded.namespace, version_10_namespace());
        let kept = loaded.namespace.sustained().collect::<Vec<_>>();
        let open = loaded.namespace.write(4).expect("the write by inode");
        assert_eq!((open.inode, open.blocks.len()), (kept.first().copied(), 1));
        // While version 10 is the one written, it is written to the byte.
        let again = encode(loaded.cluster, 19, &loaded.namespace).expect("encode");
        assert!(again == bytes, "checkpoint version 10 changed on disk");
    }

    #[test]
    fn a_version_9_checkpoint_loads() {
        let bytes = include_bytes!("../tests/fixtures/checkpoint-v9-0000000000000010");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 9);
        let loaded = decode(bytes, "fixture").expect("version 9 decodes");
        assert_eq!(loaded.last_sequence, 16);
        assert_eq!(loaded.namespace, version_8_namespace());
        let dir = DfsPath::parse("/dir").expect("path");
        assert_eq!(
            loaded.namespace.status(&dir).expect("stat").modified_ns % 1_000_000,
            0
        );
        // Written again, it is the current version and reads back the same.
        let again = encode(loaded.cluster, 16, &loaded.namespace).expect("encode");
        assert_eq!(u16::from_le_bytes([again[4], again[5]]), CHECKPOINT_VERSION);
        assert_eq!(decode(&again, "again").expect("decodes"), loaded);
    }

    #[test]
    fn a_version_8_checkpoint_loads() {
        let bytes = include_bytes!("../tests/fixtures/checkpoint-v8-0000000000000010");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 8);
        let loaded = decode(bytes, "fixture").expect("version 8 decodes");
        assert_eq!(loaded.last_sequence, 16);
        assert_eq!(loaded.namespace, version_8_namespace());
        let (files, _, _) = loaded.namespace.counts();
        assert_eq!(files, 2, "the nameless file and the symbolic link");
        // Its millisecond times read as nanoseconds; written again, it is the
        // current version and reads back the same.
        let again = encode(loaded.cluster, 16, &loaded.namespace).expect("encode");
        assert_eq!(u16::from_le_bytes([again[4], again[5]]), CHECKPOINT_VERSION);
        assert_eq!(decode(&again, "again").expect("decodes"), loaded);
    }

    #[test]
    fn a_version_7_checkpoint_loads() {
        let bytes = include_bytes!("../tests/fixtures/checkpoint-v7-000000000000000d");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 7);
        let loaded = decode(bytes, "fixture").expect("version 7 decodes");
        assert_eq!(loaded.last_sequence, 13);
        assert_eq!(loaded.namespace, version_7_namespace());
        let file = DfsPath::parse("/dir/hard").expect("path");
        let status = loaded.namespace.status(&file).expect("stat");
        assert_eq!((status.size_bytes, status.block_count), (20, 4));
        let dir = DfsPath::parse("/dir").expect("path");
        assert_eq!(
            loaded.namespace.xattr(&dir, "user.note"),
            Ok(&b"lab data"[..])
        );
        // Written again, it is the current version and reads back the same.
        let again = encode(loaded.cluster, 13, &loaded.namespace).expect("encode");
        assert_eq!(u16::from_le_bytes([again[4], again[5]]), CHECKPOINT_VERSION);
        assert_eq!(decode(&again, "again").expect("decodes"), loaded);
    }

    #[test]
    fn decommissioning_minions_are_checkpointed() {
        let mut namespace = sample();
        namespace
            .apply(&Op::Decommission {
                minion: MinionId(0xabc),
            })
            .expect("decommission");
        let bytes = encode(ClusterId(1), 9, &namespace).expect("encode");
        let loaded = decode(&bytes, "x").expect("decode");
        assert!(loaded.namespace.is_draining(MinionId(0xabc)));
        assert_eq!(loaded.namespace, namespace);
    }

    #[test]
    fn every_damage_is_refused_with_a_reason() {
        let good = encode(ClusterId(42), 3, &sample()).expect("encode");
        decode(&good, "x").expect("good decodes");
        let check = |bytes: Vec<u8>, reason: &str| {
            let error = decode(&bytes, "x").expect_err("refused");
            assert!(error.to_string().contains(reason), "{error} lacks {reason}");
        };
        check(good[..10].to_vec(), "shorter than its header");
        check(good[..good.len() - 1].to_vec(), "announces");
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        check(flipped, "payload checksum mismatch");
        let mut magic = good.clone();
        magic[0] = b'X';
        check(magic, "bad magic");
        let mut header = good.clone();
        header[9] ^= 1;
        check(header, "header checksum mismatch");
        // Every truncation fails cleanly.
        for cut in 0..good.len() {
            assert!(decode(&good[..cut], "x").is_err());
        }
    }

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        assert_eq!(parse_checkpoint_name(&checkpoint_name(0xabc)), Some(0xabc));
        for bad in [
            "checkpoint-12",
            "checkpoint-000000000000000G",
            "checkpoint-000000000000000A",
        ] {
            assert_eq!(parse_checkpoint_name(bad), None, "{bad}");
        }
        let check = |files: &[&str], expected: std::result::Result<Opened, &str>| {
            let dir = tempfile::tempdir().expect("tempdir");
            for name in files {
                fs::write(dir.path().join(name), b"x").expect("write");
            }
            let result = DataDir::open(dir.path()).map(|(_, opened)| opened);
            match (result, expected) {
                (Ok(opened), Ok(want)) => assert_eq!(opened, want, "{files:?}"),
                (Err(error), Err(reason)) => {
                    assert!(error.to_string().contains(reason), "{files:?}: {error}")
                }
                (result, want) => panic!("{files:?}: got {result:?}, want {want:?}"),
            }
        };
        check(&[], Ok(Opened::New));
        check(&["lock"], Ok(Opened::New));
        check(&["photo.jpg"], Err("is not a dfs-master data directory"));
        check(&["namespace.checkpoint"], Err("no format file"));
        check(&["format"], Err("not a dfs-master format file"));
        // Once made ours, it opens as existing; a stranger inside is refused.
        let dir = tempfile::tempdir().expect("tempdir");
        drop(DataDir::open(dir.path()).expect("new"));
        let (data_dir, opened) = DataDir::open(dir.path()).expect("again");
        assert_eq!(opened, Opened::Existing);
        // And it is locked while open.
        let error = DataDir::open(dir.path()).err().expect("locked");
        assert!(
            error.to_string().contains("in use by another master"),
            "{error}"
        );
        drop(data_dir);
        fs::write(dir.path().join("notes.txt"), b"x").expect("write");
        let error = DataDir::open(dir.path()).err().expect("stranger");
        assert!(error.to_string().contains("notes.txt"), "{error}");
    }
}
