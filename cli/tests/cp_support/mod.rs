//! What the `dfs-cp` suites share: running `dfs-cp` against a cluster, a
//! source tree with the awkward cases (empty files, deep directories,
//! unicode names, files of exactly one block and one byte more), and
//! comparisons of trees byte for byte, locally and in the cluster.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dfs_client::Client;
use dfs_engine::msg::{EntryKind, ErrorKind};
use dfs_engine::path::DfsPath;
use dfs_testkit::{
    assert_bytes_equal, assert_files_equal, binary, run, write_random_file, Cluster,
    COMMAND_TIMEOUT,
};

pub const MIB: u64 = 1 << 20;

/// A `dfs-cp` command aimed at the cluster's master, DFS_MASTER removed.
pub fn cp_command(cluster: &Cluster) -> Command {
    let mut command = Command::new(binary("dfs-cp"));
    command
        .env_remove("DFS_MASTER")
        .arg("--master")
        .arg(cluster.master_address());
    command
}

/// Runs `dfs-cp ARGS` to completion.
pub fn cp<I, S>(cluster: &Cluster, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = cp_command(cluster);
    command.args(args);
    run(&mut command, None, COMMAND_TIMEOUT)
}

/// Runs `dfs-cp ARGS`, asserts exit status 0 and returns stdout.
pub fn cp_ok<I, S>(cluster: &Cluster, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let output = cp(cluster, &args);
    assert!(
        output.status.success(),
        "dfs-cp {args:?} failed with {}; stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 stdout")
}

/// The `--json` summary's numeric fields, by name.
pub fn summary_field(json: &str, name: &str) -> f64 {
    let line = json
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON summary in {json:?}"));
    let key = format!("\"{name}\":");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + key.len();
    let rest = &line[start..];
    let end = rest.find([',', '}']).expect("end of the value");
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("{name} in {line}: {e}"))
}

/// The files of the test tree: relative path and length, for 1 MiB blocks.
pub fn tree_files() -> Vec<(&'static str, u64)> {
    vec![
        ("empty", 0),
        ("one-byte", 1),
        ("exactly-one-block", MIB),
        ("one-byte-more", MIB + 1),
        ("three-blocks-ragged", 3 * MIB + 4321),
        ("a/b/c/d/e/f/g/deep.txt", 777),
        ("a/b/empty-too", 0),
        ("ünïcødé/名前.txt", 4096),
        ("ünïcødé/emoji 🚀 name", 12),
        ("with space/x", 65_536),
    ]
}

/// Writes the test tree under `root` (plus one empty directory).
pub fn make_tree(root: &Path) {
    for (index, (name, length_bytes)) in tree_files().into_iter().enumerate() {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("make directories");
        write_random_file(&path, 100 + index as u64, length_bytes);
    }
    std::fs::create_dir_all(root.join("empty-dir")).expect("make a directory");
}

/// Every file below `root`, relative, sorted.
pub fn local_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(directory) = stack.pop() {
        for entry in std::fs::read_dir(&directory).expect("list").flatten() {
            let path = entry.path();
            if entry.file_type().expect("type").is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(root).expect("below root").to_path_buf());
            }
        }
    }
    found.sort();
    found
}

/// Asserts two local trees hold the same files with the same bytes (and,
/// when `diff` is installed, that `diff -r` agrees).
pub fn assert_trees_equal(actual: &Path, expected: &Path) {
    let files = local_files(expected);
    assert_eq!(local_files(actual), files, "file lists differ");
    for file in &files {
        assert_files_equal(&actual.join(file), &expected.join(file));
    }
    if let Ok(output) = Command::new("diff")
        .arg("-r")
        .arg(actual)
        .arg(expected)
        .output()
    {
        assert!(
            output.status.success(),
            "diff -r {} {}:\n{}",
            actual.display(),
            expected.display(),
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

/// Every file below `root` in the cluster with its size, as paths relative
/// to `root`, sorted.
pub fn cluster_files(cluster: &Cluster, root: &str) -> Vec<(String, u64)> {
    let mut client = Client::connect(cluster.master_address()).expect("connect");
    let mut found = Vec::new();
    let root_path = DfsPath::parse(root).expect("path");
    let mut stack = vec![root_path.clone()];
    while let Some(directory) = stack.pop() {
        for entry in client.list(&directory).expect("list") {
            let path = directory.join(&entry.name).expect("join");
            match entry.kind {
                EntryKind::Directory => stack.push(path),
                EntryKind::File => {
                    let relative = path.as_str()[root_path.as_str().len()..]
                        .trim_start_matches('/')
                        .to_string();
                    found.push((relative, entry.size_bytes));
                }
                other => panic!("{path}: a {other:?} in a copy"),
            }
        }
    }
    found.sort();
    found
}

/// Like `cluster_files`, and empty when `root` does not exist (yet).
pub fn cluster_files_if_any(cluster: &Cluster, root: &str) -> Vec<(String, u64)> {
    let mut client = Client::connect(cluster.master_address()).expect("connect");
    match client.stat(&DfsPath::parse(root).expect("path")) {
        Ok(_) => cluster_files(cluster, root),
        Err(dfs_client::Error::Remote(remote)) if remote.kind == ErrorKind::NotFound => Vec::new(),
        Err(error) => panic!("stat {root}: {error}"),
    }
}

/// The names in the cluster directory `directory`, in listing order.
pub fn cluster_names(cluster: &Cluster, directory: &str) -> Vec<String> {
    let mut client = Client::connect(cluster.master_address()).expect("connect");
    client
        .list(&DfsPath::parse(directory).expect("path"))
        .unwrap_or_else(|error| panic!("list {directory}: {error}"))
        .into_iter()
        .map(|entry| entry.name)
        .collect()
}

/// Whether a name is one of dfs-cp's temporary names.
pub fn is_temporary(relative: &str) -> bool {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    name.starts_with('.') && name.contains(".dfs-cp-")
}

/// Reads every file below `root` in the cluster that is not a temporary
/// name and asserts it holds exactly the bytes of `source/<its path below
/// root>`; returns how many it compared.
pub fn assert_cluster_files_match(cluster: &Cluster, root: &str, source: &Path) -> usize {
    let mut client = Client::connect(cluster.master_address()).expect("connect");
    let mut compared = 0;
    for (relative, _) in cluster_files(cluster, root) {
        if is_temporary(&relative) {
            continue;
        }
        let path = DfsPath::parse(&format!("{root}/{relative}")).expect("path");
        let mut bytes = Vec::new();
        client
            .open(&path)
            .expect("open")
            .copy_to(&mut bytes, "memory")
            .expect("read");
        let expected = std::fs::read(source.join(&relative)).expect("read the source");
        assert_bytes_equal(&bytes, &expected, &relative);
        compared += 1;
    }
    compared
}
