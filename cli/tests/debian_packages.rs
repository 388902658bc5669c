//! The Debian packages of `deploy/debian/build` on this machine: built from
//! the debug binaries, installed with `dpkg -i`, the master and a minion
//! started as their systemd units start them (each unit's `ExecStart` with
//! its `Environment=` and `EnvironmentFile=` variables expanded, as the
//! unit's user, on temporary data directories and loopback ports), a file
//! put and read back through the installed `dfs`, then `dpkg -r` and
//! `dpkg -P`.
//!
//! It needs root and dpkg (CI runs as root). Elsewhere it says why and
//! skips, as it does on a machine that knows dfs packages already or has a
//! /var/lib/dfs: it would replace or purge them. A guard purges what it
//! installed even when the test fails; the `dfs` user stays, as Debian
//! leaves system users its packages made.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use dfs_testkit::{
    assert_files_equal, binary, expect_success, read_first_line, run, utf8, wait_for,
    write_random_file, ChildGuard, Signal, COMMAND_TIMEOUT, EXIT_TIMEOUT, LISTEN_TIMEOUT,
    LIVE_TIMEOUT,
};
use tempfile::TempDir;

/// The packages the build makes.
const PACKAGES: [&str; 3] = ["dfs-client", "dfs-minion", "dfs-master"];
const STATE_DIR: &str = "/var/lib/dfs";
const UNIT_DIR: &str = "/lib/systemd/system";
/// Every binary the packages install, in /usr/bin.
const BINARIES: [&str; 5] = ["dfs-master", "dfs-minion", "dfs", "dfs-cp", "dfs-mount"];
/// Every unit, with its file in /etc/default.
const UNITS: [&str; 3] = ["dfs-master", "dfs-minion", "dfs-mount"];
/// How long dpkg may take for one command.
const DPKG_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes of the file put through the installed client: more than one chunk.
const FILE_BYTES: u64 = 3 * 1024 * 1024 + 12_345;

#[test]
fn debian_packages_install_run_and_purge() {
    if let Some(reason) = why_not_here() {
        println!("skipped: {reason}");
        return;
    }
    let work = tempfile::tempdir().expect("make a temporary directory");
    // The daemons run as dfs and must reach their directories in it.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the temporary directory");
    let debs = build_packages(&work.path().join("debs"));
    let installed = Installed;
    let mut install = vec!["-i"];
    install.extend(debs.iter().map(|deb| utf8(deb)));
    dpkg(&install);

    check_packages(&debs);
    check_installed_files();
    let dfs_user = check_dfs_user();
    check_units();
    put_and_get_through_the_units(&work, &dfs_user);

    dpkg(&[&["-r"][..], &PACKAGES[..]].concat());
    check_removed();
    purge_keeping_data_unless_told(&installed);
}

/// Why this machine cannot run the test, if it cannot.
fn why_not_here() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("installing packages needs root".into());
    }
    if Command::new("dpkg").arg("--version").output().is_err() {
        return Some("no dpkg".into());
    }
    for package in PACKAGES {
        let known = Command::new("dpkg-query")
            .args(["-W", package])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if known {
            return Some(format!(
                "dpkg knows {package} already: this test would replace or purge it"
            ));
        }
    }
    if Path::new(STATE_DIR).exists() {
        return Some(format!(
            "{STATE_DIR} exists: this test would remove what it holds"
        ));
    }
    None
}

/// Purges the packages and removes /var/lib/dfs when dropped, so a failed
/// test leaves the machine as it found it (but for the `dfs` user).
struct Installed;

impl Installed {
    fn purge(&self) {
        let _ = Command::new("dpkg")
            .arg("--purge")
            .args(PACKAGES)
            .env("DFS_PURGE_DATA", "yes")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // It did not exist before the test (`why_not_here`).
        let _ = std::fs::remove_dir_all(STATE_DIR);
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.purge();
    }
}

