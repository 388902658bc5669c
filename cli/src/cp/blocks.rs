//! Large files, many blocks at once. Writing goes through the library's
//! block-parallel writer (`parallel_write`) with as many blocks in flight
//! as the run's budget gives; its bytes come from a `RangeSource`: a local
//! file (positional reads) or a cluster file (each range through the
//! verifying reader of the pieces it covers). Reading: block threads
//! each stream whole pieces (blocks, parts of blocks, holes) through the
//! verifying reader and write them at their offsets of the local file.
//!
//! Streams beyond a worker's own come from a `StreamBudget` shared by the
//! run, so the number of pipelines, and the memory (one chunk each), stays
//! bounded whatever the mix of files.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use dfs_engine::limits::WRITE_BLOCKS_IN_FLIGHT_MAX;
use dfs_engine::path::DfsPath;
use dfs_engine::{Error, Result};

use dfs_client::parallel_write;
pub use dfs_client::RangeSource;
use dfs_client::{Client, FileReader, WriteOptions};

/// Most block streams one file uses at once.
pub const BLOCK_STREAMS_PER_FILE_MAX: usize = WRITE_BLOCKS_IN_FLIGHT_MAX;
/// A file is split into parallel block jobs only beyond this many blocks.
pub const PARALLEL_BLOCKS_MIN: u64 = 3;

/// Streams a run may add to its workers' own, shared by every large file.
#[derive(Debug)]
pub struct StreamBudget {
    available: Mutex<usize>,
}

impl StreamBudget {
    pub fn new(streams: usize) -> StreamBudget {
        StreamBudget {
            available: Mutex::new(streams),
        }
    }

    /// Takes up to `wanted` streams without waiting; returns how many.
    pub fn take_up_to(&self, wanted: usize) -> usize {
        match self.available.lock() {
            Ok(mut available) => {
                let taken = wanted.min(*available);
                *available -= taken;
                taken
            }
            Err(_) => 0,
        }
    }

    pub fn give_back(&self, count: usize) {
        if let Ok(mut available) = self.available.lock() {
            *available += count;
        }
    }
}

/// A cluster file as a `RangeSource`: a range is read through a verifying
/// reader of each piece it covers, in turn.
pub struct ClusterSource<'r> {
    reader: &'r FileReader,
}

impl<'r> ClusterSource<'r> {
    pub fn new(reader: &'r FileReader) -> ClusterSource<'r> {
        ClusterSource { reader }
    }
}

impl RangeSource for ClusterSource<'_> {
    fn open_range(&self, offset_bytes: u64, length_bytes: u64) -> Result<Box<dyn Read + '_>> {
        if offset_bytes >= self.reader.length_bytes() {
            return Err(Error::Invalid(format!(
                "read the input: offset {offset_bytes} is past its end"
            )));
        }
        let index = self.reader.block_index_at(offset_bytes)?;
        Ok(Box::new(ClusterRange {
            reader: self.reader,
            index,
            start_bytes: Some(offset_bytes),
            left_bytes: length_bytes,
            current: None,
        }))
    }
}

struct ClusterRange<'r> {
    reader: &'r FileReader,
    /// The piece read next (or now, with `current`).
    index: usize,
    /// Where the range starts in the piece at `index`, until its reader
    /// was moved there.
    start_bytes: Option<u64>,
    left_bytes: u64,
    current: Option<FileReader>,
}

impl Read for ClusterRange<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.left_bytes == 0 || buffer.is_empty() {
                return Ok(0);
            }
            if self.current.is_none() {
                let Some(mut piece) = self
                    .reader
                    .block_reader(self.index)
                    .map_err(io::Error::other)?
                else {
                    return Ok(0);
                };
                // Ranges start on piece boundaries when the block sizes
                // match and the file was written front to back; otherwise
                // the piece's reader starts where the range does.
                if let Some(start_bytes) = self.start_bytes.take() {
                    piece.seek(SeekFrom::Start(start_bytes))?;
                }
                self.current = Some(piece);
            }
            let wanted = usize::try_from(self.left_bytes)
                .unwrap_or(usize::MAX)
                .min(buffer.len());
            let count = match self.current.as_mut() {
                Some(block) => block.read(&mut buffer[..wanted])?,
                None => 0,
            };
            if count == 0 {
                self.current = None;
                self.index += 1;
                continue;
            }
            self.left_bytes -= count as u64;
            return Ok(count);
        }
    }
}

