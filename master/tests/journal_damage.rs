//! Start-up on a damaged data directory, with real `dfs-master` processes:
//! a journal cut inside its last records loses exactly the cut records (a
//! torn tail, logged); damage in the middle refuses the start naming file
//! and offset, `--check` says so, and `--recover` keeps exactly the records
//! before the damage; a directory that is not a master's, or is in use, is
//! refused; a write left open by a crash can be taken up by a client after
//! the restart, and one nobody takes up is aborted after its timeout.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use dfs_engine::msg::{MasterRequest, MasterResponse, MinionId};
use dfs_master::journal::{list_segments, read_segment, scan_segment};
use dfs_master::namespace::Op;
use dfs_master::recovery::decode_op;
use support::{call, copy_dir, list, CallError, Entry, MasterDir};

const ARGS: [&str; 2] = ["--journal-segment-size", "256K"];

fn mkdir(connection: &mut dfs_engine::rpc::Connection, path: &str) {
    let made = call(
        connection,
        MasterRequest::Mkdir {
            path: path.into(),
            parents: false,
            mode: 0o755,
        },
    );
    assert!(
        matches!(made, Ok(MasterResponse::Ok)),
        "mkdir {path}: {made:?}"
    );
}

/// The records of a segment file: (start offset, end offset, op).
fn records(path: &Path) -> Vec<(u64, u64, Op)> {
    let bytes = read_segment(path).expect("read segment");
    let mut found = Vec::new();
    scan_segment(&bytes, |_, offset, payload| {
        let op = decode_op(payload)?;
        found.push((offset, offset + 16 + payload.len() as u64, op));
        Ok(())
    })
    .expect("segment header");
    found
}

fn mkdir_name(op: &Op) -> String {
    match op {
        Op::Mkdir { path, .. } => path.trim_start_matches('/').to_string(),
        other => panic!("expected a mkdir record, got {other:?}"),
    }
}

fn names(master: &support::Master) -> BTreeSet<String> {
    list(&mut master.connect(), "/").into_keys().collect()
}

#[test]
fn a_journal_cut_in_its_last_records_loses_exactly_those() {
    let dir = MasterDir::new();
    let master = dir.start(&ARGS, None);
    let mut connection = master.connect();
    for index in 0..30 {
        mkdir(&mut connection, &format!("/d{index:03}"));
    }
    master.kill();
    let segments = list_segments(&dir.data()).expect("segments");
    let segment = segments.last().expect("a segment");
    let records = records(&segment.path);
    assert_eq!(records.len(), 30);
    let mut cuts = Vec::new();
    for (start, end, _) in &records[records.len() - 3..] {
        cuts.extend([
            *start,
            start + 1,
            start + 15,
            start + 16,
            (start + end) / 2,
            end - 1,
        ]);
    }
    cuts.push(records[records.len() - 1].1);
    for (index, cut) in cuts.into_iter().enumerate() {
        let copy = MasterDir::new();
        copy_dir(&dir.data(), &copy.data());
        let name = segment.path.file_name().expect("file name");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(copy.data().join(name))
            .expect("open copy");
        file.set_len(cut).expect("cut");
        drop(file);
        let torn = !records.iter().any(|(_, end, _)| *end == cut);
        if index == 1 {
            // --check calls a torn tail what it is, and no damage.
            let check = copy.run(&["--check"]);
            let report = String::from_utf8_lossy(&check.stdout);
            assert!(check.status.success(), "{report}");
            assert!(torn && report.contains("torn tail"), "{report}");
        }
        let restarted = copy.start(&ARGS, None);
        let whole: BTreeSet<String> = records
            .iter()
            .filter(|(_, end, _)| *end <= cut)
            .map(|(_, _, op)| mkdir_name(op))
            .collect();
        assert_eq!(names(&restarted), whole, "cut {index} at offset {cut}");
        assert_eq!(
            copy.log_text().contains("dropped a torn tail"),
            torn,
            "cut at {cut}:\n{}",
            copy.log_text()
        );
        // Appending goes on after the cut, and survives the next start.
        mkdir(&mut restarted.connect(), "/after-cut");
        restarted.kill();
        let again = copy.start(&ARGS, None);
        let mut expected = whole.clone();
        expected.insert("after-cut".into());
        assert_eq!(names(&again), expected, "cut at {cut}, second start");
        again.kill();
        copy.assert_clean_log(&[]);
    }
}

