//! One file job: decide whether the target is skipped, refused or
//! (over)written; write it under a temporary name in the target directory
//! and rename it over the final name only once it is complete; optionally
//! preserve mode and mtime, and verify checksums afterwards.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use dfs_engine::limits::NAME_BYTES_MAX;
use dfs_engine::msg::ErrorKind;
use dfs_engine::path::DfsPath;
use dfs_engine::{Error, IoContext, Result};

use dfs_client::batch::{SmallFile, SMALL_FILE_BYTES_MAX};
use dfs_client::{Seekable, WriteOptions};

use super::args::{Existing, Options};
use super::blocks::{
    self, RangeSource, StreamBudget, BLOCK_STREAMS_PER_FILE_MAX, PARALLEL_BLOCKS_MIN,
};
use super::plan::FileJob;
use super::side::{Entry, Kind, Sides};
use super::url::Location;

/// The marker between a temporary file's name and its random suffix.
const TEMPORARY_MARKER: &str = ".dfs-cp-";
/// Hex digits of the random suffix.
const TEMPORARY_SUFFIX_DIGITS: usize = 16;
/// Permission bits of local files written without `-p` (before the umask).
const LOCAL_FILE_MODE: u32 = 0o666;
/// Permission bits of cluster files written without `-p`.
const CLUSTER_FILE_MODE: u32 = 0o644;
/// Longest part of the final name kept in a temporary name, so that the
/// temporary name fits `NAME_BYTES_MAX`.
const TEMPORARY_NAME_KEPT_BYTES: usize =
    NAME_BYTES_MAX - 1 - TEMPORARY_MARKER.len() - TEMPORARY_SUFFIX_DIGITS;

/// `.<name>.dfs-cp-<16 hex digits>`: hidden, and recognisable by the next
/// run as a leftover of this tool.
pub fn temporary_name(name: &OsStr, random: u64) -> OsString {
    let mut kept = name.as_bytes();
    if kept.len() > TEMPORARY_NAME_KEPT_BYTES {
        kept = &kept[..TEMPORARY_NAME_KEPT_BYTES];
        // Cluster names must stay UTF-8: cut on a character boundary.
        while !kept.is_empty() && std::str::from_utf8(kept).is_err() && name.to_str().is_some() {
            kept = &kept[..kept.len() - 1];
        }
    }
    let mut bytes = Vec::with_capacity(kept.len() + 32);
    bytes.push(b'.');
    bytes.extend_from_slice(kept);
    bytes.extend_from_slice(TEMPORARY_MARKER.as_bytes());
    bytes.extend_from_slice(format!("{random:016x}").as_bytes());
    OsString::from_vec(bytes)
}

/// Whether `name` is a temporary name this tool makes.
pub fn is_temporary_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    let suffix_start = bytes.len().saturating_sub(TEMPORARY_SUFFIX_DIGITS);
    let marker_start = suffix_start.saturating_sub(TEMPORARY_MARKER.len());
    bytes.first() == Some(&b'.')
        && bytes.len() >= 1 + TEMPORARY_MARKER.len() + TEMPORARY_SUFFIX_DIGITS
        && &bytes[marker_start..suffix_start] == TEMPORARY_MARKER.as_bytes()
        && bytes[suffix_start..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// What to do with one job's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No target yet.
    Copy,
    Overwrite,
    Skip(&'static str),
    /// It exists, differs, and neither --force nor --update was given.
    Refuse,
}

/// Decides for a target that exists. `mtime_comparable`: the target side
/// keeps a copied mtime (local files; cluster files once attributes can be
/// set). `same_content` is asked only when sizes match and content decides.
pub fn decide(
    existing: Existing,
    compare_content: bool,
    source: &Entry,
    target: &Entry,
    mtime_comparable: bool,
    same_content: impl FnOnce() -> Result<bool>,
) -> Result<Decision> {
    let same_size = source.size_bytes == target.size_bytes;
    if existing == Existing::Update && !compare_content && mtime_comparable {
        return Ok(if same_size && source.modified_ns == target.modified_ns {
            Decision::Skip("same size and modification time")
        } else {
            Decision::Overwrite
        });
    }
    if same_size && same_content()? {
        return Ok(Decision::Skip("same size and checksum"));
    }
    Ok(match existing {
        Existing::Refuse => Decision::Refuse,
        Existing::Force | Existing::Update => Decision::Overwrite,
    })
}

/// How one job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Copied {
        length_bytes: u64,
    },
    Skipped {
        reason: &'static str,
    },
    /// A dry run: it would have been copied.
    WouldCopy,
}

