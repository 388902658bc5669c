//! Every limit of the system in one place, each with its unit. Relations
//! between them are checked at compile time.

/// Bytes covered by one CRC32C and carried by one data frame.
pub const CHUNK_BYTES: u32 = 64 * 1024;
/// Largest payload of a control frame (postcard message).
pub const CONTROL_FRAME_BYTES_MAX: u32 = 4 * 1024 * 1024;
/// Largest payload of any frame; checked before anything is allocated.
pub const FRAME_PAYLOAD_BYTES_MAX: u32 = CONTROL_FRAME_BYTES_MAX;

/// Default block size of a file when neither the client nor the master says.
pub const BLOCK_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Largest block size a file may ask for (2 GiB).
pub const BLOCK_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;
/// Default number of replicas of each block.
pub const REPLICATION_DEFAULT: u8 = 3;
/// Largest replication a file may ask for.
pub const REPLICATION_MAX: u8 = 16;

/// Longest name of one path component, in bytes.
pub const NAME_BYTES_MAX: usize = 255;
/// Longest whole path, in bytes.
pub const PATH_BYTES_MAX: usize = 4096;
/// Longest target of a symbolic link (Linux's PATH_MAX less its NUL).
pub const SYMLINK_TARGET_BYTES_MAX: usize = 4095;
/// Most names one file may have (ext4's bound on hard links).
pub const LINKS_MAX: u32 = 65_000;
/// Deepest path, in components.
pub const PATH_DEPTH_MAX: usize = 256;

/// Most directory entries returned by one listing request.
pub const LIST_ENTRIES_MAX: u32 = 1000;
/// Most blocks of one file (a 2 TiB file with 64 MiB blocks is 32,768).
pub const FILE_BLOCKS_MAX: usize = 1 << 20;
/// Longest extended attribute name, with its `user.` prefix (as Linux).
pub const XATTR_NAME_BYTES_MAX: usize = 255;
/// Largest extended attribute value.
pub const XATTR_VALUE_BYTES_MAX: usize = 16 * 1024;
/// Most bytes of names and values one entry's extended attributes hold.
pub const XATTR_BYTES_PER_ENTRY_MAX: usize = 64 * 1024;
/// Most pieces (parts of blocks and holes) one file's contents are made of
/// after writes into its middle; a change that would make more is refused
/// until the file is rewritten whole (compacted).
pub const FILE_PIECES_MAX: usize = 1 << 20;
/// Fewest pieces a file has before it is compacted (written again as whole
/// blocks) when it has more than twice the pieces whole blocks need.
pub const COMPACT_PIECES_MIN: u64 = 256;
/// Most ranges one `PatchWrite` replaces: its journal record must stay
/// within `JOURNAL_RECORD_PAYLOAD_BYTES_MAX` (each range is two varints of
/// at most 10 bytes).
pub const PATCH_RANGES_MAX: usize = 2048;
/// Most replicas one minion reports in one block-report frame.
pub const BLOCK_REPORT_IDS_MAX: usize = 100_000;
/// Most minions the master keeps in its registry.
pub const MINIONS_MAX: usize = 4096;
/// Most writes open at once on the master.
pub const OPEN_WRITES_MAX: usize = 65_536;
/// Most file locks (`flock` and POSIX byte ranges) the master holds at once,
/// in all; a lock that merges or splits counts as the ranges it leaves.
pub const LOCKS_MAX: usize = 1_000_000;
/// Most file locks one client session (a mount) holds at once.
pub const SESSION_LOCKS_MAX: usize = 10_000;
const _: () = assert!(SESSION_LOCKS_MAX >= 1 && SESSION_LOCKS_MAX <= LOCKS_MAX);
/// Files one mount writes at once: each has a thread, a master connection
/// and up to 8 MiB of queued writes; one more is refused (`EMFILE`).
pub const MOUNT_OPEN_WRITES_MAX: usize = 64;
/// Largest file a mount writes through a local copy (any offset, read
/// back, truncated); a larger one is sent as a stream, in order.
pub const SPOOL_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Lock sessions open at once (one per mount).
pub const SESSIONS_MAX: usize = 10_000;
/// Most files one session (a mount) holds open at once in the master.
pub const HOLDS_PER_SESSION_MAX: usize = 1 << 16;
/// How long a lock session lasts unrenewed by default (`--lock-lease`).
pub const LOCK_LEASE_MS_DEFAULT: u64 = 30_000;
/// Most connections a daemon serves at once; further ones are refused.
pub const CONNECTIONS_MAX: usize = 1024;
/// Longest a host:port string may be.
pub const ADDRESS_BYTES_MAX: usize = 256;
/// Longest error message carried on the wire.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 1024;

