//! `dfs-perf throughput`: the data path against what the same disk and
//! loopback do without dfs, measured in one run.
//!
//! It starts `dfs local` (1 master, 3 minions on 127.0.0.1), writes a file of
//! random bytes and, with the page cache dropped before each step, times:
//! `dfs put` with replication 3 (durable and `--no-sync`) and replication 1,
//! `dfs get` cold and warm, and the baselines: `cp` + `sync`, three `cp` +
//! `sync`, a cold local `cat`, and the raw chain (`raw_chain`). Every result
//! is checked by CRC32C against the source. It prints a table with MiB/s,
//! ratios to the baselines and CPU seconds per GiB of the client and the
//! minions, and writes the same as JSON with `--json PATH`.

use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dfs_engine::units::{format_bytes, parse_bytes};

use crate::common::{
    self, checksum_file, checksum_reader, drop_caches, generate, sibling, work_dir,
};
use crate::raw_chain::{self, ChainMode};

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;
/// Minions of the local cluster: a replication-3 pipeline needs three.
const MINION_COUNT: u32 = 3;

pub struct Options {
    size_bytes: u64,
    dir: Option<PathBuf>,
    json: Option<PathBuf>,
}

pub fn usage() -> &'static str {
    "usage: dfs-perf throughput [--size SIZE] [--dir DIR] [--json PATH]"
}

pub fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        size_bytes: 2 << 30,
        dir: None,
        json: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--size" => options.size_bytes = parse_bytes(&value()?)?,
            "--dir" => options.dir = Some(PathBuf::from(value()?)),
            "--json" => options.json = Some(PathBuf::from(value()?)),
            other => bail!("unknown option {other}\n{}", usage()),
        }
    }
    if options.size_bytes == 0 {
        bail!("--size must be more than zero");
    }
    Ok(options)
}

/// One timed step.
#[derive(Clone, Debug)]
struct Measurement {
    name: &'static str,
    elapsed: Duration,
    size_bytes: u64,
    /// CPU seconds of the client process (or of the baseline's processes).
    client_cpu_seconds: f64,
    /// CPU seconds of all minions together; None for baselines.
    minion_cpu_seconds: Option<f64>,
}

