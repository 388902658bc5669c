//! The master journal: every namespace op, appended as a length-prefixed,
//! sequence-numbered, CRC32C-checked record to a preallocated, memory-mapped
//! segment file, and acknowledged only once a flush (`msync`) covers it.
//! Layout in docs/format.md ("Master journal").
//!
//! One appender (the caller holds the namespace write lock) copies records
//! into the map; one flusher thread syncs whatever was appended since its
//! last flush, so concurrent changes share a flush (group commit). A failed
//! flush poisons the journal for good: nothing is appended after it and no
//! flush is retried; the next start recovers from what is on disk.
//!
//! Crash model: bytes below the last flushed offset are durable; bytes
//! appended after it may reach the disk in any order, whole pages or none.
//! The appender never lets more than `unsynced_bytes_max` (recorded in each
//! segment header) be appended past the flushed offset, so after a crash
//! every non-zero byte past the first invalid record lies within that many
//! bytes of it. Anything further is corruption, not a torn tail.

use dfs_engine::sync;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use dfs_engine::limits::{
    JOURNAL_RECORD_PAYLOAD_BYTES_MAX, JOURNAL_SEGMENT_BYTES_MAX, JOURNAL_SEGMENT_BYTES_MIN,
    JOURNAL_UNSYNCED_BYTES_MAX,
};
use dfs_engine::{Error, IoContext, Result};
use memmap2::MmapRaw;

use dfs_engine::failpoint;

use crate::metrics::FlushMetrics;

/// "DFSJ" read as a little-endian u32.
pub const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"DFSJ");
pub const JOURNAL_VERSION: u16 = 2;
pub const SEGMENT_HEADER_BYTES: usize = 32;
pub const RECORD_HEADER_BYTES: usize = 16;
/// The largest record, header included.
pub const RECORD_BYTES_MAX: u64 =
    RECORD_HEADER_BYTES as u64 + JOURNAL_RECORD_PAYLOAD_BYTES_MAX as u64;
const SEGMENT_PREFIX: &str = "journal-";
pub const TEMP_SUFFIX: &str = ".tmp";
/// Segments cut off by `--recover` keep their bytes under this suffix.
pub const CORRUPT_SUFFIX: &str = ".corrupt";

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(array)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(array)
}

// --- record and segment format ---

/// What a segment says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence of the segment's first record.
    pub first_sequence: u64,
    /// Size of the file as preallocated.
    pub segment_bytes: u64,
    /// The writer's bound on appended-but-unflushed bytes.
    pub unsynced_bytes_max: u32,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut header = [0u8; SEGMENT_HEADER_BYTES];
        header[0..4].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        header[4..6].copy_from_slice(&JOURNAL_VERSION.to_le_bytes());
        header[8..16].copy_from_slice(&self.first_sequence.to_le_bytes());
        header[16..24].copy_from_slice(&self.segment_bytes.to_le_bytes());
        header[24..28].copy_from_slice(&self.unsynced_bytes_max.to_le_bytes());
        let crc = crc32c::crc32c(&header[..28]);
        header[28..32].copy_from_slice(&crc.to_le_bytes());
        header
    }

    /// Decodes and checks a segment header; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, String> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err(format!(
                "{} bytes is shorter than a segment header",
                bytes.len()
            ));
        }
        if le_u32(bytes, 0) != SEGMENT_MAGIC {
            return Err("bad magic (not a journal segment)".into());
        }
        if le_u32(bytes, 28) != crc32c::crc32c(&bytes[..28]) {
            return Err("segment header checksum mismatch".into());
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != JOURNAL_VERSION {
            return Err(format!("unsupported journal version {version}"));
        }
        let header = SegmentHeader {
            first_sequence: le_u64(bytes, 8),
            segment_bytes: le_u64(bytes, 16),
            unsynced_bytes_max: le_u32(bytes, 24),
        };
        if header.first_sequence == 0 {
            return Err("first sequence 0 (sequences start at 1)".into());
        }
        if !(JOURNAL_SEGMENT_BYTES_MIN..=JOURNAL_SEGMENT_BYTES_MAX).contains(&header.segment_bytes)
        {
            return Err(format!(
                "segment size {} outside {JOURNAL_SEGMENT_BYTES_MIN}..={JOURNAL_SEGMENT_BYTES_MAX}",
                header.segment_bytes
            ));
        }
        if u64::from(header.unsynced_bytes_max) < RECORD_BYTES_MAX {
            return Err(format!(
                "unsynced window {} is smaller than the largest record",
                header.unsynced_bytes_max
            ));
        }
        Ok(header)
    }
}