/// How long a peer may stay silent inside a request before we give up on it.
pub const IO_TIMEOUT_MS: u64 = 30_000;
/// How long a client waits for a TCP connection to a minion or the master.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

// Slow and idle peers: what one peer may hold of a daemon. A frame must
// arrive at a rate an honest link clears by far, a connection that sends
// nothing is closed, and one address holds at most a share of the
// connections.
/// How long a peer may take to send a frame, from its first byte to its
/// last (default of the daemons' `--frame-deadline`). A frame gets one
/// deadline per `FRAME_DEADLINE_BYTES` of payload or part of it: a floor
/// of 64 KiB per 20 s (3.2 KiB/s), which a chunk on a slow but honest
/// link meets easily, while a peer that trickles bytes loses its connection.
pub const FRAME_DEADLINE_MS_DEFAULT: u64 = 20_000;
/// Payload bytes one frame deadline covers.
pub const FRAME_DEADLINE_BYTES: u32 = CHUNK_BYTES;
/// How long a master connection may wait for its next request before the
/// master closes it (default of `dfs-master --idle-timeout`): far above a
/// minion's heartbeat interval; clients reconnect when they find it closed,
/// and a connection that owns open writes is never closed for idling.
pub const MASTER_IDLE_TIMEOUT_MS_DEFAULT: u64 = 300_000;
/// How long a minion connection may wait for its next request (default of
/// `dfs-minion --idle-timeout`): the I/O timeout, which the idle minion
/// connections that clients and pipelines keep are made for.
pub const MINION_IDLE_TIMEOUT_MS_DEFAULT: u64 = IO_TIMEOUT_MS;
/// Most connections one peer address holds at once (a quarter of
/// `CONNECTIONS_MAX`, or all of a minion's smaller `connections_max`);
/// further ones are answered `Busy`.
pub const PEER_CONNECTIONS_MAX: usize = CONNECTIONS_MAX / 4;
/// Refused connections a daemon answers `Busy` at once; more are closed
/// without an answer.
pub const BUSY_ANSWERS_MAX: usize = 64;
/// How long a refused connection is given to take its `Busy` answer.
pub const BUSY_ANSWER_TIMEOUT_MS: u64 = 1_000;
/// Bytes a frame reader sets aside for a payload before any of it arrived;
/// it grows by at most what arrived since, so memory follows the bytes
/// received, never what a header only announces.
pub const PAYLOAD_READ_STEP_BYTES: usize = 64 * 1024;
/// Largest payload buffer a master connection keeps between frames; a
/// larger one (after a large frame) is let go.
pub const IDLE_PAYLOAD_BUFFER_BYTES_MAX: usize = 64 * 1024;
const _: () = assert!(PEER_CONNECTIONS_MAX >= 1 && PEER_CONNECTIONS_MAX < CONNECTIONS_MAX);
const _: () = assert!(BUSY_ANSWERS_MAX <= CONNECTIONS_MAX);
const _: () = assert!(FRAME_DEADLINE_BYTES > 0);
const _: () = assert!(BUSY_ANSWER_TIMEOUT_MS < IO_TIMEOUT_MS);
const _: () = assert!(
    WRITE_BLOCKS_IN_FLIGHT_DEFAULT >= 1
        && WRITE_BLOCKS_IN_FLIGHT_DEFAULT <= WRITE_BLOCKS_IN_FLIGHT_MAX
);