/// Runs `deploy/debian/build` on the debug binaries this test was built
/// with; returns the packages it made.
fn build_packages(out: &Path) -> Vec<PathBuf> {
    // `binary` panics with how to build them when one is missing.
    let bin_dir = binary("dfs")
        .parent()
        .expect("binaries are in a directory")
        .to_path_buf();
    for name in BINARIES {
        binary(name);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/debian/build");
    let output = run(
        Command::new(&script).args([
            "--profile",
            "debug",
            "--no-build",
            "--bin-dir",
            utf8(&bin_dir),
            "--out",
            utf8(out),
        ]),
        None,
        DPKG_TIMEOUT,
    );
    let printed = expect_success(&output, "deploy/debian/build");
    let debs: Vec<PathBuf> = printed.lines().map(PathBuf::from).collect();
    let architecture = command_line(Command::new("dpkg").arg("--print-architecture"));
    let version = env!("CARGO_PKG_VERSION");
    for package in PACKAGES {
        let expected = out.join(format!("{package}_{version}_{architecture}.deb"));
        assert!(
            debs.contains(&expected),
            "the build should print {}, printed:\n{printed}",
            expected.display()
        );
    }
    assert_eq!(debs.len(), PACKAGES.len(), "printed:\n{printed}");
    debs
}

/// Each package's control fields, and dpkg's view of it once installed.
fn check_packages(debs: &[PathBuf]) {
    let architecture = command_line(Command::new("dpkg").arg("--print-architecture"));
    for deb in debs {
        let field =
            |name: &str| command_line(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name));
        assert_eq!(field("Architecture"), architecture, "{}", deb.display());
        assert_eq!(
            field("Version"),
            env!("CARGO_PKG_VERSION"),
            "{}",
            deb.display()
        );
    }
    let client = debs
        .iter()
        .find(|deb| utf8(deb).contains("/dfs-client_"))
        .expect("a dfs-client package");
    let depends = command_line(
        Command::new("dpkg-deb")
            .arg("--field")
            .arg(client)
            .arg("Depends"),
    );
    assert!(
        depends.contains("fuse3"),
        "the client should depend on fuse3: {depends}"
    );
    for package in PACKAGES {
        assert_eq!(
            query(package, "${Status} ${Version}"),
            format!("install ok installed {}", env!("CARGO_PKG_VERSION")),
            "{package}"
        );
    }
    for (package, unit) in [
        ("dfs-master", "dfs-master"),
        ("dfs-minion", "dfs-minion"),
        ("dfs-client", "dfs-mount"),
    ] {
        let conffiles = query(package, "${Conffiles}");
        assert!(
            conffiles.contains(&format!("/etc/default/{unit} ")),
            "{package} should have /etc/default/{unit} as a conffile, has: {conffiles}"
        );
    }
}

/// The binaries, units and defaults are where the units expect them.
fn check_installed_files() {
    for name in BINARIES {
        let path = Path::new("/usr/bin").join(name);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{}", path.display());
    }
    for unit in UNITS {
        for path in [
            format!("{UNIT_DIR}/{unit}.service"),
            format!("/etc/default/{unit}"),
        ] {
            assert!(Path::new(&path).is_file(), "{path} should be installed");
        }
    }
    let version = format!("dfs {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        command_line(Command::new("/usr/bin/dfs").arg("--version")),
        version
    );
    // The shipped defaults: data under /var/lib/dfs, the key in /etc/dfs.
    for (unit, data) in [("dfs-master", "master"), ("dfs-minion", "minion")] {
        let variables = environment_file(Path::new(&format!("/etc/default/{unit}")));
        let arguments = variables
            .get(&args_variable(unit))
            .unwrap_or_else(|| panic!("/etc/default/{unit} sets {}", args_variable(unit)));
        for expected in [
            format!("--data {STATE_DIR}/{data}"),
            "--key /etc/dfs/cluster.key".to_string(),
        ] {
            assert!(arguments.contains(&expected), "{unit}: {arguments}");
        }
        // ProtectSystem=strict: the default data directory must be writable.
        let service = ServiceSection::read(&Path::new(UNIT_DIR).join(format!("{unit}.service")));
        let writable = format!("{STATE_DIR}/{data}");
        assert!(
            service
                .read_write_paths
                .iter()
                .any(|path| path.trim_start_matches('-') == writable),
            "{unit}.service should let it write {writable}: {:?}",
            service.read_write_paths
        );
    }
}

/// The system user the daemons run as, its uid and gid.
struct DfsUser {
    uid: u32,
    gid: u32,
}

