//! The keeper of each data directory: one thread per directory that watches
//! the directory's health and scrubs its blocks.
//!
//! Health: every `CHECK_INTERVAL_MS` the keeper checks that its directory is
//! still the one the minion opened (same filesystem, so not unmounted;
//! subdirectories present), and also writes, syncs and reads back a probe
//! file when the data path saw an unexpected error there
//! (`BlockStore::check_directory`). A failed check takes the directory out
//! of service (`Store::fail_directory`: reported to the master with a full
//! block report after it), and the keeper ends.
//!
//! Scrubbing: a pass reads every sealed block of the directory, one block at
//! a time and one chunk at a time into one chunk-sized buffer, through the
//! engine's verifying reader (footer, checksum array, then each chunk's
//! CRC32C), after asking the kernel to drop the block's cached pages so the
//! disk's bytes are what is checked. A pass starts every `--scrub-period`,
//! so each block is verified once per period. A replica that fails is
//! quarantined at once (`BlockStore::quarantine`: never served again, a
//! read of it gets `Corrupted`) and queued for the master
//! (`ReportBadReplicas`, sent by the heartbeat; the master then deletes it).
//! Blocks a reader found bad (`Store::suspect`) are verified first, in full.
//! Each pass ends with one summary line in the log.
//!
//! Policy, yielding to clients: while the minion serves no client (no read
//! or write in flight, and none ended in the last `QUIET_MS`), the keeper
//! reads at full speed, so an idle minion finishes its pass early and then
//! sleeps until the next period. While clients are served, it keeps the
//! pace that just finishes the pass within the period (a chunk of n bytes
//! is followed by a pause of n * period / bytes of the pass), and it looks
//! at the clients again before every chunk. A busy minion so gives scrubbing
//! no more disk time than the period needs, and an idle one as much as the
//! disk has.
//!
//! With `--scrub-period off` nothing is verified (neither passes nor blocks
//! readers found bad); the health checks go on.
//!
//! Where a pass is (its start and the last block done) is kept in
//! `DIR/scrub.cursor`, at most every `CURSOR_SAVE_INTERVAL_MS`, so a
//! restarted minion resumes its pass instead of starting over: frequent
//! restarts would otherwise never let a pass reach the last blocks.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use dfs_engine::block_format::ReplicaName;
use dfs_engine::block_store::{self, BlockReader};
use dfs_engine::msg::{BlockId, ReplicaId};
use dfs_engine::rpc::now_ms;
use dfs_engine::{Error, Result};

use crate::metrics::CheckedBy;
use crate::store::Store;

/// How often a keeper checks its directory.
const CHECK_INTERVAL_MS: u64 = 1_000;
/// Longest a paced keeper sleeps before it looks at the clients again.
const BUSY_POLL_MS: u64 = 100;
/// How long a keeper that does not scrub sleeps between health checks.
const IDLE_KEEPER_WAIT_MS: u64 = 3_600_000;
/// How long a keeper waits before listing its directory again after that failed.
const LIST_RETRY_MS: u64 = 1_000;
/// Least time a resumed pass gets for what is left of it, as a share of the
/// period, so an overdue pass does not compete with clients at full speed.
const RESUMED_PASS_PERIOD_DIVISOR: u32 = 4;
/// How often the cursor file is rewritten during a pass.
const CURSOR_SAVE_INTERVAL_MS: u64 = 60_000;
/// Name of the cursor file in a data directory, and of its temporary.
pub const CURSOR_FILE_NAME: &str = "scrub.cursor";
const CURSOR_TEMPORARY_NAME: &str = "scrub.cursor.tmp";
/// Largest cursor file read; a real one is under 100 bytes.
const CURSOR_FILE_BYTES_MAX: u64 = 4096;
const CURSOR_HEADING: &str = "dfs-minion scrub cursor";
const CURSOR_FORMAT_VERSION: u32 = 1;

/// How the keepers scrub.
#[derive(Clone, Copy, Debug)]
pub struct ScrubConfig {
    /// Every block is verified once in this time; None: never.
    pub period: Option<Duration>,
}