/// Requests in one master `Batch`.
pub const BATCH_REQUESTS_MAX: usize = 256;
/// Blocks in one `WriteBlocks` batch.
pub const WRITE_BATCH_BLOCKS_MAX: usize = 128;
/// Replicas one `SyncReplicas` request makes durable.
pub const SYNC_REPLICAS_MAX: usize = 1024;
/// Bytes of all the blocks of one `WriteBlocks` batch.
pub const WRITE_BATCH_BYTES_MAX: u64 = 512 * 1024;
/// Most pipelines a client tries for one block of a write (fresh allocations
/// after a minion failed) before it gives up on the write.
pub const WRITE_BLOCK_ATTEMPTS_MAX: u32 = 5;
/// Blocks of one write a client streams at once by default (`dfs put
/// --blocks-in-flight N` streams up to N, each through its own pipeline,
/// when the input can be read at any offset). One: on a single machine
/// more gained nothing measurable, and a put with several in flight around
/// a stopped minion was seen to run out of pipelines; more is for clusters
/// of separate machines, once that is understood.
pub const WRITE_BLOCKS_IN_FLIGHT_DEFAULT: usize = 1;
/// Most blocks of one write in flight at once (threads, connections and
/// chunk buffers of the client).
pub const WRITE_BLOCKS_IN_FLIGHT_MAX: usize = 16;
/// How long a client waits for a minion's error answer after its connection
/// broke, to report the minion's reason instead of a bare reset.
pub const FAILURE_ANSWER_WAIT_MS: u64 = 1_000;
/// How long `dfs local` waits for its master and minions to start and register.
pub const LOCAL_CLUSTER_START_TIMEOUT_MS: u64 = 30_000;
/// How long `dfs local` waits for a daemon to exit after SIGINT before killing it.
pub const LOCAL_CLUSTER_STOP_TIMEOUT_MS: u64 = 15_000;

/// Largest payload (one encoded namespace op) of a master journal record.
pub const JOURNAL_RECORD_PAYLOAD_BYTES_MAX: u32 = 64 * 1024;
/// Most journal bytes appended but not yet known durable; an append waits
/// beyond it. Recorded in each segment header: start-up relies on it to tell
/// a torn tail from corruption.
pub const JOURNAL_UNSYNCED_BYTES_MAX: u64 = 256 * 1024;
/// Default size of a preallocated master journal segment.
pub const JOURNAL_SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Smallest journal segment (tests use small ones).
pub const JOURNAL_SEGMENT_BYTES_MIN: u64 = 256 * 1024;
/// Largest journal segment.
pub const JOURNAL_SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Journal bytes past the newest checkpoint after which the master writes a
/// checkpoint in the background.
pub const CHECKPOINT_JOURNAL_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;
/// Checkpoints kept in a master's data directory (with the journal the oldest needs).
pub const CHECKPOINTS_KEPT: usize = 2;
/// Largest checkpoint file the master reads.
pub const CHECKPOINT_BYTES_MAX: u64 = 64 << 30;
/// How long a write left open by a crashed master may be taken up again by a
/// client before it is aborted.
pub const ORPHANED_WRITE_TIMEOUT_MS: u64 = 60_000;

