//! `dfs-perf metadata`: the master's metadata throughput against what the
//! same disk does without it, measured in one run.
//!
//! It times, on the disk of `--dir`: one small write + fsync in a loop (the
//! single-threaded fsync rate, the cost of one durable change without group
//! commit); then, against a real `dfs-master`, durable mkdirs and durable
//! empty-file creates (OpenWrite + CloseWrite) from `--clients` concurrent
//! connections, and lookups (stat) from as many, each printed with its ratio
//! to the fsync rate; finally the master's start-up time with `--files`
//! files (one block each) in its namespace, built through the master library
//! both as a checkpoint and as journal records to replay.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dfs_engine::msg::{BlockId, ClusterId, Credentials, MasterRequest, MasterResponse};
use dfs_engine::rpc::Connection;
use dfs_master::checkpoint::{self, DataDir};
use dfs_master::journal::{AppendPosition, Journal, JournalConfig};
use dfs_master::namespace::{Namespace, Op};
use dfs_master::recovery::encode_op;

use crate::common::{sibling, work_dir, Daemon};

/// Files per directory in the generated namespace.
const FILES_PER_DIRECTORY: u64 = 1000;
/// Requests a pipelined lookup client keeps in flight.
const PIPELINE_DEPTH: usize = 16;

pub struct Options {
    clients: usize,
    seconds: u64,
    files: u64,
    dir: Option<PathBuf>,
}

pub fn usage() -> &'static str {
    "usage: dfs-perf metadata [--clients N] [--seconds S] [--files N] [--dir DIR]"
}

pub fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        clients: 64,
        seconds: 5,
        files: 1_000_000,
        dir: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--clients" => options.clients = value()?.parse().context("--clients")?,
            "--seconds" => options.seconds = value()?.parse().context("--seconds")?,
            "--files" => options.files = value()?.parse().context("--files")?,
            "--dir" => options.dir = Some(PathBuf::from(value()?)),
            other => bail!("unknown option {other}\n{}", usage()),
        }
    }
    if options.clients == 0 || options.seconds == 0 {
        bail!("--clients and --seconds must be at least 1");
    }
    Ok(options)
}