/// Starts one keeper per data directory of `store`. They end when the
/// store's doorbell stops, or when their directory fails.
pub fn spawn(store: Arc<Store>, config: ScrubConfig) -> Result<Vec<JoinHandle<()>>> {
    let roots: Vec<PathBuf> = store.block_store().dirs().map(Path::to_path_buf).collect();
    let mut keepers = Vec::with_capacity(roots.len());
    for (index, root) in roots.into_iter().enumerate() {
        let keeper = Keeper::new(Arc::clone(&store), index, root, config.period);
        let handle = thread::Builder::new()
            .name(format!("keeper-{index}"))
            .spawn(move || keeper.run())
            .map_err(|e| Error::io("start a data directory keeper", e))?;
        keepers.push(handle);
    }
    Ok(keepers)
}

/// Where a pass is, as the cursor file keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    /// When the pass started, in ms since the Unix epoch.
    pass_started_ms: u64,
    /// The last block done (blocks are done in id order).
    after: Option<BlockId>,
}

impl Cursor {
    fn render(&self) -> String {
        let after = match self.after {
            Some(block) => block.to_string(),
            None => "none".to_string(),
        };
        format!(
            "{CURSOR_HEADING}\nversion {CURSOR_FORMAT_VERSION}\npass-started-ms {}\nafter {after}\n",
            self.pass_started_ms
        )
    }

    fn parse(bytes: &[u8]) -> Result<Cursor, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| "does not end with a newline".to_string())?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [heading, version, started, after] = lines[..] else {
            return Err(format!("has {} lines, expected 4", lines.len()));
        };
        if heading != CURSOR_HEADING {
            return Err(format!("first line is not {CURSOR_HEADING:?}"));
        }
        if field(version, "version")? != CURSOR_FORMAT_VERSION.to_string() {
            return Err(format!("unsupported {version:?}"));
        }
        let started = field(started, "pass-started-ms")?;
        let pass_started_ms = started
            .parse::<u64>()
            .ok()
            .filter(|_| started.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("bad start time {started:?}"))?;
        let after = match field(after, "after")? {
            "none" => None,
            name => Some(parse_block(name).ok_or_else(|| format!("bad block {name:?}"))?),
        };
        Ok(Cursor {
            pass_started_ms,
            after,
        })
    }
}

fn field<'a>(line: &'a str, name: &str) -> Result<&'a str, String> {
    line.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| format!("expected a line \"{name} ...\", found {line:?}"))
}

/// "blk_<16 lowercase hex>", as block ids display.
fn parse_block(name: &str) -> Option<BlockId> {
    let hex = name.strip_prefix("blk_")?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(BlockId)
}

/// One pass over the blocks of a directory.
struct Pass {
    /// When the pass started, on this clock and on the wall clock (it may
    /// have started in an earlier run).
    started: Instant,
    started_ms: u64,
    /// When this run took it up, for the summary.
    taken_up: Instant,
    /// The blocks to do, sorted by id, with the sizes of their files.
    blocks: Vec<(ReplicaName, u64)>,
    position: usize,
    current: Option<Verifying>,
    /// While clients are served, `pace_bytes` take `pace_time`.
    pace_bytes: u64,
    pace_time: Duration,
    /// No chunk before this while clients are served.
    paced_until: Instant,
    blocks_verified: u64,
    bytes_verified: u64,
    bad: u64,
    /// The last block done, for the cursor.
    last_done: Option<BlockId>,
}

impl Pass {
    /// The pause that keeps the pace after reading `bytes`.
    fn pause(&self, bytes: u64) -> Duration {
        if self.pace_bytes == 0 {
            return Duration::ZERO;
        }
        let nanos = u128::from(bytes) * self.pace_time.as_nanos() / u128::from(self.pace_bytes);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn cursor(&self) -> Cursor {
        Cursor {
            pass_started_ms: self.started_ms,
            after: self.last_done,
        }
    }
}

/// The block being verified, a chunk at a time.
struct Verifying {
    reader: BlockReader,
    inode: u64,
    file_bytes: u64,
    next_chunk: u64,
}

struct Keeper {
    store: Arc<Store>,
    index: usize,
    root: PathBuf,
    /// None: the keeper only watches the directory's health.
    period: Option<Duration>,
    next_check: Instant,
    /// When the next pass may start.
    next_pass: Instant,
    pass: Option<Pass>,
    /// What the cursor file said at start, for the first pass.
    resume: Option<Cursor>,
    cursor_saved: Instant,
    /// The one chunk buffer.
    chunk: Vec<u8>,
}

impl Keeper {
    fn new(store: Arc<Store>, index: usize, root: PathBuf, period: Option<Duration>) -> Keeper {
        let now = Instant::now();
        let resume = period.and_then(|_| read_cursor(&root));
        Keeper {
            store,
            index,
            root,
            period,
            next_check: now,
            next_pass: now,
            pass: None,
            resume,
            cursor_saved: now,
            chunk: Vec::new(),
        }
    }

