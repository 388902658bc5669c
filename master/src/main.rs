//! `dfs-master`: serves the namespace of one cluster.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use dfs_engine::auth::ClusterKey;
use dfs_engine::config_file::{self, Invocation};
use dfs_engine::limits::{
    CHECKPOINT_JOURNAL_BYTES_DEFAULT, FRAME_DEADLINE_MS_DEFAULT, JOURNAL_SEGMENT_BYTES_DEFAULT,
    JOURNAL_SEGMENT_BYTES_MAX, JOURNAL_SEGMENT_BYTES_MIN, LOCK_LEASE_MS_DEFAULT,
    MASTER_IDLE_TIMEOUT_MS_DEFAULT, ORPHANED_WRITE_TIMEOUT_MS, ORPHAN_GRACE_MS_DEFAULT,
    REPLICATION_DEFAULT, REPLICATION_TIMEOUT_MS,
};
use dfs_engine::logging::LogFormat;
use dfs_engine::units::{parse_bytes, parse_duration};
use dfs_master::safe_mode::SAFE_MODE_TIMEOUT_DEFAULT;
use dfs_master::server::ServerConfig;
use dfs_master::service::{Master, MasterConfig, ADMIN_GROUP_DEFAULT};
use dfs_master::timing::TimingFlags;

/// The config file read when `--config` names none (absent: built-in
/// defaults).
const CONFIG_FILE_DEFAULT: &str = "/etc/dfs/master.toml";

#[derive(Debug, PartialEq, Parser)]
#[command(
    name = "dfs-master",
    version,
    about = "The master of a dfs cluster: namespace, placement, minion registry"
)]
struct Args {
    /// Directory for the namespace journal and checkpoints (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// Verify the checkpoints and journal in --data offline, print what is
    /// found and exit (0: a start would succeed with nothing damaged).
    #[arg(long)]
    check: bool,
    /// Start even if the journal is damaged before its tail: keep the state
    /// up to the damage, set the rest aside (*.corrupt) and say what was lost.
    #[arg(long)]
    recover: bool,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
    /// Serve the status page, file browser and JSON API on this address
    /// (port 0 picks a free port; off unless given). As with --listen, an
    /// address other machines reach needs --key or --insecure; with a key,
    /// only loopback peers are answered unless --insecure.
    #[arg(long)]
    http: Option<String>,
    /// Default block size of new files (e.g. 64M).
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    block_size: u64,
    /// Default replication of new files.
    #[arg(long, default_value_t = REPLICATION_DEFAULT)]
    replication: u8,
    /// How often minions should heartbeat (e.g. 3s, 200ms; default 3s, or
    /// less when a short --stale-after or --dead-after needs it).
    #[arg(long, value_parser = parse_time)]
    heartbeat_interval: Option<Duration>,
    /// Silence after which a minion is stale (default: 10 heartbeat
    /// intervals, at most half of --dead-after).
    #[arg(long, value_parser = parse_time)]
    stale_after: Option<Duration>,
    /// Silence after which a minion is dead (default 10m).
    #[arg(long, value_parser = parse_time)]
    dead_after: Option<Duration>,
    /// How long a starting master waits at most for the minions' block
    /// reports before it answers block lookups as final (0: not at all).
    #[arg(long, value_parser = parse_time)]
    safe_mode_timeout: Option<Duration>,
    /// How long a client's lock session lasts unrenewed (default 30s): a
    /// mount that dies loses its locks after this.
    #[arg(long, value_parser = parse_time)]
    lock_lease: Option<Duration>,
    /// Size of each preallocated journal segment (e.g. 64M).
    #[arg(long, value_parser = parse_size)]
    journal_segment_size: Option<u64>,
    /// Journal growth after which a checkpoint is written in the background.
    #[arg(long, value_parser = parse_size)]
    checkpoint_after: Option<u64>,
    /// How long a client may take up a write left open by a crash before it
    /// is aborted.
    #[arg(long, value_parser = parse_time)]
    orphaned_write_timeout: Option<Duration>,
    /// How long a block a minion holds, and no file references, is kept
    /// before the minion is told to delete it (e.g. 1h, 2s).
    #[arg(long, value_parser = parse_time)]
    orphan_grace: Option<Duration>,
    /// How long a peer may take to send a frame of up to 64 KiB, from its
    /// first byte to its last (a larger frame gets this per 64 KiB); a
    /// peer slower than that loses its connection (default 20s).
    #[arg(long, value_parser = parse_positive_time)]
    frame_deadline: Option<Duration>,
    /// How long a connection may wait for its next request before it is
    /// closed, unless writes opened on it are still open (default 5m).
    /// At its connection limit the master also closes the longest-idle
    /// connection to admit a new one.
    #[arg(long, value_parser = parse_positive_time)]
    idle_timeout: Option<Duration>,
    /// The cluster's admin group: its members (and root) pass every
    /// permission check and may run `dfs admin` commands.
    #[arg(long, default_value = ADMIN_GROUP_DEFAULT)]
    admin_group: String,
    /// The cluster key file (`dfs admin keygen FILE`; mode 0600): minions
    /// must prove they hold it before they register, heartbeat or report.
    /// Without it any peer may speak for any minion.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Listen on an address other machines reach without a cluster key
    /// (anyone there may then act as any minion); with a key, serve
    /// clients that prove no identity, as the users they say they are.
    #[arg(long)]
    insecure: bool,
    /// Tell clients that block data travels only over TLS: run every
    /// minion with --tls-data too. Needs --key (the minions' certificates
    /// are signed by an authority derived from it).
    #[arg(long)]
    tls_data: bool,
    /// How log lines are written to stderr: text, or json (one object per
    /// line, for collectors). RUST_LOG filters them (default info; e.g.
    /// warn,dfs_master::replication=debug).
    #[arg(long, value_name = "text|json", default_value = "text")]
    log_format: LogFormat,
}

