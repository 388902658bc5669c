//! In-process stand-ins for the master and minions, speaking the real
//! protocol on 127.0.0.1, so the client's write and read paths (chunking,
//! pipelines that fail, replicas that lie) can be unit-tested without
//! daemons. They keep everything in memory and can be told to misbehave.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use dfs_engine::limits::CHUNK_BYTES;
use dfs_engine::msg::{
    BlockId, EntryKind, EntryStatus, Envelope, ErrorKind, LocatedBlock, MasterRequest,
    MasterResponse, MinionAddress, MinionId, MinionRequest, MinionResponse, RemoteError,
    ReplicaFailure,
};
use dfs_engine::wire::{self, FrameKind};
use dfs_engine::{Error, Result};

use crate::client::Client;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Serves each connection of `listener` on its own thread with `serve`.
fn spawn_server(
    listener: TcpListener,
    serve: impl Fn(TcpStream) -> Result<()> + Send + Sync + 'static,
) {
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let serve = Arc::clone(&serve);
            thread::spawn(move || {
                // A test peer that breaks the protocol just loses its connection.
                let _ = serve(stream);
            });
        }
    });
}

fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    (listener, address)
}

/// An address where nothing listens.
pub fn unreachable_address() -> String {
    let (listener, address) = bind();
    drop(listener);
    address
}

fn status(
    name: &str,
    kind: EntryKind,
    size_bytes: u64,
    replication: u8,
    block_bytes: u64,
) -> EntryStatus {
    EntryStatus {
        name: name.into(),
        kind,
        size_bytes,
        replication,
        block_bytes,
        block_count: 0,
        owner: "ana".into(),
        group: "staff".into(),
        mode: 0o644,
        modified_ms: 0,
        accessed_ms: 0,
        changed_ms: 0,
    }
}

pub struct OpenWrite {
    pub path: String,
    pub replication: u8,
    pub block_bytes: u64,
    pub blocks: Vec<LocatedBlock>,
}

/// What the fake master knows and did.
#[derive(Default)]
pub struct MasterState {
    /// Candidates for new blocks, in the order they are chosen.
    pub minions: Vec<MinionAddress>,
    pub files: BTreeMap<String, (EntryStatus, Vec<LocatedBlock>)>,
    pub writes: HashMap<u64, OpenWrite>,
    pub next_id: u64,
    /// Every allocation: the block and the minions excluded when asked.
    pub allocations: Vec<(BlockId, Vec<MinionId>)>,
    pub abandoned: Vec<BlockId>,
    pub aborted: Vec<u64>,
}

fn remote(kind: ErrorKind, message: String) -> MasterResponse {
    MasterResponse::Error(RemoteError::new(kind, message))
}