    fn run(mut self) {
        loop {
            let seen = self.store.doorbell.rings();
            if self.store.doorbell.is_stopped() {
                self.save_cursor();
                return;
            }
            if !self.keep_house() {
                return;
            }
            let wait = self.scrub_step();
            if !wait.is_zero() {
                let until_check = self.next_check.saturating_duration_since(Instant::now());
                self.store.doorbell.wait(seen, wait.min(until_check));
            }
        }
    }

    /// Checks the directory when due or asked, and verifies suspects.
    /// False once the directory is out of service.
    fn keep_house(&mut self) -> bool {
        let block_store = self.store.block_store();
        if !block_store.is_in_service(self.index) {
            return false;
        }
        let requested = self.store.take_check_request(self.index);
        let now = Instant::now();
        if requested || now >= self.next_check {
            self.next_check = now + Duration::from_millis(CHECK_INTERVAL_MS);
            if let Err(reason) = block_store.check_directory(self.index, requested) {
                self.store.fail_directory(self.index, &reason);
                return false;
            }
        }
        while let Some(block) = self.store.take_suspect() {
            if self.period.is_some() {
                self.verify_suspect(block);
            } else {
                tracing::debug!("{block}: a reader found it bad; not verified (scrubbing is off)");
            }
        }
        self.store.block_store().is_in_service(self.index)
    }

    /// Verifies a block a reader found bad, in full and at once.
    fn verify_suspect(&mut self, block: BlockId) {
        let Some(name) = self.store.block_store().holding(block) else {
            // Deleted or quarantined meanwhile.
            return;
        };
        let reader = match self.store.block_store().open_block(name.replica()) {
            Ok(reader) => reader,
            Err(error) => {
                self.judge_open_error(name.replica(), error);
                return;
            }
        };
        let inode = match reader.file().metadata() {
            Ok(metadata) => metadata.ino(),
            Err(error) => {
                let error = Error::io(format!("stat {}", reader.path().display()), error);
                self.store.note_block_io_error(block, &error);
                return;
            }
        };
        for index in 0..reader.chunk_count() {
            if let Err(error) = reader.read_chunk(index, &mut self.chunk) {
                self.judge_read_error(&reader, inode, error);
                return;
            }
        }
        tracing::info!("{block}: verified again after a reader found it bad; it is good and kept");
    }

    /// Acts on a failure to open a replica to verify.
    fn judge_open_error(&self, replica: ReplicaId, error: Error) -> bool {
        let block = replica.block;
        if block_store::is_not_found(&error) || block_store::is_quarantined(&error) {
            // Deleted meanwhile, or already known bad.
            return false;
        }
        if matches!(error, Error::Corrupted { .. }) {
            self.store.metrics.checksum_failed(CheckedBy::Scrub);
            return self.store.condemn(replica, None, &error.to_string());
        }
        tracing::warn!("verify {block}: {error}");
        self.store.note_block_io_error(block, &error);
        false
    }

    /// Acts on a failure to read a chunk of an open block; true when the
    /// replica was quarantined.
    fn judge_read_error(&self, reader: &BlockReader, inode: u64, error: Error) -> bool {
        let block = reader.block();
        if matches!(error, Error::Corrupted { .. }) {
            self.store.metrics.checksum_failed(CheckedBy::Scrub);
            return self
                .store
                .condemn(reader.name().replica(), Some(inode), &error.to_string());
        }
        tracing::warn!("verify {block}: {error}");
        match self.store.block_store().directory_of(reader.path()) {
            Some(index) => self.store.note_io_error(index, &error),
            None => self.store.note_block_io_error(block, &error),
        }
        false
    }

