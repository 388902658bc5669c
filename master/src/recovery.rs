//! Start-up: the newest checkpoint that loads, then the journal records
//! after it, replayed through `Namespace::apply`. A torn tail of the last
//! segment is dropped with a log line; anything else that is wrong refuses
//! the start, naming the file and offset, unless `--recover` asks to keep
//! what comes before it. Also `--check`: the same reading, reported.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use dfs_engine::msg::ClusterId;
use dfs_engine::rpc::now_ms;
use dfs_engine::{Error, IoContext, Result};

use crate::checkpoint::{self, Checkpoint, DataDir, Opened};
use crate::journal::{
    self, scan_segment, AppendPosition, ReusableSegment, SegmentFile, Stop, CORRUPT_SUFFIX,
};
use crate::namespace::{self, Namespace, Op};

/// Encodes an op as a journal record payload (`namespace::OpRecord`).
pub fn encode_op(op: &Op) -> Result<Vec<u8>> {
    namespace::encode_op(op).map_err(Error::Invalid)
}

/// Decodes a journal record payload; every byte must belong to the op.
pub fn decode_op(payload: &[u8]) -> std::result::Result<Op, String> {
    namespace::decode_op(payload)
}

/// How start-up treats corruption.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecoveryOptions {
    /// Keep the valid prefix instead of refusing to start.
    pub recover: bool,
}

/// Where the journal went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    pub offset: u64,
    pub reason: String,
}

/// The state start-up rebuilt, and where appending resumes.
#[derive(Debug)]
pub struct Recovered {
    pub cluster: ClusterId,
    pub namespace: Namespace,
    /// The checkpoint it started from.
    pub checkpoint_path: Option<PathBuf>,
    pub checkpoint_sequence: u64,
    /// The last op in `namespace`.
    pub last_sequence: u64,
    pub replayed_records: u64,
    pub replayed_bytes: u64,
    pub append: AppendPosition,
    /// A torn tail that was dropped: (segment, offset, bytes).
    pub torn: Option<(PathBuf, u64, u64)>,
    /// With `--recover`: the damage the state stops before, and the
    /// segments from it on, to be set aside.
    pub cut: Option<(Damage, Vec<PathBuf>)>,
}

/// Reads a data directory and rebuilds the namespace. Changes nothing on
/// disk; `open` applies what it decides.
pub fn recover(dir: &Path, options: RecoveryOptions) -> Result<Recovered> {
    let checkpoints = checkpoint::list(dir)?;
    let segments = journal::list_segments(dir)?;
    let mut failures = Vec::new();
    let mut loaded = None;
    for (_, path) in &checkpoints {
        match checkpoint::load(path) {
            Ok(checkpoint) => {
                loaded = Some((path.clone(), checkpoint));
                break;
            }
            Err(e) => {
                tracing::error!("checkpoint unusable, trying an older one: {e}");
                failures.push(e.to_string());
            }
        }
    }
    let Some((path, checkpoint)) = loaded else {
        return Err(Error::corrupted(
            format!("data directory {}", dir.display()),
            if failures.is_empty() {
                "no checkpoint".to_string()
            } else {
                format!("no checkpoint loads: {}", failures.join("; "))
            },
        ));
    };
    replay(Some(path), checkpoint, &segments, options)
}