impl MasterState {
    fn handle(&mut self, request: MasterRequest) -> MasterResponse {
        match request {
            MasterRequest::Stat { path } if path == "/" => {
                MasterResponse::Status(status("", EntryKind::Directory, 0, 0, 0))
            }
            MasterRequest::Stat { path } => match self.files.get(&path) {
                Some((status, _)) => MasterResponse::Status(status.clone()),
                None => remote(
                    ErrorKind::NotFound,
                    format!("{path}: no such file or directory"),
                ),
            },
            MasterRequest::GetBlocks { path } => match self.files.get(&path) {
                Some((status, blocks)) => MasterResponse::Blocks {
                    status: status.clone(),
                    blocks: blocks.clone(),
                },
                None => remote(
                    ErrorKind::NotFound,
                    format!("{path}: no such file or directory"),
                ),
            },
            MasterRequest::OpenWrite {
                path,
                replication,
                block_bytes,
                overwrite,
                ..
            } => {
                if self.files.contains_key(&path) && !overwrite {
                    return remote(ErrorKind::AlreadyExists, format!("{path}: file exists"));
                }
                self.next_id += 1;
                let write = OpenWrite {
                    path,
                    replication: replication.unwrap_or(3),
                    block_bytes: block_bytes.unwrap_or(4 * u64::from(CHUNK_BYTES)),
                    blocks: Vec::new(),
                };
                let answer = MasterResponse::WriteOpened {
                    write: self.next_id,
                    replication: write.replication,
                    block_bytes: write.block_bytes,
                };
                self.writes.insert(self.next_id, write);
                answer
            }
            MasterRequest::AllocateBlock { write, excluded } => {
                let Some(open) = self.writes.get(&write) else {
                    return remote(ErrorKind::NotFound, format!("write {write}: unknown"));
                };
                let targets: Vec<MinionAddress> = self
                    .minions
                    .iter()
                    .filter(|m| !excluded.contains(&m.id))
                    .take(usize::from(open.replication))
                    .cloned()
                    .collect();
                if targets.is_empty() {
                    return remote(ErrorKind::NoSpace, "no minion can take a new block".into());
                }
                self.next_id += 1;
                let block = BlockId(self.next_id);
                self.allocations.push((block, excluded));
                MasterResponse::BlockAllocated { block, targets }
            }
            MasterRequest::CommitBlock {
                write,
                block,
                length_bytes,
                replicas,
            } => {
                let minions = self.minions.clone();
                let Some(open) = self.writes.get_mut(&write) else {
                    return remote(ErrorKind::NotFound, format!("write {write}: unknown"));
                };
                let offset_bytes = open.blocks.iter().map(|b| b.length_bytes).sum();
                open.blocks.push(LocatedBlock {
                    id: block,
                    offset_bytes,
                    length_bytes,
                    locations: minions
                        .into_iter()
                        .filter(|m| replicas.contains(&m.id))
                        .collect(),
                });
                MasterResponse::Ok
            }
            MasterRequest::AbandonBlock { block, .. } => {
                self.abandoned.push(block);
                MasterResponse::Ok
            }
            MasterRequest::CloseWrite { write } => {
                let Some(open) = self.writes.remove(&write) else {
                    return remote(ErrorKind::NotFound, format!("write {write}: unknown"));
                };
                let size_bytes = open.blocks.iter().map(|b| b.length_bytes).sum();
                let name = open.path.rsplit('/').next().unwrap_or_default();
                let entry = status(
                    name,
                    EntryKind::File,
                    size_bytes,
                    open.replication,
                    open.block_bytes,
                );
                self.files.insert(open.path, (entry, open.blocks));
                MasterResponse::Ok
            }
            MasterRequest::AbortWrite { write } => {
                self.writes.remove(&write);
                self.aborted.push(write);
                MasterResponse::Ok
            }
            other => remote(
                ErrorKind::Internal,
                format!("fake master: {other:?} not supported"),
            ),
        }
    }
}

/// How a fake minion misbehaves.
#[derive(Clone, Debug, Default)]
pub struct Behavior {
    /// Closes a write's connection once this many data bytes arrived.
    pub break_write_after_bytes: Option<u64>,
    /// Stores nothing and answers `Sealed` with only its own failure.
    pub fail_seal: Option<RemoteError>,
    /// Flips a byte of every chunk it serves, keeping the stored CRC.
    pub corrupt_reads: bool,
    /// Closes a read's connection after this many data frames.
    pub break_read_after_frames: Option<usize>,
}

#[derive(Default)]
pub struct MinionStore {
    pub blocks: HashMap<BlockId, Vec<u8>>,
    /// The chunk lengths each written block arrived in.
    pub chunk_lengths: HashMap<BlockId, Vec<usize>>,
    pub behavior: Behavior,
    pub connections: usize,
}

type Registry = Arc<Mutex<HashMap<String, (MinionId, Arc<Mutex<MinionStore>>)>>>;

pub struct FakeMinion {
    pub address: MinionAddress,
    pub store: Arc<Mutex<MinionStore>>,
}

pub struct FakeCluster {
    pub master_address: String,
    pub master: Arc<Mutex<MasterState>>,
    pub minions: Vec<FakeMinion>,
}

