//! A minion's conversation with its master, against a scripted stand-in
//! master on 127.0.0.1 that records every request: first registration and
//! the block report, the cluster id kept in the identity files, heartbeats,
//! registering again when the master forgot the minion, retrying while the
//! master is away (the data service serving meanwhile), and the two refusals
//! that end the minion.

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use dfs_engine::block_store::BlockStore;
use dfs_engine::msg::{
    BlockId, ClusterId, Credentials, Envelope, ErrorKind, MasterRequest, MasterResponse,
    MinionRequest, MinionResponse, RemoteError,
};
use dfs_engine::rpc::Connection;
use dfs_engine::wire::{self, FrameKind};
use dfs_minion::config::Config;
use dfs_minion::identity::IdentityRecord;
use dfs_minion::RunningMinion;
use dfs_testkit::wait_for;

const WAIT: Duration = Duration::from_secs(20);
const CLUSTER: ClusterId = ClusterId(0xc1c1);

type Script = dyn Fn(&MasterRequest, &[MasterRequest]) -> MasterResponse + Send + Sync;

/// A master that answers from a script and remembers what it was asked.
struct FakeMaster {
    address: String,
    requests: Arc<Mutex<Vec<MasterRequest>>>,
}

impl FakeMaster {
    fn start(
        script: impl Fn(&MasterRequest, &[MasterRequest]) -> MasterResponse + Send + Sync + 'static,
    ) -> FakeMaster {
        FakeMaster::start_on(TcpListener::bind("127.0.0.1:0").expect("bind"), script)
    }

    fn start_on(
        listener: TcpListener,
        script: impl Fn(&MasterRequest, &[MasterRequest]) -> MasterResponse + Send + Sync + 'static,
    ) -> FakeMaster {
        let address = listener.local_addr().expect("address").to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = Arc::clone(&requests);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let log = Arc::clone(&log);
                let script = Arc::clone(&script);
                thread::spawn(move || serve_master(stream, &log, &*script));
            }
        });
        FakeMaster { address, requests }
    }

    fn requests(&self) -> Vec<MasterRequest> {
        self.requests.lock().expect("lock").clone()
    }

    /// The kinds of requests so far, in order: "R" register, "B" block
    /// report, "H" heartbeat.
    fn kinds(&self) -> String {
        self.requests()
            .iter()
            .map(|request| match request {
                MasterRequest::Register { .. } => 'R',
                MasterRequest::BlockReport { .. } => 'B',
                MasterRequest::Heartbeat { .. } => 'H',
                _ => '?',
            })
            .collect()
    }
}

fn serve_master(stream: TcpStream, log: &Mutex<Vec<MasterRequest>>, script: &Script) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut buffer = Vec::new();
    while let Ok(Some((request_id, envelope))) =
        wire::read_message::<Envelope<MasterRequest>>(&mut reader, FrameKind::Request, &mut buffer)
    {
        let response = {
            let mut requests = log.lock().expect("lock");
            let response = script(&envelope.body, &requests);
            requests.push(envelope.body);
            response
        };
        if wire::write_message(&mut writer, FrameKind::Response, request_id, &response).is_err() {
            return;
        }
    }
}

fn registered(_: &MasterRequest, _: &[MasterRequest]) -> MasterResponse {
    MasterResponse::Registered {
        cluster: CLUSTER,
        heartbeat_interval_ms: 20,
    }
}

/// Registers and accepts everything.
fn friendly(request: &MasterRequest, earlier: &[MasterRequest]) -> MasterResponse {
    match request {
        MasterRequest::Register { .. } => registered(request, earlier),
        _ => MasterResponse::Ok,
    }
}

fn config(master: &str, dirs: &[PathBuf]) -> Config {
    Config {
        master: master.to_string(),
        data_dirs: dirs.to_vec(),
        listen: "127.0.0.1:0".into(),
        advertise: None,
        heartbeat_interval: Duration::from_millis(50),
    }
}

/// Runs a started minion on a thread until the returned flag is set.
fn run(minion: RunningMinion) -> (Arc<AtomicBool>, JoinHandle<dfs_engine::Result<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    (stop, thread::spawn(move || minion.run_until(&flag)))
}

fn stop(running: (Arc<AtomicBool>, JoinHandle<dfs_engine::Result<()>>)) {
    running.0.store(true, std::sync::atomic::Ordering::SeqCst);
    running
        .1
        .join()
        .expect("minion thread")
        .expect("clean stop");
}

fn identity_of(dir: &std::path::Path) -> IdentityRecord {
    let text = std::fs::read(dir.join("minion.id")).expect("identity file");
    IdentityRecord::parse(&text).expect("identity")
}