#[test]
fn damage_in_the_middle_refuses_the_start_unless_recover_keeps_the_prefix() {
    let dir = MasterDir::new();
    let master = dir.start(&ARGS, None);
    // Long names and parallel clients fill a few segments quickly.
    let padding = "x".repeat(200);
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let address = master.address.clone();
            let padding = &padding;
            scope.spawn(move || {
                let mut connection = dfs_engine::rpc::Connection::open(&address).expect("connect");
                for index in 0..150 {
                    mkdir(&mut connection, &format!("/t{thread}-{index:03}-{padding}"));
                }
            });
        }
    });
    master.kill();
    let segments = list_segments(&dir.data()).expect("segments");
    assert!(segments.len() >= 2, "{segments:?}");
    let damaged = &segments[0];
    let damaged_records = records(&damaged.path);
    let victim = damaged_records.len() / 2;
    let (victim_offset, _, _) = damaged_records[victim];
    let mut bytes = std::fs::read(&damaged.path).expect("read");
    bytes[victim_offset as usize + 20] ^= 0x55;
    std::fs::write(&damaged.path, &bytes).expect("write");

    let refused = dir.run(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    let file_name = damaged
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    assert!(
        stderr.contains(file_name) && stderr.contains(&format!("at offset {victim_offset}")),
        "the refusal names neither file nor offset: {stderr}"
    );
    assert!(stderr.contains("--recover"), "{stderr}");

    let check = dir.run(&["--check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&format!("DAMAGED at offset {victim_offset}")),
        "{report}"
    );
    assert!(report.contains("start-up would refuse"), "{report}");

    let kept: BTreeSet<String> = damaged_records[..victim]
        .iter()
        .map(|(_, _, op)| mkdir_name(op))
        .collect();
    let recovered = dir.start(&["--recover", "--journal-segment-size", "256K"], None);
    assert_eq!(names(&recovered), kept);
    let log = dir.log_text();
    assert!(log.contains("--recover") && log.contains("lost"), "{log}");
    mkdir(&mut recovered.connect(), "/after-recover");
    // Ids the lost records may have handed out (to writes and blocks that
    // minions may still hold) are never handed out again: the id spaces
    // moved past 2^32.
    let opened = call(
        &mut recovered.connect(),
        MasterRequest::OpenWrite {
            path: "/after-recover/file".into(),
            replication: Some(1),
            block_bytes: None,
            overwrite: false,
            mode: 0o644,
            allocate_first_block: false,
        },
    );
    match opened {
        Ok(MasterResponse::WriteOpened { write, .. }) => {
            assert!(write > 1 << 32, "write id {write} after --recover")
        }
        other => panic!("open a write after --recover: {other:?}"),
    }
    recovered.kill();
    // The damaged segments are set aside; a plain start now works.
    let plain = dir.start(&ARGS, None);
    let mut expected = kept;
    expected.insert("after-recover".into());
    assert_eq!(names(&plain), expected);
    plain.stop();
    let check = dir.run(&["--check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(std::fs::read_dir(dir.data())
        .expect("list")
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".corrupt")));
    dir.assert_clean_log(&["--recover", "checkpoint unusable"]);
}

