//! The checkpoint: the whole namespace in one file, written to a temporary
//! file, synced and renamed over the old one, so a crash at any moment leaves
//! either the old or the new checkpoint. Layout in docs/format.md.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use dfs_engine::dir_lock::DirLock;
use dfs_engine::msg::ClusterId;
use dfs_engine::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};

use crate::namespace::Namespace;

pub const CHECKPOINT_FILE: &str = "namespace.checkpoint";
const CHECKPOINT_TEMP_FILE: &str = "namespace.checkpoint.tmp";
/// "DFSC" read as a little-endian u32.
const CHECKPOINT_MAGIC: u32 = u32::from_le_bytes(*b"DFSC");
const CHECKPOINT_VERSION: u16 = 1;
const HEADER_BYTES: usize = 24;
/// A checkpoint larger than this is refused before it is read (64 GiB).
const CHECKPOINT_BYTES_MAX: u64 = 64 << 30;

/// What a checkpoint holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub cluster: ClusterId,
    pub namespace: Namespace,
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
    if version != CHECKPOINT_VERSION {
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
    let checkpoint: Checkpoint = postcard::from_bytes(payload)
        .map_err(|e| corrupted(format!("undecodable payload: {e}")))?;
    checkpoint
        .namespace
        .check_invariants()
        .map_err(|e| corrupted(format!("namespace invariant broken: {e}")))?;
    Ok(checkpoint)
}

/// Loads the checkpoint in `dir`, None if there is none yet.
pub fn load(dir: &Path) -> Result<Option<Checkpoint>> {
    let path = dir.join(CHECKPOINT_FILE);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
    };
    let length = file
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?
        .len();
    if length > CHECKPOINT_BYTES_MAX {
        return Err(Error::corrupted(
            format!("checkpoint {}", path.display()),
            format!("{length} bytes is over the limit of {CHECKPOINT_BYTES_MAX}"),
        ));
    }
    let mut bytes = Vec::with_capacity(length as usize);
    file.read_to_end(&mut bytes)
        .with_context(|| format!("read {}", path.display()))?;
    decode(&bytes, &path.display().to_string()).map(Some)
}

/// Writes `checkpoint` durably: temp file, fsync, rename, fsync directory.
pub fn store(dir: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let payload = postcard::to_stdvec(checkpoint)
        .map_err(|e| Error::Invalid(format!("encode checkpoint: {e}")))?;
    let temp = dir.join(CHECKPOINT_TEMP_FILE);
    let mut file = File::create(&temp).with_context(|| format!("create {}", temp.display()))?;
    file.write_all(&encode_header(&payload))
        .and_then(|()| file.write_all(&payload))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", temp.display()))?;
    drop(file);
    let target = dir.join(CHECKPOINT_FILE);
    fs::rename(&temp, &target)
        .with_context(|| format!("rename checkpoint into {}", target.display()))?;
    sync_directory(dir)
}

fn sync_directory(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("sync directory {}", dir.display()))
}

/// The master's data directory, locked for as long as this value lives.
pub struct DataDir {
    path: PathBuf,
    _lock: DirLock,
}

impl DataDir {
    /// Creates `path` if needed and takes its lock; a directory in use by
    /// another master is refused.
    pub fn open(path: &Path) -> Result<DataDir> {
        fs::create_dir_all(path)
            .with_context(|| format!("create data directory {}", path.display()))?;
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: DirLock::acquire(path, "master")?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::Op;

    fn sample() -> Checkpoint {
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
        Checkpoint {
            cluster: ClusterId(42),
            namespace,
        }
    }

    #[test]
    fn store_then_load_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path()).expect("empty dir").is_none());
        store(dir.path(), &sample()).expect("store");
        assert_eq!(load(dir.path()).expect("load"), Some(sample()));
        assert!(!dir.path().join(CHECKPOINT_TEMP_FILE).exists());
    }

    #[test]
    fn every_damage_is_refused_with_a_reason() {
        let payload = postcard::to_stdvec(&sample()).expect("encode");
        let mut good = encode_header(&payload).to_vec();
        good.extend_from_slice(&payload);
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
}