    /// Does at most one chunk of scrubbing; returns how long to wait before
    /// the next step (zero: go on).
    fn scrub_step(&mut self) -> Duration {
        let Some(period) = self.period else {
            return Duration::from_millis(IDLE_KEEPER_WAIT_MS);
        };
        let now = Instant::now();
        let Some(mut pass) = self.pass.take() else {
            if now < self.next_pass {
                return self.next_pass - now;
            }
            match self.start_pass(period) {
                Ok(pass) => self.pass = Some(pass),
                Err(error) => {
                    tracing::warn!("scrub {}: {error}", self.root.display());
                    self.store.note_io_error(self.index, &error);
                    self.next_pass = now + Duration::from_millis(LIST_RETRY_MS);
                }
            }
            return Duration::ZERO;
        };
        let busy = self.store.activity.clients_busy();
        if busy && now < pass.paced_until {
            let wait = (pass.paced_until - now).min(Duration::from_millis(BUSY_POLL_MS));
            self.pass = Some(pass);
            return wait;
        }
        let Some(bytes) = self.verify_next(&mut pass) else {
            self.finish_pass(pass);
            return Duration::ZERO;
        };
        pass.paced_until = if busy {
            pass.paced_until.max(now) + pass.pause(bytes)
        } else {
            now
        };
        if self.cursor_saved.elapsed() >= Duration::from_millis(CURSOR_SAVE_INTERVAL_MS) {
            self.write_cursor(pass.cursor());
        }
        self.pass = Some(pass);
        Duration::ZERO
    }

    /// Lists the directory and starts a pass, or takes up the one the
    /// cursor file names.
    fn start_pass(&mut self, period: Duration) -> Result<Pass> {
        let mut blocks = self.store.block_store().list_directory(self.index);
        let now = Instant::now();
        let now_ms = now_ms();
        let resumed_after = self.resume.and_then(|cursor| cursor.after);
        let (started, started_ms) = match self.resume.take() {
            Some(cursor) => {
                blocks.retain(|(name, _)| cursor.after.is_none_or(|after| name.block > after));
                let age = Duration::from_millis(now_ms.saturating_sub(cursor.pass_started_ms));
                let started = now.checked_sub(age).unwrap_or(now);
                tracing::info!(
                    "scrub of {}: taking up the pass of {} ms ago, {} blocks left",
                    self.root.display(),
                    age.as_millis(),
                    blocks.len()
                );
                (started, cursor.pass_started_ms)
            }
            None => (now, now_ms),
        };
        let pace_bytes = blocks.iter().map(|(_, file_bytes)| file_bytes).sum();
        let pace_time = (started + period)
            .saturating_duration_since(now)
            .max(period / RESUMED_PASS_PERIOD_DIVISOR);
        Ok(Pass {
            started,
            started_ms,
            taken_up: now,
            blocks,
            position: 0,
            current: None,
            pace_bytes,
            pace_time,
            paced_until: now,
            blocks_verified: 0,
            bytes_verified: 0,
            bad: 0,
            last_done: resumed_after,
        })
    }

    /// One step of a pass: opens the next block, or reads and checks one
    /// chunk of the open one. The bytes read, or None when the pass is done.
    fn verify_next(&mut self, pass: &mut Pass) -> Option<u64> {
        let Some(verifying) = pass.current.as_mut() else {
            let &(name, file_bytes) = pass.blocks.get(pass.position)?;
            pass.position += 1;
            return Some(self.open_next(pass, name, file_bytes));
        };
        let block = verifying.reader.block();
        if verifying.next_chunk >= verifying.reader.chunk_count() {
            drop_cached(&verifying.reader);
            pass.blocks_verified += 1;
            pass.bytes_verified += verifying.file_bytes;
            self.store.metrics.block_scrubbed();
            pass.last_done = Some(block);
            pass.current = None;
            return Some(0);
        }
        match verifying
            .reader
            .read_chunk(verifying.next_chunk, &mut self.chunk)
        {
            Ok(_) => {
                verifying.next_chunk += 1;
                Some(self.chunk.len() as u64)
            }
            Err(error) => {
                if self.judge_read_error(&verifying.reader, verifying.inode, error) {
                    pass.bad += 1;
                }
                pass.last_done = Some(block);
                pass.current = None;
                Some(0)
            }
        }
    }

