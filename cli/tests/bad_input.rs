//! Bad input is refused with exactly one clear `dfs: ...` line and exit
//! status 1, and changes nothing: bad paths (`..` above the root, empty
//! components, non-UTF-8 bytes, 256-byte names), impossible moves and
//! deletes, out-of-range replication and block sizes, and a missing or
//! unreachable master; malformed command lines exit with status 2. Driven
//! through the real `dfs` binary.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::time::Duration;

use dfs_testkit::{
    binary, expect_failure_line, run, utf8, write_random_file, Cluster, ClusterOptions,
};

fn os(text: &str) -> OsString {
    OsString::from(text)
}

#[test]
fn bad_paths_and_arguments_are_refused_with_one_line_and_change_nothing() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.dfs_ok(["mkdir", "-p", "/d/e"]);
    let local = cluster.dir().join("local");
    write_random_file(&local, 1, 1000);
    let local = utf8(&local).to_string();
    let tree_before = cluster.dfs_ok(["ls", "-R", "/"]);

    let long_name = format!("/{}", "x".repeat(256));
    let not_utf8 = OsStr::from_bytes(b"/bad\xffname").to_os_string();
    let cases: Vec<(Vec<OsString>, &[&str])> = vec![
        (
            vec![os("mkdir"), os("/../x")],
            &["invalid path", "'..' goes above the root"],
        ),
        (
            vec![os("put"), os(&local), os("/d/../../x")],
            &["invalid path", "'..' goes above the root"],
        ),
        (
            vec![os("mkdir"), os("/d//x")],
            &["invalid path", "empty component"],
        ),
        (
            vec![os("put"), os(&local), os("/d//x")],
            &["invalid path", "empty component"],
        ),
        (
            vec![os("mkdir"), not_utf8.clone()],
            &["invalid path", "not valid UTF-8"],
        ),
        (
            vec![os("put"), os(&local), not_utf8.clone()],
            &["invalid path", "not valid UTF-8"],
        ),
        (
            vec![os("mkdir"), os(&long_name)],
            &["invalid path", "longer than 255 bytes"],
        ),
        (
            vec![os("put"), os(&local), os(&long_name)],
            &["invalid path", "longer than 255 bytes"],
        ),
        (vec![os("mv"), os("/d"), os("/d/e/f")], &["into itself"]),
        (vec![os("mv"), os("/d"), os("/d/e")], &["into itself"]),
        (vec![os("rm"), os("-r"), os("/")], &["root"]),
        (
            vec![os("put"), os("-r"), os("0"), os(&local), os("/r0")],
            &["replication"],
        ),
        (
            vec![os("put"), os("-r"), os("17"), os(&local), os("/r17")],
            &["replication"],
        ),
        (
            vec![
                os("put"),
                os("--block-size"),
                os("0"),
                os(&local),
                os("/b0"),
            ],
            &["block size"],
        ),
        (
            vec![
                os("put"),
                os("--block-size"),
                os("3G"),
                os(&local),
                os("/b3g"),
            ],
            &["block size"],
        ),
    ];
    for (args, wanted) in cases {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = cluster.dfs_err(&args);
        for part in wanted {
            assert!(
                line.contains(part),
                "dfs {}: {line:?} should contain {part:?}",
                shown.join(" ")
            );
        }
        assert_eq!(
            cluster.dfs_ok(["ls", "-R", "/"]),
            tree_before,
            "dfs {} changed the tree",
            shown.join(" ")
        );
    }
}

#[test]
fn a_missing_master_address_is_a_clear_error() {
    let home = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(binary("dfs"));
    command
        .env_remove("DFS_MASTER")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home.path())
        .current_dir(home.path())
        .args(["ls", "/"]);
    let output = run(&mut command, None, Duration::from_secs(30));
    let line = expect_failure_line(&output, "dfs ls / without a master address");
    assert!(
        line.to_lowercase().contains("master"),
        "the error should say the master address is missing: {line}"
    );
}

#[test]
fn an_unreachable_master_is_a_clear_error() {
    // A port that was just free: nothing listens on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    drop(listener);

    let home = tempfile::tempdir().expect("temp dir");
    for args in [vec!["ls", "/"], vec!["mkdir", "/x"], vec!["df"]] {
        let mut command = Command::new(binary("dfs"));
        // A client waits this long for a master that is down, then says so.
        command
            .env_remove("DFS_MASTER")
            .env("HOME", home.path())
            .env("DFS_MASTER_WAIT", "1s")
            .arg("--master")
            .arg(&address)
            .args(&args);
        let started = std::time::Instant::now();
        let output = run(&mut command, None, Duration::from_secs(30));
        let line = expect_failure_line(&output, &format!("dfs {}", args.join(" ")));
        assert!(
            line.contains(&address),
            "the error should name the master it could not reach ({address}): {line}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "waited {:?} for a wait of 1s",
            started.elapsed()
        );
    }
    // A wait that is no duration is refused, naming the variable.
    let mut command = Command::new(binary("dfs"));
    command
        .env_remove("DFS_MASTER")
        .env("HOME", home.path())
        .env("DFS_MASTER_WAIT", "soon")
        .arg("--master")
        .arg(&address)
        .args(["ls", "/"]);
    let output = run(&mut command, None, Duration::from_secs(30));
    let line = expect_failure_line(&output, "dfs ls / with a bad DFS_MASTER_WAIT");
    assert!(line.contains("DFS_MASTER_WAIT"), "{line}");
}

#[test]
fn usage_errors_exit_with_status_2() {
    let home = tempfile::tempdir().expect("temp dir");
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["put", "only-one-argument"],
        vec!["get"],
        vec!["mv", "/a"],
        vec!["put", "--no-such-flag", "a", "/b"],
    ] {
        let mut command = Command::new(binary("dfs"));
        command
            .env("HOME", home.path())
            .args(["--master", "127.0.0.1:9"])
            .args(&args);
        let output = run(&mut command, None, Duration::from_secs(30));
        assert_eq!(
            output.status.code(),
            Some(2),
            "dfs {} is a usage error; stderr:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !output.stderr.is_empty(),
            "dfs {}: no message",
            args.join(" ")
        );
    }
}