pub fn run(options: Options) -> Result<()> {
    let (dir, _scratch) = work_dir(options.dir.as_deref())?;
    let duration = Duration::from_secs(options.seconds);
    println!(
        "metadata: {} clients, {} s per step, in {}",
        options.clients,
        options.seconds,
        dir.display()
    );
    // The disk may be shared: the fsync rate is taken before and after the
    // durable steps, and the ratios use their mean.
    let fsync_before = fsync_rate(&dir.join("fsync-probe"), duration)?;

    let master = start_master(&dir.join("master"), &dir.join("master.log"))?;
    let mut durable_rates = Vec::new();
    // One client: every change waits for a flush of its own.
    let single = drive(&master.address, 1, duration, |_, index, connection| {
        let path = if index == 0 {
            "/single".to_string()
        } else {
            format!("/single/d{index}")
        };
        expect_ok(connection.call(
            &Credentials::default(),
            MasterRequest::Mkdir {
                path,
                parents: false,
                mode: 0o755,
            },
        )?)
    })?;
    durable_rates.push(("durable mkdir, 1 client".to_string(), single));
    let mkdirs = drive(
        &master.address,
        options.clients,
        duration,
        |client, index, connection| {
            let path = if index == 0 {
                format!("/m{client}")
            } else {
                format!("/m{client}/d{index}")
            };
            expect_ok(connection.call(
                &Credentials::default(),
                MasterRequest::Mkdir {
                    path,
                    parents: false,
                    mode: 0o755,
                },
            )?)
        },
    )?;
    durable_rates.push((
        format!("durable mkdir, {} clients", options.clients),
        mkdirs,
    ));
    let creates = drive(
        &master.address,
        options.clients,
        duration,
        |client, index, connection| {
            let opened = connection.call(
                &Credentials::default(),
                MasterRequest::OpenWrite {
                    path: format!("/m{client}/f{index}"),
                    replication: Some(1),
                    block_bytes: None,
                    overwrite: false,
                    mode: 0o644,
                    allocate_first_block: false,
                },
            )?;
            let MasterResponse::WriteOpened { write, .. } = opened else {
                bail!("OpenWrite answered {opened:?}");
            };
            let closed = connection.call(
                &Credentials::default(),
                MasterRequest::CloseWrite {
                    write,
                    last_block: None,
                    modified_ns: None,
                },
            )?;
            match closed {
                MasterResponse::Closed { .. } => Ok(()),
                other => bail!("CloseWrite answered {other:?}"),
            }
        },
    )?;
    durable_rates.push((
        format!(
            "durable empty-file create (2 ops), {} clients",
            options.clients
        ),
        creates,
    ));
    let fsync_after = fsync_rate(&dir.join("fsync-probe"), duration)?;
    let fsync_mean = (fsync_before + fsync_after) / 2.0;
    println!(
        "{:<48} {fsync_mean:>10.0} /s  (before {fsync_before:.0}, after {fsync_after:.0})",
        "fsync (64-byte write + fsync, 1 thread)"
    );
    for (what, measured) in durable_rates {
        print_rate(&what, measured, Some(fsync_mean));
    }
    let made = (mkdirs.0 / options.clients as u64).max(1);
    let lookups = drive(
        &master.address,
        options.clients,
        duration,
        |client, index, connection| {
            let response = connection.call(
                &Credentials::default(),
                MasterRequest::Stat {
                    path: format!("/m{client}/d{}", 1 + index % made),
                },
            )?;
            match response {
                MasterResponse::Status(_) => Ok(()),
                MasterResponse::Error(e) if e.message.contains("no such file") => Ok(()),
                other => bail!("Stat answered {other:?}"),
            }
        },
    )?;
    print_rate(
        &format!("lookup (stat), {} clients", options.clients),
        lookups,
        None,
    );
    let pipelined = drive(
        &master.address,
        options.clients,
        duration,
        |client, index, connection| {
            let mut ids = Vec::with_capacity(PIPELINE_DEPTH);
            for step in 0..PIPELINE_DEPTH as u64 {
                let path = format!("/m{client}/d{}", 1 + (index + step) % made);
                ids.push(connection.send(&Credentials::default(), MasterRequest::Stat { path })?);
            }
            for id in ids {
                let _: MasterResponse = connection.receive(id)?;
            }
            Ok(())
        },
    )?;
    let pipelined = (pipelined.0 * PIPELINE_DEPTH as u64, pipelined.1);
    print_rate(
        &format!("lookup (stat), {PIPELINE_DEPTH} in flight per client"),
        pipelined,
        None,
    );
    master.stop()?;
    // The master logs its journal's records and flushes when it stops.
    let log = std::fs::read_to_string(dir.join("master.log")).unwrap_or_default();
    if let Some(line) = log.lines().find(|l| l.contains("records appended in")) {
        let numbers: Vec<f64> = line
            .split("journal: ")
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|word| word.parse().ok())
            .collect();
        if let [records, flushes, ..] = numbers[..] {
            println!(
                "group commit: {records:.0} journal records in {flushes:.0} flushes, {:.1} records per flush",
                records / flushes.max(1.0)
            );
        }
    }

    if options.files > 0 {
        startup(&dir, options.files)?;
    }
    Ok(())
}

fn expect_ok(response: MasterResponse) -> Result<()> {
    match response {
        MasterResponse::Ok => Ok(()),
        other => bail!("expected Ok, got {other:?}"),
    }
}

fn print_rate(what: &str, (count, elapsed): (u64, Duration), fsync_rate: Option<f64>) {
    let rate = count as f64 / elapsed.as_secs_f64().max(1e-9);
    match fsync_rate {
        Some(fsync) => println!(
            "{what:<48} {rate:>10.0} /s  ({:.1}x the fsync rate)",
            rate / fsync.max(1e-9)
        ),
        None => println!("{what:<48} {rate:>10.0} /s"),
    }
}