impl FakeCluster {
    /// A master and `count` minions; new blocks go to them in order.
    pub fn start(count: usize) -> FakeCluster {
        let registry: Registry = Arc::default();
        let minions: Vec<FakeMinion> = (0..count)
            .map(|index| start_minion(MinionId(index as u64 + 1), &registry))
            .collect();
        let master = Arc::new(Mutex::new(MasterState {
            minions: minions.iter().map(|m| m.address.clone()).collect(),
            ..MasterState::default()
        }));
        let (listener, master_address) = bind();
        let state = Arc::clone(&master);
        spawn_server(listener, move |stream| serve_master(stream, &state));
        FakeCluster {
            master_address,
            master,
            minions,
        }
    }

    pub fn client(&self) -> Client {
        let mut client = Client::connect(&self.master_address).expect("connect to the fake master");
        client.set_warning_sink(Arc::new(|_: &str| {}));
        client
    }

    pub fn master(&self) -> MutexGuard<'_, MasterState> {
        lock(&self.master)
    }

    pub fn minion(&self, index: usize) -> MutexGuard<'_, MinionStore> {
        lock(&self.minions[index].store)
    }

    /// Adds a candidate for new blocks that nobody listens at, first in line.
    pub fn prepend_unreachable_minion(&self, id: u64) -> MinionAddress {
        let address = MinionAddress {
            id: MinionId(id),
            address: unreachable_address(),
        };
        self.master().minions.insert(0, address.clone());
        address
    }
}

fn serve_master(stream: TcpStream, state: &Mutex<MasterState>) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| Error::io("clone", e))?);
    let mut writer = BufWriter::new(stream);
    let mut buffer = Vec::new();
    while let Some((id, envelope)) =
        wire::read_message::<Envelope<MasterRequest>>(&mut reader, FrameKind::Request, &mut buffer)?
    {
        let response = lock(state).handle(envelope.body);
        wire::write_message(&mut writer, FrameKind::Response, id, &response)?;
        writer.flush().map_err(|e| Error::io("flush", e))?;
    }
    Ok(())
}

fn start_minion(id: MinionId, registry: &Registry) -> FakeMinion {
    let (listener, address) = bind();
    let store = Arc::new(Mutex::new(MinionStore::default()));
    lock(registry).insert(address.clone(), (id, Arc::clone(&store)));
    let served = Arc::clone(&store);
    let peers = Arc::clone(registry);
    let own = MinionAddress {
        id,
        address: address.clone(),
    };
    let me = own.clone();
    spawn_server(listener, move |stream| {
        serve_minion(stream, &me, &served, &peers)
    });
    FakeMinion {
        address: own,
        store,
    }
}

fn serve_minion(
    stream: TcpStream,
    me: &MinionAddress,
    store: &Mutex<MinionStore>,
    peers: &Registry,
) -> Result<()> {
    lock(store).connections += 1;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| Error::io("clone", e))?);
    let mut writer = BufWriter::new(stream);
    let mut buffer = Vec::new();
    loop {
        let Some((id, envelope)) = wire::read_message::<Envelope<MinionRequest>>(
            &mut reader,
            FrameKind::Request,
            &mut buffer,
        )?
        else {
            return Ok(());
        };
        let response = match envelope.body {
            MinionRequest::WriteBlock {
                block, downstream, ..
            } => match receive_block(&mut reader, store, block, &mut buffer)? {
                Some(data) => seal(me, store, peers, block, data, &downstream),
                None => return Ok(()),
            },
            MinionRequest::ReadBlock {
                block,
                offset_bytes,
                length_bytes,
            } => {
                if !serve_read(&mut writer, id, store, block, offset_bytes, length_bytes)? {
                    return Ok(());
                }
                continue;
            }
            MinionRequest::SealBlock { .. } => {
                return Err(Error::Protocol("seal without write".into()))
            }
        };
        wire::write_message(&mut writer, FrameKind::Response, id, &response)?;
        writer.flush().map_err(|e| Error::io("flush", e))?;
    }
}