    /// Opens the next block of a pass (its footer and checksums are checked
    /// here); returns the bytes read.
    fn open_next(&mut self, pass: &mut Pass, name: ReplicaName, file_bytes: u64) -> u64 {
        let block = name.block;
        let reader = match self.store.block_store().open_block(name.replica()) {
            Ok(reader) => reader,
            Err(error) => {
                if self.judge_open_error(name.replica(), error) {
                    pass.bad += 1;
                }
                pass.last_done = Some(block);
                return 0;
            }
        };
        let inode = match reader.file().metadata() {
            Ok(metadata) => metadata.ino(),
            Err(error) => {
                let error = Error::io(format!("stat {}", reader.path().display()), error);
                self.store.note_io_error(self.index, &error);
                pass.last_done = Some(block);
                return 0;
            }
        };
        // The disk's bytes are to be checked, not what the page cache
        // holds; the footer and checksums were read already.
        drop_cached(&reader);
        advise(&reader, libc::POSIX_FADV_SEQUENTIAL);
        let tail_bytes = file_bytes.saturating_sub(reader.length_bytes());
        pass.current = Some(Verifying {
            reader,
            inode,
            file_bytes,
            next_chunk: 0,
        });
        tail_bytes
    }

    fn finish_pass(&mut self, pass: Pass) {
        let seconds = pass.taken_up.elapsed().as_secs_f64();
        tracing::info!(
            "scrub pass of {} done: {} blocks, {} bytes verified, {} bad, in {seconds:.1} s",
            self.root.display(),
            pass.blocks_verified,
            pass.bytes_verified,
            pass.bad
        );
        self.write_cursor(pass.cursor());
        self.store.metrics.scrub_pass_done(self.index);
        self.next_pass = pass.started + self.period.unwrap_or_default();
    }

    fn save_cursor(&mut self) {
        if let Some(cursor) = self.pass.as_ref().map(Pass::cursor) {
            self.write_cursor(cursor);
        }
    }