/// Runs file jobs, one at a time, with its own connections.
pub struct Worker<'a> {
    pub sides: Sides,
    options: &'a Options,
    /// Extra streams for the blocks of large files.
    budget: &'a StreamBudget,
    /// The last cluster target looked at existed: a rerun, most likely, so
    /// the next target is looked at before a write is opened.
    target_existed: bool,
}

impl<'a> Worker<'a> {
    pub fn new(sides: Sides, options: &'a Options, budget: &'a StreamBudget) -> Worker<'a> {
        Worker {
            sides,
            options,
            budget,
            target_existed: false,
        }
    }

    /// Extra streams for a file of `block_count` blocks (given back by the
    /// caller); none for small files.
    fn extra_streams(&self, block_count: u64) -> usize {
        if block_count < PARALLEL_BLOCKS_MIN {
            return 0;
        }
        let wanted = usize::try_from(block_count)
            .unwrap_or(usize::MAX)
            .min(BLOCK_STREAMS_PER_FILE_MAX);
        self.budget.take_up_to(wanted - 1)
    }

    pub fn process(&mut self, job: &FileJob) -> Result<Outcome> {
        let options = self.options;
        if job.target.is_cluster() && !options.dry_run && !self.target_existed {
            // Optimistic: in a fresh copy targets do not exist yet, and an
            // open that finds one fails with AlreadyExists before any byte
            // is sent, so a new file costs no stat.
            match self.write_to(job, &job.target, false) {
                Err(Error::Remote(error)) if error.kind == ErrorKind::AlreadyExists => {}
                written => return self.verified(job, written?),
            }
        }
        let mut overwrite = false;
        let existing = self.sides.stat(&job.target)?;
        self.target_existed = existing.is_some();
        if let Some(target) = existing {
            if target.kind == Kind::Directory {
                return Err(Error::Invalid(format!("{}: is a directory", job.target)));
            }
            if let (Kind::Other, Location::Local(path)) = (target.kind, &job.target) {
                // A device or FIFO (`dfs-cp dfs:///f /dev/null`) is written
                // in place, as `cp` does: no temporary name, no rename over
                // it, no skip rules (it has no size or time to compare).
                return self.copy_into_special(job, path);
            }
            let sides = &mut self.sides;
            let decision = decide(
                options.existing,
                options.compare_content,
                &job.entry,
                &target,
                // Both sides keep a copied modification time (`-p`).
                true,
                || Ok(sides.checksum(&job.source)? == sides.checksum(&job.target)?),
            )?;
            match decision {
                Decision::Skip(reason) => return Ok(Outcome::Skipped { reason }),
                Decision::Refuse => {
                    return Err(Error::Invalid(format!(
                        "{}: exists; use --force or --update",
                        job.target
                    )))
                }
                Decision::Copy => {}
                Decision::Overwrite => overwrite = true,
            }
        }
        if options.dry_run {
            return Ok(Outcome::WouldCopy);
        }
        let length_bytes = if job.target.is_cluster() {
            self.write_to(job, &job.target, overwrite)?
        } else {
            self.copy(job)?
        };
        self.verified(job, length_bytes)
    }

    /// Whether `job` may be written in a batch of small files: a regular
    /// local file into the cluster that fits one block of one chunk, in a
    /// copy that writes. Not while targets are being found to exist (a
    /// rerun): there each target is looked at first, as `process` does.
    /// Not with `--fail-fast`: a batch writes the files after one that
    /// fails before that failure is known.
    pub fn batchable(&self, job: &FileJob) -> bool {
        let options = self.options;
        let size_bytes = job.entry.size_bytes;
        matches!(
            (&job.source, &job.target),
            (Location::Local(_), Location::Cluster { .. })
        ) && job.entry.kind == Kind::File
            && size_bytes <= SMALL_FILE_BYTES_MAX
            && options.block_bytes.is_none_or(|block| size_bytes <= block)
            && !options.dry_run
            && !options.fail_fast
            && !self.target_existed
    }

    /// Writes batchable jobs (`batchable`, all to one master) together:
    /// for each job, in order, its outcome, or None when it is left to
    /// `process` (its target exists, its source is no longer small or
    /// cannot be read, the batch failed it), which then does what it does
    /// for any job and reports the file's own error.
    pub fn write_batch(&mut self, jobs: &[FileJob]) -> Vec<Option<Result<Outcome>>> {
        let mut outcomes: Vec<Option<Result<Outcome>>> = jobs.iter().map(|_| None).collect();
        let Some(master) = jobs.first().and_then(|job| cluster_master(&job.target)) else {
            return outcomes;
        };
        let master = master.to_string();
        let mut files = Vec::with_capacity(jobs.len());
        let mut written_jobs = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.iter().enumerate() {
            let (
                Location::Local(source),
                Location::Cluster {
                    master: target_master,
                    path,
                },
            ) = (&job.source, &job.target)
            else {
                continue;
            };
            if *target_master != master {
                continue;
            }
            let Some(data) = read_small_file(source) else {
                continue;
            };
            let preserve = self.options.preserve.then_some(&job.entry);
            let write_options = self.write_options(preserve, false);
            files.push(SmallFile {
                path: path.clone(),
                data,
                overwrite: false,
                mode: write_options.mode,
                modified_ns: write_options.modified_ns,
            });
            written_jobs.push(index);
        }
        if files.is_empty() {
            return outcomes;
        }
        let write_options = self.write_options(None, false);
        let written = self
            .sides
            .client(&master)
            .and_then(|client| client.put_small_files(&files, &write_options));
        let Ok(results) = written else {
            return outcomes;
        };
        for (index, result) in written_jobs.into_iter().zip(results) {
            if let Ok(length_bytes) = result {
                outcomes[index] = Some(self.verified(&jobs[index], length_bytes));
            }
        }
        outcomes
    }

    /// Copies a cluster file into an existing device, FIFO or socket.
    fn copy_into_special(&mut self, job: &FileJob, target: &Path) -> Result<Outcome> {
        let Location::Cluster { master, path } = &job.source else {
            return Err(Error::Invalid(format!(
                "{}: a local file cannot be copied into {}",
                job.source, job.target
            )));
        };
        if self.options.dry_run {
            return Ok(Outcome::WouldCopy);
        }
        let Some(mut special) = crate::cli::open_special(target)? else {
            return Err(Error::Invalid(format!(
                "{}: is no longer a device or FIFO",
                job.target
            )));
        };
        let mut reader = self.sides.client(master)?.open(path)?;
        let length_bytes = reader.copy_to(&mut special, &target.display().to_string())?;
        Ok(Outcome::Copied { length_bytes })
    }

    /// Checks a copy when asked to; the outcome of a copy.
    fn verified(&mut self, job: &FileJob, length_bytes: u64) -> Result<Outcome> {
        if self.options.verify {
            let source = self.sides.checksum(&job.source)?;
            let target = self.sides.checksum(&job.target)?;
            if source != target {
                return Err(Error::Invalid(format!(
                    "verify failed: source has {} bytes with CRC32C {:08x}, the copy {} bytes with {:08x}",
                    source.length_bytes, source.crc32c, target.length_bytes, target.crc32c
                )));
            }
        }
        Ok(Outcome::Copied { length_bytes })
    }

    /// Writes a local target under a temporary name, then renames it over
    /// the final name; a failure removes the temporary file. (A cluster
    /// file is invisible until its write closes, so cluster targets are
    /// written under their final name.)
    fn copy(&mut self, job: &FileJob) -> Result<u64> {
        let (Some(directory), Some(name)) = (job.target.parent(), job.target.name()) else {
            return Err(Error::Invalid(format!("{}: not a file name", job.target)));
        };
        let temporary = directory.join(&temporary_name(&name, dfs_engine::rpc::random_u64()?))?;
        let written = self
            .write_to(job, &temporary, false)
            .and_then(|length_bytes| {
                self.sides.rename(&temporary, &job.target)?;
                Ok(length_bytes)
            });
        if written.is_err() {
            // Best effort: the next run removes what is left anyway.
            if self.sides.stat(&temporary).ok().flatten().is_some() {
                let _ = self.sides.remove_file(&temporary);
            }
        }
        written
    }

    /// Copies the job's source to `target`; `overwrite` replaces a cluster
    /// file that exists there.
    fn write_to(&mut self, job: &FileJob, target: &Location, overwrite: bool) -> Result<u64> {
        let options = self.options;
        let preserve = options.preserve.then_some(&job.entry);
        match (&job.source, target) {
            (Location::Local(source), Location::Cluster { master, path }) => {
                let file =
                    File::open(source).with_context(|| format!("open {}", source.display()))?;
                let length_bytes = file
                    .metadata()
                    .with_context(|| format!("stat {}", source.display()))?
                    .len();
                let write_options = self.write_options(preserve, overwrite);
                if let Some(written) =
                    self.put_in_parallel(master, path, write_options, &file, length_bytes)?
                {
                    return Ok(written);
                }
                let mut input =
                    Seekable::new(file).with_context(|| format!("read {}", source.display()))?;
                let stats = self
                    .sides
                    .client(master)?
                    .put(path, write_options, &mut input)?;
                Ok(stats.length_bytes)
            }
            (Location::Cluster { master, path }, Location::Local(target)) => {
                let mut reader = self.sides.client(master)?.open(path)?;
                let mut file = create_local(target)?;
                let name = target.display().to_string();
                let extra = self.extra_streams(reader.block_count() as u64);
                let length_bytes = if extra > 0 {
                    let result = blocks::get_parallel(&reader, &file, &name, extra + 1);
                    self.budget.give_back(extra);
                    result?
                } else {
                    reader.copy_to(&mut file, &name)?
                };
                finish_local(file, target, options.sync, preserve)?;
                Ok(length_bytes)
            }
            (
                Location::Cluster { master, path },
                Location::Cluster {
                    master: target_master,
                    path: target_path,
                },
            ) => {
                let mut reader = self.sides.client(master)?.open(path)?;
                let write_options = self.write_options(preserve, overwrite);
                let source = blocks::ClusterSource::new(&reader);
                let length_bytes = reader.length_bytes();
                if let Some(written) = self.put_in_parallel(
                    target_master,
                    target_path,
                    write_options,
                    &source,
                    length_bytes,
                )? {
                    return Ok(written);
                }
                let mut writer = self
                    .sides
                    .client(target_master)?
                    .create(target_path, write_options)?;
                reader.copy_to(&mut writer, &job.target.to_string())?;
                Ok(writer.finish()?.length_bytes)
            }
            (Location::Local(source), Location::Local(target)) => {
                let mut input =
                    File::open(source).with_context(|| format!("open {}", source.display()))?;
                let mut file = create_local(target)?;
                let length_bytes = io::copy(&mut input, &mut file).with_context(|| {
                    format!("copy {} to {}", source.display(), target.display())
                })?;
                finish_local(file, target, options.sync, preserve)?;
                Ok(length_bytes)
            }
        }
    }

    /// Writes a file of `length_bytes` to `path` on `master` with several
    /// blocks in flight; None (nothing written) when it has too few blocks
    /// for that or no stream is free.
    fn put_in_parallel(
        &mut self,
        master: &str,
        path: &DfsPath,
        write_options: WriteOptions,
        source: &dyn RangeSource,
        length_bytes: u64,
    ) -> Result<Option<u64>> {
        let block_bytes = match self.options.block_bytes {
            Some(block_bytes) => block_bytes,
            None => self.sides.default_block_bytes(master)?,
        };
        let extra = self.extra_streams(length_bytes.div_ceil(block_bytes.max(1)));
        if extra == 0 {
            return Ok(None);
        }
        let result = self.sides.client(master).and_then(|client| {
            blocks::put_parallel(client, path, write_options, source, length_bytes, extra + 1)
        });
        self.budget.give_back(extra);
        result.map(Some)
    }

    fn write_options(&self, preserve: Option<&Entry>, overwrite: bool) -> WriteOptions {
        WriteOptions {
            replication: self.options.replication,
            block_bytes: self.options.block_bytes,
            overwrite,
            sync: self.options.sync,
            mode: preserve.map_or(CLUSTER_FILE_MODE, |entry| entry.mode),
            modified_ns: preserve.map(|entry| entry.modified_ns),
            // Blocks of large files share the run's stream budget
            // (`put_in_parallel`); other inputs go one block at a time.
            blocks_in_flight: 1,
        }
    }
}