#[test]
fn strangers_and_busy_directories_are_refused() {
    let dir = MasterDir::new();
    std::fs::create_dir_all(dir.data()).expect("create");
    std::fs::write(dir.data().join("notes.txt"), b"mine").expect("write");
    let refused = dir.run(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not a dfs-master data directory"),
        "{stderr}"
    );
    let check = dir.run(&["--check"]);
    assert_eq!(check.status.code(), Some(1));
    std::fs::remove_file(dir.data().join("notes.txt")).expect("remove");

    let master = dir.start(&ARGS, None);
    let second = dir.run(&[]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by another master"), "{stderr}");
    master.stop();
}

#[test]
fn writes_left_open_by_a_crash_can_be_taken_up_or_are_aborted() {
    let dir = MasterDir::new();
    let minion = MinionId(77);
    let master = dir.start(&ARGS, None);
    master.register_paper_minion(minion);
    let mut connection = master.connect();
    let open = |connection: &mut dfs_engine::rpc::Connection, path: &str| {
        let opened = call(
            connection,
            MasterRequest::OpenWrite {
                path: path.into(),
                replication: Some(1),
                block_bytes: Some(100),
                overwrite: false,
                mode: 0o644,
                allocate_first_block: false,
            },
        );
        match opened {
            Ok(MasterResponse::WriteOpened { write, .. }) => write,
            other => panic!("open {path}: {other:?}"),
        }
    };
    let add_block =
        |connection: &mut dfs_engine::rpc::Connection, write: u64, length_bytes: u64| {
            let allocated = call(
                connection,
                MasterRequest::AllocateBlock {
                    write,
                    excluded: Vec::new(),
                },
            );
            let Ok(MasterResponse::BlockAllocated {
                block, generation, ..
            }) = allocated
            else {
                panic!("allocate: {allocated:?}");
            };
            let committed = call(
                connection,
                MasterRequest::CommitBlock {
                    write,
                    block,
                    generation,
                    length_bytes,
                    replicas: vec![minion],
                    crc32c: 0,
                },
            );
            assert!(matches!(committed, Ok(MasterResponse::Ok)), "{committed:?}");
        };
    let kept = open(&mut connection, "/kept");
    add_block(&mut connection, kept, 100);
    add_block(&mut connection, kept, 100);
    let left = open(&mut connection, "/left");
    add_block(&mut connection, left, 100);
    master.kill();

    let restarted = dir.start(&["--orphaned-write-timeout", "1s"], None);
    restarted.register_paper_minion(minion);
    let mut connection = restarted.connect();
    assert!(
        list(&mut connection, "/").is_empty(),
        "open writes are invisible"
    );
    // Write ids are sequential: another user may not take up, fill or
    // close someone else's write.
    let mut mallory = restarted.connect();
    let mallory_credentials = dfs_engine::msg::Credentials {
        user: "mallory".into(),
        groups: vec!["mallory".into()],
        token: Vec::new(),
    };
    for request in [
        MasterRequest::AllocateBlock {
            write: kept,
            excluded: Vec::new(),
        },
        MasterRequest::CloseWrite {
            write: kept,
            last_block: None,
            modified_ns: None,
        },
    ] {
        let taken = mallory
            .call::<_, MasterResponse>(&mallory_credentials, request)
            .expect("an answer");
        assert!(
            matches!(&taken, MasterResponse::Error(e) if e.message.contains("not by mallory")),
            "{taken:?}"
        );
    }
    drop(mallory);
    // The client that had /kept open goes on where it was.
    add_block(&mut connection, kept, 40);
    let closed = call(
        &mut connection,
        MasterRequest::CloseWrite {
            write: kept,
            last_block: None,
            modified_ns: None,
        },
    );
    assert!(
        matches!(closed, Ok(MasterResponse::Closed { .. })),
        "{closed:?}"
    );
    assert_eq!(
        list(&mut connection, "/").get("kept"),
        Some(&Entry::File {
            size_bytes: 240,
            block_count: 3
        })
    );
    // Nobody takes up /left: it is aborted once its time is up.
    dfs_testkit::wait_for(
        || dir.log_text().contains(&format!("aborted write {left}")),
        std::time::Duration::from_secs(10),
        "the orphaned write to be aborted",
    );
    let late = call(
        &mut connection,
        MasterRequest::CloseWrite {
            write: left,
            last_block: None,
            modified_ns: None,
        },
    );
    assert!(
        matches!(&late, Err(CallError::Remote(e)) if e.message.contains("not open")),
        "{late:?}"
    );
    restarted.stop();
    let again = dir.start(&ARGS, None);
    let entries = list(&mut again.connect(), "/");
    assert_eq!(entries.keys().collect::<Vec<_>>(), vec!["kept"]);
    again.stop();
    let check = dir.run(&["--check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.contains("0 open writes"), "{report}");
    dir.assert_clean_log(&[]);
}