/// The `dfs` user and group exist, are system ones without a login, and own
/// the data directories.
fn check_dfs_user() -> DfsUser {
    let entry = command_line(Command::new("getent").args(["passwd", "dfs"]));
    let fields: Vec<&str> = entry.split(':').collect();
    assert_eq!(fields.len(), 7, "getent passwd dfs: {entry}");
    let number = |text: &str| -> u32 {
        text.parse()
            .unwrap_or_else(|e| panic!("getent passwd dfs: {entry}: {e}"))
    };
    let user = DfsUser {
        uid: number(fields[2]),
        gid: number(fields[3]),
    };
    assert!(user.uid < 1000, "dfs should be a system user: {entry}");
    assert!(
        fields[6].ends_with("nologin"),
        "dfs should not log in: {entry}"
    );
    let group = command_line(Command::new("getent").args(["group", "dfs"]));
    assert!(
        group.starts_with(&format!("dfs:x:{}:", user.gid)),
        "the dfs user's group should be dfs: {group}"
    );
    for dir in [STATE_DIR, "/var/lib/dfs/master", "/var/lib/dfs/minion"] {
        let metadata = std::fs::metadata(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(
            (metadata.uid(), metadata.gid()),
            (user.uid, user.gid),
            "{dir}"
        );
        assert_eq!(metadata.mode() & 0o777, 0o750, "{dir}");
    }
    user
}

/// `systemd-analyze verify` finds nothing wrong with the installed units,
/// where it is installed.
fn check_units() {
    let units: Vec<String> = UNITS
        .iter()
        .map(|unit| format!("{UNIT_DIR}/{unit}.service"))
        .collect();
    match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
    {
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success() && stderr.trim().is_empty(),
                "systemd-analyze verify: {}\n{stderr}",
                output.status
            );
        }
        Err(error) => println!("units not verified: no systemd-analyze ({error})"),
    }
}