/// Appends one record (header and payload) to `out`.
pub fn encode_record(sequence: u64, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 12]), payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// What the bytes at a record position hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole record whose checksum matches.
    Record { sequence: u64, payload: &'a [u8] },
    /// Zeros: nothing was ever written here.
    End,
    /// Not a record; says why.
    Invalid(String),
}

impl Decoded<'_> {
    /// Bytes the record occupies (0 unless it is a record).
    pub fn record_bytes(&self) -> u64 {
        match self {
            Decoded::Record { payload, .. } => (RECORD_HEADER_BYTES + payload.len()) as u64,
            _ => 0,
        }
    }
}

/// Decodes the record at the start of `bytes` (the rest of a segment). Never
/// panics and never reads past `bytes`, whatever they hold.
pub fn decode_record(bytes: &[u8]) -> Decoded<'_> {
    if bytes.len() < RECORD_HEADER_BYTES {
        if bytes.iter().all(|&b| b == 0) {
            return Decoded::End;
        }
        return Decoded::Invalid(format!(
            "{} bytes left, too few for a record header",
            bytes.len()
        ));
    }
    let header = &bytes[..RECORD_HEADER_BYTES];
    if header.iter().all(|&b| b == 0) {
        return Decoded::End;
    }
    let payload_bytes = le_u32(header, 0);
    let sequence = le_u64(header, 4);
    if payload_bytes == 0 || payload_bytes > JOURNAL_RECORD_PAYLOAD_BYTES_MAX {
        return Decoded::Invalid(format!(
            "record length {payload_bytes} outside 1..={JOURNAL_RECORD_PAYLOAD_BYTES_MAX}"
        ));
    }
    let end = RECORD_HEADER_BYTES + payload_bytes as usize;
    let Some(payload) = bytes.get(RECORD_HEADER_BYTES..end) else {
        return Decoded::Invalid(format!(
            "record of {payload_bytes} bytes runs past the end of the segment"
        ));
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[..12]), payload);
    if crc != le_u32(header, 12) {
        return Decoded::Invalid(format!(
            "record checksum mismatch (sequence field {sequence})"
        ));
    }
    Decoded::Record { sequence, payload }
}

/// How the records of a segment end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Only zeros follow the last record.
    Clean,
    /// Invalid bytes, but nothing non-zero beyond the unsynced window: what a
    /// crash in the middle of appending leaves. `dirty_end` is the offset
    /// after the last non-zero byte.
    Torn { reason: String, dirty_end: u64 },
    /// Invalid bytes that no crash can leave: damage.
    Corrupt { reason: String },
    /// The visitor refused a valid record (its op does not apply).
    Rejected { reason: String },
}

/// The result of reading one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    pub header: SegmentHeader,
    /// Valid records in order from the start.
    pub records: u64,
    /// Offset after the last valid record: where the next one goes.
    pub end_offset: u64,
    pub stop: Stop,
}

impl SegmentScan {
    /// The sequence of the last valid record; `first_sequence - 1` if none.
    pub fn last_sequence(&self) -> u64 {
        self.header.first_sequence + self.records - 1
    }
}

/// Reads a whole segment image: the header, then records in order until the
/// first position that is not the next record, which is classified as a
/// clean end, a torn tail or corruption. `visit` sees each record's
/// sequence, offset and payload and may refuse it. A bad header is an
/// error: nothing in the segment can be trusted then.
pub fn scan_segment(
    bytes: &[u8],
    mut visit: impl FnMut(u64, u64, &[u8]) -> std::result::Result<(), String>,
) -> std::result::Result<SegmentScan, String> {
    let header = SegmentHeader::decode(bytes)?;
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut records = 0u64;
    let stop = loop {
        let expected = header.first_sequence + records;
        let rest = &bytes[offset..];
        let reason = match decode_record(rest) {
            Decoded::Record { sequence, payload } if sequence == expected => {
                if let Err(reason) = visit(sequence, offset as u64, payload) {
                    break Stop::Rejected { reason };
                }
                records += 1;
                offset += RECORD_HEADER_BYTES + payload.len();
                continue;
            }
            Decoded::Record { sequence, .. } => {
                format!("record with sequence {sequence} where {expected} was due")
            }
            Decoded::End => String::new(),
            Decoded::Invalid(reason) => reason,
        };
        break classify_tail(rest, offset as u64, reason, header.unsynced_bytes_max);
    };
    Ok(SegmentScan {
        header,
        records,
        end_offset: offset as u64,
        stop,
    })
}