fn replay(
    checkpoint_path: Option<PathBuf>,
    checkpoint: Checkpoint,
    segments: &[SegmentFile],
    options: RecoveryOptions,
) -> Result<Recovered> {
    let checkpoint_sequence = checkpoint.last_sequence;
    let mut recovered = Recovered {
        cluster: checkpoint.cluster,
        namespace: checkpoint.namespace,
        checkpoint_path,
        checkpoint_sequence,
        last_sequence: checkpoint_sequence,
        replayed_records: 0,
        replayed_bytes: 0,
        append: AppendPosition {
            next_sequence: checkpoint_sequence + 1,
            reuse: None,
        },
        torn: None,
        cut: None,
    };
    let damage = replay_segments(&mut recovered, segments);
    let Some((damage, index)) = damage else {
        return Ok(recovered);
    };
    if !options.recover {
        return Err(Error::corrupted(
            format!("journal {}", damage.path.display()),
            format!(
                "at offset {}: {}; refusing to start (start with --recover to keep the state up to sequence {} and set the rest aside)",
                damage.offset, damage.reason, recovered.last_sequence
            ),
        ));
    }
    let set_aside: Vec<PathBuf> = segments[index..].iter().map(|s| s.path.clone()).collect();
    tracing::error!(
        "--recover: journal {} is damaged at offset {} ({}); keeping the state up to sequence {}; lost: every record after it, in {}",
        damage.path.display(),
        damage.offset,
        damage.reason,
        recovered.last_sequence,
        if set_aside.is_empty() {
            "no segment (none reach past the checkpoint)".to_string()
        } else {
            set_aside
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    recovered.append = AppendPosition {
        next_sequence: recovered.last_sequence + 1,
        reuse: None,
    };
    recovered.cut = Some((damage, set_aside));
    Ok(recovered)
}

/// Replays the records after the checkpoint into `recovered`; on damage
/// returns it with the index of the first segment to set aside.
fn replay_segments(recovered: &mut Recovered, segments: &[SegmentFile]) -> Option<(Damage, usize)> {
    let needed = recovered.checkpoint_sequence + 1;
    let damage = |path: &Path, offset: u64, reason: String| Damage {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    // The last segment that starts at or before the first needed record.
    let Some(start) = segments.iter().rposition(|s| s.first_sequence <= needed) else {
        return match segments.first() {
            None => {
                // Normal only at a first start or right after --recover set
                // the journal aside; either way the checkpoint is the state.
                if recovered.checkpoint_sequence > 0 {
                    tracing::warn!(
                        "no journal segment: starting from the checkpoint at sequence {} alone",
                        recovered.checkpoint_sequence
                    );
                }
                None
            }
            Some(first) => Some((
                damage(
                    &first.path,
                    0,
                    format!(
                        "the journal starts at sequence {}, the checkpoint needs {needed}",
                        first.first_sequence
                    ),
                ),
                0,
            )),
        };
    };
    let mut previous_last: Option<u64> = None;
    for (index, segment) in segments.iter().enumerate().skip(start) {
        let is_last = index + 1 == segments.len();
        let bytes = match journal::read_segment(&segment.path) {
            Ok(bytes) => bytes,
            Err(e) => return Some((damage(&segment.path, 0, e.to_string()), index)),
        };
        // The header and its place in the chain first: no record of a
        // segment that does not join up is applied.
        let header = match journal::SegmentHeader::decode(&bytes) {
            Ok(header) => header,
            Err(reason) => return Some((damage(&segment.path, 0, reason), index)),
        };
        if header.first_sequence != segment.first_sequence {
            let reason = format!(
                "header says first sequence {}, the name {}",
                header.first_sequence, segment.first_sequence
            );
            return Some((damage(&segment.path, 0, reason), index));
        }
        if let Some(last) = previous_last {
            if segment.first_sequence != last + 1 {
                let reason = format!(
                    "starts at sequence {}, the previous segment ends at {last}",
                    segment.first_sequence
                );
                return Some((damage(&segment.path, 0, reason), index));
            }
        }
        let namespace = &mut recovered.namespace;
        let mut applied = 0u64;
        let mut applied_bytes = 0u64;
        let mut last_applied = recovered.last_sequence;
        let scan = scan_segment(&bytes, |sequence, _offset, payload| {
            if sequence <= last_applied {
                return Ok(());
            }
            if sequence != last_applied + 1 {
                return Err(format!(
                    "sequence {sequence} follows {last_applied}: records are missing"
                ));
            }
            let op = decode_op(payload)?;
            namespace
                .apply(&op)
                .map_err(|e| format!("op of sequence {sequence} does not apply: {e}"))?;
            last_applied = sequence;
            applied += 1;
            applied_bytes += (journal::RECORD_HEADER_BYTES + payload.len()) as u64;
            Ok(())
        });
        recovered.last_sequence = last_applied;
        recovered.replayed_records += applied;
        recovered.replayed_bytes += applied_bytes;
        let scan = match scan {
            Ok(scan) => scan,
            Err(reason) => return Some((damage(&segment.path, 0, reason), index)),
        };
        previous_last = Some(scan.last_sequence());
        match scan.stop.clone() {
            Stop::Clean => {}
            Stop::Torn { reason, dirty_end } if is_last => {
                tracing::warn!(
                    "journal {}: dropped a torn tail at offset {} ({} bytes: {reason}); it held only unacknowledged changes",
                    segment.path.display(),
                    scan.end_offset,
                    dirty_end - scan.end_offset
                );
                recovered.torn = Some((
                    segment.path.clone(),
                    scan.end_offset,
                    dirty_end - scan.end_offset,
                ));
            }
            Stop::Torn { reason, .. } => {
                let reason = format!("{reason} (in a segment that is not the last)");
                return Some((damage(&segment.path, scan.end_offset, reason), index));
            }
            Stop::Corrupt { reason } | Stop::Rejected { reason } => {
                return Some((damage(&segment.path, scan.end_offset, reason), index));
            }
        }
        if is_last {
            let journal_end = scan.last_sequence();
            if journal_end < recovered.checkpoint_sequence {
                return Some((
                    damage(
                        &segment.path,
                        scan.end_offset,
                        format!(
                            "the journal ends at sequence {journal_end}, before the checkpoint's {}",
                            recovered.checkpoint_sequence
                        ),
                    ),
                    segments.len(),
                ));
            }
            let dirty_end = match &scan.stop {
                Stop::Torn { dirty_end, .. } => *dirty_end,
                _ => scan.end_offset,
            };
            recovered.append = AppendPosition {
                next_sequence: journal_end + 1,
                reuse: Some(ReusableSegment {
                    path: segment.path.clone(),
                    header: scan.header,
                    end_offset: scan.end_offset,
                    dirty_end,
                }),
            };
        }
    }
    None
}

/// Opens (and locks) a data directory for a master: a new cluster in an
/// empty one, otherwise the recovered state. With `--recover`, a damaged
/// journal is cut: the kept state is checkpointed at once and the damaged
/// segments are renamed aside (`*.corrupt`).
pub fn open(path: &Path, options: RecoveryOptions) -> Result<(DataDir, Recovered)> {
    let (data_dir, opened) = DataDir::open(path)?;
    let dir = data_dir.path().to_path_buf();
    data_dir.remove_temporary_files()?;
    let brand_new = opened == Opened::New
        || (checkpoint::list(&dir)?.is_empty() && journal::list_segments(&dir)?.is_empty());
    if brand_new {
        // A crash before the first checkpoint lands here again: nothing was
        // ever acknowledged, so a new cluster id is fine.
        let cluster = ClusterId(dfs_engine::rpc::random_u64()?);
        let namespace = Namespace::new(now_ms());
        let path = checkpoint::store(&dir, cluster, 0, &namespace)?;
        tracing::info!(%cluster, "created a new cluster in {}", dir.display());
        let recovered = replay(
            Some(path),
            Checkpoint {
                cluster,
                last_sequence: 0,
                namespace,
            },
            &[],
            RecoveryOptions::default(),
        )?;
        return Ok((data_dir, recovered));
    }
    let mut recovered = recover(&dir, options)?;
    // Checkpoints newer than the one that loaded are damaged: set aside, so
    // that keeping "the newest two" never keeps them instead of good ones.
    for (sequence, path) in checkpoint::list(&dir)? {
        if sequence > recovered.checkpoint_sequence {
            let mut aside = path.as_os_str().to_owned();
            aside.push(CORRUPT_SUFFIX);
            fs::rename(&path, &aside).with_context(|| format!("set aside {}", path.display()))?;
            tracing::warn!("set aside the damaged {}", path.display());
        }
    }
    if let Some((_, set_aside)) = &recovered.cut {
        // Ids handed out in the records set aside may live on in minions
        // (blocks) and clients (writes): never hand them out again.
        let set_aside_bytes: u64 = set_aside
            .iter()
            .filter_map(|segment| fs::metadata(segment).ok())
            .map(|metadata| metadata.len())
            .sum();
        let skipped = ids_to_skip(set_aside_bytes);
        recovered
            .namespace
            .apply(&Op::SkipIds {
                block_ids: skipped,
                write_ids: skipped,
            })
            .map_err(|e| Error::Invalid(format!("--recover: skip ids: {e}")))?;
        tracing::warn!(
            "--recover: block and write ids move on by {skipped}, past any the lost records could have handed out (next block {})",
            recovered.namespace.next_block_id()
        );
        let path = checkpoint::store(
            &dir,
            recovered.cluster,
            recovered.last_sequence,
            &recovered.namespace,
        )?;
        for segment in set_aside {
            let mut aside = segment.as_os_str().to_owned();
            aside.push(CORRUPT_SUFFIX);
            fs::rename(segment, &aside)
                .with_context(|| format!("set aside {}", segment.display()))?;
        }
        // Everything else is older than the new checkpoint and would not
        // join up with the segments that follow it.
        for segment in journal::list_segments(&dir)? {
            fs::remove_file(&segment.path)
                .with_context(|| format!("remove {}", segment.path.display()))?;
        }
        for (sequence, old) in checkpoint::list(&dir)? {
            if sequence != recovered.last_sequence {
                fs::remove_file(&old).with_context(|| format!("remove {}", old.display()))?;
            }
        }
        journal::sync_directory(&dir)?;
        tracing::warn!(
            "--recover: wrote {} and set the damaged journal aside",
            path.display()
        );
        recovered.checkpoint_path = Some(path);
        recovered.checkpoint_sequence = recovered.last_sequence;
    }
    Ok((data_dir, recovered))
}

/// Fewest ids `--recover` skips.
const RECOVER_IDS_SKIPPED_MIN: u64 = 1 << 32;

/// How far `--recover` moves the id spaces when `set_aside_bytes` of
/// journal are dropped: every id was handed out by a record of its own, of
/// at least a record header, so no more ids than that can have been handed
/// out in them; and at least `RECOVER_IDS_SKIPPED_MIN`.
fn ids_to_skip(set_aside_bytes: u64) -> u64 {
    (set_aside_bytes / journal::RECORD_HEADER_BYTES as u64 + 1).max(RECOVER_IDS_SKIPPED_MIN)
}

/// What `--check` found, printable, and whether all is well.
pub struct CheckReport {
    pub text: String,
    pub ok: bool,
}

/// Verifies a data directory offline: every checkpoint and segment, and
/// what a start would do.
pub fn check(path: &Path) -> Result<CheckReport> {
    let data_dir = DataDir::open_existing(path)?;
    let dir = data_dir.path();
    let mut text = String::new();
    let mut ok = true;
    let _ = writeln!(
        text,
        "data directory {}: dfs-master format 1",
        dir.display()
    );
    for (sequence, path) in checkpoint::list(dir)? {
        match checkpoint::load(&path) {
            Ok(checkpoint) => {
                let (files, directories, blocks) = checkpoint.namespace.counts();
                let _ = writeln!(
                    text,
                    "checkpoint {}: ok, up to sequence {sequence}, cluster {}, {files} files, {directories} directories, {blocks} blocks, {} open writes",
                    path.display(),
                    checkpoint.cluster,
                    checkpoint.namespace.open_writes().count()
                );
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(text, "checkpoint {}: DAMAGED: {e}", path.display());
            }
        }
    }
    let segments = journal::list_segments(dir)?;
    for (index, segment) in segments.iter().enumerate() {
        let is_last = index + 1 == segments.len();
        let line = match journal::read_segment(&segment.path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| scan_segment(&bytes, |_, _, payload| decode_op(payload).map(drop)))
        {
            Err(reason) => {
                ok = false;
                format!("DAMAGED header: {reason}")
            }
            Ok(scan) => {
                let range = if scan.records == 0 {
                    "no records".to_string()
                } else {
                    format!(
                        "sequences {}..={} ({} records)",
                        scan.header.first_sequence,
                        scan.last_sequence(),
                        scan.records
                    )
                };
                let end = match &scan.stop {
                    Stop::Clean => "clean end".to_string(),
                    Stop::Torn { reason, dirty_end } if is_last => format!(
                        "torn tail of {} bytes ({reason}), dropped at start",
                        dirty_end - scan.end_offset
                    ),
                    Stop::Torn { reason, .. }
                    | Stop::Corrupt { reason }
                    | Stop::Rejected { reason } => {
                        ok = false;
                        format!("DAMAGED at offset {}: {reason}", scan.end_offset)
                    }
                };
                format!(
                    "{range}, {} of {} bytes used, {end}",
                    scan.end_offset, scan.header.segment_bytes
                )
            }
        };
        let _ = writeln!(text, "journal {}: {line}", segment.path.display());
    }
    match recover(dir, RecoveryOptions::default()) {
        Ok(recovered) => {
            let (files, directories, blocks) = recovered.namespace.counts();
            let _ = writeln!(
                text,
                "start-up would load {} and replay {} records ({} bytes) up to sequence {}: {files} files, {directories} directories, {blocks} blocks, {} open writes",
                recovered
                    .checkpoint_path
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                recovered.replayed_records,
                recovered.replayed_bytes,
                recovered.last_sequence,
                recovered.namespace.open_writes().count()
            );
            if recovered.checkpoint_path.as_ref() != checkpoint::list(dir)?.first().map(|c| &c.1) {
                let _ = writeln!(
                    text,
                    "the newest checkpoint does not load: an older one is used"
                );
            }
        }
        Err(e) => {
            ok = false;
            let _ = writeln!(text, "start-up would refuse: {e}");
        }
    }
    let _ = writeln!(text, "{}", if ok { "OK" } else { "DAMAGED" });
    Ok(CheckReport { text, ok })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::journal::{Journal, JournalConfig};
    use dfs_engine::limits::JOURNAL_SEGMENT_BYTES_MIN;

    fn mkdir(index: u64) -> Op {
        Op::Mkdir {
            path: format!("/d{index}-{}", "n".repeat(100)),
            parents: false,
            mode: 0o755,
            owner: "ana".into(),
            group: "staff".into(),
            time_ms: index,
        }
    }

    /// A data directory with checkpoint 0 and `count` mkdir records in
    /// several segments.
    fn journaled(count: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(DataDir::open(dir.path()).expect("format"));
        checkpoint::store(dir.path(), ClusterId(3), 0, &Namespace::new(0)).expect("checkpoint");
        let journal: Arc<Journal> = Journal::open(
            dir.path(),
            JournalConfig {
                segment_bytes: JOURNAL_SEGMENT_BYTES_MIN,
            },
            AppendPosition {
                next_sequence: 1,
                reuse: None,
            },
        )
        .expect("journal");
        for index in 1..=count {
            journal
                .append(&encode_op(&mkdir(index)).expect("encode"))
                .expect("append");
        }
        journal.wait_durable(count).expect("durable");
        journal.close();
        dir
    }

    /// The namespace after the first `count` records.
    fn state(count: u64) -> Namespace {
        let mut namespace = Namespace::new(0);
        for index in 1..=count {
            namespace.apply(&mkdir(index)).expect("apply");
        }
        namespace
    }

    fn refusal(dir: &Path) -> String {
        recover(dir, RecoveryOptions::default())
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn the_newest_checkpoint_that_loads_is_used() {
        let dir = journaled(3000);
        assert!(journal::list_segments(dir.path()).expect("list").len() >= 3);
        let newer = checkpoint::store(dir.path(), ClusterId(3), 1000, &state(1000)).expect("store");
        let recovered = recover(dir.path(), RecoveryOptions::default()).expect("recover");
        assert_eq!(recovered.checkpoint_sequence, 1000);
        assert_eq!(recovered.replayed_records, 2000);
        assert_eq!(recovered.namespace, state(3000));
        // Damaged, it is passed over for the older one and a longer replay.
        let mut bytes = fs::read(&newer).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&newer, &bytes).expect("write");
        let recovered = recover(dir.path(), RecoveryOptions::default()).expect("recover");
        assert_eq!(recovered.checkpoint_sequence, 0);
        assert_eq!(recovered.namespace, state(3000));
        let report = check(dir.path()).expect("check");
        assert!(!report.ok, "{}", report.text);
        assert!(report.text.contains("DAMAGED"), "{}", report.text);
        // A start sets the damaged one aside, so it is never kept as "newest".
        let (data_dir, recovered) = open(dir.path(), RecoveryOptions::default()).expect("open");
        drop(data_dir);
        assert_eq!(recovered.namespace, state(3000));
        assert!(!newer.exists());
        let mut aside = newer.as_os_str().to_owned();
        aside.push(CORRUPT_SUFFIX);
        assert!(Path::new(&aside).exists());
        assert_eq!(checkpoint::list(dir.path()).expect("list").len(), 1);
    }

    #[test]
    fn segment_level_damage_is_refused_naming_the_file() {
        let check = |damage: &dyn Fn(&Path, &[SegmentFile]), expected: &str| {
            let dir = journaled(3000);
            let segments = journal::list_segments(dir.path()).expect("list");
            damage(dir.path(), &segments);
            let error = refusal(dir.path());
            assert!(error.contains(expected), "{error} lacks {expected}");
        };
        // A missing middle segment: the next one does not join up.
        check(
            &|_, segments| fs::remove_file(&segments[1].path).expect("remove"),
            "the previous segment ends at",
        );
        // A segment renamed to another first sequence.
        check(
            &|dir, segments| {
                let last = segments.last().expect("segments");
                let renamed = dir.join(journal::segment_name(last.first_sequence + 7));
                fs::rename(&last.path, renamed).expect("rename");
            },
            "header says first sequence",
        );
        // The first segment gone: the journal starts too late.
        check(
            &|_, segments| fs::remove_file(&segments[0].path).expect("remove"),
            "the journal starts at sequence",
        );
        // A checkpoint past the end of the journal.
        check(
            &|dir, _| {
                checkpoint::store(dir, ClusterId(3), 9000, &Namespace::new(0)).expect("store");
            },
            "before the checkpoint's 9000",
        );
    }

    #[test]
    fn recover_skips_more_ids_than_the_lost_records_can_hold() {
        assert_eq!(ids_to_skip(0), RECOVER_IDS_SKIPPED_MIN);
        let segment = dfs_engine::limits::JOURNAL_SEGMENT_BYTES_MAX;
        let most_records = 100 * segment / journal::RECORD_HEADER_BYTES as u64;
        assert!(ids_to_skip(100 * segment) > most_records);
    }

    #[test]
    fn recover_keeps_the_prefix_and_sets_the_rest_aside() {
        let dir = journaled(3000);
        let segments = journal::list_segments(dir.path()).expect("list");
        fs::remove_file(&segments[1].path).expect("remove");
        let kept = segments[1].first_sequence - 1;
        let (data_dir, recovered) =
            open(dir.path(), RecoveryOptions { recover: true }).expect("recover");
        assert_eq!(recovered.last_sequence, kept);
        // The kept state, with its id spaces moved past the lost records.
        let mut expected = state(kept);
        let skipped = ids_to_skip(0);
        assert_eq!(skipped, RECOVER_IDS_SKIPPED_MIN);
        expected
            .apply(&Op::SkipIds {
                block_ids: skipped,
                write_ids: skipped,
            })
            .expect("skip");
        assert_eq!(recovered.namespace, expected);
        assert!(recovered.namespace.next_block_id().0 > RECOVER_IDS_SKIPPED_MIN);
        drop(data_dir);
        let expected_again = expected;
        // What is left is one checkpoint, no segment, and the set-aside ones.
        assert_eq!(
            checkpoint::list(dir.path()).expect("list").len(),
            1,
            "older checkpoints removed"
        );
        assert!(journal::list_segments(dir.path()).expect("list").is_empty());
        let aside = fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(CORRUPT_SUFFIX))
            .count();
        assert_eq!(aside, segments.len() - 2);
        let again = recover(dir.path(), RecoveryOptions::default()).expect("plain start");
        assert_eq!(
            again.namespace, expected_again,
            "the skip is in the checkpoint"
        );
        assert_eq!(again.append.next_sequence, kept + 1);
    }
}
