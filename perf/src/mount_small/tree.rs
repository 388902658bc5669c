//! The source trees of `dfs-perf mount --small-files` and `--stat-entries`:
//! files of random bytes, made once per run, with each file's CRC32C kept
//! so that any copy of the tree (through a mount) can be checked byte for
//! byte.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::common::checksum_file;

/// Files per directory of a nested tree: a source tree's package or
/// module holds some dozens to some hundreds.
pub(super) const FILES_PER_DIRECTORY: usize = 200;

/// How the files of a tree are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// Directories `d000`, `d001`, ... of `FILES_PER_DIRECTORY` files each.
    Nested,
    /// Every file directly in the tree's top directory.
    Flat,
}

/// One file of a tree.
struct TreeFile {
    /// Below the tree's top directory.
    relative: PathBuf,
    crc: u32,
}

/// A tree of random files on the local disk: `parent/name/...`.
pub(super) struct Tree {
    parent: PathBuf,
    name: String,
    file_size: u64,
    files: Vec<TreeFile>,
    /// Directories below the top one.
    directories: usize,
}

/// The paths of `count` files below a tree's top directory, and the
/// directories they need, in the order they are made.
pub(super) fn layout(count: usize, layout: Layout) -> (Vec<PathBuf>, Vec<PathBuf>) {
    match layout {
        Layout::Flat => {
            let files = (0..count)
                .map(|index| PathBuf::from(format!("f{index:06}")))
                .collect();
            (files, Vec::new())
        }
        Layout::Nested => {
            let directories: Vec<PathBuf> = (0..count.div_ceil(FILES_PER_DIRECTORY))
                .map(|index| PathBuf::from(format!("d{index:03}")))
                .collect();
            let files = (0..count)
                .map(|index| {
                    directories[index / FILES_PER_DIRECTORY]
                        .join(format!("f{:04}", index % FILES_PER_DIRECTORY))
                })
                .collect();
            (files, directories)
        }
    }
}

impl Tree {
    /// Writes `count` files of `file_size` random bytes (xorshift, a fresh
    /// seed each run) under `parent/name`, removing what a run before left
    /// there. Nothing is synced here: the caller's `drop_caches` syncs.
    pub(super) fn generate(
        parent: &Path,
        name: &str,
        count: usize,
        file_size: u64,
        shape: Layout,
    ) -> Result<Tree> {
        let top = parent.join(name);
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        if top.exists() {
            std::fs::remove_dir_all(&top).with_context(|| format!("remove {}", top.display()))?;
        }
        std::fs::create_dir(&top).with_context(|| format!("create {}", top.display()))?;
        let (paths, directories) = layout(count, shape);
        for directory in &directories {
            let path = top.join(directory);
            std::fs::create_dir(&path).with_context(|| format!("create {}", path.display()))?;
        }
        let mut random = Xorshift::new()?;
        let mut buffer = vec![0u8; usize::try_from(file_size).context("--file-size")?];
        let mut files = Vec::with_capacity(count);
        for relative in paths {
            random.fill(&mut buffer);
            let path = top.join(&relative);
            File::create(&path)
                .and_then(|mut file| file.write_all(&buffer))
                .with_context(|| format!("write {}", path.display()))?;
            files.push(TreeFile {
                relative,
                crc: crc32c::crc32c(&buffer),
            });
        }
        Ok(Tree {
            parent: parent.to_path_buf(),
            name: name.to_string(),
            file_size,
            files,
            directories: directories.len(),
        })
    }