impl Measurement {
    fn mib_per_second(&self) -> f64 {
        self.size_bytes as f64 / MIB / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn per_gib(&self, seconds: f64) -> f64 {
        seconds / (self.size_bytes as f64 / GIB)
    }
}

/// Which result is compared with which baseline, and the issue's target.
const COMPARISONS: [(&str, &str, Option<f64>); 6] = [
    ("put r=3 durable", "3x cp + sync", Some(1.0)),
    ("put r=3 --no-sync", "raw chain (splice/tee)", Some(0.8)),
    ("put r=1 durable", "cp + sync", None),
    ("get cold", "cat cold", Some(0.9)),
    ("get warm", "cat warm", None),
    ("raw chain (buffers)", "raw chain (splice/tee)", None),
];

pub fn run(options: Options) -> Result<()> {
    let (dir, _scratch) = work_dir(options.dir.as_deref())?;
    let size_bytes = options.size_bytes;
    println!(
        "throughput: {} ({size_bytes} bytes) of random data in {}; 1 master, {MINION_COUNT} minions on 127.0.0.1",
        format_bytes(size_bytes),
        dir.display()
    );
    if !drop_caches() {
        bail!("can't drop the page cache (needs root): the cold numbers would be lies");
    }
    let load_before = load_average();
    let source = dir.join("source.bin");
    let source_crc = generate(&source, size_bytes)?;
    let mut results = Vec::new();

    let cluster = LocalCluster::start(&dir.join("cluster"))?;
    let source_text = text(&source)?;
    for (name, remote, extra) in [
        ("put r=3 durable", "/r3.bin", &["-r", "3"][..]),
        (
            "put r=3 --no-sync",
            "/r3-nosync.bin",
            &["-r", "3", "--no-sync"][..],
        ),
        ("put r=1 durable", "/r1.bin", &["-r", "1"][..]),
    ] {
        let mut args = vec!["put", "-f"];
        args.extend_from_slice(extra);
        args.extend([source_text, remote]);
        results.push(cluster.measure(name, size_bytes, &args, None)?);
    }
    for (name, remote) in [
        ("get cold", "/r3.bin"),
        ("get warm", "/r3.bin"),
        ("check r=3 --no-sync", "/r3-nosync.bin"),
        ("check r=1", "/r1.bin"),
    ] {
        let measurement =
            cluster.measure(name, size_bytes, &["get", remote, "-"], Some(source_crc))?;
        if name.starts_with("get") {
            results.push(measurement);
        }
    }
    drop(cluster);

    results.push(copies(&dir, &source, source_crc, 1, "cp + sync")?);
    results.push(copies(&dir, &source, source_crc, 3, "3x cp + sync")?);
    results.push(cat(&source, size_bytes, source_crc, true)?);
    results.push(cat(&source, size_bytes, source_crc, false)?);
    for (name, mode) in [
        ("raw chain (splice/tee)", ChainMode::SpliceTee),
        ("raw chain (buffers)", ChainMode::Buffers),
    ] {
        results.push(chain(&dir, &source, size_bytes, source_crc, name, mode)?);
    }

    let load_after = load_average();
    let table = render_table(&results);
    print!("{table}");
    // Other work on the machine skews every number: say how busy it was.
    println!("load average (1 min): {load_before:.2} at the start, {load_after:.2} at the end");
    println!("verified: every result matches the source's crc32c {source_crc:08x}");
    if let Some(path) = &options.json {
        std::fs::write(
            path,
            render_json(&results, source_crc, [load_before, load_after]),
        )
        .with_context(|| format!("write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn text(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// `dfs local` and the pids of its minions.
struct LocalCluster {
    local: common::LocalCluster,
    minion_pids: Vec<u32>,
}

impl LocalCluster {
    fn start(dir: &Path) -> Result<LocalCluster> {
        let local = common::LocalCluster::start(dir, MINION_COUNT)?;
        let minion_pids: Vec<u32> = children(local.child.id())?
            .into_iter()
            .filter(|&pid| command_name(pid).is_some_and(|name| name == "dfs-minion"))
            .collect();
        if minion_pids.len() != MINION_COUNT as usize {
            bail!(
                "found {} minion processes under dfs local, expected {MINION_COUNT}",
                minion_pids.len()
            );
        }
        Ok(LocalCluster { local, minion_pids })
    }

    fn minion_cpu_seconds(&self) -> Result<f64> {
        self.minion_pids
            .iter()
            .map(|&pid| process_cpu_seconds(pid))
            .sum()
    }

    /// Drops the caches, runs one `dfs` command and times it. With
    /// `expected_crc` its standard output is checksummed as it arrives.
    fn measure(
        &self,
        name: &'static str,
        size_bytes: u64,
        args: &[&str],
        expected_crc: Option<u32>,
    ) -> Result<Measurement> {
        // A warm read reads what the cold one left in the page cache.
        if name != "get warm" && !drop_caches() {
            bail!("can't drop the page cache");
        }
        let mut command = Command::new(sibling("dfs")?);
        command.arg("--master").arg(&self.local.master).args(args);
        let minion_before = self.minion_cpu_seconds()?;
        let started = Instant::now();
        let (usage, read) = run_child(command, expected_crc.is_some())?;
        let elapsed = started.elapsed();
        let minion_after = self.minion_cpu_seconds()?;
        check_status(&format!("dfs {}", args.join(" ")), usage.status)?;
        if let (Some(expected), Some((bytes, crc))) = (expected_crc, read) {
            verify(name, expected, size_bytes, crc, bytes)?;
        }
        Ok(Measurement {
            name,
            elapsed,
            size_bytes,
            client_cpu_seconds: usage.cpu_seconds,
            minion_cpu_seconds: Some(minion_after - minion_before),
        })
    }
}

fn verify(name: &str, expected_crc: u32, size_bytes: u64, crc: u32, bytes: u64) -> Result<()> {
    if bytes != size_bytes || crc != expected_crc {
        bail!(
            "VERIFY FAILED in {name}: {bytes} bytes with crc32c {crc:08x}, expected {size_bytes} bytes with {expected_crc:08x}"
        );
    }
    Ok(())
}

fn check_status(what: &str, status: ExitStatus) -> Result<()> {
    if !status.success() {
        bail!("{what} failed: {status}");
    }
    Ok(())
}

/// The pids listed in /proc/PID/task/PID/children.
fn children(pid: u32) -> Result<Vec<u32>> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let list = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    Ok(list
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect())
}

fn command_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim().to_string())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// User + system CPU seconds of a running process, from /proc/PID/stat.
fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // The command name is in parentheses and may contain spaces: fields
    // start after the last ')'. utime and stime are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path}: no ')'"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |index: usize| -> Result<f64> {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
            .map(|ticks| ticks as f64)
            .with_context(|| format!("{path}: field {} missing", index + 3))
    };
    // Field n (1-based) is fields[n - 3] here: pid and comm are cut off.
    Ok((tick(11)? + tick(12)?) / clock_ticks_per_second())
}

struct ChildUsage {
    status: ExitStatus,
    cpu_seconds: f64,
}

/// Runs `command` to its end; returns its status and CPU time (wait4), and
/// with `checksum_stdout` the byte count and CRC32C of its standard output.
fn run_child(
    mut command: Command,
    checksum_stdout: bool,
) -> Result<(ChildUsage, Option<(u64, u32)>)> {
    if checksum_stdout {
        command.stdout(Stdio::piped());
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("run {command:?}"))?;
    let read = match child.stdout.take() {
        Some(mut stdout) => Some(checksum_reader(&mut stdout)?),
        None => None,
    };
    let usage = wait_with_usage(&child)?;
    Ok((usage, read))
}

fn wait_with_usage(child: &Child) -> Result<ChildUsage> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct of integers; all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid, writable locals; the pid is our
        // own unreaped child (std's Child is never waited on after this).
        let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
        if pid >= 0 {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error).context("wait for a child");
        }
    }
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    Ok(ChildUsage {
        status: ExitStatus::from_raw(status),
        cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
    })
}