/// Reads a block's data frames up to its `SealBlock`; None: the behaviour
/// says to drop the connection midway.
fn receive_block(
    reader: &mut BufReader<TcpStream>,
    store: &Mutex<MinionStore>,
    block: BlockId,
    buffer: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>> {
    let break_after = lock(store).behavior.break_write_after_bytes;
    let mut data = Vec::new();
    let mut lengths = Vec::new();
    loop {
        let header = wire::read_header(reader)?.ok_or_else(|| Error::Protocol("closed".into()))?;
        wire::read_payload(reader, &header, buffer)?;
        if header.kind == FrameKind::Data {
            data.extend_from_slice(buffer);
            lengths.push(buffer.len());
            if break_after.is_some_and(|limit| data.len() as u64 >= limit) {
                return Ok(None);
            }
            continue;
        }
        let envelope: Envelope<MinionRequest> = wire::decode_message(buffer)?;
        match envelope.body {
            MinionRequest::SealBlock { length_bytes, .. } if length_bytes == data.len() as u64 => {
                lock(store).chunk_lengths.insert(block, lengths);
                return Ok(Some(data));
            }
            other => return Err(Error::Protocol(format!("expected a seal, got {other:?}"))),
        }
    }
}

/// Stores the block here and, standing in for the pipeline, on each
/// downstream peer that exists.
fn seal(
    me: &MinionAddress,
    store: &Mutex<MinionStore>,
    peers: &Registry,
    block: BlockId,
    data: Vec<u8>,
    downstream: &[MinionAddress],
) -> MinionResponse {
    if let Some(error) = lock(store).behavior.fail_seal.clone() {
        return MinionResponse::Sealed {
            stored: vec![],
            failed: vec![ReplicaFailure {
                minion: me.clone(),
                error,
            }],
        };
    }
    let mut stored = vec![me.id];
    let mut failed = Vec::new();
    for target in downstream {
        let peer = lock(peers).get(&target.address).cloned();
        match peer {
            Some((id, peer_store)) if lock(&peer_store).behavior.fail_seal.is_none() => {
                lock(&peer_store).blocks.insert(block, data.clone());
                stored.push(id);
            }
            _ => failed.push(ReplicaFailure {
                minion: target.clone(),
                error: RemoteError::new(
                    ErrorKind::NoSpace,
                    format!(
                        "minion {}@{}: disk full writing {block}",
                        target.id, target.address
                    ),
                ),
            }),
        }
    }
    lock(store).blocks.insert(block, data);
    MinionResponse::Sealed { stored, failed }
}

/// Answers a read; false: the behaviour says to drop the connection.
fn serve_read(
    writer: &mut BufWriter<TcpStream>,
    id: u64,
    store: &Mutex<MinionStore>,
    block: BlockId,
    offset_bytes: u64,
    length_bytes: u64,
) -> Result<bool> {
    let (data, behavior) = {
        let store = lock(store);
        (store.blocks.get(&block).cloned(), store.behavior.clone())
    };
    let Some(data) = data else {
        let answer = MinionResponse::Error(RemoteError::new(
            ErrorKind::NotFound,
            format!("{block}: no such block"),
        ));
        wire::write_message(writer, FrameKind::Response, id, &answer)?;
        writer.flush().map_err(|e| Error::io("flush", e))?;
        return Ok(true);
    };
    let chunk_bytes = CHUNK_BYTES as usize;
    let first = offset_bytes as usize / chunk_bytes * chunk_bytes;
    let end = (offset_bytes + length_bytes) as usize;
    let answer = MinionResponse::ReadStarted {
        block_length_bytes: data.len() as u64,
        first_offset_bytes: first as u64,
    };
    wire::write_message(writer, FrameKind::Response, id, &answer)?;
    let mut frames = 0;
    let mut start = first;
    while start < end {
        if behavior
            .break_read_after_frames
            .is_some_and(|limit| frames >= limit)
        {
            writer.flush().map_err(|e| Error::io("flush", e))?;
            return Ok(false);
        }
        let chunk_end = (start + chunk_bytes).min(data.len());
        let mut chunk = data[start..chunk_end].to_vec();
        let crc = crc32c::crc32c(&chunk);
        if behavior.corrupt_reads {
            chunk[0] ^= 0x40;
        }
        wire::write_frame_with_crc(writer, FrameKind::Data, 0, 0, &chunk, crc)?;
        frames += 1;
        start = chunk_end;
    }
    writer.flush().map_err(|e| Error::io("flush", e))?;
    Ok(true)
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn test_bytes(length: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