/// `rest` starts at the first position that is not a valid next record.
fn classify_tail(rest: &[u8], offset: u64, reason: String, window_bytes: u32) -> Stop {
    let Some(last_non_zero) = rest.iter().rposition(|&b| b != 0) else {
        return Stop::Clean;
    };
    let dirty_bytes = last_non_zero as u64 + 1;
    let reason = if reason.is_empty() {
        "zeros followed by written bytes".to_string()
    } else {
        reason
    };
    if dirty_bytes <= u64::from(window_bytes) {
        Stop::Torn {
            reason,
            dirty_end: offset + dirty_bytes,
        }
    } else {
        Stop::Corrupt {
            reason: format!(
                "{reason}; written bytes follow up to offset {}, beyond the {window_bytes}-byte window a crash can leave",
                offset + dirty_bytes
            ),
        }
    }
}

// --- files ---

/// The file name of the segment whose first record is `first_sequence`.
pub fn segment_name(first_sequence: u64) -> String {
    format!("{SEGMENT_PREFIX}{first_sequence:016x}")
}

/// The first sequence a segment file name announces, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    parse_sequence_name(name, SEGMENT_PREFIX)
}

/// The sequence in a file name of `prefix` and exactly 16 lower-case hex
/// digits (segments and checkpoints are named so).
pub fn parse_sequence_name(name: &str, prefix: &str) -> Option<u64> {
    let hex = name.strip_prefix(prefix)?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// True for names the journal may leave in a data directory.
pub fn is_journal_file(name: &str) -> bool {
    let base = name
        .strip_suffix(TEMP_SUFFIX)
        .or_else(|| name.strip_suffix(CORRUPT_SUFFIX))
        .unwrap_or(name);
    parse_segment_name(base).is_some()
}

/// A segment file in a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub first_sequence: u64,
}

/// The segments in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        let name = entry.file_name();
        if let Some(first_sequence) = name.to_str().and_then(parse_segment_name) {
            segments.push(SegmentFile {
                path: entry.path(),
                first_sequence,
            });
        }
    }
    segments.sort_by_key(|s| s.first_sequence);
    Ok(segments)
}

/// Reads a segment file whole, refusing one larger than any segment can be.
pub fn read_segment(path: &Path) -> Result<Vec<u8>> {
    let length = fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .len();
    if length > JOURNAL_SEGMENT_BYTES_MAX {
        return Err(Error::corrupted(
            format!("journal segment {}", path.display()),
            format!("{length} bytes is over the limit of {JOURNAL_SEGMENT_BYTES_MAX}"),
        ));
    }
    fs::read(path).with_context(|| format!("read {}", path.display()))
}

/// Syncs a directory, so names created or removed in it are durable.
pub fn sync_directory(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("sync directory {}", dir.display()))
}

/// Gives `file` its blocks up to `bytes` (zeros), so flushes need not
/// allocate.
fn preallocate(file: &File, bytes: u64, path: &Path) -> Result<()> {
    let length = libc::off_t::try_from(bytes)
        .map_err(|_| Error::Invalid(format!("segment size {bytes} too large")))?;
    // SAFETY: posix_fallocate on a descriptor we own; no memory is shared.
    let result = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, length) };
    match result {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file
            .set_len(bytes)
            .with_context(|| format!("size {}", path.display())),
        code => Err(Error::io(
            format!("preallocate {}", path.display()),
            std::io::Error::from_raw_os_error(code),
        )),
    }
}