/// `count` times `cp source target_i`, then `sync`, timed as one; each copy
/// is checked and removed afterwards.
fn copies(
    dir: &Path,
    source: &Path,
    source_crc: u32,
    count: usize,
    name: &'static str,
) -> Result<Measurement> {
    if !drop_caches() {
        bail!("can't drop the page cache");
    }
    let targets: Vec<PathBuf> = (0..count)
        .map(|i| dir.join(format!("copy-{i}.bin")))
        .collect();
    let size_bytes = std::fs::metadata(source).context("stat source")?.len();
    let started = Instant::now();
    let mut cpu_seconds = 0.0;
    for target in &targets {
        let mut command = Command::new("cp");
        command.arg(source).arg(target);
        let (usage, _) = run_child(command, false)?;
        check_status("cp", usage.status)?;
        cpu_seconds += usage.cpu_seconds;
    }
    let (usage, _) = run_child(Command::new("sync"), false)?;
    check_status("sync", usage.status)?;
    let elapsed = started.elapsed();
    cpu_seconds += usage.cpu_seconds;
    for target in &targets {
        let (bytes, crc) = checksum_file(target)?;
        verify(name, source_crc, size_bytes, crc, bytes)?;
        std::fs::remove_file(target).with_context(|| format!("remove {}", target.display()))?;
    }
    Ok(Measurement {
        name,
        elapsed,
        size_bytes,
        client_cpu_seconds: cpu_seconds,
        minion_cpu_seconds: None,
    })
}

/// `cat source`, read and checksummed by the harness as `dfs get -` is.
fn cat(source: &Path, size_bytes: u64, source_crc: u32, cold: bool) -> Result<Measurement> {
    if cold && !drop_caches() {
        bail!("can't drop the page cache");
    }
    let name = if cold { "cat cold" } else { "cat warm" };
    let mut command = Command::new("cat");
    command.arg(source);
    let started = Instant::now();
    let (usage, read) = run_child(command, true)?;
    let elapsed = started.elapsed();
    check_status("cat", usage.status)?;
    let (bytes, crc) = read.context("cat output")?;
    verify(name, source_crc, size_bytes, crc, bytes)?;
    Ok(Measurement {
        name,
        elapsed,
        size_bytes,
        client_cpu_seconds: usage.cpu_seconds,
        minion_cpu_seconds: None,
    })
}

fn chain(
    dir: &Path,
    source: &Path,
    size_bytes: u64,
    source_crc: u32,
    name: &'static str,
    mode: ChainMode,
) -> Result<Measurement> {
    if !drop_caches() {
        bail!("can't drop the page cache");
    }
    let targets: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("chain-{i}.bin"))).collect();
    let cpu_before = self_cpu_seconds();
    let started = Instant::now();
    raw_chain::run(source, &targets, mode)?;
    let elapsed = started.elapsed();
    let cpu_seconds = self_cpu_seconds() - cpu_before;
    for target in &targets {
        let (bytes, crc) = checksum_file(target)?;
        verify(name, source_crc, size_bytes, crc, bytes)?;
        std::fs::remove_file(target).with_context(|| format!("remove {}", target.display()))?;
    }
    Ok(Measurement {
        name,
        elapsed,
        size_bytes,
        client_cpu_seconds: cpu_seconds,
        minion_cpu_seconds: None,
    })
}

fn self_cpu_seconds() -> f64 {
    // SAFETY: rusage is a plain C struct of integers; all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is a valid, writable local.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn find<'a>(results: &'a [Measurement], name: &str) -> Option<&'a Measurement> {
    results.iter().find(|m| m.name == name)
}