fn parse_size(text: &str) -> Result<u64, String> {
    parse_bytes(text).map_err(|e| e.to_string())
}

fn parse_time(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

fn parse_positive_time(text: &str) -> Result<Duration, String> {
    let duration = parse_time(text)?;
    if duration.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(duration)
}

/// Parses the command line and the config file (`--config`, else
/// `default_file` when it exists) into the settings or the text of
/// `--print-config`.
fn parse_command_line<I, A>(
    args: I,
    default_file: Option<&Path>,
) -> Result<Invocation<Args>, clap::Error>
where
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    config_file::parse(default_file, args)
}

fn main() {
    dfs_engine::sync::abort_on_panic();
    if let Err(e) = run() {
        eprintln!("dfs-master: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = match parse_command_line(std::env::args_os(), Some(Path::new(CONFIG_FILE_DEFAULT)))
        .unwrap_or_else(|error| error.exit())
    {
        Invocation::Run(args) => args,
        Invocation::PrintConfig(text) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
            return Ok(());
        }
    };
    dfs_engine::logging::init(args.log_format).map_err(anyhow::Error::msg)?;
    if args.check {
        let report = dfs_master::recovery::check(&args.data).context("check data directory")?;
        print!("{}", report.text);
        std::io::stdout().flush()?;
        std::process::exit(if report.ok { 0 } else { 1 });
    }
    dfs_engine::auth::check_exposure(&args.listen, args.key.is_some(), args.insecure)?;
    anyhow::ensure!(
        !args.tls_data || args.key.is_some(),
        "--tls-data needs --key: the minions' certificates are signed by an authority derived from the cluster key"
    );
    if let Some(http) = &args.http {
        dfs_master::http::check_exposure(http, args.key.is_some(), args.insecure)?;
    }
    let http_access = dfs_master::http::Access::for_master(args.key.is_some(), args.insecure);
    let journal_segment_bytes = args
        .journal_segment_size
        .unwrap_or(JOURNAL_SEGMENT_BYTES_DEFAULT);
    anyhow::ensure!(
        (JOURNAL_SEGMENT_BYTES_MIN..=JOURNAL_SEGMENT_BYTES_MAX).contains(&journal_segment_bytes),
        "--journal-segment-size must be between {JOURNAL_SEGMENT_BYTES_MIN} and {JOURNAL_SEGMENT_BYTES_MAX} bytes"
    );
    dfs_master::namespace::check_file_parameters(args.replication, args.block_size)
        .map_err(|e| anyhow::anyhow!("--replication/--block-size: {e}"))?;
    let timing = TimingFlags {
        heartbeat_interval: args.heartbeat_interval,
        stale_after: args.stale_after,
        dead_after: args.dead_after,
    }
    .resolve()
    .map_err(anyhow::Error::msg)?;
    let config = MasterConfig {
        default_replication: args.replication,
        default_block_bytes: args.block_size,
        heartbeat_interval: timing.heartbeat_interval,
        stale_after: timing.stale_after,
        dead_after: timing.dead_after,
        journal_segment_bytes,
        checkpoint_journal_bytes: args
            .checkpoint_after
            .unwrap_or(CHECKPOINT_JOURNAL_BYTES_DEFAULT),
        orphaned_write_timeout: args
            .orphaned_write_timeout
            .unwrap_or(Duration::from_millis(ORPHANED_WRITE_TIMEOUT_MS)),
        recover: args.recover,
        orphan_grace: args
            .orphan_grace
            .unwrap_or(Duration::from_millis(ORPHAN_GRACE_MS_DEFAULT)),
        replication_timeout: Duration::from_millis(REPLICATION_TIMEOUT_MS),
        safe_mode_timeout: args.safe_mode_timeout.unwrap_or(SAFE_MODE_TIMEOUT_DEFAULT),
        lock_lease: args
            .lock_lease
            .unwrap_or(Duration::from_millis(LOCK_LEASE_MS_DEFAULT)),
        admin_group: args.admin_group,
        cluster_key: match &args.key {
            Some(path) => Some(ClusterKey::load(path).context("--key")?),
            None => None,
        },
        anonymous_clients: args.insecure,
        tls_data: args.tls_data,
    };
    let server_config = ServerConfig {
        frame_deadline: args
            .frame_deadline
            .unwrap_or(Duration::from_millis(FRAME_DEADLINE_MS_DEFAULT)),
        idle_timeout: args
            .idle_timeout
            .unwrap_or(Duration::from_millis(MASTER_IDLE_TIMEOUT_MS_DEFAULT)),
    };
    if let Err(e) = dfs_engine::rlimit::raise_open_file_limit() {
        tracing::warn!("raise the open file limit: {e}");
    }
    let master = Arc::new(Master::open(&args.data, config).context("open master")?);
    Master::spawn_maintenance(&master)?;
    Master::spawn_replication_monitor(&master)?;
    let (listener, address) = dfs_master::server::bind(&args.listen)?;
    let http_address = match &args.http {
        Some(http) => {
            let (http_listener, http_address) = dfs_master::http::bind(http).context("--http")?;
            dfs_master::http::spawn(Arc::clone(&master), http_listener, http_access)?;
            // Logged before `listening on` is printed: tests read it then.
            tracing::info!("status page: http on {http_address}");
            Some(http_address)
        }
        None => None,
    };
    // Signals first, so a SIGINT right after the address is printed is handled.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("install signal handlers")?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {address}")?;
        if let Some(http_address) = http_address {
            writeln!(stdout, "http on {http_address}")?;
        }
        stdout.flush()?;
    }
    tracing::info!(%address, cluster = %master.cluster(), "master listening");
    let server_master = Arc::clone(&master);
    std::thread::Builder::new()
        .name("accept".into())
        .spawn(move || {
            if let Err(e) = dfs_master::server::serve(server_master, listener, server_config) {
                tracing::error!("server stopped: {e}");
            }
        })
        .context("spawn accept thread")?;
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "stopping: writing checkpoint");
    }
    master
        .checkpoint_and_freeze()
        .context("write checkpoint on shutdown")?;
    tracing::info!("checkpoint written; exiting");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// A config file named master.toml in a fresh directory.
    fn config(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("master.toml");
        std::fs::write(&path, text).expect("write the config file");
        let path = path.to_str().expect("UTF-8 temporary path").to_string();
        (dir, path)
    }

    /// Parses `dfs-master ARGS...` with no default config file.
    fn parse(args: &[&str]) -> Result<Invocation<Args>, String> {
        let line = std::iter::once("dfs-master").chain(args.iter().copied());
        parse_command_line(line, None).map_err(|error| error.to_string())
    }

    fn run_args(args: &[&str]) -> Args {
        match parse(args) {
            Ok(Invocation::Run(parsed)) => parsed,
            other => panic!("{args:?} did not parse to settings: {other:?}"),
        }
    }

    fn printed(args: &[&str]) -> String {
        match parse(args) {
            Ok(Invocation::PrintConfig(text)) => text,
            other => panic!("{args:?} printed nothing: {other:?}"),
        }
    }

    /// A value for every config key, other than its default.
    const SAMPLES: [(&str, &str); 23] = [
        ("data", "\"/elsewhere\""),
        ("check", "true"),
        ("recover", "true"),
        ("listen", "\"0.0.0.0:7171\""),
        ("http", "\"127.0.0.1:7180\""),
        ("block-size", "\"1M\""),
        ("replication", "2"),
        ("heartbeat-interval", "\"1s\""),
        ("stale-after", "\"5s\""),
        ("dead-after", "\"1m\""),
        ("safe-mode-timeout", "\"0s\""),
        ("lock-lease", "\"10s\""),
        ("journal-segment-size", "\"8M\""),
        ("checkpoint-after", "\"16M\""),
        ("orphaned-write-timeout", "\"1h\""),
        ("orphan-grace", "\"2s\""),
        ("frame-deadline", "\"1s\""),
        ("idle-timeout", "\"1m\""),
        ("admin-group", "\"wheel\""),
        ("key", "\"/etc/dfs/cluster.key\""),
        ("insecure", "true"),
        ("tls-data", "true"),
        ("log-format", "\"json\""),
    ];

    #[test]
    fn config_print_of_the_defaults_loads_back_to_the_defaults() {
        let defaults_text = printed(&["--print-config"]);
        assert!(
            defaults_text.contains("\n# data = ...\n"),
            "--data has no default:\n{defaults_text}"
        );
        assert!(defaults_text.contains("\nblock-size = \"64M\"\n"));
        let (_dir, path) = config(&defaults_text);
        assert_eq!(
            run_args(&["--config", &path, "--data", "/d"]),
            run_args(&["--data", "/d"])
        );
        assert_eq!(
            printed(&["--config", &path, "--print-config"]),
            defaults_text
        );
    }

    #[test]
    fn config_print_shows_file_and_flags() {
        let (_dir, path) = config("replication = 2\nlisten = \"0.0.0.0:1\"\ninsecure = true\n");
        let text = printed(&["--print-config", "--config", &path, "--listen", "[::1]:2"]);
        for line in [
            "\nreplication = 2\n",
            "\nlisten = \"[::1]:2\"\n",
            "\ninsecure = true\n",
        ] {
            assert!(text.contains(line), "{line:?} missing:\n{text}");
        }
        let (_dir, reloaded) = config(&text);
        assert_eq!(
            run_args(&["--config", &reloaded, "--data", "/d"]),
            run_args(&[
                "--data",
                "/d",
                "--replication",
                "2",
                "--listen",
                "[::1]:2",
                "--insecure"
            ])
        );
    }

    #[test]
    fn config_has_a_key_for_every_flag() {
        let mut command = Args::command();
        command.build();
        let keys: Vec<&str> = config_file::settable(&command)
            .filter_map(|arg| arg.get_long())
            .collect();
        let sampled: Vec<&str> = SAMPLES.iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, sampled, "SAMPLES must list every flag, in order");
        let baseline = run_args(&["--data", "/d"]);
        for (key, value) in SAMPLES {
            let (_dir, path) = config(&format!("{key} = {value}\n"));
            let mut line = vec!["--config", path.as_str()];
            if key != "data" {
                line.extend(["--data", "/d"]);
            }
            assert_ne!(run_args(&line), baseline, "{key} = {value} changed nothing");
        }
    }

    #[test]
    fn config_flags_override_the_file() {
        let (_dir, path) = config("data = \"/file\"\nlisten = \"0.0.0.0:1\"\nreplication = 1\n");
        let parsed = run_args(&["--listen", "127.0.0.1:9", "--config", &path, "--data=/flag"]);
        assert_eq!(parsed.listen, "127.0.0.1:9");
        assert_eq!(parsed.data, PathBuf::from("/flag"));
        assert_eq!(parsed.replication, 1);
    }

    #[test]
    fn config_errors_name_the_file_and_key() {
        for (text, expected) in [
            (
                "block-size = \"lots\"",
                "master.toml: block-size: \"lots\": invalid size",
            ),
            (
                "heartbeat-intervall = \"1s\"",
                "master.toml: unknown key heartbeat-intervall (did you mean heartbeat-interval?)",
            ),
            (
                "insecure = 1",
                "master.toml: insecure: expected true or false, found an integer",
            ),
            (
                "replication = [2]",
                "master.toml: replication: expected a string or an integer, found an array",
            ),
            (
                "frame-deadline = \"0s\"",
                "master.toml: frame-deadline: invalid value \"0s\"",
            ),
        ] {
            let (_dir, path) = config(text);
            let error = parse(&["--config", &path, "--data", "/d"]).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
        let error = parse(&["--config", "/nonexistent/master.toml", "--data", "/d"])
            .expect_err("a missing --config file");
        assert!(error.contains("/nonexistent/master.toml"), "{error}");
        let missing = Path::new("/nonexistent/default.toml");
        let parsed = parse_command_line(["dfs-master", "--data", "/d"], Some(missing));
        assert!(
            matches!(parsed, Ok(Invocation::Run(_))),
            "a missing default file is no error"
        );
    }
}