/// Creates a durable, empty segment: temp file, preallocate, header, fsync,
/// rename, directory fsync.
pub fn create_segment(dir: &Path, first_sequence: u64, segment_bytes: u64) -> Result<PathBuf> {
    let name = segment_name(first_sequence);
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let target = dir.join(&name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .with_context(|| format!("create {}", temp.display()))?;
    preallocate(&file, segment_bytes, &temp)?;
    let header = SegmentHeader {
        first_sequence,
        segment_bytes,
        unsynced_bytes_max: JOURNAL_UNSYNCED_BYTES_MAX as u32,
    };
    file.write_all_at(&header.encode(), 0)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", temp.display()))?;
    drop(file);
    fs::rename(&temp, &target).with_context(|| format!("rename {}", target.display()))?;
    failpoint::hit("journal-segment-renamed");
    sync_directory(dir)?;
    Ok(target)
}

/// Zeroes (and syncs) the torn bytes after a segment's last record.
fn clear_torn_tail(segment: &ReusableSegment) -> Result<()> {
    if segment.dirty_end <= segment.end_offset {
        return Ok(());
    }
    let file = OpenOptions::new()
        .write(true)
        .open(&segment.path)
        .with_context(|| format!("open {}", segment.path.display()))?;
    let zeros = vec![0u8; (segment.dirty_end - segment.end_offset) as usize];
    file.write_all_at(&zeros, segment.end_offset)
        .and_then(|()| file.sync_data())
        .with_context(|| format!("clear the torn tail of {}", segment.path.display()))
}

/// A segment mapped for appending.
struct MappedSegment {
    path: PathBuf,
    header: SegmentHeader,
    map: MmapRaw,
    _file: File,
}

impl MappedSegment {
    /// Maps `path`; `clear` is a range of torn bytes to zero (and sync)
    /// before anything is appended after them.
    fn open(path: &Path, header: SegmentHeader, clear: Option<(u64, u64)>) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        let length = file
            .metadata()
            .with_context(|| format!("stat {}", path.display()))?
            .len();
        if length < header.segment_bytes {
            // A cut file: give it back its preallocated size.
            preallocate(&file, header.segment_bytes, path)?;
        }
        if let Some((start, end)) = clear.filter(|(start, end)| start < end) {
            let zeros = vec![0u8; (end - start) as usize];
            file.write_all_at(&zeros, start)
                .and_then(|()| file.sync_data())
                .with_context(|| format!("clear the torn tail of {}", path.display()))?;
            failpoint::hit("journal-tail-cleared");
        }
        let map = memmap2::MmapOptions::new()
            .len(header.segment_bytes as usize)
            .map_raw(&file)
            .with_context(|| format!("map {}", path.display()))?;
        Ok(MappedSegment {
            path: path.to_path_buf(),
            header,
            map,
            _file: file,
        })
    }

    fn bytes(&self) -> u64 {
        self.header.segment_bytes
    }

    /// Copies `bytes` to `offset`.
    fn write(&self, offset: u64, bytes: &[u8]) {
        debug_assert!(offset + bytes.len() as u64 <= self.map.len() as u64);
        if offset as usize + bytes.len() > self.map.len() {
            return;
        }
        // SAFETY: the range is inside the map (checked above), and the file
        // is never truncated while mapped. Only the single appender writes,
        // and only past everything published to the flusher; nothing reads
        // this memory through Rust references.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add(offset as usize),
                bytes.len(),
            );
        }
    }

    fn sync(&self, start: u64, end: u64) -> std::io::Result<()> {
        self.map.flush_range(start as usize, (end - start) as usize)
    }
}

// --- the journal ---

/// Refuses a payload no record can carry.
pub fn check_payload(payload: &[u8]) -> Result<()> {
    if payload.is_empty() || payload.len() > JOURNAL_RECORD_PAYLOAD_BYTES_MAX as usize {
        return Err(Error::Invalid(format!(
            "a change of {} bytes does not fit a journal record (at most {JOURNAL_RECORD_PAYLOAD_BYTES_MAX})",
            payload.len()
        )));
    }
    Ok(())
}

/// Where appending resumes after start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendPosition {
    /// The sequence the next record gets.
    pub next_sequence: u64,
    /// The last segment, to append to if it is the one holding
    /// `next_sequence - 1` and has room; otherwise a new segment is made.
    pub reuse: Option<ReusableSegment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReusableSegment {
    pub path: PathBuf,
    pub header: SegmentHeader,
    /// Where its valid records end.
    pub end_offset: u64,
    /// Torn bytes up to here are zeroed before appending.
    pub dirty_end: u64,
}

