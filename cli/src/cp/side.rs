//! The two sides of a copy behind one set of calls: status, listing,
//! directories, renames and checksums of local paths and of cluster paths
//! (one master `Client` per master, opened on first use).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::time::UNIX_EPOCH;

use dfs_engine::msg::{EntryKind, EntryStatus, ErrorKind};
use dfs_engine::{Error, IoContext, Result};

use dfs_client::{Client, FileChecksum};

use super::url::Location;

/// Bytes read at a time when checksumming a local file.
const CHECKSUM_BUFFER_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Symlink,
    /// Sockets, devices, pipes: never copied.
    Other,
}

/// What a copy needs to know of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub size_bytes: u64,
    /// Permission bits (0o7777 at most).
    pub mode: u32,
    /// Milliseconds since the Unix epoch.
    pub modified_ns: u64,
}

impl Entry {
    fn from_status(status: &EntryStatus) -> Entry {
        Entry {
            kind: match status.kind {
                EntryKind::File => Kind::File,
                EntryKind::Directory => Kind::Directory,
                EntryKind::Symlink => Kind::Symlink,
                EntryKind::Fifo
                | EntryKind::Socket
                | EntryKind::CharDevice
                | EntryKind::BlockDevice => Kind::Other,
            },
            size_bytes: status.size_bytes,
            mode: status.mode & 0o7777,
            modified_ns: status.modified_ns,
        }
    }

    fn from_metadata(metadata: &Metadata) -> Entry {
        let file_type = metadata.file_type();
        let kind = if file_type.is_file() {
            Kind::File
        } else if file_type.is_dir() {
            Kind::Directory
        } else if file_type.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other
        };
        let modified_ns = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            });
        Entry {
            kind,
            size_bytes: metadata.len(),
            mode: metadata.mode() & 0o7777,
            modified_ns,
        }
    }
}

/// Access to local paths and to any number of clusters, for one thread.
pub struct Sides {
    clients: HashMap<String, Client>,
    /// Each master's default block size, asked once.
    block_bytes: HashMap<String, u64>,
    follow_symlinks: bool,
}

impl Sides {
    pub fn new(follow_symlinks: bool) -> Sides {
        Sides {
            clients: HashMap::new(),
            block_bytes: HashMap::new(),
            follow_symlinks,
        }
    }

    /// The connection to `master`, made on first use.
    pub fn client(&mut self, master: &str) -> Result<&mut Client> {
        if !self.clients.contains_key(master) {
            let client = Client::connect(master)?;
            self.clients.insert(master.to_string(), client);
        }
        self.clients
            .get_mut(master)
            .ok_or_else(|| Error::Invalid(format!("no connection to {master}")))
    }

    /// The block size files get on `master` when the copy does not choose one.
    pub fn default_block_bytes(&mut self, master: &str) -> Result<u64> {
        if let Some(block_bytes) = self.block_bytes.get(master) {
            return Ok(*block_bytes);
        }
        let block_bytes = self.client(master)?.cluster_report()?.default_block_bytes;
        self.block_bytes.insert(master.to_string(), block_bytes);
        Ok(block_bytes)
    }

    /// The entry at `location`; None when nothing is there.
    pub fn stat(&mut self, location: &Location) -> Result<Option<Entry>> {
        match location {
            Location::Local(path) => {
                let metadata = if self.follow_symlinks {
                    fs::metadata(path).or_else(|error| match error.kind() {
                        // A dangling link is still a link.
                        io::ErrorKind::NotFound => fs::symlink_metadata(path),
                        _ => Err(error),
                    })
                } else {
                    fs::symlink_metadata(path)
                };
                match metadata {
                    Ok(metadata) => Ok(Some(Entry::from_metadata(&metadata))),
                    Err(error)
                        if matches!(
                            error.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                        ) =>
                    {
                        Ok(None)
                    }
                    Err(error) => Err(Error::io(path.display().to_string(), error)),
                }
            }
            Location::Cluster { master, path } => match self.client(master)?.stat(path) {
                Ok(status) => Ok(Some(Entry::from_status(&status))),
                Err(Error::Remote(remote))
                    if matches!(remote.kind, ErrorKind::NotFound | ErrorKind::NotADirectory) =>
                {
                    Ok(None)
                }
                Err(error) => Err(error),
            },
        }
    }

    /// A directory's entries in name order.
    pub fn list(&mut self, location: &Location) -> Result<Vec<(OsString, Entry)>> {
        match location {
            Location::Local(path) => {
                let listed = fs::read_dir(path).with_context(|| path.display().to_string())?;
                let mut entries = Vec::new();
                for item in listed {
                    let item = item.with_context(|| path.display().to_string())?;
                    let name = item.file_name();
                    let child = Location::Local(path.join(&name));
                    if let Some(entry) = self.stat(&child)? {
                        entries.push((name, entry));
                    }
                }
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(entries)
            }
            Location::Cluster { master, path } => {
                let listed = self.client(master)?.list(path)?;
                Ok(listed
                    .iter()
                    .map(|status| (OsString::from(&status.name), Entry::from_status(status)))
                    .collect())
            }
        }
    }