fn render_table(results: &[Measurement]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>9} {:>11} {:>11}",
        "", "seconds", "MiB/s", "client s/GiB", "minions s/GiB"
    );
    for m in results {
        let minions = m
            .minion_cpu_seconds
            .map_or_else(|| "-".to_string(), |s| format!("{:.2}", m.per_gib(s)));
        let _ = writeln!(
            out,
            "{:<24} {:>8.2} {:>9.1} {:>11.2} {:>11}",
            m.name,
            m.elapsed.as_secs_f64(),
            m.mib_per_second(),
            m.per_gib(m.client_cpu_seconds),
            minions
        );
    }
    let _ = writeln!(out, "\nratios (same run):");
    for (result, baseline, target) in COMPARISONS {
        if let (Some(r), Some(b)) = (find(results, result), find(results, baseline)) {
            let ratio = r.mib_per_second() / b.mib_per_second();
            let verdict = match target {
                Some(target) if ratio >= target => format!("target {target:.1}x: met"),
                Some(target) => format!("target {target:.1}x: NOT met"),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "  {result:<20} / {baseline:<24} {ratio:>5.2}x  {verdict}"
            );
        }
    }
    out
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The 1-minute load average, from /proc/loadavg (NaN when unreadable).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn render_json(results: &[Measurement], source_crc: u32, load: [f64; 2]) -> String {
    let mut out = String::from("{\n  \"results\": [\n");
    for (index, m) in results.iter().enumerate() {
        let minions = m
            .minion_cpu_seconds
            .map_or_else(|| "null".to_string(), |s| format!("{:.4}", m.per_gib(s)));
        let _ = writeln!(
            out,
            "    {{\"name\": {}, \"size_bytes\": {}, \"seconds\": {:.4}, \"mib_per_second\": {:.2}, \
             \"client_cpu_seconds_per_gib\": {:.4}, \"minion_cpu_seconds_per_gib\": {minions}}}{}",
            json_string(m.name),
            m.size_bytes,
            m.elapsed.as_secs_f64(),
            m.mib_per_second(),
            m.per_gib(m.client_cpu_seconds),
            if index + 1 < results.len() { "," } else { "" }
        );
    }
    out.push_str("  ],\n  \"ratios\": [\n");
    let ratios: Vec<String> = COMPARISONS
        .iter()
        .filter_map(|(result, baseline, target)| {
            let (r, b) = (find(results, result)?, find(results, baseline)?);
            Some(format!(
                "    {{\"result\": {}, \"baseline\": {}, \"ratio\": {:.4}, \"target\": {}}}",
                json_string(result),
                json_string(baseline),
                r.mib_per_second() / b.mib_per_second(),
                target.map_or_else(|| "null".to_string(), |t| format!("{t:.2}"))
            ))
        })
        .collect();
    out.push_str(&ratios.join(",\n"));
    let _ = write!(
        out,
        "\n  ],\n  \"load_average_start_end\": [{:.2}, {:.2}],\n  \"verified_crc32c\": \"{source_crc:08x}\"\n}}\n",
        load[0],
        load[1]
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(name: &'static str, seconds: f64) -> Measurement {
        Measurement {
            name,
            elapsed: Duration::from_secs_f64(seconds),
            size_bytes: 1 << 30,
            client_cpu_seconds: 0.5,
            minion_cpu_seconds: Some(1.0),
        }
    }

    #[test]
    fn options_parse() {
        let parse = |line: &str| parse_options(line.split_whitespace().map(String::from));
        let options = parse("--size 512M --json out.json").expect("parse");
        assert_eq!(options.size_bytes, 512 << 20);
        assert_eq!(options.json, Some(PathBuf::from("out.json")));
        assert_eq!(parse("").expect("defaults").size_bytes, 2 << 30);
        for bad in ["--size", "--size 0", "--bogus"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ratios_compare_rates_and_judge_targets() {
        let results = [
            measurement("put r=3 durable", 2.0),
            measurement("3x cp + sync", 4.0),
            measurement("get cold", 2.0),
            measurement("cat cold", 1.0),
        ];
        let table = render_table(&results);
        assert!(table.contains("2.00x  target 1.0x: met"), "{table}");
        assert!(table.contains("0.50x  target 0.9x: NOT met"), "{table}");
        let json = render_json(&results, 0xabcd, [0.5, 1.25]);
        assert!(
            json.contains("\"load_average_start_end\": [0.50, 1.25]"),
            "{json}"
        );
        assert!(
            json.contains("\"ratio\": 2.0000, \"target\": 1.00"),
            "{json}"
        );
        assert!(json.contains("\"mib_per_second\": 512.00"), "{json}");
        assert!(json.contains("\"verified_crc32c\": \"0000abcd\""), "{json}");
    }

    #[test]
    fn cpu_time_of_this_process_is_read_from_proc() {
        let seconds = process_cpu_seconds(std::process::id()).expect("own stat");
        assert!(seconds >= 0.0);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