/// Starts the master and a minion from their installed units, puts a file
/// with the installed `dfs`, reads it back, and stops them with SIGTERM as
/// systemd does.
fn put_and_get_through_the_units(work: &TempDir, user: &DfsUser) {
    let dir = work.path();
    let key = dir.join("cluster.key");
    expect_success(
        &run(
            Command::new("/usr/bin/dfs").args(["admin", "keygen", utf8(&key)]),
            None,
            COMMAND_TIMEOUT,
        ),
        "dfs admin keygen",
    );
    for owned in [key.clone(), dir.join("master"), dir.join("minion")] {
        if !owned.exists() {
            std::fs::create_dir(&owned)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", owned.display()));
        }
        std::os::unix::fs::chown(&owned, Some(user.uid), Some(user.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", owned.display()));
    }

    let master_args = format!(
        "--data {} --listen 127.0.0.1:0 --key {} --replication 1 --heartbeat-interval 200ms",
        utf8(&dir.join("master")),
        utf8(&key)
    );
    let (mut master, master_address) = start_unit(
        "dfs-master",
        &[("DFS_MASTER_ARGS", master_args)],
        &dir.join("master.log"),
    );
    let minion_address = format!("127.0.0.1:{}", free_loopback_port());
    let minion_args = format!(
        "--master {master_address} --data {} --listen {minion_address} --key {} --heartbeat-interval 200ms --cores 1",
        utf8(&dir.join("minion")),
        utf8(&key)
    );
    let (mut minion, listening) = start_unit(
        "dfs-minion",
        &[
            ("DFS_MINION_ARGS", minion_args),
            ("DFS_MINION_ADVERTISE", minion_address.clone()),
        ],
        &dir.join("minion.log"),
    );
    assert_eq!(listening, minion_address);

    let dfs = |args: &[&str]| {
        run(
            Command::new("/usr/bin/dfs")
                // The admin on the master's machine: the cluster key is
                // the member identity a keyed master wants.
                .env("DFS_IDENTITY", &key)
                .arg("--master")
                .arg(&master_address)
                .args(args),
            None,
            COMMAND_TIMEOUT,
        )
    };
    wait_for(
        || {
            let report = dfs(&["admin", "report"]);
            report.status.success()
                && String::from_utf8_lossy(&report.stdout).starts_with("minions: 1 live")
        },
        LIVE_TIMEOUT,
        "the minion started from its unit shows live",
    );
    let original = dir.join("original");
    let copy = dir.join("copy");
    write_random_file(&original, 0xdeb, FILE_BYTES);
    expect_success(&dfs(&["put", utf8(&original), "/file"]), "dfs put");
    expect_success(&dfs(&["get", "/file", utf8(&copy)]), "dfs get");
    assert_files_equal(&copy, &original);

    for (daemon, log) in [(&mut minion, "minion.log"), (&mut master, "master.log")] {
        daemon.signal(Signal::Terminate);
        let status = daemon.wait_exit(EXIT_TIMEOUT);
        assert!(
            status.success(),
            "it should exit 0 on SIGTERM, got {status}; {log}:\n{}",
            std::fs::read_to_string(dir.join(log)).unwrap_or_default()
        );
    }
}

/// Starts `unit` as systemd would: its `ExecStart` with the variables of
/// its `Environment=` lines and `EnvironmentFile=`, then `overrides`, as its
/// `User=` and `Group=` without new privileges, in a clean environment,
/// standard error to `log`. Returns the daemon and the address it printed.
fn start_unit(unit: &str, overrides: &[(&str, String)], log: &Path) -> (ChildGuard, String) {
    let service = ServiceSection::read(&Path::new(UNIT_DIR).join(format!("{unit}.service")));
    let mut variables = BTreeMap::new();
    for assignment in &service.environment {
        let (name, value) = assignment
            .split_once('=')
            .unwrap_or_else(|| panic!("{unit}: Environment={assignment} has no ="));
        variables.insert(name.to_string(), value.to_string());
    }
    for file in &service.environment_files {
        // A leading '-': a missing file is no error.
        let (optional, path) = match file.strip_prefix('-') {
            Some(path) => (true, path),
            None => (false, file.as_str()),
        };
        if optional && !Path::new(path).exists() {
            continue;
        }
        variables.extend(environment_file(Path::new(path)));
    }
    for (name, value) in overrides {
        assert!(
            variables.contains_key(*name),
            "{unit} should take {name} from its environment"
        );
        variables.insert(name.to_string(), value.clone());
    }
    let command_line = expand_exec(&service.exec_start, &variables);
    let (program, arguments) = command_line
        .split_first()
        .unwrap_or_else(|| panic!("{unit}: empty ExecStart"));
    let log_file = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
    let child = Command::new("setpriv")
        .args(["--reuid", &service.user, "--regid", &service.group])
        .args(["--init-groups", "--no-new-privs", "--pdeathsig", "KILL"])
        .args(["--reset-env", "--", program])
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("start {unit} through setpriv: {e}"));
    let mut guard = ChildGuard::new(unit, child);
    let stdout = guard.child().stdout.take().expect("stdout is piped");
    let line = read_first_line(stdout, LISTEN_TIMEOUT).unwrap_or_else(|e| {
        panic!(
            "{unit} ({command_line:?}) printed no first line ({e:?}); its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    let address = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{unit}: first line should be 'listening on ...': {line:?}"))
        .to_string();
    (guard, address)
}

/// The lines of a unit's `[Service]` section this test uses.
struct ServiceSection {
    user: String,
    group: String,
    environment: Vec<String>,
    environment_files: Vec<String>,
    exec_start: String,
    read_write_paths: Vec<String>,
}

impl ServiceSection {
    fn read(path: &Path) -> ServiceSection {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mut section = "";
        let mut settings: Vec<(&str, String)> = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line;
                continue;
            }
            if section != "[Service]" {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not a setting: {line}", path.display()));
            settings.push((key, expand_specifiers(value)));
        }
        let all = |key: &str| -> Vec<String> {
            settings
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let one = |key: &str| -> String {
            match all(key).as_slice() {
                [value] => value.clone(),
                other => panic!(
                    "{}: {key}= should be set once, is {other:?}",
                    path.display()
                ),
            }
        };
        ServiceSection {
            user: one("User"),
            group: one("Group"),
            environment: all("Environment"),
            environment_files: all("EnvironmentFile"),
            exec_start: one("ExecStart"),
            read_write_paths: all("ReadWritePaths")
                .iter()
                .flat_map(|paths| paths.split_whitespace().map(str::to_string))
                .collect(),
        }
    }
}

/// The unit specifiers the units use: `%H` (the host name) and `%%`.
fn expand_specifiers(value: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the host name")
        .trim()
        .to_string();
    value
        .replace("%%", "\0")
        .replace("%H", &host)
        .replace('\0', "%")
}

/// `ExecStart` as systemd runs it: words split on whitespace, a word that
/// is `$NAME` becomes the value's words, `${NAME}` within a word the value.
fn expand_exec(exec_start: &str, variables: &BTreeMap<String, String>) -> Vec<String> {
    let mut words = Vec::new();
    for word in exec_start.split_whitespace() {
        assert!(
            !word.contains(['"', '\'', '\\']),
            "quoting in ExecStart is not expanded here: {exec_start}"
        );
        if let Some(name) = word.strip_prefix('$').filter(|name| !name.starts_with('{')) {
            let value = variables.get(name).map(String::as_str).unwrap_or_default();
            words.extend(value.split_whitespace().map(str::to_string));
            continue;
        }
        let mut expanded = word.to_string();
        for (name, value) in variables {
            expanded = expanded.replace(&format!("${{{name}}}"), value);
        }
        assert!(
            !expanded.contains("${"),
            "ExecStart names an unset variable: {word}"
        );
        words.push(expanded);
    }
    words
}

/// The assignments of an `EnvironmentFile=` (`NAME=value`, the value maybe
/// in double or single quotes; `#` and `;` lines are comments).
fn environment_file(path: &Path) -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut variables = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: not an assignment: {line}", path.display()));
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|quote| value.strip_prefix(*quote)?.strip_suffix(*quote))
            .unwrap_or(value);
        variables.insert(name.trim().to_string(), unquoted.to_string());
    }
    variables
}