    /// Makes a directory (not its parents); one that exists is fine, a file
    /// in its place is an error that names it.
    pub fn make_directory(&mut self, location: &Location, mode: u32) -> Result<()> {
        if let Some(entry) = self.stat(location)? {
            return match entry.kind {
                Kind::Directory => Ok(()),
                _ => Err(Error::Invalid(format!(
                    "{location}: exists and is not a directory"
                ))),
            };
        }
        match location {
            Location::Local(path) => fs::DirBuilder::new()
                .mode(mode)
                .create(path)
                .with_context(|| format!("make directory {}", path.display())),
            Location::Cluster { master, path } => self.client(master)?.mkdir(path, false, mode),
        }
    }

    pub fn remove_file(&mut self, location: &Location) -> Result<()> {
        match location {
            Location::Local(path) => {
                fs::remove_file(path).with_context(|| format!("remove {}", path.display()))
            }
            Location::Cluster { master, path } => self.client(master)?.delete(path, false),
        }
    }

    /// Renames a file over another on the same side, atomically.
    pub fn rename(&mut self, source: &Location, target: &Location) -> Result<()> {
        match (source, target) {
            (Location::Local(source), Location::Local(target)) => fs::rename(source, target)
                .with_context(|| format!("rename {} to {}", source.display(), target.display())),
            (
                Location::Cluster { master, path },
                Location::Cluster {
                    master: target_master,
                    path: target_path,
                },
            ) if master == target_master => self.client(master)?.rename(path, target_path),
            _ => Err(Error::Invalid(format!(
                "cannot rename {source} to {target}: not on the same side"
            ))),
        }
    }

    /// The length and CRC32C of a file's bytes.
    pub fn checksum(&mut self, location: &Location) -> Result<FileChecksum> {
        match location {
            Location::Local(path) => local_checksum(path),
            Location::Cluster { master, path } => self.client(master)?.file_checksum(path),
        }
    }
}

/// The checksum of a local file, by reading it.
pub fn local_checksum(path: &Path) -> Result<FileChecksum> {
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut buffer = vec![0u8; CHECKSUM_BUFFER_BYTES];
    let mut checksum = FileChecksum {
        length_bytes: 0,
        crc32c: 0,
    };
    loop {
        let count = match file.read(&mut buffer) {
            Ok(0) => return Ok(checksum),
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(Error::io(format!("read {}", path.display()), error)),
        };
        checksum.crc32c = crc32c::crc32c_append(checksum.crc32c, &buffer[..count]);
        checksum.length_bytes += count as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_checksum_is_the_crc_of_the_bytes() {
        let dir = tempfile::tempdir().expect("temporary directory");
        for length in [0usize, 1, CHECKSUM_BUFFER_BYTES, CHECKSUM_BUFFER_BYTES + 7] {
            let data: Vec<u8> = (0..length).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("f{length}"));
            fs::write(&path, &data).expect("write");
            let checksum = local_checksum(&path).expect("checksum");
            assert_eq!(checksum.length_bytes, length as u64);
            assert_eq!(checksum.crc32c, crc32c::crc32c(&data), "{length} bytes");
        }
    }

    #[test]
    fn local_entries_and_directories() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = Location::Local(dir.path().to_path_buf());
        let mut sides = Sides::new(false);
        fs::write(dir.path().join("b"), b"xyz").expect("write");
        std::os::unix::fs::symlink("b", dir.path().join("a")).expect("symlink");
        sides
            .make_directory(&root.join("c".as_ref()).expect("join"), 0o755)
            .expect("mkdir");
        let listed: Vec<(String, Kind, u64)> = sides
            .list(&root)
            .expect("list")
            .into_iter()
            .map(|(name, entry)| {
                (
                    name.to_string_lossy().into_owned(),
                    entry.kind,
                    entry.size_bytes,
                )
            })
            .collect();
        assert_eq!(listed[0].0, "a");
        assert_eq!(listed[0].1, Kind::Symlink);
        assert_eq!(listed[1], ("b".to_string(), Kind::File, 3));
        assert_eq!(listed[2].1, Kind::Directory);
        let followed = Sides::new(true)
            .stat(&root.join("a".as_ref()).expect("join"))
            .expect("stat");
        assert_eq!(followed.map(|entry| entry.kind), Some(Kind::File));
        let error = sides
            .make_directory(&root.join("b".as_ref()).expect("join"), 0o755)
            .expect_err("a file is in the way");
        assert!(
            error
                .to_string()
                .ends_with("/b: exists and is not a directory"),
            "{error}"
        );
        assert_eq!(
            sides
                .stat(&root.join("missing".as_ref()).expect("join"))
                .expect("stat"),
            None
        );
    }
}