/// One small write and one fsync at a time, for `duration`.
fn fsync_rate(path: &Path, duration: Duration) -> Result<f64> {
    let mut file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < duration {
        file.write_all(&[0x5a; 64]).context("write probe")?;
        file.sync_all().context("fsync probe")?;
        count += 1;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(path);
    Ok(rate)
}

/// Runs `operation(client, index, connection)` from `clients` threads, each
/// on its own connection, for `duration`; returns operations done and the
/// time they took.
fn drive(
    address: &str,
    clients: usize,
    duration: Duration,
    operation: impl Fn(usize, u64, &mut Connection) -> Result<()> + Sync,
) -> Result<(u64, Duration)> {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let started = Instant::now();
    let outcome: Result<()> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|client| {
                let (stop, done, operation) = (&stop, &done, &operation);
                scope.spawn(move || -> Result<()> {
                    let mut connection = Connection::open(address)?;
                    let mut index = 0;
                    while !stop.load(Ordering::Relaxed) {
                        operation(client, index, &mut connection)?;
                        index += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        }
        Ok(())
    });
    outcome?;
    Ok((done.load(Ordering::Relaxed), started.elapsed()))
}

/// The ops that make `files` one-block files in directories of
/// `FILES_PER_DIRECTORY`, applied to `namespace`, each handed to `sink`.
fn build(
    namespace: &mut Namespace,
    files: u64,
    mut sink: impl FnMut(&Op) -> Result<()>,
) -> Result<()> {
    let mut apply = |namespace: &mut Namespace, op: Op| -> Result<()> {
        namespace
            .apply(&op)
            .map_err(|e| anyhow::anyhow!("build namespace: {e}"))?;
        sink(&op)
    };
    for file in 0..files {
        let directory = file / FILES_PER_DIRECTORY;
        if file % FILES_PER_DIRECTORY == 0 {
            let op = Op::Mkdir {
                path: format!("/dir{directory:05}"),
                parents: false,
                mode: 0o755,
                owner: "perf".into(),
                group: "perf".into(),
                time_ms: 1,
            };
            apply(namespace, op)?;
        }
        let write = namespace.next_write_id();
        let open = Op::OpenWrite {
            write,
            path: format!("/dir{directory:05}/file{file:07}"),
            replication: 3,
            block_bytes: 64 << 20,
            overwrite: false,
            mode: 0o644,
            owner: "perf".into(),
            group: "perf".into(),
            time_ms: 2,
        };
        apply(namespace, open)?;
        let block: BlockId = namespace.next_block_id();
        apply(namespace, Op::AllocateBlock { write, block })?;
        apply(
            namespace,
            Op::CommitBlock {
                write,
                block,
                length_bytes: 1 << 20,
                crc32c: 0,
            },
        )?;
        apply(namespace, Op::CloseWrite { write, time_ms: 3 })?;
    }
    Ok(())
}

/// Times master start-ups with `files` files: once from a checkpoint, once
/// replaying the same namespace from the journal.
fn startup(dir: &Path, files: u64) -> Result<()> {
    let from_checkpoint = dir.join("startup-checkpoint");
    let built = Instant::now();
    {
        let (data_dir, _) = DataDir::open(&from_checkpoint)?;
        let mut namespace = Namespace::new(0);
        build(&mut namespace, files, |_| Ok(()))?;
        checkpoint::store(data_dir.path(), ClusterId(1), 0, &namespace)?;
    }
    let checkpoint_bytes = checkpoint::list(&from_checkpoint)?
        .first()
        .map(|(_, path)| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
        .unwrap_or(0);
    println!(
        "built {files} files as a checkpoint of {:.1} MiB in {:.1} s",
        checkpoint_bytes as f64 / (1 << 20) as f64,
        built.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let master = start_master(&from_checkpoint, &dir.join("startup-checkpoint.log"))?;
    let elapsed = started.elapsed();
    drop(master);
    println!(
        "start-up, {files} files in the checkpoint     {:>8.2} s",
        elapsed.as_secs_f64()
    );

    let from_journal = dir.join("startup-journal");
    let built = Instant::now();
    let mut records = 0u64;
    {
        let (data_dir, _) = DataDir::open(&from_journal)?;
        checkpoint::store(data_dir.path(), ClusterId(1), 0, &Namespace::new(0))?;
        let journal = Journal::open(
            data_dir.path(),
            JournalConfig {
                segment_bytes: dfs_engine::limits::JOURNAL_SEGMENT_BYTES_DEFAULT,
            },
            AppendPosition {
                next_sequence: 1,
                reuse: None,
            },
        )?;
        let mut namespace = Namespace::new(0);
        build(&mut namespace, files, |op| {
            journal.append(&encode_op(op)?)?;
            records += 1;
            Ok(())
        })?;
        journal.wait_durable(records)?;
        journal.close();
    }
    println!(
        "built {files} files as {records} journal records in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let master = start_master(&from_journal, &dir.join("startup-journal.log"))?;
    let elapsed = started.elapsed();
    drop(master);
    println!(
        "start-up, {files} files replayed from the journal {:>6.2} s",
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// A `dfs-master` on `data`, logging to `log`.
fn start_master(data: &Path, log: &Path) -> Result<Daemon> {
    let mut command = Command::new(sibling("dfs-master")?);
    command.arg("--data").arg(data);
    Daemon::start(command, log, "dfs-master")
}