/// Writes `source` of `length_bytes` to `path` with up to `streams` blocks
/// in flight, through the library's block-parallel writer; returns the
/// bytes written.
pub fn put_parallel(
    client: &mut Client,
    path: &DfsPath,
    options: WriteOptions,
    source: &dyn RangeSource,
    length_bytes: u64,
    streams: usize,
) -> Result<u64> {
    let options = WriteOptions {
        blocks_in_flight: streams.clamp(1, BLOCK_STREAMS_PER_FILE_MAX),
        ..options
    };
    let stats = parallel_write::put_parallel(client, path, options, source, length_bytes)?;
    Ok(stats.length_bytes)
}

/// Writes what it is given at increasing offsets of a file.
struct PositionedWriter<'a> {
    file: &'a File,
    offset_bytes: u64,
}

impl Write for PositionedWriter<'_> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buffer, self.offset_bytes)?;
        self.offset_bytes += buffer.len() as u64;
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads every piece of `reader`'s file into `target` at its offset, up to
/// `streams` pieces at once; returns the bytes written.
pub fn get_parallel(
    reader: &FileReader,
    target: &File,
    target_name: &str,
    streams: usize,
) -> Result<u64> {
    let block_count = reader.block_count();
    let streams = streams
        .clamp(1, BLOCK_STREAMS_PER_FILE_MAX)
        .min(block_count.max(1));
    target
        .set_len(reader.length_bytes())
        .map_err(|error| Error::io(format!("size {target_name}"), error))?;
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..streams {
            scope.spawn(|| loop {
                let failed = failure.lock().map_or(true, |failure| failure.is_some());
                let index = next.fetch_add(1, Ordering::Relaxed);
                if failed || index >= block_count {
                    return;
                }
                let copied = reader.block_reader(index).and_then(|piece_reader| {
                    let Some(mut piece_reader) = piece_reader else {
                        return Ok(0);
                    };
                    let mut writer = PositionedWriter {
                        file: target,
                        offset_bytes: reader.block_offset_bytes(index)?,
                    };
                    piece_reader.copy_to(&mut writer, target_name)
                });
                if let Err(error) = copied {
                    if let Ok(mut failure) = failure.lock() {
                        failure.get_or_insert(error);
                    }
                    return;
                }
            });
        }
    });
    match failure.into_inner() {
        Ok(Some(error)) => Err(error),
        Ok(None) => Ok(reader.length_bytes()),
        Err(_) => Err(Error::Invalid("a block thread panicked".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_never_gives_more_than_it_has() {
        let budget = StreamBudget::new(5);
        for (wanted, expected) in [(3, 3), (4, 2), (1, 0)] {
            assert_eq!(budget.take_up_to(wanted), expected, "wanted {wanted}");
        }
        budget.give_back(5);
        assert_eq!(budget.take_up_to(10), 5);
    }

    #[test]
    fn positioned_writes_land_at_their_offsets() {
        let file = tempfile::tempfile().expect("temporary file");
        for (offset, bytes) in [(4u64, &b"efgh"[..]), (0, b"abcd"), (8, b"ij")] {
            let mut writer = PositionedWriter {
                file: &file,
                offset_bytes: offset,
            };
            writer.write_all(bytes).expect("write");
        }
        let mut read_back = vec![0u8; 10];
        file.read_exact_at(&mut read_back, 0).expect("read");
        assert_eq!(&read_back, b"abcdefghij");
    }
}