/// Most commands the master gives a minion in one heartbeat answer.
pub const HEARTBEAT_COMMANDS_MAX: usize = 64;
/// Most replicas in one `Delete` command.
pub const DELETE_BLOCKS_PER_COMMAND_MAX: usize = 2048;
/// Most blocks in one `BlockStored` report.
pub const STORED_BLOCKS_PER_REPORT_MAX: usize = 10_000;
/// Sealed blocks a minion keeps to report incrementally; past it, it sends a
/// full block report instead.
pub const STORED_BLOCKS_QUEUED_MAX: usize = 100_000;
/// Block deletions the master keeps queued for one minion; past it, further
/// ones are dropped and found again as orphans in the minion's next full report.
pub const DELETES_QUEUED_PER_MINION_MAX: usize = 1_000_000;
/// Re-replications a minion serves as the source at once.
pub const REPLICATIONS_PER_SOURCE_MAX: usize = 2;
/// Re-replications a minion receives at once.
pub const REPLICATIONS_PER_TARGET_MAX: usize = 2;
/// Replicate commands a minion keeps queued for its copy workers; more are
/// dropped (the master's timeout queues them again).
pub const REPLICATIONS_QUEUED_MAX: usize = 16;
/// How long the master waits for a re-replication to land before it plans
/// the block again.
pub const REPLICATION_TIMEOUT_MS: u64 = 120_000;
/// How long a block a minion reports, and no file or write references, is
/// left alone before the minion is told to delete it (default of
/// `--orphan-grace`): covers writes whose commit is still on its way.
pub const ORPHAN_GRACE_MS_DEFAULT: u64 = 3_600_000;
/// Most blocks the master keeps watching as possible orphans.
pub const ORPHAN_CANDIDATES_MAX: usize = 1_000_000;
/// Most of them one minion's reports may fill, so a minion that reports a
/// flood of blocks nobody references (a bug, a rogue member, a restored
/// old disk) leaves room for the others'; the rest are noted again at its
/// next full report, once some are collected.
pub const ORPHAN_CANDIDATES_PER_MINION_MAX: usize = 262_144;
const _: () = assert!(ORPHAN_CANDIDATES_PER_MINION_MAX * 2 <= ORPHAN_CANDIDATES_MAX);

/// Most replicas one `ReportBadReplicas` names.
pub const BAD_REPLICAS_PER_REPORT_MAX: usize = 1024;
/// Replicas the master keeps marked corrupt at once; reports past it are
/// dropped with a log line (a scrubber or reader reports them again).
pub const CORRUPT_REPLICAS_MAX: usize = 100_000;
/// Failed data directories the master keeps noted per minion (for `dfs
/// admin report`); further ones are logged only.
pub const FAILED_DIRECTORIES_PER_MINION_MAX: usize = 4;
/// Longest note of one failed data directory ("directory: reason"), in bytes;
/// longer ones are cut.
pub const FAILED_DIRECTORY_TEXT_BYTES_MAX: usize = 160;
/// Most files one `Fsck` page looks at.
pub const FSCK_FILES_PER_PAGE_MAX: u32 = 500;
/// Most unhealthy blocks one `Fsck` page lists; a file's further unhealthy
/// blocks are only counted.
pub const FSCK_BLOCKS_PER_PAGE_MAX: usize = 20_000;
/// Blocks after which an `Fsck` page ends (at the end of the file being
/// looked at), so the master's locks are held briefly.
pub const FSCK_SCANNED_BLOCKS_PER_PAGE_MAX: u64 = 100_000;

const _: () = assert!(CHUNK_BYTES <= FRAME_PAYLOAD_BYTES_MAX);
const _: () = assert!(CONTROL_FRAME_BYTES_MAX <= FRAME_PAYLOAD_BYTES_MAX);
const _: () = assert!(BLOCK_BYTES_DEFAULT <= BLOCK_BYTES_MAX);
const _: () = assert!(BLOCK_BYTES_DEFAULT.is_multiple_of(CHUNK_BYTES as u64));
const _: () = assert!(REPLICATION_DEFAULT >= 1 && REPLICATION_DEFAULT <= REPLICATION_MAX);
const _: () = assert!(WRITE_BLOCK_ATTEMPTS_MAX >= 2);
const _: () = assert!(FAILURE_ANSWER_WAIT_MS < IO_TIMEOUT_MS);
/// Most bytes of one encoded `StoredBlock` (varints: id and generation up
/// to 10 each, length 10, CRC32C 5).
pub const STORED_BLOCK_ENCODED_BYTES_MAX: usize = 35;
/// Most bytes of one encoded `ReplicaId` (id and generation).
pub const REPLICA_ID_ENCODED_BYTES_MAX: usize = 20;
/// Most blocks one `GetBlocks` answer lists; a client asks for the rest
/// page by page.
pub const GET_BLOCKS_PAGE_MAX: u32 = 512;
/// Most bytes of one encoded `LocatedBlock`: ids, offsets, lengths and CRC
/// (70), its longest list of the longest addresses, and its read token (a
/// user name of at most 255 bytes, the replica, times and a MAC: 512).
const LOCATED_BLOCK_ENCODED_BYTES_MAX: usize =
    70 + (REPLICATION_MAX as usize) * (10 + ADDRESS_BYTES_MAX + 2) + 512;

