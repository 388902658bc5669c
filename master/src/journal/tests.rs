use super::*;
use crate::namespace::{Namespace, Op};
use crate::recovery::{self, decode_op, encode_op, RecoveryOptions};
use dfs_engine::limits::JOURNAL_SEGMENT_BYTES_DEFAULT;

const SEGMENT_BYTES: u64 = JOURNAL_SEGMENT_BYTES_MIN;

fn mkdir(index: u64) -> Op {
    Op::Mkdir {
        path: format!("/d{index}"),
        parents: false,
        mode: 0o755,
        owner: "ana".into(),
        group: "staff".into(),
        time_ms: index,
    }
}

/// xorshift64: deterministic test randomness.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// A segment image holding `count` mkdir records from sequence `first`,
/// and the end offset of each record.
fn segment_image(first: u64, count: u64) -> (Vec<u8>, Vec<u64>) {
    let header = SegmentHeader {
        first_sequence: first,
        segment_bytes: SEGMENT_BYTES,
        unsynced_bytes_max: JOURNAL_UNSYNCED_BYTES_MAX as u32,
    };
    let mut image = header.encode().to_vec();
    let mut ends = Vec::new();
    for index in 0..count {
        let sequence = first + index;
        let payload = encode_op(&mkdir(sequence)).expect("encode");
        encode_record(sequence, &payload, &mut image);
        ends.push(image.len() as u64);
    }
    image.resize(SEGMENT_BYTES as usize, 0);
    (image, ends)
}

fn scan(image: &[u8]) -> SegmentScan {
    scan_segment(image, |_, _, payload| decode_op(payload).map(drop)).expect("header is fine")
}

#[test]
fn records_decode_or_say_why_not() {
    let mut good = Vec::new();
    encode_record(7, b"payload", &mut good);
    assert_eq!(
        decode_record(&good),
        Decoded::Record {
            sequence: 7,
            payload: b"payload"
        }
    );
    let check = |bytes: Vec<u8>, expected: &str| {
        let decoded = decode_record(&bytes);
        let text = match &decoded {
            Decoded::Record { .. } => "record".to_string(),
            Decoded::End => "end".to_string(),
            Decoded::Invalid(reason) => reason.clone(),
        };
        assert!(
            text.contains(expected),
            "{bytes:?}: {text} lacks {expected}"
        );
    };
    check(vec![], "end");
    check(vec![0; 5], "end");
    check(vec![0; 40], "end");
    check(vec![1, 0, 0], "too few for a record header");
    let mut zero_length = good.clone();
    zero_length[0..4].copy_from_slice(&0u32.to_le_bytes());
    check(zero_length, "outside 1..=");
    let mut huge = good.clone();
    huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    check(huge, "outside 1..=");
    check(good[..good.len() - 1].to_vec(), "runs past the end");
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    check(flipped, "checksum mismatch");
    let mut sequence = good.clone();
    sequence[5] ^= 1;
    check(sequence, "checksum mismatch");
}

#[test]
fn segment_headers_refuse_damage() {
    let header = SegmentHeader {
        first_sequence: 9,
        segment_bytes: SEGMENT_BYTES,
        unsynced_bytes_max: JOURNAL_UNSYNCED_BYTES_MAX as u32,
    };
    let bytes = header.encode();
    assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
    for index in 0..SEGMENT_HEADER_BYTES {
        let mut damaged = bytes;
        damaged[index] ^= 0x10;
        assert!(SegmentHeader::decode(&damaged).is_err(), "byte {index}");
    }
    for cut in 0..SEGMENT_HEADER_BYTES {
        assert!(SegmentHeader::decode(&bytes[..cut]).is_err(), "cut {cut}");
    }
}

#[test]
fn names_are_recognised_exactly() {
    assert_eq!(parse_segment_name(&segment_name(0x1f)), Some(0x1f));
    for (name, ours) in [
        ("journal-0000000000000001", true),
        ("journal-0000000000000001.tmp", true),
        ("journal-0000000000000001.corrupt", true),
        ("journal-1", false),
        ("journal-000000000000000X", false),
        ("journal-000000000000000A", false),
        ("journal.log", false),
    ] {
        assert_eq!(is_journal_file(name), ours, "{name}");
    }
}