/// The variable a unit's /etc/default file gives its arguments in.
fn args_variable(unit: &str) -> String {
    format!("{}_ARGS", unit.to_uppercase().replace('-', "_"))
}

/// A loopback port nobody listened on a moment ago, for the minion, which
/// must be told the address it advertises.
fn free_loopback_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener
        .local_addr()
        .expect("read the bound address")
        .port()
}

/// After `dpkg -r`: the programs and units are gone, the configuration
/// stays.
fn check_removed() {
    for name in BINARIES {
        let path = Path::new("/usr/bin").join(name);
        assert!(!path.exists(), "{} should be removed", path.display());
    }
    for unit in UNITS {
        let path = format!("{UNIT_DIR}/{unit}.service");
        assert!(!Path::new(&path).exists(), "{path} should be removed");
        let path = format!("/etc/default/{unit}");
        assert!(
            Path::new(&path).is_file(),
            "{path} should stay until a purge"
        );
    }
    for package in PACKAGES {
        assert_eq!(
            query(package, "${Status}"),
            "deinstall ok config-files",
            "{package}"
        );
    }
}

/// `dpkg -P`: the configuration goes; a data directory holding something
/// stays unless `DFS_PURGE_DATA=yes`; the `dfs` user stays.
fn purge_keeping_data_unless_told(installed: &Installed) {
    let master_data = Path::new(STATE_DIR).join("master");
    let minion_data = Path::new(STATE_DIR).join("minion");
    for data in [&master_data, &minion_data] {
        std::fs::write(data.join("kept"), b"data")
            .unwrap_or_else(|e| panic!("write into {}: {e}", data.display()));
    }
    dpkg(&["-P", "dfs-master"]);
    assert!(
        master_data.join("kept").exists(),
        "a purge keeps data by default"
    );
    let output = run(
        Command::new("dpkg")
            .args(["-P", "dfs-minion"])
            .env("DFS_PURGE_DATA", "yes"),
        None,
        DPKG_TIMEOUT,
    );
    expect_success(&output, "DFS_PURGE_DATA=yes dpkg -P dfs-minion");
    assert!(!minion_data.exists(), "DFS_PURGE_DATA=yes purges the data");
    dpkg(&["-P", "dfs-client"]);
    for unit in UNITS {
        let path = format!("/etc/default/{unit}");
        assert!(!Path::new(&path).exists(), "{path} should be purged");
    }
    for package in PACKAGES {
        let known = Command::new("dpkg-query")
            .args(["-W", package])
            .output()
            .expect("run dpkg-query");
        assert!(!known.status.success(), "{package} should be purged");
    }
    assert!(
        Command::new("getent")
            .args(["passwd", "dfs"])
            .output()
            .expect("run getent")
            .status
            .success(),
        "the dfs user stays after a purge"
    );
    // What is left is the data the first purge kept: the guard's cleanup
    // removes it, and with it /var/lib/dfs.
    installed.purge();
    assert!(!Path::new(STATE_DIR).exists());
}

/// Runs dpkg with `args`; panics with its output when it fails.
fn dpkg(args: &[&str]) {
    let output = run(Command::new("dpkg").args(args), None, DPKG_TIMEOUT);
    expect_success(&output, &format!("dpkg {}", args.join(" ")));
}

/// `dpkg-query -W -f FORMAT package`.
fn query(package: &str, format: &str) -> String {
    command_line(Command::new("dpkg-query").args(["-W", "-f", format, package]))
}

/// The trimmed standard output of a command that must succeed.
fn command_line(command: &mut Command) -> String {
    let what = format!("{command:?}");
    expect_success(&run(command, None, COMMAND_TIMEOUT), &what)
        .trim()
        .to_string()
}