#[test]
fn a_minion_registers_reports_its_blocks_and_heartbeats() {
    let root = tempfile::tempdir().expect("temp dir");
    let dirs = vec![root.path().join("disk0"), root.path().join("disk1")];
    // Two blocks from an earlier life.
    {
        let store = BlockStore::open(&dirs).expect("open store");
        for id in [0x11, 0x22] {
            let mut writer = store.create(BlockId(id)).expect("create");
            writer
                .write_chunk(b"data", crc32c::crc32c(b"data"))
                .expect("write");
            writer.seal(false).expect("seal");
        }
    }
    let master = FakeMaster::start(friendly);
    let minion = dfs_minion::start(config(&master.address, &dirs)).expect("start");
    let me = minion.minion_address().clone();
    let running = run(minion);
    wait_for(
        || master.kinds().starts_with("RBHHH"),
        WAIT,
        "registration, a report, heartbeats",
    );

    let requests = master.requests();
    match &requests[0] {
        MasterRequest::Register {
            minion,
            cluster,
            address,
            capacity_bytes,
            used_bytes,
            available_bytes,
        } => {
            assert_eq!((*minion, *cluster, address), (me.id, None, &me.address));
            assert!(capacity_bytes >= available_bytes && *capacity_bytes > 0);
            assert_eq!(*used_bytes, 2 * (4 + 4 + 32), "two 4-byte blocks");
        }
        other => panic!("expected Register, got {other:?}"),
    }
    assert_eq!(
        requests[1],
        MasterRequest::BlockReport {
            minion: me.id,
            blocks: vec![BlockId(0x11), BlockId(0x22)],
            first: true,
            last: true,
        }
    );
    assert!(matches!(
        requests[2],
        MasterRequest::Heartbeat { minion, block_count: 2, .. } if minion == me.id
    ));
    for dir in &dirs {
        assert_eq!(
            identity_of(dir),
            IdentityRecord {
                minion: me.id,
                cluster: Some(CLUSTER)
            }
        );
    }
    stop(running);

    // Started again, it says which cluster it belongs to.
    let master = FakeMaster::start(friendly);
    let running = run(dfs_minion::start(config(&master.address, &dirs)).expect("restart"));
    wait_for(
        || master.kinds().starts_with("RB"),
        WAIT,
        "registration again",
    );
    assert!(matches!(
        master.requests()[0],
        MasterRequest::Register { minion, cluster: Some(CLUSTER), .. } if minion == me.id
    ));
    stop(running);
}

#[test]
fn a_forgotten_minion_registers_and_reports_again() {
    // The first heartbeat is answered "unknown minion", as by a restarted master.
    let master = FakeMaster::start(|request, earlier| match request {
        MasterRequest::Heartbeat { .. }
            if !earlier
                .iter()
                .any(|r| matches!(r, MasterRequest::Heartbeat { .. })) =>
        {
            MasterResponse::Error(RemoteError::new(ErrorKind::UnknownMinion, "who are you?"))
        }
        _ => friendly(request, earlier),
    });
    let root = tempfile::tempdir().expect("temp dir");
    let running = run(
        dfs_minion::start(config(&master.address, &[root.path().to_path_buf()])).expect("start"),
    );
    wait_for(
        || master.kinds().starts_with("RBHRBHH"),
        WAIT,
        "a second registration",
    );
    let reports = master
        .requests()
        .into_iter()
        .filter(|r| {
            matches!(
                r,
                MasterRequest::BlockReport {
                    first: true,
                    last: true,
                    ..
                }
            )
        })
        .count();
    assert!(reports >= 2);
    stop(running);
}

#[test]
fn refusals_for_good_end_the_minion() {
    for kind in [ErrorKind::WrongCluster, ErrorKind::DuplicateMinion] {
        let master = FakeMaster::start(move |_, _| {
            MasterResponse::Error(RemoteError::new(kind, format!("refused: {kind:?}")))
        });
        let root = tempfile::tempdir().expect("temp dir");
        let (_stop, handle) = run(dfs_minion::start(config(
            &master.address,
            &[root.path().to_path_buf()],
        ))
        .expect("start"));
        wait_for(|| handle.is_finished(), WAIT, "the minion to give up");
        let error = handle
            .join()
            .expect("minion thread")
            .expect_err("a fatal refusal");
        assert!(
            error.to_string().contains(&format!("refused: {kind:?}")),
            "{error}"
        );
        assert_eq!(master.kinds(), "R", "{kind:?}: no retries");
        assert_eq!(identity_of(root.path()).cluster, None);
    }
}

#[test]
fn other_refusals_are_retried() {
    let master = FakeMaster::start(|request, earlier| {
        let registrations = earlier
            .iter()
            .filter(|r| matches!(r, MasterRequest::Register { .. }))
            .count();
        match request {
            MasterRequest::Register { .. } if registrations < 2 => {
                MasterResponse::Error(RemoteError::new(ErrorKind::Busy, "registry full"))
            }
            _ => friendly(request, earlier),
        }
    });
    let root = tempfile::tempdir().expect("temp dir");
    let running = run(
        dfs_minion::start(config(&master.address, &[root.path().to_path_buf()])).expect("start"),
    );
    wait_for(
        || master.kinds().starts_with("RRRBH"),
        WAIT,
        "registration after two refusals",
    );
    stop(running);
}

#[test]
fn an_absent_master_is_retried_while_blocks_are_served() {
    // Reserve a port for the master that is not there yet.
    let reserved = TcpListener::bind("127.0.0.1:0").expect("bind");
    let master_address = reserved.local_addr().expect("address");
    drop(reserved);
    let root = tempfile::tempdir().expect("temp dir");
    let minion = dfs_minion::start(config(
        &master_address.to_string(),
        &[root.path().to_path_buf()],
    ))
    .expect("start without a master");
    let data_address = minion.local_address().to_string();
    let running = run(minion);

    // The data service answers while the minion is unregistered.
    let mut connection = Connection::open(&data_address).expect("connect");
    let answer: MinionResponse = connection
        .call(
            &Credentials::default(),
            MinionRequest::ReadBlock {
                block: BlockId(1),
                offset_bytes: 0,
                length_bytes: 0,
            },
        )
        .expect("answer");
    assert!(matches!(
        answer,
        MinionResponse::Error(RemoteError {
            kind: ErrorKind::NotFound,
            ..
        })
    ));

    let listener = TcpListener::bind(master_address).expect("bind the master's port");
    let master = FakeMaster::start_on(listener, friendly);
    wait_for(
        || master.kinds().starts_with("RBH"),
        WAIT,
        "registration once the master is up",
    );
    stop(running);
}