    /// Replaces the cursor file (temp file and rename; not synced: a lost
    /// cursor only repeats some verification).
    fn write_cursor(&mut self, cursor: Cursor) {
        self.cursor_saved = Instant::now();
        if !self.store.block_store().is_in_service(self.index) {
            return;
        }
        let temporary = self.root.join(CURSOR_TEMPORARY_NAME);
        let target = self.root.join(CURSOR_FILE_NAME);
        let written =
            fs::write(&temporary, cursor.render()).and_then(|()| fs::rename(&temporary, &target));
        if let Err(error) = written {
            let error = Error::io(format!("write {}", target.display()), error);
            tracing::warn!("{error}");
            self.store.note_io_error(self.index, &error);
        }
    }
}

/// The cursor file of `root`, if there is a good one.
fn read_cursor(root: &Path) -> Option<Cursor> {
    let path = root.join(CURSOR_FILE_NAME);
    let bytes = match fs::metadata(&path) {
        Ok(metadata) if metadata.len() <= CURSOR_FILE_BYTES_MAX => fs::read(&path),
        Ok(_) => Err(std::io::Error::other("too large")),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => Err(error),
    };
    let parsed = bytes
        .map_err(|e| e.to_string())
        .and_then(|bytes| Cursor::parse(&bytes));
    match parsed {
        Ok(cursor) => Some(cursor),
        Err(why) => {
            tracing::warn!("{}: {why}; starting a new scrub pass", path.display());
            None
        }
    }
}

/// Asks the kernel to drop the clean cached pages of a block file: the
/// scrubber reads what the disk holds, and does not crowd out the cache.
fn drop_cached(reader: &BlockReader) {
    advise(reader, libc::POSIX_FADV_DONTNEED);
}

fn advise(reader: &BlockReader, advice: libc::c_int) {
    // SAFETY: fadvise on a descriptor the reader owns, for the whole file
    // (length 0); no memory is involved. Advice only: failure is harmless.
    unsafe { libc::posix_fadvise(reader.file().as_raw_fd(), 0, 0, advice) };
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use dfs_engine::block_store::BlockStore;

    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        for cursor in [
            Cursor {
                pass_started_ms: 1_700_000_000_000,
                after: Some(BlockId(0xabc)),
            },
            Cursor {
                pass_started_ms: 0,
                after: None,
            },
        ] {
            assert_eq!(Cursor::parse(cursor.render().as_bytes()), Ok(cursor));
        }
        let good =
            "dfs-minion scrub cursor\nversion 1\npass-started-ms 5\nafter blk_0000000000000001\n";
        assert!(Cursor::parse(good.as_bytes()).is_ok());
        for (bad, expected) in [
            (good.trim_end(), "newline"),
            (&good[1..], "first line"),
            (
                "dfs-minion scrub cursor\nversion 2\npass-started-ms 5\nafter none\n",
                "unsupported",
            ),
            (
                "dfs-minion scrub cursor\nversion 1\npass-started-ms +5\nafter none\n",
                "start time",
            ),
            (
                "dfs-minion scrub cursor\nversion 1\npass-started-ms 5\nafter blk_01\n",
                "bad block",
            ),
            (
                "dfs-minion scrub cursor\nversion 1\npass-started-ms 5\n",
                "3 lines",
            ),
            (
                "dfs-minion scrub cursor\nversion 1\nstarted 5\nafter none\n",
                "pass-started-ms",
            ),
        ] {
            let error = Cursor::parse(bad.as_bytes()).expect_err(bad);
            assert!(error.contains(expected), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_pace_spreads_a_pass_over_its_time() {
        let now = Instant::now();
        let mut pass = Pass {
            started: now,
            started_ms: 0,
            taken_up: now,
            blocks: Vec::new(),
            position: 0,
            current: None,
            pace_bytes: 1000,
            pace_time: Duration::from_secs(10),
            paced_until: now,
            blocks_verified: 0,
            bytes_verified: 0,
            bad: 0,
            last_done: None,
        };
        for (bytes, expected) in [
            (0, Duration::ZERO),
            (100, Duration::from_secs(1)),
            (1000, Duration::from_secs(10)),
            (1, Duration::from_millis(10)),
        ] {
            assert_eq!(pass.pause(bytes), expected, "{bytes}");
        }
        pass.pace_bytes = 0;
        assert_eq!(pass.pause(100), Duration::ZERO, "nothing to do");
    }

    fn rid(block: BlockId) -> ReplicaId {
        ReplicaId {
            block,
            generation: dfs_engine::msg::Generation(block.0 + 5),
        }
    }

    fn ids(replicas: &[dfs_engine::msg::StoredBlock]) -> Vec<BlockId> {
        replicas.iter().map(|replica| replica.block).collect()
    }

    fn write_block(store: &BlockStore, block: BlockId, data: &[u8]) {
        let mut writer = store.create(rid(block)).expect("create");
        for chunk in data.chunks(dfs_engine::limits::CHUNK_BYTES as usize) {
            writer
                .write_chunk(chunk, crc32c::crc32c(chunk))
                .expect("write chunk");
        }
        writer.seal(false).expect("seal");
    }

    fn flip_byte(path: &Path, offset: u64) {
        let mut bytes = fs::read(path).expect("read block file");
        bytes[offset as usize] ^= 0x10;
        fs::File::create(path)
            .and_then(|mut file| file.write_all(&bytes))
            .expect("write block file");
    }

    /// Drives a keeper by hand: a pass verifies every block, quarantines the
    /// one with a flipped data byte and the one with a damaged footer, queues
    /// both for the master, leaves a cursor, and a suspect that is good stays.
    #[test]
    fn a_pass_quarantines_bad_replicas_and_reports_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = BlockStore::open(&[dir.path().to_path_buf()]).expect("open");
        let chunk = dfs_engine::limits::CHUNK_BYTES as usize;
        let data: Vec<u8> = (0..3 * chunk + 5).map(|i| (i % 253) as u8).collect();
        let (good, flipped, footer) = (BlockId(0x31), BlockId(0x32), BlockId(0x33));
        for block in [good, flipped, footer] {
            write_block(&engine, block, &data);
        }
        let path = |block: BlockId| {
            let name = engine.holding(block).expect("held");
            dfs_engine::block_format::block_path(dir.path(), &name)
        };
        flip_byte(&path(flipped), 2 * chunk as u64 + 7);
        let footer_length = fs::metadata(path(footer)).expect("stat").len();
        flip_byte(&path(footer), footer_length - 1);

        let store = Arc::new(Store::new(engine));
        let mut keeper = Keeper::new(
            Arc::clone(&store),
            0,
            dir.path().to_path_buf(),
            Some(Duration::from_secs(3600)),
        );
        assert!(keeper.keep_house());
        keeper.scrub_step();
        assert!(keeper.pass.is_some(), "a pass started");
        let mut steps = 0;
        while keeper.pass.is_some() {
            keeper.scrub_step();
            steps += 1;
            assert!(steps < 1000, "the pass does not end");
        }
        assert!(
            keeper.next_pass > Instant::now(),
            "the next pass waits for the period"
        );

        let quarantined = store.block_store().quarantined();
        assert_eq!(ids(&quarantined), vec![flipped, footer]);
        assert_eq!(ids(&store.block_store().list()), vec![good]);
        let error = store
            .block_store()
            .open_block(rid(flipped))
            .err()
            .expect("refused");
        assert!(block_store::is_quarantined(&error), "{error}");
        let crate::store::BadReport::Replicas(bad) = store.take_bad() else {
            panic!("a full report instead of the replicas");
        };
        let blocks: Vec<BlockId> = bad.iter().map(|replica| replica.replica.block).collect();
        assert_eq!(blocks, vec![flipped, footer]);
        assert!(bad[0].reason.contains("chunk 2"), "{}", bad[0].reason);
        let cursor = read_cursor(dir.path()).expect("a cursor");
        assert_eq!(cursor.after, Some(footer));

        // A reader's suspicion of a good block changes nothing.
        store.suspect(good);
        assert!(keeper.keep_house());
        assert_eq!(ids(&store.block_store().list()), vec![good]);
        assert!(!store.has_bad());

        // A new keeper takes up the finished pass and waits for the period.
        let mut again = Keeper::new(
            store,
            0,
            dir.path().to_path_buf(),
            Some(Duration::from_secs(3600)),
        );
        assert_eq!(again.resume, Some(cursor));
        again.scrub_step();
        let pass = again.pass.as_ref().expect("a pass");
        assert!(pass.blocks.is_empty(), "nothing after the cursor");
        assert_eq!(pass.cursor(), cursor, "the position is kept");
    }

    #[test]
    fn a_keeper_fails_its_directory_when_it_goes_away() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = BlockStore::open(&[dir.path().to_path_buf()]).expect("open");
        let store = Arc::new(Store::new(engine));
        let mut keeper = Keeper::new(
            Arc::clone(&store),
            0,
            dir.path().to_path_buf(),
            Some(Duration::from_secs(3600)),
        );
        assert!(keeper.keep_house());
        fs::remove_dir_all(dir.path().join("blocks")).expect("remove blocks/");
        keeper.next_check = Instant::now();
        assert!(!keeper.keep_house(), "the directory failed");
        assert!(!store.block_store().is_in_service(0));
        let failures = store.take_failed_directories();
        assert_eq!(failures.len(), 1);
        assert!(failures[0].reason.contains("blocks"), "{:?}", failures[0]);
        assert_eq!(store.failed_directories(), failures);
    }

    #[test]
    fn a_keeper_without_a_period_only_watches_health() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = BlockStore::open(&[dir.path().to_path_buf()]).expect("open");
        let block = BlockId(0x77);
        write_block(&engine, block, &[3u8; 100]);
        let name = engine.holding(block).expect("held");
        flip_byte(&dfs_engine::block_format::block_path(dir.path(), &name), 5);
        let store = Arc::new(Store::new(engine));
        let mut keeper = Keeper::new(Arc::clone(&store), 0, dir.path().to_path_buf(), None);
        store.suspect(block);
        assert!(keeper.keep_house());
        assert!(
            keeper.scrub_step() >= Duration::from_secs(60),
            "nothing to do"
        );
        assert!(keeper.pass.is_none());
        assert_eq!(ids(&store.block_store().list()), vec![block]);
        assert!(!store.has_bad());
        assert!(!dir.path().join(CURSOR_FILE_NAME).exists());
        fs::remove_dir(dir.path().join("quarantine")).expect("rmdir");
        keeper.next_check = Instant::now();
        assert!(!keeper.keep_house(), "its health is still watched");
    }

    #[test]
    fn a_keeper_keeps_the_pace_while_clients_are_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = BlockStore::open(&[dir.path().to_path_buf()]).expect("open");
        let chunk = dfs_engine::limits::CHUNK_BYTES as usize;
        write_block(&engine, BlockId(0x90), &vec![1u8; 4 * chunk]);
        let store = Arc::new(Store::new(engine));
        let mut keeper = Keeper::new(
            Arc::clone(&store),
            0,
            dir.path().to_path_buf(),
            Some(Duration::from_secs(3600)),
        );
        let client = store.activity.begin();
        assert_eq!(keeper.scrub_step(), Duration::ZERO, "the pass starts");
        assert_eq!(keeper.scrub_step(), Duration::ZERO, "the block opens");
        // Its footer and checksums were read: the pace makes it wait.
        let wait = keeper.scrub_step();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(BUSY_POLL_MS),
            "paced: {wait:?}"
        );
        let pass = keeper.pass.as_ref().expect("a pass");
        assert_eq!(pass.current.as_ref().map(|v| v.next_chunk), Some(0));
        drop(client);
    }
}
