//! Config files for the real daemons: a dfs-master started with nothing but
//! `--config` (its listen address and data directory from the file) and a
//! dfs-minion started the same way (two data directories as a TOML array)
//! register and serve; `--print-config` prints and exits 0 without starting
//! anything; a bad value in a file stops the daemon with an error naming
//! the file and the key.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dfs_engine::msg::{Credentials, MasterRequest, MasterResponse, MinionReport, MinionState};
use dfs_engine::rpc::Connection;
use dfs_minion::identity::IDENTITY_FILE_NAME;
use dfs_testkit::{
    binary, read_first_line, run, utf8, wait_for, ChildGuard, Signal, COMMAND_TIMEOUT,
    EXIT_TIMEOUT, LISTEN_TIMEOUT, LIVE_TIMEOUT,
};

/// A TOML basic string of a temporary path (no quotes or backslashes in it).
fn quoted(path: &Path) -> String {
    let text = utf8(path);
    assert!(!text.contains(['"', '\\']), "{text} needs escaping");
    format!("\"{text}\"")
}

fn write_config(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

/// Starts `program --config FILE` and waits for its `listening on` line;
/// stderr goes to `log`.
fn start(program: &str, config: &Path, log: &Path) -> (ChildGuard, String) {
    let log_file = std::fs::File::create(log).expect("create the log file");
    let mut child = Command::new(binary(program))
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let guard = ChildGuard::new(format!("{program} started by the test"), child);
    let line = read_first_line(stdout, LISTEN_TIMEOUT).unwrap_or_else(|e| {
        panic!(
            "{program} printed no first line ({e:?}):\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    let address = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line {line:?} is not 'listening on HOST:PORT'"))
        .to_string();
    (guard, address)
}

/// The master's view of its minions.
fn cluster_report(master: &str) -> Result<Vec<MinionReport>, String> {
    let credentials = Credentials {
        user: "root".into(),
        groups: vec!["root".into()],
        token: Vec::new(),
    };
    let mut connection = Connection::open(master).map_err(|e| e.to_string())?;
    match connection.call(&credentials, MasterRequest::ClusterReport) {
        Ok(MasterResponse::Cluster { minions, .. }) => Ok(minions),
        other => Err(format!("ClusterReport answered {other:?}")),
    }
}

fn stop(mut process: ChildGuard, what: &str, log: &Path) {
    process.signal(Signal::Terminate);
    let status = process.wait_exit(EXIT_TIMEOUT);
    assert!(
        status.success(),
        "{what} exited with {status} after SIGTERM:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn daemons_start_from_config_files_alone() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let master_data = dir.path().join("master");
    let master_config = write_config(
        &dir.path().join("master.toml"),
        &format!(
            "listen = \"127.0.0.1:0\"\ndata = {}\nheartbeat-interval = \"200ms\"\n\
             stale-after = \"10s\"\n",
            quoted(&master_data)
        ),
    );
    let master_log = dir.path().join("master.log");
    let (master, master_address) = start("dfs-master", &master_config, &master_log);

    let disks = [dir.path().join("disk1"), dir.path().join("disk2")];
    let minion_config = write_config(
        &dir.path().join("minion.toml"),
        &format!(
            "# A minion of the test cluster.\nmaster = \"{master_address}\"\n\
             data = [{}, {}]\nlisten = \"127.0.0.1:0\"\nheartbeat-interval = \"200ms\"\n\
             scrub-period = \"off\"\n",
            quoted(&disks[0]),
            quoted(&disks[1])
        ),
    );
    let minion_log = dir.path().join("minion.log");
    let (minion, minion_address) = start("dfs-minion", &minion_config, &minion_log);

    wait_for(
        || {
            cluster_report(&master_address).is_ok_and(|minions| {
                minions.len() == 1
                    && minions[0].state == MinionState::Live
                    && minions[0].address == minion_address
            })
        },
        LIVE_TIMEOUT,
        "the minion to register from its config file",
    );
    assert!(
        master_data.is_dir(),
        "the master made no data directory from its file"
    );
    for disk in &disks {
        assert!(
            disk.join(IDENTITY_FILE_NAME).is_file(),
            "{} (from the array in the file) holds no identity file",
            disk.display()
        );
    }
    stop(minion, "dfs-minion", &minion_log);
    stop(master, "dfs-master", &master_log);
}

#[test]
fn print_config_starts_nothing_and_bad_values_name_file_and_key() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("never-made");
    let config = write_config(
        &dir.path().join("master.toml"),
        &format!("data = {}\nreplication = 2\n", quoted(&data)),
    );
    let output = run(
        Command::new(binary("dfs-master"))
            .arg("--config")
            .arg(&config)
            .arg("--print-config"),
        None,
        COMMAND_TIMEOUT,
    );
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("\nreplication = 2\n"), "{text}");
    assert!(!data.exists(), "--print-config started the master");

    let config = write_config(
        &dir.path().join("minion.toml"),
        "master = \"m:1\"\ndata = \"/unused\"\nlisten = \"127.0.0.1:0\"\ncores = \"many\"\n",
    );
    let output = run(
        Command::new(binary("dfs-minion"))
            .arg("--config")
            .arg(&config),
        None,
        COMMAND_TIMEOUT,
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}: cores: ", config.display())),
        "{stderr}"
    );

    let missing = dir.path().join("absent.toml");
    let output = run(
        Command::new(binary("dfs-minion"))
            .arg("--config")
            .arg(&missing),
        None,
        COMMAND_TIMEOUT,
    );
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(utf8(&missing)), "{stderr}");
}
