//! Cluster membership with a key (`dfs admin keygen`, `--key` on the
//! master and every minion): the attacks an unauthenticated peer could
//! make on the master's view of its minions are refused, nothing is
//! changed by them, and honest clients go on being served. Real
//! processes.

use std::time::Duration;

use dfs_engine::auth::{bound_nonce, random_bytes, ClusterKey, NONCE_BYTES};
use dfs_engine::msg::{
    BadReplica, BlockId, Credentials, ErrorKind, Generation, MasterRequest, MasterResponse,
    MinionId, StoredBlock,
};
use dfs_engine::rpc::Connection;
use dfs_testkit::keys::{keyed_cluster, keygen};
use dfs_testkit::{binary, utf8, Cluster, ClusterOptions};

/// A connection to the master that proved the cluster key at `key_path`
/// as its identity (the member identity: it asserts any user).
fn member_connection(cluster: &Cluster, key_path: &std::path::Path) -> Connection {
    dfs_engine::identity::Identity::load(key_path)
        .expect("load the member identity")
        .connect(cluster.master_address())
        .expect("prove the member identity")
}

/// A new TLS connection to the master, nothing proved on it.
fn tls_connection(cluster: &Cluster) -> Connection {
    Connection::open_tls(
        cluster.master_address(),
        Duration::from_secs(5),
        Duration::from_secs(30),
    )
    .expect("connect with TLS")
}

/// `request` on its own new connection, as a peer without the key sends it.
fn anonymous(cluster: &Cluster, request: MasterRequest) -> MasterResponse {
    let mut connection = Connection::open(cluster.master_address()).expect("connect");
    connection
        .call(&Credentials::default(), request)
        .expect("an answer")
}