/// Settings of the journal writer.
#[derive(Clone, Copy, Debug)]
pub struct JournalConfig {
    /// Size of new segments.
    pub segment_bytes: u64,
}

/// A range appended but not yet flushed.
struct Dirty {
    segment: Arc<MappedSegment>,
    start: u64,
    end: u64,
}

struct Progress {
    appended: u64,
    durable: u64,
    /// First sequence of the segment being appended to, and the offset in
    /// it below which everything is durable.
    durable_segment: u64,
    durable_offset: u64,
    dirty: Option<Dirty>,
    poisoned: Option<String>,
    stopping: bool,
    /// The flusher sleeps on `work` and needs a wake-up.
    flusher_idle: bool,
    /// Threads waiting for a sequence to be durable. Each is woken alone
    /// when its flush is done: no herd of waiters fighting for this lock.
    waiters: Vec<(u64, std::thread::Thread)>,
}

struct Appender {
    segment: Arc<MappedSegment>,
    cursor: u64,
    next_sequence: u64,
    buffer: Vec<u8>,
}

/// The journal writer and its flusher thread.
pub struct Journal {
    dir: PathBuf,
    config: JournalConfig,
    appender: Mutex<Appender>,
    progress: Mutex<Progress>,
    /// Wakes the flusher.
    work: Condvar,
    /// `Progress::durable`, readable without the lock.
    durable: AtomicU64,
    /// Set once `Progress::poisoned` is.
    poisoned: AtomicBool,
    appended_bytes: AtomicU64,
    /// Flushes done, to show how many records one flush covers.
    flushes: AtomicU64,
    /// Each flush's time and records, for the master's metrics.
    flush_metrics: FlushMetrics,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    sync::lock(mutex)
}

fn poisoned_error(reason: &str) -> Error {
    Error::io(
        "journal",
        std::io::Error::other(format!(
            "failed earlier ({reason}); the master takes no more changes until restarted"
        )),
    )
}

impl Journal {
    /// Opens the journal in `dir` for appending at `position` and starts
    /// its flusher.
    pub fn open(dir: &Path, config: JournalConfig, position: AppendPosition) -> Result<Arc<Self>> {
        let next_sequence = position.next_sequence;
        let mut reusable = None;
        if let Some(last) = position.reuse {
            let has_room = last.header.first_sequence <= next_sequence
                && last.header.segment_bytes.saturating_sub(last.end_offset) >= RECORD_BYTES_MAX;
            if has_room {
                reusable = Some(last);
            } else {
                // Even when appending moves on to a new segment, the torn
                // tail goes: only the last segment may ever end torn.
                clear_torn_tail(&last)?;
            }
        }
        let (segment, cursor) = match reusable {
            Some(reuse) => {
                let clear = (reuse.end_offset, reuse.dirty_end);
                let segment = MappedSegment::open(&reuse.path, reuse.header, Some(clear))?;
                (segment, reuse.end_offset)
            }
            None => {
                let path = create_segment(dir, next_sequence, config.segment_bytes)?;
                let header = SegmentHeader {
                    first_sequence: next_sequence,
                    segment_bytes: config.segment_bytes,
                    unsynced_bytes_max: JOURNAL_UNSYNCED_BYTES_MAX as u32,
                };
                (
                    MappedSegment::open(&path, header, None)?,
                    SEGMENT_HEADER_BYTES as u64,
                )
            }
        };
        let journal = Arc::new(Journal {
            dir: dir.to_path_buf(),
            config,
            progress: Mutex::new(Progress {
                appended: next_sequence - 1,
                durable: next_sequence - 1,
                durable_segment: segment.header.first_sequence,
                durable_offset: cursor,
                dirty: None,
                poisoned: None,
                stopping: false,
                flusher_idle: false,
                waiters: Vec::new(),
            }),
            appender: Mutex::new(Appender {
                segment: Arc::new(segment),
                cursor,
                next_sequence,
                buffer: Vec::with_capacity(RECORD_BYTES_MAX as usize),
            }),
            work: Condvar::new(),
            durable: AtomicU64::new(next_sequence - 1),
            poisoned: AtomicBool::new(false),
            appended_bytes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flush_metrics: FlushMetrics::default(),
            flusher: Mutex::new(None),
        });
        let flusher_journal = Arc::clone(&journal);
        let handle = std::thread::Builder::new()
            .name("journal-flush".into())
            .spawn(move || flusher_journal.flush_loop())
            .context("spawn journal flusher")?;
        *lock(&journal.flusher) = Some(handle);
        Ok(journal)
    }