    /// The tree's top directory's name: a copy of the tree is `DIR/name`.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn root(&self) -> PathBuf {
        self.parent.join(&self.name)
    }

    pub(super) fn file_count(&self) -> usize {
        self.files.len()
    }

    pub(super) fn directory_count(&self) -> usize {
        self.directories
    }

    pub(super) fn file_size(&self) -> u64 {
        self.file_size
    }

    /// Reads every source file once (into the page cache), checking that
    /// none changed.
    pub(super) fn warm(&self) -> Result<()> {
        self.verify_copy(&self.root())
            .context("the source tree changed")
    }

    /// A `tar` archive of the tree at `archive` (its members are
    /// `name/...`), written once.
    pub(super) fn archive(&self, archive: &Path) -> Result<()> {
        let status = Command::new("tar")
            .arg("-cf")
            .arg(archive)
            .arg("-C")
            .arg(&self.parent)
            .arg(&self.name)
            .status()
            .context("run tar -c")?;
        if !status.success() {
            bail!("tar -cf {} failed: {status}", archive.display());
        }
        Ok(())
    }

    /// Checks that `copy` holds exactly the tree: every file with the
    /// source's length and CRC32C, and no other file or directory.
    pub(super) fn verify_copy(&self, copy: &Path) -> Result<()> {
        for file in &self.files {
            let path = copy.join(&file.relative);
            let (bytes, crc) = checksum_file(&path)?;
            if bytes != self.file_size || crc != file.crc {
                bail!(
                    "VERIFY FAILED: {} has {bytes} bytes with crc32c {crc:08x}, expected {} \
                     bytes with {:08x}",
                    path.display(),
                    self.file_size,
                    file.crc
                );
            }
        }
        let found = count_entries(copy)?;
        let expected = Entries {
            files: self.files.len(),
            directories: self.directories,
        };
        if found != expected {
            bail!(
                "VERIFY FAILED: {} holds {} files and {} directories, expected {} and {}",
                copy.display(),
                found.files,
                found.directories,
                expected.files,
                expected.directories
            );
        }
        Ok(())
    }
}

/// Files and directories below a directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entries {
    files: usize,
    directories: usize,
}

/// Everything below `dir`, at any depth (symbolic links and other
/// non-directories count as files).
fn count_entries(dir: &Path) -> Result<Entries> {
    let mut entries = Entries::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("list {}", dir.display()))? {
            let entry = entry.with_context(|| format!("list {}", dir.display()))?;
            let kind = entry
                .file_type()
                .with_context(|| format!("type of {}", entry.path().display()))?;
            if kind.is_dir() {
                entries.directories += 1;
                pending.push(entry.path());
            } else {
                entries.files += 1;
            }
        }
    }
    Ok(entries)
}

/// The xorshift64 generator `common::generate` uses, seeded afresh.
struct Xorshift(u64);

impl Xorshift {
    fn new() -> Result<Xorshift> {
        Ok(Xorshift(
            0x2545_f491_4f6c_dd1d ^ dfs_engine::rpc::random_u64()?,
        ))
    }

    fn fill(&mut self, buffer: &mut [u8]) {
        for chunk in buffer.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_layouts_fill_directories_of_two_hundred() {
        let (files, directories) = layout(401, Layout::Nested);
        assert_eq!(files.len(), 401);
        assert_eq!(directories, ["d000", "d001", "d002"].map(PathBuf::from));
        assert_eq!(files[0], Path::new("d000/f0000"));
        assert_eq!(files[199], Path::new("d000/f0199"));
        assert_eq!(files[200], Path::new("d001/f0000"));
        assert_eq!(files[400], Path::new("d002/f0000"));
        let (files, directories) = layout(3, Layout::Flat);
        assert_eq!(files, ["f000000", "f000001", "f000002"].map(PathBuf::from));
        assert!(directories.is_empty());
        assert_eq!(layout(0, Layout::Nested), (Vec::new(), Vec::new()));
    }

    #[test]
    fn a_copy_must_match_every_file_and_hold_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = Tree::generate(dir.path(), "tree", 205, 10, Layout::Nested).expect("tree");
        assert_eq!((tree.file_count(), tree.directory_count()), (205, 2));
        tree.warm().expect("the source matches itself");
        let copy = dir.path().join("copy");
        std::fs::create_dir(&copy).expect("mkdir");
        let status = Command::new("cp")
            .arg("-r")
            .arg(tree.root())
            .arg(copy.join("tree"))
            .status()
            .expect("cp");
        assert!(status.success());
        let copied = copy.join("tree");
        tree.verify_copy(&copied).expect("an exact copy");
        std::fs::write(copied.join("extra"), b"x").expect("write");
        assert!(tree.verify_copy(&copied).is_err());
        std::fs::remove_file(copied.join("extra")).expect("rm");
        std::fs::write(copied.join("d001/f0004"), b"0123456789").expect("write");
        assert!(tree.verify_copy(&copied).is_err());
    }
}