fn assert_refused(response: MasterResponse, what: &str) {
    match response {
        MasterResponse::Error(error) => {
            assert_eq!(error.kind, ErrorKind::PermissionDenied, "{what}: {error:?}");
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn without_the_key_no_one_speaks_for_a_minion() {
    let (keys, cluster) = keyed_cluster(ClusterOptions {
        minions: 2,
        replication: Some(2),
        ..ClusterOptions::default()
    });
    let key_path = keys.path().join("cluster.key");
    let source = cluster.dir().join("data");
    std::fs::write(&source, vec![7u8; 300_000]).expect("write");
    cluster.dfs_ok(["put", utf8(&source), "/data"]);
    let minions = cluster.cluster_report();
    assert_eq!(minions.len(), 2, "both keyed minions joined");
    let real = minions[0].id;

    // Fake minions cannot register (with a fresh id or a live one's).
    for (id, address) in [(MinionId(0xbad), "127.0.0.1:1"), (real, "127.0.0.1:2")] {
        let answer = anonymous(
            &cluster,
            MasterRequest::Register {
                minion: id,
                cluster: None,
                address: address.into(),
                capacity_bytes: 1 << 40,
                used_bytes: 0,
                available_bytes: 1 << 40,
            },
        );
        assert_refused(answer, "register");
    }
    // Nor heartbeat as a real one (and take its commands), report blocks
    // for it, report its replicas bad, or fail its directories.
    let attacks = [
        MasterRequest::Heartbeat {
            minion: real,
            capacity_bytes: 1,
            used_bytes: 0,
            available_bytes: 1,
            block_count: 0,
            traffic: Default::default(),
        },
        MasterRequest::BlockReport {
            minion: real,
            blocks: (1..1000)
                .map(|id| StoredBlock {
                    block: BlockId(id),
                    generation: Generation(1),
                    length_bytes: 1,
                    crc32c: 0,
                })
                .collect(),
            first: true,
            last: true,
        },
        MasterRequest::ReportBadReplicas {
            reporter: Some(real),
            replicas: vec![BadReplica {
                block: BlockId(1),
                generation: Generation(1),
                minion: real,
                reason: "forged".into(),
            }],
        },
        MasterRequest::DataDirectoryFailed {
            minion: real,
            directory: "/".into(),
            reason: "forged".into(),
        },
    ];
    for attack in attacks {
        let what = format!("{attack:?}").chars().take(40).collect::<String>();
        assert_refused(anonymous(&cluster, attack), &what);
    }
    // No challenge on a connection without TLS: a proof there would not
    // protect what follows it.
    let mut plain = Connection::open(cluster.master_address()).expect("connect");
    let nonce: [u8; NONCE_BYTES] = random_bytes().expect("nonce");
    let credentials = Credentials::default();
    let answer = plain
        .call(
            &credentials,
            MasterRequest::Authenticate {
                minion: real,
                nonce: nonce.to_vec(),
            },
        )
        .expect("an answer");
    assert_refused(answer, "a challenge without TLS");
    // A wrong key's proof is refused, and leaves the connection unproven.
    let mut connection = tls_connection(&cluster);
    let answer = connection
        .call(
            &credentials,
            MasterRequest::Authenticate {
                minion: real,
                nonce: nonce.to_vec(),
            },
        )
        .expect("challenge");
    let MasterResponse::Challenge {
        nonce: master_nonce,
        proof,
    } = answer
    else {
        panic!("expected a challenge, got {answer:?}");
    };
    let master_nonce = bound_nonce(&master_nonce, &connection.binding().expect("TLS"));
    let right = ClusterKey::load(&key_path).expect("load");
    assert!(right.is_master_proof(&proof, real, &nonce, &master_nonce));
    let wrong = ClusterKey::generate().expect("key");
    let answer = connection
        .call(
            &credentials,
            MasterRequest::ProveMember {
                proof: wrong.minion_proof(real, &nonce, &master_nonce).to_vec(),
            },
        )
        .expect("answer");
    assert_refused(answer, "a wrong proof");
    let answer = connection
        .call(
            &credentials,
            MasterRequest::Heartbeat {
                minion: real,
                capacity_bytes: 1,
                used_bytes: 0,
                available_bytes: 1,
                block_count: 0,
                traffic: Default::default(),
            },
        )
        .expect("answer");
    assert_refused(answer, "a heartbeat after a wrong proof");

    // A rogue minion with another key, and one with none, never join.
    let rogue_key = keys.path().join("rogue.key");
    keygen(&rogue_key);
    let mut rogues = Vec::new();
    for (index, key) in [Some(&rogue_key), None].into_iter().enumerate() {
        let data = cluster.dir().join(format!("rogue-{index}"));
        let mut command = std::process::Command::new(binary("dfs-minion"));
        command
            .args([
                "--master",
                cluster.master_address(),
                "--listen",
                "127.0.0.1:0",
            ])
            .arg("--data")
            .arg(&data)
            .args(["--heartbeat-interval", "200ms"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(data.with_extension("log")).expect("log"));
        if let Some(key) = key {
            command.arg("--key").arg(key);
        }
        rogues.push(dfs_testkit::ChildGuard::new(
            "rogue minion",
            command.spawn().expect("start a rogue minion"),
        ));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(cluster.cluster_report().len(), 2, "no rogue joined");
    drop(rogues);
    // Each was told why (and the keyed one refused the master first).
    let log = |index: usize| {
        std::fs::read_to_string(cluster.dir().join(format!("rogue-{index}.log"))).expect("log")
    };
    assert!(
        log(0).contains("does not prove this cluster's key"),
        "{}",
        log(0)
    );
    assert!(log(1).contains("not a proven member"), "{}", log(1));

    // Nothing changed: the data is whole on both replicas, and served.
    assert_eq!(cluster.dfs_ok(["cat", "/data"]).len(), 300_000);
    let fsck = cluster.dfs(["fsck", "/"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    cluster.assert_clean_logs();
}

/// A daemon asked to listen where other machines reach it, with no key,
/// refuses to start and names the two ways on; `--insecure` is one.
#[test]
fn daemons_refuse_to_listen_openly_without_a_key_unless_told_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |program: &str, extra: &[&str]| {
        let mut command = std::process::Command::new(binary(program));
        command
            .arg("--data")
            .arg(dir.path().join(program))
            .args(["--listen", "0.0.0.0:0"])
            .args(extra);
        let output = dfs_testkit::run(&mut command, None, Duration::from_secs(20));
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for (program, extra) in [
        ("dfs-master", &[][..]),
        ("dfs-minion", &["--master", "127.0.0.1:9"][..]),
    ] {
        let (success, text) = run(program, extra);
        assert!(!success, "{program} started listening openly");
        assert!(
            text.contains("--listen 0.0.0.0:0 is reachable from other machines")
                && text.contains("--insecure")
                && text.contains("--key"),
            "{program}: {text}"
        );
        assert_eq!(
            text.trim().lines().count(),
            1,
            "{program}: one line: {text}"
        );
    }
    // With --insecure the master starts (and is stopped at once).
    let mut master = std::process::Command::new(binary("dfs-master"))
        .arg("--data")
        .arg(dir.path().join("open-master"))
        .args(["--listen", "0.0.0.0:0", "--insecure"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start dfs-master");
    let stdout = master.stdout.take().expect("piped");
    let line = dfs_testkit::read_first_line(stdout, Duration::from_secs(20));
    let _ = master.kill();
    let _ = master.wait();
    let line = line.unwrap_or_else(|_| panic!("no listening line"));
    assert!(line.starts_with("listening on"), "{line}");
}

/// With a key, a minion serves a block only to a read with the block
/// access token the master handed out with its location: none, another
/// block's, another user's, an expired or a tampered one is refused.
#[test]
fn a_block_is_read_only_with_its_own_fresh_token() {
    use dfs_engine::msg::ReplicaId;
    use dfs_engine::msg::{MinionRequest, MinionResponse};
    use dfs_engine::token::{TokenKeys, TOKEN_LIFETIME_MS};
    let (keys, cluster) = keyed_cluster(ClusterOptions {
        minions: 1,
        replication: Some(1),
        block_size: Some("1M"),
        ..ClusterOptions::default()
    });
    let key_path = keys.path().join("cluster.key");
    let source = cluster.dir().join("data");
    std::fs::write(&source, vec![5u8; 1_500_000]).expect("write");
    cluster.dfs_ok(["put", utf8(&source), "/two-blocks"]);
    assert_eq!(cluster.dfs_ok(["cat", "/two-blocks"]).len(), 1_500_000);
    // The locations as root asked for them, each with its token.
    let blocks = cluster.located_blocks("/two-blocks");
    assert_eq!(blocks.len(), 2);
    assert!(blocks.iter().all(|block| !block.token.is_empty()));
    let (first, second) = (&blocks[0], &blocks[1]);
    let address = first.locations[0].address.clone();
    let read = |user: &str, token: Vec<u8>, block: &dfs_engine::msg::LocatedBlock| {
        let mut connection = Connection::open(&address).expect("connect to the minion");
        let credentials = Credentials {
            user: user.into(),
            groups: vec![user.into()],
            token,
        };
        connection
            .call::<_, MinionResponse>(
                &credentials,
                MinionRequest::ReadBlock {
                    block: block.id,
                    generation: block.generation,
                    offset_bytes: 0,
                    length_bytes: 4096,
                },
            )
            .expect("an answer")
    };
    let refused = |answer: MinionResponse, what: &str, wanted: &str| match answer {
        MinionResponse::Error(error) => {
            assert_eq!(error.kind, ErrorKind::PermissionDenied, "{what}: {error:?}");
            assert!(error.message.contains(wanted), "{what}: {}", error.message);
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    };
    assert!(matches!(
        read("root", first.token.clone(), first),
        MinionResponse::ReadStarted { .. }
    ));
    refused(
        read("root", Vec::new(), first),
        "no token",
        "no block access token",
    );
    refused(
        read("root", first.token.clone(), second),
        "another block's",
        "is for",
    );
    refused(
        read("mallory", first.token.clone(), first),
        "another user's",
        "for user root",
    );
    let mut tampered = first.token.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    refused(read("root", tampered, first), "tampered", "forged");
    let keys = TokenKeys::new(ClusterKey::load(&key_path).expect("load"));
    let long_ago = dfs_engine::rpc::now_ms() - 2 * TOKEN_LIFETIME_MS;
    let replica = ReplicaId {
        block: first.id,
        generation: first.generation,
    };
    let expired = keys.mint_read("root", replica, long_ago);
    refused(read("root", expired, first), "expired", "expired");
    let foreign = TokenKeys::new(ClusterKey::generate().expect("key")).mint_read(
        "root",
        replica,
        dfs_engine::rpc::now_ms(),
    );
    refused(read("root", foreign, first), "another cluster's", "forged");

    // A client's report of a bad replica needs that block's token too.
    let report = |token: Vec<u8>| {
        let mut connection = member_connection(&cluster, &key_path);
        let credentials = Credentials {
            user: "root".into(),
            groups: vec!["root".into()],
            token,
        };
        connection
            .call::<_, MasterResponse>(
                &credentials,
                MasterRequest::ReportBadReplicas {
                    reporter: None,
                    replicas: vec![BadReplica {
                        block: first.id,
                        generation: first.generation,
                        minion: first.locations[0].id,
                        reason: "forged".into(),
                    }],
                },
            )
            .expect("an answer")
    };
    assert_refused(report(Vec::new()), "a report without a token");
    assert_refused(
        report(second.token.clone()),
        "a report with another block's token",
    );
    assert_eq!(cluster.dfs_ok(["cat", "/two-blocks"]).len(), 1_500_000);
    cluster.assert_clean_logs();
}

/// With a key, a minion stores a block only for a write that carries the
/// token the master minted for that block and pipeline, and forwards it
/// only to the members the token names after it: no token, a read token,
/// another user's, or a real write token sent down another pipeline (an
/// address the client made up, a member it does not name) is refused, and
/// nothing is connected to or stored. Honest writes and the minions' own
/// copies (healing after a minion dies) go on.
#[test]
fn a_block_is_written_only_down_the_pipeline_its_token_names() {
    use dfs_engine::limits::CHUNK_BYTES;
    use dfs_engine::msg::{
        AllocatedBlock, BatchBlock, MinionAddress, MinionRequest, MinionResponse,
    };
    let (keys, mut cluster) = keyed_cluster(ClusterOptions {
        minions: 3,
        replication: Some(2),
        block_size: Some("1M"),
        stale_after: Some("1s"),
        dead_after: Some("2s"),
        ..ClusterOptions::default()
    });
    let source = cluster.dir().join("data");
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&source, &data).expect("write");
    cluster.dfs_ok(["put", utf8(&source), "/honest"]);
    let read_token = cluster.located_blocks("/honest")[0].clone();

    // A real write token, as the master hands it to root for a new file.
    let root = Credentials {
        user: "root".into(),
        groups: vec!["root".into()],
        token: Vec::new(),
    };
    let mut master = member_connection(&cluster, &keys.path().join("cluster.key"));
    let opened = master
        .call::<_, MasterResponse>(
            &root,
            MasterRequest::OpenWrite {
                path: "/stolen".into(),
                replication: Some(2),
                block_bytes: None,
                overwrite: false,
                mode: 0o644,
                allocate_first_block: true,
            },
        )
        .expect("open");
    let MasterResponse::WriteOpened {
        first_block:
            Some(AllocatedBlock {
                block,
                generation,
                targets,
                token,
            }),
        ..
    } = opened
    else {
        panic!("expected an opened write with its first block, got {opened:?}");
    };
    assert_eq!(targets.len(), 2);
    assert!(!token.is_empty(), "a keyed master mints write tokens");
    let bystander = (0..3)
        .map(|index| cluster.minion_address(index).to_string())
        .find(|address| targets.iter().all(|target| target.address != *address))
        .expect("a minion outside the pipeline");
    // Where a forged downstream would send the block: nothing may connect.
    let sink = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    sink.set_nonblocking(true).expect("nonblocking");
    let made_up = MinionAddress {
        id: targets[1].id,
        address: sink.local_addr().expect("address").to_string(),
    };

    let write = |address: &str, user: &str, token: Vec<u8>, request: MinionRequest| {
        let mut connection = Connection::open(address).expect("connect to a minion");
        let credentials = Credentials {
            user: user.into(),
            groups: vec![user.into()],
            token,
        };
        let request_id = connection.send(&credentials, request).expect("send");
        let chunk = vec![0x66u8; CHUNK_BYTES as usize];
        // The data may meet a closed connection: the answer is what counts.
        let _ = connection.send_data(&chunk, crc32c::crc32c(&chunk));
        let _ = connection.flush();
        connection
            .receive::<MinionResponse>(request_id)
            .map(|answer| format!("{answer:?}"))
            .unwrap_or_else(|error| format!("no answer: {error}"))
    };
    let write_block = |downstream: Vec<MinionAddress>| MinionRequest::WriteBlock {
        block,
        generation,
        downstream,
        sync: false,
    };
    let first = targets[0].address.clone();
    let rest = targets[1..].to_vec();
    let attacks = [
        (
            "no token",
            write(&first, "root", Vec::new(), write_block(rest.clone())),
            "no block access token",
        ),
        (
            "a forged downstream",
            write(
                &first,
                "root",
                token.clone(),
                write_block(vec![made_up.clone()]),
            ),
            "names another pipeline",
        ),
        (
            "a longer pipeline",
            write(
                &first,
                "root",
                token.clone(),
                write_block(vec![targets[1].clone(), made_up.clone()]),
            ),
            "names another pipeline",
        ),
        (
            "a member the token does not name",
            write(&bystander, "root", token.clone(), write_block(Vec::new())),
            "names another pipeline",
        ),
        (
            "another user",
            write(&first, "mallory", token.clone(), write_block(rest.clone())),
            "for user root",
        ),
        (
            "a read token",
            write(
                &read_token.locations[0].address,
                "root",
                read_token.token.clone(),
                MinionRequest::WriteBlock {
                    block: read_token.id,
                    generation: read_token.generation,
                    downstream: Vec::new(),
                    sync: false,
                },
            ),
            "does not allow this operation",
        ),
        (
            "a batch without tokens",
            write(
                &first,
                "root",
                token.clone(),
                MinionRequest::WriteBlocks {
                    blocks: vec![BatchBlock {
                        block,
                        generation,
                        length_bytes: 1,
                        token: Vec::new(),
                    }],
                    downstream: rest.clone(),
                    sync: false,
                },
            ),
            "no block access token",
        ),
    ];
    for (what, answer, wanted) in attacks {
        assert!(
            answer.contains("PermissionDenied") && answer.contains(wanted),
            "{what}: {answer}"
        );
    }
    assert!(
        matches!(sink.accept(), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
        "a minion connected to an address no token names"
    );
    // Nothing of the refused writes is stored anywhere.
    for index in 0..3 {
        let named = cluster.block_file_of(index, &block.to_string());
        assert!(named.is_none(), "minion {index} stored {named:?}");
    }
    drop(master);

    // The minions' own copies carry their tokens: a dead minion's
    // replicas are copied back to two live ones.
    let holder = cluster
        .located_blocks("/honest")
        .iter()
        .flat_map(|block| block.locations.iter().map(|l| l.address.clone()))
        .next()
        .expect("a holder");
    let index = (0..3)
        .find(|&index| cluster.minion_address(index) == holder)
        .expect("the holder's index");
    cluster.kill_minion(index);
    cluster.wait_for(
        || {
            cluster.located_blocks("/honest").iter().all(|block| {
                block.locations.len() == 2 && block.locations.iter().all(|l| l.address != holder)
            })
        },
        Duration::from_secs(60),
        "every block of /honest back to two live replicas",
    );
    let read = cluster.dfs(["cat", "/honest"]);
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert!(read.stdout == data, "/honest reads back as written");
    cluster.assert_clean_logs();
}

/// Guessing at a key from one address is held off: after
/// `AUTH_FAILURES_MAX` wrong proofs of one identity in a minute, that
/// identity may not be tried again from there for a while, while other
/// identities from the same address and connections already open go on.
#[test]
fn guessing_at_the_key_from_one_address_is_held_off() {
    let (keys, cluster) = keyed_cluster(ClusterOptions {
        minions: 1,
        replication: Some(1),
        ..ClusterOptions::default()
    });
    let credentials = Credentials::default();
    let mut kept = member_connection(&cluster, &keys.path().join("cluster.key"));
    let wrong = ClusterKey::generate().expect("key");
    for _ in 0..10 {
        let mut connection = tls_connection(&cluster);
        let nonce: [u8; NONCE_BYTES] = random_bytes().expect("nonce");
        let answer = connection
            .call(
                &credentials,
                MasterRequest::Authenticate {
                    minion: MinionId(0x600d),
                    nonce: nonce.to_vec(),
                },
            )
            .expect("challenge");
        let MasterResponse::Challenge {
            nonce: master_nonce,
            ..
        } = answer
        else {
            panic!("expected a challenge, got {answer:?}");
        };
        let master_nonce = bound_nonce(&master_nonce, &connection.binding().expect("TLS"));
        let proof = wrong.minion_proof(MinionId(0x600d), &nonce, &master_nonce);
        let answer = connection
            .call(
                &credentials,
                MasterRequest::ProveMember {
                    proof: proof.to_vec(),
                },
            )
            .expect("answer");
        assert_refused(answer, "a guess");
    }
    // That identity may not try again from this address for a while...
    let mut connection = tls_connection(&cluster);
    let refusal = connection
        .call::<_, MasterResponse>(
            &credentials,
            MasterRequest::Authenticate {
                minion: MinionId(0x600d),
                nonce: random_bytes::<NONCE_BYTES>().expect("nonce").to_vec(),
            },
        )
        .map(|answer| format!("{answer:?}"))
        .unwrap_or_else(|error| error.to_string());
    assert!(
        refusal.contains("failed to prove its key 10 times") && refusal.contains("held off"),
        "{refusal}"
    );
    // ...but other identities from the same address go on: a guesser on a
    // shared workstation does not lock its other users out.
    let mut other = member_connection(&cluster, &keys.path().join("cluster.key"));
    let answer = other
        .call::<_, MasterResponse>(&credentials, MasterRequest::ClusterReport)
        .expect("served");
    assert!(
        matches!(answer, MasterResponse::Cluster { .. }),
        "{answer:?}"
    );
    // The connection opened before goes on; so does the minion's.
    let answer = kept
        .call::<_, MasterResponse>(&credentials, MasterRequest::ClusterReport)
        .expect("served");
    assert!(
        matches!(&answer, MasterResponse::Cluster { minions, .. } if minions.len() == 1),
        "{answer:?}"
    );
}
