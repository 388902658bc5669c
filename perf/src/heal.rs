//! `dfs-perf heal`: how fast a cluster gets back to full replication after
//! a minion dies. Starts a master (short liveness timeouts) and N minions on
//! loopback, copies a file in with `dfs put` (its throughput is printed
//! beside, as the scale), kills one minion with SIGKILL, and polls the
//! master until every block has its target of live replicas again. The rate
//! is the bytes the dead minion held over the time from its being declared
//! dead to the last copy landing; the detection time (`--dead-after`) is
//! printed on its own. Finally the file is read back and checked.
//!
//! With five minions or more (the default), a second round measures healing
//! under client load: a `put` of a second file alone, as the baseline, then
//! a second minion is killed and, once it is declared dead, the same `put`
//! runs while its blocks are copied. The ratio of the two puts is the
//! share of its throughput a client keeps while the cluster heals.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dfs_engine::msg::{Credentials, LocatedBlock, MasterRequest, MasterResponse};
use dfs_engine::rpc::Connection;
use dfs_engine::units::{format_bytes, parse_bytes, parse_duration};

use crate::common::Daemon;
use crate::{checksum, dfs, generate, rate, sibling, work_dir};

pub struct Options {
    size_bytes: u64,
    minions: usize,
    block_size: String,
    dead_after: Duration,
    heartbeat_interval: String,
    dir: Option<PathBuf>,
}

pub fn usage() -> &'static str {
    "usage: dfs-perf heal [--size SIZE] [--minions N] [--block-size SIZE] [--dead-after DURATION] [--heartbeat-interval DURATION] [--dir DIR]"
}

pub fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        size_bytes: 512 << 20,
        minions: 5,
        block_size: "16M".into(),
        dead_after: Duration::from_secs(3),
        heartbeat_interval: "200ms".into(),
        dir: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--size" => options.size_bytes = parse_bytes(&value()?)?,
            "--minions" => options.minions = value()?.parse().context("--minions")?,
            "--block-size" => options.block_size = value()?,
            "--dead-after" => options.dead_after = parse_duration(&value()?)?,
            "--heartbeat-interval" => {
                let text = value()?;
                parse_duration(&text)?;
                options.heartbeat_interval = text;
            }
            "--dir" => options.dir = Some(PathBuf::from(value()?)),
            other => bail!("unknown option {other}\n{}", usage()),
        }
    }
    if options.minions < 4 {
        bail!("--minions must be at least 4: three replicas and room for a fourth");
    }
    Ok(options)
}

fn master_call(master: &str, request: MasterRequest) -> Result<MasterResponse> {
    let mut connection = Connection::open(master)?;
    Ok(connection.call(&Credentials::default(), request)?)
}

/// Every block of `path` with its locations, page by page.
fn located_blocks(master: &str, path: &str) -> Result<Vec<LocatedBlock>> {
    let mut found: Vec<LocatedBlock> = Vec::new();
    loop {
        let offset_bytes = found
            .last()
            .map_or(0, |block| block.offset_bytes + block.length_bytes);
        let request = MasterRequest::GetBlocks {
            path: path.into(),
            offset_bytes,
            limit: u32::MAX,
            first_index: None,
            inode: None,
        };
        match master_call(master, request)? {
            MasterResponse::Blocks { blocks, more, .. } => {
                found.extend(blocks);
                if !more {
                    return Ok(found);
                }
            }
            other => bail!("GetBlocks {path}: {other:?}"),
        }
    }
}

fn live_minions(master: &str) -> Result<usize> {
    match master_call(master, MasterRequest::ClusterReport)? {
        MasterResponse::Cluster { minions, .. } => Ok(minions
            .iter()
            .filter(|m| m.state == dfs_engine::msg::MinionState::Live)
            .count()),
        other => bail!("ClusterReport: {other:?}"),
    }
}