#[test]
fn a_cut_at_every_byte_of_the_last_records_keeps_exactly_the_whole_ones() {
    let count = 40;
    let (image, ends) = segment_image(1, count);
    let from = ends[ends.len() - 4];
    let to = ends[ends.len() - 1] + 1;
    for cut in from..to {
        let mut zeroed = image.clone();
        zeroed[cut as usize..].fill(0);
        let whole = ends.iter().filter(|&&end| end <= cut).count() as u64;
        // Zeros after the cut (a crash on a preallocated file) and a
        // shorter file both keep the whole records and nothing else.
        for (what, bytes) in [
            ("zeroed", &zeroed[..]),
            ("truncated", &image[..cut as usize]),
        ] {
            let result = scan(bytes);
            assert_eq!(result.records, whole, "{what} at {cut}");
            assert_eq!(
                result.end_offset,
                ends[whole as usize - 1],
                "{what} at {cut}"
            );
            let torn = cut != ends[whole as usize - 1];
            match result.stop {
                Stop::Clean => assert!(!torn, "{what} at {cut}: torn bytes seen as clean"),
                Stop::Torn { dirty_end, .. } => {
                    assert!(torn, "{what} at {cut}");
                    assert!(dirty_end <= cut, "{what} at {cut}");
                }
                other => panic!("{what} at {cut}: {other:?}"),
            }
        }
    }
}

#[test]
fn damage_beyond_the_unsynced_window_is_corruption() {
    // Enough records that more than the window follows the early ones.
    let mut image = SegmentHeader {
        first_sequence: 1,
        segment_bytes: JOURNAL_SEGMENT_BYTES_DEFAULT,
        unsynced_bytes_max: JOURNAL_UNSYNCED_BYTES_MAX as u32,
    }
    .encode()
    .to_vec();
    let mut ends = Vec::new();
    let mut sequence = 1;
    while (image.len() as u64) < 3 * JOURNAL_UNSYNCED_BYTES_MAX {
        encode_record(
            sequence,
            &encode_op(&mkdir(sequence)).expect("encode"),
            &mut image,
        );
        ends.push(image.len() as u64);
        sequence += 1;
    }
    let written = image.len();
    image.resize(written + 4096, 0);
    let mut random = Random(0x5eed);
    for _ in 0..40 {
        // A damaged byte with more than a window of records after it.
        let limit = written as u64 - JOURNAL_UNSYNCED_BYTES_MAX - 64;
        let at = SEGMENT_HEADER_BYTES as u64 + random.below(limit - SEGMENT_HEADER_BYTES as u64);
        let mut damaged = image.clone();
        damaged[at as usize] ^= 1 << random.below(8);
        let result = scan(&damaged);
        let record_start = ends
            .iter()
            .rev()
            .find(|&&end| end <= at)
            .copied()
            .unwrap_or(SEGMENT_HEADER_BYTES as u64);
        assert_eq!(result.end_offset, record_start, "damage at {at}");
        assert!(
            matches!(result.stop, Stop::Corrupt { .. } | Stop::Rejected { .. }),
            "damage at {at}: {:?}",
            result.stop
        );
        // Zeroing a stretch in the middle is no torn tail either.
        let mut zeroed = image.clone();
        zeroed[at as usize..at as usize + 100].fill(0);
        assert!(
            matches!(scan(&zeroed).stop, Stop::Corrupt { .. }),
            "zeros at {at}"
        );
    }
}

#[test]
fn a_simulated_power_cut_never_looks_like_corruption() {
    // Durable bytes survive; bytes appended within the window after them
    // reach the disk page by page, in any order or not at all.
    const PAGE: usize = 4096;
    let (image, ends) = segment_image(1, 1500);
    let mut random = Random(42);
    for _ in 0..300 {
        let durable_index = random.below(ends.len() as u64 - 1) as usize;
        let durable = ends[durable_index] as usize;
        let appended = ends
            .iter()
            .map(|&end| end as usize)
            .filter(|&end| end >= durable && end - durable <= JOURNAL_UNSYNCED_BYTES_MAX as usize)
            .max()
            .unwrap_or(durable);
        let mut disk = image.clone();
        disk[durable..].fill(0);
        let mut page_start = durable - durable % PAGE;
        while page_start < appended {
            let page_end = (page_start + PAGE).min(appended);
            if random.below(2) == 0 {
                let from = page_start.max(durable);
                disk[from..page_end].copy_from_slice(&image[from..page_end]);
            }
            page_start += PAGE;
        }
        let result = scan(&disk);
        assert!(
            result.records as usize > durable_index,
            "lost durable records: kept {}, durable {}",
            result.records,
            durable_index + 1
        );
        assert!(
            matches!(result.stop, Stop::Clean | Stop::Torn { .. }),
            "durable {durable}, appended {appended}: {:?}",
            result.stop
        );
    }
}