// A block report of the most replicas must fit one control frame.
const _: () = assert!(
    BLOCK_REPORT_IDS_MAX * STORED_BLOCK_ENCODED_BYTES_MAX < CONTROL_FRAME_BYTES_MAX as usize
);
// A page of blocks with their locations, and the file's status (its name
// and owner's names at most a path long each), fits one control frame.
const _: () = assert!(
    (GET_BLOCKS_PAGE_MAX as usize) * LOCATED_BLOCK_ENCODED_BYTES_MAX + 4 * PATH_BYTES_MAX
        < CONTROL_FRAME_BYTES_MAX as usize
);
// A file's blocks are read in a bounded number of pages.
const _: () = assert!(FILE_BLOCKS_MAX.div_ceil(GET_BLOCKS_PAGE_MAX as usize) <= 4096);
const _: () = assert!(FILE_PIECES_MAX >= FILE_BLOCKS_MAX);
// An extended attribute fits one journal record, beside its path; an
// entry's fit one control frame.
const _: () = assert!(
    XATTR_NAME_BYTES_MAX + XATTR_VALUE_BYTES_MAX + PATH_BYTES_MAX + 64
        <= JOURNAL_RECORD_PAYLOAD_BYTES_MAX as usize
);
const _: () = assert!(XATTR_VALUE_BYTES_MAX <= XATTR_BYTES_PER_ENTRY_MAX);
const _: () = assert!(XATTR_BYTES_PER_ENTRY_MAX * 2 < CONTROL_FRAME_BYTES_MAX as usize);
// A patch's ranges fit one journal record, beside its path and ids.
const _: () = assert!(
    PATCH_RANGES_MAX * 20 + PATH_BYTES_MAX + 64 <= JOURNAL_RECORD_PAYLOAD_BYTES_MAX as usize
);
// A full listing page of the longest names must fit one control frame.
const _: () = assert!(
    (LIST_ENTRIES_MAX as usize) * (NAME_BYTES_MAX + 128) < CONTROL_FRAME_BYTES_MAX as usize
);

const _: () = assert!(JOURNAL_SEGMENT_BYTES_MIN <= JOURNAL_SEGMENT_BYTES_DEFAULT);
const _: () = assert!(JOURNAL_SEGMENT_BYTES_DEFAULT <= JOURNAL_SEGMENT_BYTES_MAX);
// A segment holds at least two records of the largest size (16-byte header + payload).
const _: () =
    assert!(2 * ((JOURNAL_RECORD_PAYLOAD_BYTES_MAX as u64) + 64) < JOURNAL_SEGMENT_BYTES_MIN);