fn wait(what: &str, timeout: Duration, mut condition: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !condition()? {
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub fn run(options: Options) -> Result<()> {
    let (dir, _scratch) = work_dir(options.dir.as_deref())?;
    let cluster_dir = dir.join("heal-cluster");
    std::fs::create_dir_all(&cluster_dir).context("create the cluster directory")?;
    let dead_after = format!("{}ms", options.dead_after.as_millis());
    let stale_after = format!("{}ms", (options.dead_after.as_millis() / 2).max(1));
    let mut master_command = Command::new(sibling("dfs-master")?);
    master_command
        .arg("--data")
        .arg(cluster_dir.join("master"))
        .args(["--heartbeat-interval", &options.heartbeat_interval])
        .args(["--stale-after", &stale_after])
        .args(["--dead-after", &dead_after]);
    let master = Daemon::start(
        master_command,
        &cluster_dir.join("master.log"),
        "dfs-master",
    )?;
    let mut minions = Vec::with_capacity(options.minions);
    for index in 0..options.minions {
        let mut command = Command::new(sibling("dfs-minion")?);
        command
            .args(["--master", &master.address, "--data"])
            .arg(cluster_dir.join(format!("minion-{index}")))
            .args(["--heartbeat-interval", &options.heartbeat_interval]);
        let log = cluster_dir.join(format!("minion-{index}.log"));
        minions.push(Daemon::start(command, &log, "dfs-minion")?);
    }
    wait("minions live", Duration::from_secs(30), || {
        Ok(live_minions(&master.address)? == options.minions)
    })?;
    println!(
        "cluster: 1 master, {} minions in {}; file {} in blocks of {}, replication 3, heartbeat {}, dead after {:?}",
        options.minions,
        cluster_dir.display(),
        format_bytes(options.size_bytes),
        options.block_size,
        options.heartbeat_interval,
        options.dead_after
    );

    let source = dir.join("heal-source.bin");
    let source_crc = generate(&source, options.size_bytes)?;
    let source_text = source.to_string_lossy().to_string();
    let put = dfs(
        &master.address,
        &[
            "put",
            "-f",
            "-r",
            "3",
            "--block-size",
            &options.block_size,
            &source_text,
            "/heal.bin",
        ],
    )?;

    let victim = 0;
    let victim_address = minions[victim].address.clone();
    let blocks = located_blocks(&master.address, "/heal.bin")?;
    let lost_bytes: u64 = blocks
        .iter()
        .filter(|b| b.locations.iter().any(|l| l.address == victim_address))
        .map(|b| b.length_bytes)
        .sum();
    let lost_blocks = blocks
        .iter()
        .filter(|b| b.locations.iter().any(|l| l.address == victim_address))
        .count();
    let killed = Instant::now();
    minions[victim].kill();
    wait("full replication again", Duration::from_secs(600), || {
        Ok(located_blocks(&master.address, "/heal.bin")?
            .iter()
            .all(|b| {
                b.locations.len() == 3 && b.locations.iter().all(|l| l.address != victim_address)
            }))
    })?;
    let total = killed.elapsed();
    let copying = total.saturating_sub(options.dead_after);

    let mut under_load = None;
    if options.minions >= 5 {
        let put_load = |name: &str| {
            dfs(
                &master.address,
                &[
                    "put",
                    "-f",
                    "-r",
                    "3",
                    "--block-size",
                    &options.block_size,
                    &source_text,
                    name,
                ],
            )
        };
        let alone = put_load("/load-alone.bin")?;
        let victim = 1;
        let victim_address = minions[victim].address.clone();
        minions[victim].kill();
        std::thread::sleep(options.dead_after);
        let healing = Instant::now();
        let during = put_load("/load-during.bin")?;
        wait(
            "full replication after the second kill",
            Duration::from_secs(600),
            || {
                for path in ["/heal.bin", "/load-alone.bin", "/load-during.bin"] {
                    let whole = located_blocks(&master.address, path)?.iter().all(|b| {
                        b.locations.len() == 3
                            && b.locations.iter().all(|l| l.address != victim_address)
                    });
                    if !whole {
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )?;
        under_load = Some((alone, during, healing.elapsed()));
    }

    let copy = dir.join("heal-copy.bin");
    let copy_text = copy.to_string_lossy().to_string();
    dfs(&master.address, &["get", "/heal.bin", &copy_text])?;
    let copy_crc = checksum(&copy)?;
    let _ = std::fs::remove_file(&copy);
    let _ = std::fs::remove_file(&source);
    drop(minions);
    drop(master);
    if copy_crc != source_crc {
        bail!("VERIFY FAILED: source crc32c {source_crc:08x}, read back {copy_crc:08x}");
    }
    println!(
        "put   {:>9.1} MiB/s  ({:.2} s, durable, 3 replicas)",
        rate(options.size_bytes, put),
        put.as_secs_f64()
    );
    println!(
        "heal  {:>9.1} MiB/s  ({} in {lost_blocks} blocks re-replicated in {:.2} s after the minion was declared dead; {:.2} s from the kill)",
        rate(lost_bytes, copying),
        format_bytes(lost_bytes),
        copying.as_secs_f64(),
        total.as_secs_f64()
    );
    if let Some((alone, during, healing)) = under_load {
        println!(
            "under load: put {:.1} MiB/s alone, {:.1} MiB/s while a second dead minion's blocks were copied ({:.2}x kept); healing done {:.2} s after it was declared dead",
            rate(options.size_bytes, alone),
            rate(options.size_bytes, during),
            alone.as_secs_f64() / during.as_secs_f64(),
            healing.as_secs_f64()
        );
    }
    println!("verified: crc32c {source_crc:08x} matches");
    Ok(())
}