#[test]
fn random_bytes_never_panic_the_decoder() {
    let mut random = Random(7);
    let (valid, _) = segment_image(1, 20);
    for round in 0..300 {
        let length = random.below(300) as usize;
        let bytes: Vec<u8> = (0..length).map(|_| random.next() as u8).collect();
        let _ = decode_record(&bytes);
        let _ = scan_segment(&bytes, |_, _, payload| decode_op(payload).map(drop));
        // Valid headers followed by noise, and valid records with noise spliced in.
        let mut mixed = valid.clone();
        let at = SEGMENT_HEADER_BYTES + random.below(2000) as usize;
        for (offset, byte) in bytes.iter().enumerate() {
            if let Some(slot) = mixed.get_mut(at + offset) {
                *slot = *byte;
            }
        }
        let result = scan_segment(&mixed, |_, _, payload| decode_op(payload).map(drop));
        assert!(result.is_ok(), "round {round}: the header was intact");
    }
}

fn open_journal(dir: &Path, position: AppendPosition) -> Arc<Journal> {
    Journal::open(
        dir,
        JournalConfig {
            segment_bytes: SEGMENT_BYTES,
        },
        position,
    )
    .expect("open journal")
}

fn fresh(dir: &Path) -> Arc<Journal> {
    open_journal(
        dir,
        AppendPosition {
            next_sequence: 1,
            reuse: None,
        },
    )
}

fn recover(dir: &Path) -> crate::recovery::Recovered {
    recovery::recover(dir, RecoveryOptions::default()).expect("recover")
}

/// A data directory whose checkpoint holds an empty namespace at sequence 0.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    crate::checkpoint::store(
        dir.path(),
        dfs_engine::msg::ClusterId(1),
        0,
        &Namespace::new(0),
    )
    .expect("checkpoint");
    dir
}

#[test]
fn concurrent_appends_share_flushes_and_all_survive_a_reopen() {
    let dir = data_dir();
    let journal = fresh(dir.path());
    let namespace = Mutex::new(Namespace::new(0));
    let threads = 16;
    let per_thread = 200;
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let journal = &journal;
            let namespace = &namespace;
            scope.spawn(move || {
                for index in 0..per_thread {
                    let op = mkdir(thread * 1000 + index);
                    let sequence = {
                        let mut namespace = lock(namespace);
                        namespace.apply(&op).expect("apply");
                        journal
                            .append(&encode_op(&op).expect("encode"))
                            .expect("append")
                    };
                    journal.wait_durable(sequence).expect("durable");
                    assert!(journal.durable_sequence() >= sequence);
                }
            });
        }
    });
    let total = threads * per_thread;
    assert_eq!(journal.appended_sequence(), total);
    assert!(
        journal.flushes() < total,
        "{} flushes for {total} records: no group commit",
        journal.flushes()
    );
    journal.close();
    let recovered = recover(dir.path());
    assert_eq!(recovered.last_sequence, total);
    assert_eq!(recovered.namespace, *lock(&namespace));
    assert!(recovered.torn.is_none());
}

#[test]
fn appending_rolls_segments_and_resumes_where_it_stopped() {
    let dir = data_dir();
    let mut namespace = Namespace::new(0);
    let mut next = 1;
    for _round in 0..3 {
        let position = if next == 1 {
            AppendPosition {
                next_sequence: 1,
                reuse: None,
            }
        } else {
            recover(dir.path()).append
        };
        let journal = open_journal(dir.path(), position);
        // Enough to fill more than one small segment.
        for _ in 0..5000 {
            let op = mkdir(next);
            namespace.apply(&op).expect("apply");
            let sequence = journal
                .append(&encode_op(&op).expect("encode"))
                .expect("append");
            assert_eq!(sequence, next);
            next += 1;
        }
        journal.wait_durable(next - 1).expect("durable");
        journal.close();
        let recovered = recover(dir.path());
        assert_eq!(recovered.last_sequence, next - 1);
        assert_eq!(recovered.namespace, namespace);
    }
    assert!(list_segments(dir.path()).expect("list").len() > 2);
}