// The largest record fits the unsynced window, so an append can always make progress.
const _: () = assert!((JOURNAL_RECORD_PAYLOAD_BYTES_MAX as u64) + 16 <= JOURNAL_UNSYNCED_BYTES_MAX);
const _: () = assert!(CHECKPOINTS_KEPT >= 1);
// A heartbeat answer of the most delete commands fits one control frame,
// and so does one of the most copies, each to the longest pipeline.
const _: () = assert!(
    HEARTBEAT_COMMANDS_MAX * DELETE_BLOCKS_PER_COMMAND_MAX * REPLICA_ID_ENCODED_BYTES_MAX
        < CONTROL_FRAME_BYTES_MAX as usize
);
const _: () = assert!(
    HEARTBEAT_COMMANDS_MAX
        * (STORED_BLOCK_ENCODED_BYTES_MAX
            + (REPLICATION_MAX as usize) * (10 + ADDRESS_BYTES_MAX + 2))
        < CONTROL_FRAME_BYTES_MAX as usize
);
const _: () = assert!(
    STORED_BLOCKS_PER_REPORT_MAX * (STORED_BLOCK_ENCODED_BYTES_MAX + 1)
        < CONTROL_FRAME_BYTES_MAX as usize
);
const _: () = assert!(REPLICATIONS_PER_SOURCE_MAX >= 1 && REPLICATIONS_PER_TARGET_MAX >= 1);
// A cluster report of the most minions, each with the longest address and
// every failed-directory note, fits one control frame.
const _: () = assert!(
    MINIONS_MAX
        * (ADDRESS_BYTES_MAX
            + 64
            + FAILED_DIRECTORIES_PER_MINION_MAX * (FAILED_DIRECTORY_TEXT_BYTES_MAX + 2))
        < CONTROL_FRAME_BYTES_MAX as usize
);
// A full fsck page fits one control frame: files with the longest paths and
// their counts, listed blocks of at most 32 bytes each, the resume path.
const _: () = assert!(
    (FSCK_FILES_PER_PAGE_MAX as usize) * (PATH_BYTES_MAX + 64)
        + FSCK_BLOCKS_PER_PAGE_MAX * 32
        + PATH_BYTES_MAX
        + 64
        < CONTROL_FRAME_BYTES_MAX as usize
);
const _: () = assert!(
    BAD_REPLICAS_PER_REPORT_MAX * (ERROR_MESSAGE_BYTES_MAX + 32) < CONTROL_FRAME_BYTES_MAX as usize
);

// Read-ahead of a client's sequential read (`client::readahead`).
/// Blocks a reader fetches ahead of the one it hands out by default, each
/// on its own connection: with the block being read, four streams keep
/// more than one minion and disk busy.
pub const READ_AHEAD_BLOCKS_DEFAULT: usize = 3;
/// Most blocks a reader may fetch ahead (threads and connections of one
/// reader).
pub const READ_AHEAD_BLOCKS_MAX: usize = 8;
/// Verified bytes one read-ahead stream holds before it stops reading its
/// socket (TCP flow control then stalls its minion): a whole number of
/// chunks, enough for a few of the minion's 512 KiB disk reads.
pub const READ_AHEAD_STREAM_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes a reader hands out from the start of its file before it reads
/// ahead: a small file or a short read never pays for streams it does not
/// use.
pub const READ_AHEAD_AFTER_BYTES: u64 = 4 * 1024 * 1024;
/// Chunks a read-ahead stream passes to its reader at once (one wake-up):
/// one disk read of the minion's.
pub const READ_AHEAD_MESSAGE_CHUNKS: usize = 8;
/// How long a read-ahead stream may wait for its reader to take a chunk
/// before it reopens its stream on the same replica: a minion gives up a
/// reader that takes nothing for `IO_TIMEOUT_MS`, and a stream that waited
/// for its turn must not count that against the replica.
pub const READ_AHEAD_STALL_MS: u64 = IO_TIMEOUT_MS / 2;
const _: () = assert!(READ_AHEAD_STALL_MS < IO_TIMEOUT_MS);
const _: () = assert!(READ_AHEAD_BLOCKS_DEFAULT <= READ_AHEAD_BLOCKS_MAX);
const _: () = assert!(READ_AHEAD_STREAM_BYTES.is_multiple_of(CHUNK_BYTES as u64));
const _: () = assert!(
    READ_AHEAD_STREAM_BYTES >= 2 * (READ_AHEAD_MESSAGE_CHUNKS as u64) * (CHUNK_BYTES as u64)
);
// What a reader buffers (the block handed out and those ahead, one stream
// each) stays below one default block at most, and a quarter of one by
// default.
const _: () =
    assert!((READ_AHEAD_BLOCKS_MAX as u64 + 1) * READ_AHEAD_STREAM_BYTES <= BLOCK_BYTES_DEFAULT);
const _: () = assert!(
    (READ_AHEAD_BLOCKS_DEFAULT as u64 + 1) * READ_AHEAD_STREAM_BYTES <= BLOCK_BYTES_DEFAULT / 4
);