/// The master of a cluster location.
pub fn cluster_master(location: &Location) -> Option<&str> {
    match location {
        Location::Cluster { master, .. } => Some(master),
        Location::Local(_) => None,
    }
}

/// All the bytes of a regular local file of at most `SMALL_FILE_BYTES_MAX`
/// bytes; None when it is not one (any more) or cannot be read: the normal
/// path then copies it or reports why it cannot.
fn read_small_file(path: &Path) -> Option<Vec<u8>> {
    let file = File::open(path).ok()?;
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() || metadata.len() > SMALL_FILE_BYTES_MAX {
        return None;
    }
    let capacity = usize::try_from(metadata.len()).ok()?;
    let mut data = Vec::with_capacity(capacity);
    // One byte more than allowed shows a file that grew since its stat.
    file.take(SMALL_FILE_BYTES_MAX + 1)
        .read_to_end(&mut data)
        .ok()?;
    (data.len() as u64 <= SMALL_FILE_BYTES_MAX).then_some(data)
}

fn create_local(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(LOCAL_FILE_MODE)
        .open(path)
        .with_context(|| format!("create {}", path.display()))
}

/// Sets preserved attributes and makes the bytes durable before the rename.
fn finish_local(file: File, path: &Path, sync: bool, preserve: Option<&Entry>) -> Result<()> {
    if let Some(entry) = preserve {
        file.set_permissions(fs::Permissions::from_mode(entry.mode))
            .with_context(|| format!("set the mode of {}", path.display()))?;
        file.set_modified(UNIX_EPOCH + Duration::from_nanos(entry.modified_ns))
            .with_context(|| format!("set the modification time of {}", path.display()))?;
    }
    if sync {
        file.sync_all()
            .with_context(|| format!("sync {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_recognised() {
        let name = temporary_name(OsStr::new("data.csv"), 0xabc);
        assert_eq!(name, OsStr::new(".data.csv.dfs-cp-0000000000000abc"));
        let long = "é".repeat(127);
        let long_temporary = temporary_name(OsStr::new(&long), u64::MAX);
        assert!(long_temporary.len() <= NAME_BYTES_MAX);
        assert!(
            long_temporary.to_str().is_some(),
            "cut on a character boundary"
        );
        for (candidate, expected) in [
            (name.clone(), true),
            (long_temporary, true),
            (".x.dfs-cp-0123456789abcdef".into(), true),
            ("x.dfs-cp-0123456789abcdef".into(), false),
            (".x.dfs-cp-0123456789ABCDEF".into(), false),
            (".x.dfs-cp-0123456789abcde".into(), false),
            (".x.dfs-0123456789abcdef".into(), false),
            ("data.csv".into(), false),
        ] {
            assert_eq!(is_temporary_name(&candidate), expected, "{candidate:?}");
        }
    }

    #[test]
    fn decisions() {
        let entry = |size_bytes, modified_ns| Entry {
            kind: Kind::File,
            size_bytes,
            mode: 0o644,
            modified_ns,
        };
        use Decision::{Overwrite, Refuse, Skip};
        use Existing::{Force, Refuse as Keep, Update};
        let same_content = "same size and checksum";
        let same_time = "same size and modification time";
        for (existing, compare, source, target, comparable, content, expected) in [
            (
                Keep,
                true,
                entry(5, 1),
                entry(5, 2),
                true,
                true,
                Skip(same_content),
            ),
            (Keep, true, entry(5, 1), entry(5, 1), true, false, Refuse),
            (Keep, true, entry(5, 1), entry(6, 1), true, true, Refuse),
            (
                Force,
                true,
                entry(5, 1),
                entry(5, 1),
                true,
                false,
                Overwrite,
            ),
            (
                Force,
                true,
                entry(5, 1),
                entry(5, 1),
                true,
                true,
                Skip(same_content),
            ),
            (
                Update,
                false,
                entry(5, 1),
                entry(5, 1),
                true,
                false,
                Skip(same_time),
            ),
            (
                Update,
                false,
                entry(5, 1),
                entry(5, 2),
                true,
                true,
                Overwrite,
            ),
            (
                Update,
                false,
                entry(5, 1),
                entry(6, 1),
                true,
                true,
                Overwrite,
            ),
            // Cluster targets keep no copied mtime yet: content decides.
            (
                Update,
                false,
                entry(5, 1),
                entry(5, 2),
                false,
                true,
                Skip(same_content),
            ),
            (
                Update,
                false,
                entry(5, 1),
                entry(5, 1),
                false,
                false,
                Overwrite,
            ),
            (
                Update,
                true,
                entry(5, 1),
                entry(5, 1),
                true,
                false,
                Overwrite,
            ),
            (
                Update,
                true,
                entry(5, 1),
                entry(5, 9),
                true,
                true,
                Skip(same_content),
            ),
        ] {
            let mut asked = false;
            let decision = decide(existing, compare, &source, &target, comparable, || {
                asked = true;
                Ok(content)
            })
            .expect("decide");
            assert_eq!(
                decision, expected,
                "{existing:?} {compare} {source:?} {target:?}"
            );
            if source.size_bytes != target.size_bytes {
                assert!(!asked, "sizes differ: no content comparison");
            }
        }
    }
}