#[test]
fn a_torn_tail_is_cleared_before_appending_resumes() {
    let dir = data_dir();
    let journal = fresh(dir.path());
    let mut namespace = Namespace::new(0);
    for index in 1..=10 {
        let op = mkdir(index);
        namespace.apply(&op).expect("apply");
        journal
            .append(&encode_op(&op).expect("encode"))
            .expect("append");
    }
    journal.wait_durable(10).expect("durable");
    journal.close();
    drop(journal);
    // A record half written after the last one.
    let segment = &list_segments(dir.path()).expect("list")[0];
    let bytes = read_segment(&segment.path).expect("read");
    let end = scan(&bytes).end_offset;
    let mut torn = Vec::new();
    encode_record(11, &encode_op(&mkdir(11)).expect("encode"), &mut torn);
    let file = OpenOptions::new()
        .write(true)
        .open(&segment.path)
        .expect("open");
    file.write_all_at(&torn[..torn.len() / 2], end)
        .expect("write");
    drop(file);
    let recovered = recover(dir.path());
    assert_eq!(recovered.last_sequence, 10);
    assert_eq!(recovered.torn.as_ref().map(|t| t.1), Some(end));
    // Appending goes on at the torn offset, and the next start sees a clean journal.
    let journal = open_journal(dir.path(), recovered.append);
    let op = mkdir(500);
    namespace.apply(&op).expect("apply");
    let sequence = journal
        .append(&encode_op(&op).expect("encode"))
        .expect("append");
    assert_eq!(sequence, 11);
    journal.wait_durable(11).expect("durable");
    journal.close();
    let again = recover(dir.path());
    assert!(again.torn.is_none());
    assert_eq!(again.last_sequence, 11);
    assert_eq!(again.namespace, namespace);
}

#[test]
fn a_poisoned_journal_refuses_appends_and_unflushed_waits() {
    let dir = data_dir();
    let journal = fresh(dir.path());
    let first = journal
        .append(&encode_op(&mkdir(1)).expect("encode"))
        .expect("append");
    journal.wait_durable(first).expect("durable");
    journal.poison("simulated flush failure".into());
    let error = journal
        .append(&encode_op(&mkdir(2)).expect("encode"))
        .expect_err("poisoned");
    assert!(
        error.to_string().contains("simulated flush failure"),
        "{error}"
    );
    assert!(journal.check_writable().is_err());
    journal
        .wait_durable(first)
        .expect("what was durable stays acknowledged");
    assert!(journal.wait_durable(first + 1).is_err());
    journal.close();
}

#[test]
fn oversized_and_empty_payloads_are_refused() {
    let dir = data_dir();
    let journal = fresh(dir.path());
    assert!(journal.append(&[]).is_err());
    let huge = vec![1u8; JOURNAL_RECORD_PAYLOAD_BYTES_MAX as usize + 1];
    assert!(journal.append(&huge).is_err());
    let largest = vec![1u8; JOURNAL_RECORD_PAYLOAD_BYTES_MAX as usize];
    let sequence = journal.append(&largest).expect("the largest fits");
    journal.wait_durable(sequence).expect("durable");
    journal.close();
}

#[test]
fn a_torn_tail_is_cleared_even_when_a_full_segment_is_left_behind() {
    let dir = data_dir();
    // A segment with no room for another record, ending torn.
    let mut image = SegmentHeader {
        first_sequence: 1,
        segment_bytes: SEGMENT_BYTES,
        unsynced_bytes_max: JOURNAL_UNSYNCED_BYTES_MAX as u32,
    }
    .encode()
    .to_vec();
    let mut namespace = Namespace::new(0);
    let mut sequence = 1;
    while (image.len() as u64) < SEGMENT_BYTES - RECORD_BYTES_MAX + 100 {
        let op = mkdir(sequence);
        namespace.apply(&op).expect("apply");
        encode_record(sequence, &encode_op(&op).expect("encode"), &mut image);
        sequence += 1;
    }
    let mut torn = Vec::new();
    encode_record(
        sequence,
        &encode_op(&mkdir(sequence)).expect("encode"),
        &mut torn,
    );
    image.extend_from_slice(&torn[..torn.len() - 3]);
    image.resize(SEGMENT_BYTES as usize, 0);
    std::fs::write(dir.path().join(segment_name(1)), &image).expect("write");
    let recovered = recover(dir.path());
    assert!(recovered.torn.is_some());
    let journal = open_journal(dir.path(), recovered.append);
    let op = mkdir(100_000);
    namespace.apply(&op).expect("apply");
    let appended = journal
        .append(&encode_op(&op).expect("encode"))
        .expect("append");
    assert_eq!(appended, sequence);
    journal.wait_durable(appended).expect("durable");
    journal.close();
    // The full segment is no longer the last, and it ends clean.
    assert_eq!(list_segments(dir.path()).expect("list").len(), 2);
    let again = recover(dir.path());
    assert_eq!(again.namespace, namespace);
    assert!(again.torn.is_none());
}