    /// Refuses changes once the journal failed.
    pub fn check_writable(&self) -> Result<()> {
        match &lock(&self.progress).poisoned {
            Some(reason) => Err(poisoned_error(reason)),
            None => Ok(()),
        }
    }

    /// Appends one record and returns its sequence. The caller holds the
    /// namespace write lock (one appender at a time, in the order the ops
    /// were applied) and waits for `wait_durable` after releasing it.
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        check_payload(payload)?;
        let mut appender = lock(&self.appender);
        let appender = &mut *appender;
        let sequence = appender.next_sequence;
        appender.buffer.clear();
        encode_record(sequence, payload, &mut appender.buffer);
        let record_bytes = appender.buffer.len() as u64;
        let start = appender.cursor;
        let end = start + record_bytes;
        if end > appender.segment.bytes() {
            // The roll after each append leaves room for the largest record;
            // anything else is a bug, and nothing more may be appended.
            let reason = format!(
                "record {start}..{end} would run past the end of {}",
                appender.segment.path.display()
            );
            tracing::error!("journal: {reason}");
            self.poison(reason.clone());
            return Err(poisoned_error(&reason));
        }
        {
            // Keep the unsynced window: once everything appended is durable,
            // the durable offset is the cursor, and the record fits.
            let window = u64::from(appender.segment.header.unsynced_bytes_max);
            let progress = lock(&self.progress);
            if let Some(reason) = &progress.poisoned {
                return Err(poisoned_error(reason));
            }
            let over = end - progress.durable_offset > window;
            drop(progress);
            if over {
                self.wait_durable(sequence - 1)?;
            }
        }
        // Header first, then payload: a crash between them is a torn record.
        let (header, payload_bytes) = appender.buffer.split_at(RECORD_HEADER_BYTES);
        appender.segment.write(start, header);
        failpoint::hit("journal-mid-append");
        appender
            .segment
            .write(start + RECORD_HEADER_BYTES as u64, payload_bytes);
        appender.cursor = end;
        appender.next_sequence += 1;
        self.appended_bytes
            .fetch_add(record_bytes, Ordering::Relaxed);
        let wake_flusher = {
            let mut progress = lock(&self.progress);
            progress.appended = sequence;
            match &mut progress.dirty {
                Some(dirty) => dirty.end = end,
                None => {
                    progress.dirty = Some(Dirty {
                        segment: Arc::clone(&appender.segment),
                        start,
                        end,
                    })
                }
            }
            std::mem::take(&mut progress.flusher_idle)
        };
        if wake_flusher {
            self.work.notify_one();
        }
        if appender.segment.bytes() - appender.cursor < RECORD_BYTES_MAX {
            if let Err(e) = self.roll(appender) {
                // This record is durable (the roll waited for it); later
                // ones cannot be written.
                tracing::error!("journal: start a new segment: {e}");
                self.poison(format!("start a new segment: {e}"));
            }
        }
        Ok(sequence)
    }

    /// Moves appending to a new segment once everything in the current one
    /// is durable, so only the last segment can ever end torn.
    fn roll(&self, appender: &mut Appender) -> Result<()> {
        self.wait_durable(appender.next_sequence - 1)?;
        failpoint::hit("journal-before-roll");
        let first = appender.next_sequence;
        let path = create_segment(&self.dir, first, self.config.segment_bytes)?;
        let header = SegmentHeader {
            first_sequence: first,
            segment_bytes: self.config.segment_bytes,
            unsynced_bytes_max: JOURNAL_UNSYNCED_BYTES_MAX as u32,
        };
        let segment = MappedSegment::open(&path, header, None)?;
        tracing::info!(
            first_sequence = first,
            "journal: new segment {}",
            path.display()
        );
        appender.segment = Arc::new(segment);
        appender.cursor = SEGMENT_HEADER_BYTES as u64;
        let mut progress = lock(&self.progress);
        progress.durable_segment = first;
        progress.durable_offset = SEGMENT_HEADER_BYTES as u64;
        Ok(())
    }

    fn poison(&self, reason: String) {
        let mut progress = lock(&self.progress);
        if progress.poisoned.is_none() {
            progress.poisoned = Some(reason);
        }
        self.poisoned.store(true, Ordering::Release);
        let waiters = std::mem::take(&mut progress.waiters);
        drop(progress);
        for (_, thread) in waiters {
            thread.unpark();
        }
    }

    /// Waits until the record `sequence` is durable; an error if the journal
    /// failed before it was.
    pub fn wait_durable(&self, sequence: u64) -> Result<()> {
        if self.durable.load(Ordering::Acquire) >= sequence {
            return Ok(());
        }
        {
            let mut progress = lock(&self.progress);
            if progress.durable >= sequence {
                return Ok(());
            }
            if let Some(reason) = &progress.poisoned {
                return Err(poisoned_error(reason));
            }
            progress.waiters.push((sequence, std::thread::current()));
        }
        loop {
            // An unpark before this park is kept, so no wake-up is lost.
            if self.durable.load(Ordering::Acquire) >= sequence {
                return Ok(());
            }
            if self.poisoned.load(Ordering::Acquire) {
                let progress = lock(&self.progress);
                if progress.durable >= sequence {
                    return Ok(());
                }
                return Err(poisoned_error(progress.poisoned.as_deref().unwrap_or("")));
            }
            std::thread::park();
        }
    }

    /// The last sequence known durable.
    pub fn durable_sequence(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The last sequence appended.
    pub fn appended_sequence(&self) -> u64 {
        lock(&self.progress).appended
    }

    /// Record bytes appended since the journal opened.
    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes.load(Ordering::Relaxed)
    }

    /// Flushes done since the journal opened.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// The histograms each flush is recorded in.
    pub fn flush_metrics(&self) -> &FlushMetrics {
        &self.flush_metrics
    }

    /// The first sequence of the segment being appended to.
    pub fn active_segment_first(&self) -> u64 {
        lock(&self.progress).durable_segment
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Flushes what was appended and stops the flusher.
    pub fn close(&self) {
        lock(&self.progress).stopping = true;
        self.work.notify_one();
        if let Some(handle) = lock(&self.flusher).take() {
            let _ = handle.join();
        }
    }

    fn flush_loop(&self) {
        let mut progress = lock(&self.progress);
        loop {
            let Some(dirty) = progress.dirty.take() else {
                if progress.stopping {
                    return;
                }
                progress.flusher_idle = true;
                progress = sync::wait(&self.work, progress);
                continue;
            };
            let target = progress.appended;
            let records = target.saturating_sub(progress.durable);
            drop(progress);
            failpoint::hit("journal-before-flush");
            let started = Instant::now();
            let result = dirty.segment.sync(dirty.start, dirty.end);
            self.flushes.fetch_add(1, Ordering::Relaxed);
            self.flush_metrics.observe(started.elapsed(), records);
            progress = lock(&self.progress);
            if let Err(e) = result {
                // Never retried: after a failed fsync the page cache may
                // claim clean pages that never reached the disk.
                tracing::error!(
                    "journal: flush {} failed: {e}; refusing all further changes",
                    dirty.segment.path.display()
                );
                drop(progress);
                self.poison(format!("flush {}: {e}", dirty.segment.path.display()));
                return;
            }
            progress.durable = target;
            if dirty.segment.header.first_sequence == progress.durable_segment {
                progress.durable_offset = progress.durable_offset.max(dirty.end);
            }
            // Published after the offset, so a waiter that sees it also
            // sees the window it freed.
            self.durable.store(target, Ordering::Release);
            let mut done = Vec::new();
            progress.waiters.retain(|(sequence, thread)| {
                if *sequence <= target {
                    done.push(thread.clone());
                    false
                } else {
                    true
                }
            });
            drop(progress);
            for thread in done {
                thread.unpark();
            }
            progress = lock(&self.progress);
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        lock(&self.progress).stopping = true;
        self.work.notify_one();
    }
}

#[cfg(test)]
mod tests;
