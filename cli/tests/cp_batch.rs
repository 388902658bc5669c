//! Small files written in batches, on a real three-minion cluster: a tree
//! of a few hundred small files (empty, one byte, 4 KiB, exactly one chunk,
//! one byte more, some of 100 KiB) goes in with `dfs-cp` and comes back
//! byte for byte; targets that exist are refused, skipped by `--update`
//! and replaced by `--force` as for files copied one by one; `-p` keeps
//! mode and mtime; and the library call answers per file, leaving no write
//! open on the master.

mod cp_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use cp_support::{assert_trees_equal, cluster_files, cp, cp_ok, summary_field};
use dfs_client::batch::SmallFile;
use dfs_client::{Client, Error, Unseekable, WriteOptions};
use dfs_engine::limits::CHUNK_BYTES;
use dfs_engine::msg::ErrorKind;
use dfs_engine::path::DfsPath;
use dfs_testkit::{binary, run, utf8, write_random_file, Cluster, ClusterOptions, COMMAND_TIMEOUT};

const CHUNK: u64 = CHUNK_BYTES as u64;

/// Directories of the small tree, nested and with unicode names.
const DIRECTORIES: [&str; 6] = [
    "",
    "a",
    "a/b/c",
    "ünïcødé",
    "ünïcødé/名前",
    "emoji 🚀/deep/er",
];

/// The files of the small tree: relative path and length. Mostly small
/// files of varied sizes, with the edges of a batch: empty, one byte,
/// exactly one chunk (the largest batched file), one byte more (not
/// batched) and a few of 100 KiB (several chunks).
fn small_tree_files(count: usize) -> Vec<(String, u64)> {
    (0..count)
        .map(|i| {
            let directory = DIRECTORIES[i % DIRECTORIES.len()];
            let length = match i % 10 {
                0 => 0,
                1 => 1,
                2..=5 => 4096,
                6 => (i as u64 * 7919) % CHUNK + 2,
                7 if i % 20 == 7 => CHUNK,
                8 if i % 40 == 8 => CHUNK + 1,
                9 if i % 50 == 9 => 100 * 1024,
                _ => 300 + i as u64,
            };
            let name = if i % 7 == 3 {
                format!("fïlé {i:03}.txt")
            } else {
                format!("f{i:03}")
            };
            let path = if directory.is_empty() {
                name
            } else {
                format!("{directory}/{name}")
            };
            (path, length)
        })
        .collect()
}

/// Writes `files` under `root` with contents from `seed`.
fn make_files(root: &Path, files: &[(String, u64)], seed: u64) {
    for (index, (name, length)) in files.iter().enumerate() {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("make directories");
        write_random_file(&path, seed + index as u64, *length);
    }
}

fn sorted(files: &[(String, u64)]) -> Vec<(String, u64)> {
    let mut files = files.to_vec();
    files.sort();
    files
}

#[test]
fn small_trees_go_in_and_out_byte_for_byte() {
    let cluster = Cluster::start(ClusterOptions::default());
    let source = cluster.dir().join("small");
    let files = small_tree_files(300);
    make_files(&source, &files, 1000);
    for length in [0, 1, 4096, CHUNK, CHUNK + 1, 100 * 1024] {
        assert!(
            files.iter().any(|(_, l)| *l == length),
            "the tree has a file of {length} bytes"
        );
    }
    let total_bytes: u64 = files.iter().map(|(_, length)| length).sum();

    let json = cp_ok(&cluster, ["--json", "-q", utf8(&source), "dfs:///"]);
    assert_eq!(summary_field(&json, "files"), files.len() as f64, "{json}");
    assert_eq!(summary_field(&json, "bytes"), total_bytes as f64, "{json}");
    assert_eq!(summary_field(&json, "failed"), 0.0, "{json}");
    assert_eq!(summary_field(&json, "skipped"), 0.0, "{json}");
    assert_eq!(cluster_files(&cluster, "/small"), sorted(&files));
    // Every replica of a batched block was committed.
    for (name, length) in &files[..20] {
        if *length > 0 {
            cluster
                .stat(&format!("/small/{name}"))
                .assert_fully_replicated(3);
        }
    }

    let back = cluster.dir().join("back");
    let json = cp_ok(
        &cluster,
        ["--json", "-q", "--verify", "dfs:///small/", utf8(&back)],
    );
    assert_eq!(summary_field(&json, "files"), files.len() as f64, "{json}");
    assert_trees_equal(&back, &source);

    // A rerun copies nothing and skips everything.
    let json = cp_ok(&cluster, ["--json", "-q", utf8(&source), "dfs:///"]);
    assert_eq!(summary_field(&json, "files"), 0.0, "{json}");
    assert_eq!(
        summary_field(&json, "skipped"),
        files.len() as f64,
        "{json}"
    );
}

#[test]
fn existing_targets_are_refused_updated_and_forced_as_one_by_one() {
    let cluster = Cluster::start(ClusterOptions::default());
    let files: Vec<(String, u64)> = (0..60)
        .map(|i| (format!("d{}/f{i:02}", i % 3), 10 + 97 * i as u64))
        .collect();
    let source = cluster.dir().join("source");
    make_files(&source.join("tree"), &files, 1);
    // Six targets exist already, with other bytes and other sizes.
    let clashing: Vec<usize> = vec![0, 7, 19, 30, 44, 59];
    let other = cluster.dir().join("other");
    for &index in &clashing {
        let (name, length) = &files[index];
        let path = other.join("tree").join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        write_random_file(&path, 500 + index as u64, length + 1);
    }
    cp_ok(&cluster, ["-q", utf8(&other.join("tree")), "dfs:///"]);
    let tree = utf8(&source.join("tree")).to_string();

    // Without --force or --update: the six fail as "exists", the rest are copied.
    let output = cp(&cluster, ["--json", "-q", "-p", &tree, "dfs:///"]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(summary_field(&stdout, "failed"), 6.0, "{stdout}\n{stderr}");
    assert_eq!(summary_field(&stdout, "files"), 54.0, "{stdout}");
    assert_eq!(
        stderr.matches("exists; use --force or --update").count(),
        6,
        "{stderr}"
    );
    for &index in &clashing {
        assert!(
            stderr.contains(&format!("/tree/{}: exists", files[index].0)),
            "{stderr}"
        );
    }

    // --update: the 54 unchanged ones (same size and mtime, kept by -p)
    // are skipped, the six replaced.
    let json = cp_ok(&cluster, ["--json", "-q", "-p", "-u", &tree, "dfs:///"]);
    assert_eq!(summary_field(&json, "files"), 6.0, "{json}");
    assert_eq!(summary_field(&json, "skipped"), 54.0, "{json}");
    let back = cluster.dir().join("back-1");
    cp_ok(&cluster, ["-q", "dfs:///tree/", utf8(&back)]);
    assert_trees_equal(&back, &source.join("tree"));

    // --force: three sources change (same sizes); only they are replaced.
    for index in [3, 25, 50] {
        let (name, length) = &files[index];
        write_random_file(&source.join("tree").join(name), 900 + index as u64, *length);
    }
    let json = cp_ok(&cluster, ["--json", "-q", "-f", &tree, "dfs:///"]);
    assert_eq!(summary_field(&json, "files"), 3.0, "{json}");
    assert_eq!(summary_field(&json, "skipped"), 57.0, "{json}");
    let back = cluster.dir().join("back-2");
    cp_ok(&cluster, ["-q", "dfs:///tree/", utf8(&back)]);
    assert_trees_equal(&back, &source.join("tree"));
}

#[test]
fn preserve_keeps_mode_and_mtime_on_batched_files() {
    let cluster = Cluster::start(ClusterOptions::default());
    let source = cluster.dir().join("kept");
    let modes = [0o600, 0o640, 0o755, 0o444, 0o700];
    let mut expected = Vec::new();
    for i in 0..40u64 {
        let name = format!("f{i:02}");
        let path = source.join(&name);
        std::fs::create_dir_all(&source).expect("mkdir");
        write_random_file(&path, i, i * 50);
        // Nanoseconds: kept to the nanosecond both ways.
        let modified_ns = 1_500_000_000_123_456_789 + i * 1_001;
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_modified(UNIX_EPOCH + Duration::from_nanos(modified_ns)))
            .expect("set mtime");
        let mode = modes[i as usize % modes.len()];
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        expected.push((name, mode, modified_ns));
    }
    let json = cp_ok(
        &cluster,
        ["--json", "-q", "-p", "--verify", utf8(&source), "dfs:///"],
    );
    assert_eq!(summary_field(&json, "files"), 40.0, "{json}");
    let mut client = Client::connect(cluster.master_address()).expect("connect");
    for (name, mode, modified_ns) in &expected {
        let path = DfsPath::parse(&format!("/kept/{name}")).expect("path");
        let status = client.stat(&path).expect("stat");
        assert_eq!(status.mode & 0o7777, *mode, "{name}");
        assert_eq!(status.modified_ns, *modified_ns, "{name}");
    }
    // And back out with -p: the local copies have them too.
    let back = cluster.dir().join("back");
    cp_ok(&cluster, ["-q", "-p", "dfs:///kept/", utf8(&back)]);
    assert_trees_equal(&back, &source);
    for (name, mode, modified_ns) in &expected {
        let metadata = std::fs::metadata(back.join(name)).expect("stat");
        assert_eq!(metadata.permissions().mode() & 0o7777, *mode, "{name}");
        assert_eq!(
            metadata.modified().expect("mtime"),
            UNIX_EPOCH + Duration::from_nanos(*modified_ns),
            "{name}"
        );
    }
}

fn small_file(path: &str, data: Vec<u8>, overwrite: bool) -> SmallFile {
    SmallFile {
        path: DfsPath::parse(path).expect("path"),
        data,
        overwrite,
        mode: 0o644,
        modified_ns: None,
    }
}

fn read_all(client: &mut Client, path: &str) -> Vec<u8> {
    let mut reader = client
        .open(&DfsPath::parse(path).expect("path"))
        .expect("open");
    let mut bytes = Vec::new();
    reader.copy_to(&mut bytes, path).expect("read");
    bytes
}

/// Open writes the master's journal holds, from `dfs-master --check` of
/// its (stopped) data directory.
fn open_writes_on_disk(cluster: &Cluster) -> u64 {
    let mut command = std::process::Command::new(binary("dfs-master"));
    command
        .arg("--data")
        .arg(cluster.dir().join("master"))
        .arg("--check");
    let output = run(&mut command, None, COMMAND_TIMEOUT);
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "--check failed:\n{report}");
    let line = report
        .lines()
        .find(|line| line.starts_with("start-up would load"))
        .unwrap_or_else(|| panic!("no start-up line in:\n{report}"));
    let before = line
        .strip_suffix(" open writes")
        .unwrap_or_else(|| panic!("no open writes count in {line:?}"));
    before
        .rsplit(' ')
        .next()
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no open writes count in {line:?}"))
}

#[test]
fn the_library_answers_per_file_and_leaves_no_write_open() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let mut client = Client::connect(cluster.master_address()).expect("connect");
    client
        .mkdir(&DfsPath::parse("/lib").expect("path"), false, 0o755)
        .expect("mkdir");
    client
        .put(
            &DfsPath::parse("/lib/exists").expect("path"),
            WriteOptions::default(),
            &mut Unseekable(&b"old bytes"[..]),
        )
        .expect("put");
    let a: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let files = vec![
        small_file("/lib/a", a.clone(), false),
        small_file("/lib/exists", b"new".to_vec(), false),
        small_file("/lib/empty", Vec::new(), false),
        // Opened, then aborted: more than one block of 4 KiB.
        small_file("/lib/two-blocks", vec![1; 5000], false),
        // Refused before anything is sent.
        small_file("/lib/too-large", vec![2; CHUNK as usize + 1], false),
        small_file("/lib/b", b"bee".to_vec(), false),
    ];
    let options = WriteOptions {
        block_bytes: Some(4096),
        ..WriteOptions::default()
    };
    let results = client
        .put_small_files(&files, &options)
        .expect("options are valid");
    assert!(matches!(results[0], Ok(4096)), "{results:?}");
    assert!(
        matches!(&results[1], Err(Error::Remote(e)) if e.kind == ErrorKind::AlreadyExists),
        "{results:?}"
    );
    assert!(matches!(results[2], Ok(0)), "{results:?}");
    assert!(results[3].is_err(), "{results:?}");
    assert!(results[4].is_err(), "{results:?}");
    assert!(matches!(results[5], Ok(3)), "{results:?}");
    assert_eq!(read_all(&mut client, "/lib/a"), a);
    assert_eq!(read_all(&mut client, "/lib/empty"), b"");
    assert_eq!(read_all(&mut client, "/lib/b"), b"bee");
    assert_eq!(read_all(&mut client, "/lib/exists"), b"old bytes");
    for path in ["/lib/two-blocks", "/lib/too-large"] {
        let missing = client.stat(&DfsPath::parse(path).expect("path"));
        assert!(
            matches!(&missing, Err(Error::Remote(e)) if e.kind == ErrorKind::NotFound),
            "{path}: {missing:?}"
        );
    }

    // With this client still connected (its writes would end with its
    // connection), the master dies: its journal holds no open write.
    cluster.kill_master();
    assert_eq!(open_writes_on_disk(&cluster), 0);
    drop(client);
    cluster.start_master();
    cluster.wait_for_live_minions(3);

    // The same paths take new versions.
    let mut client = Client::connect(cluster.master_address()).expect("connect");
    let again: Vec<SmallFile> = ["/lib/a", "/lib/exists", "/lib/empty", "/lib/two-blocks"]
        .iter()
        .map(|path| small_file(path, path.as_bytes().to_vec(), true))
        .collect();
    let results = client
        .put_small_files(&again, &WriteOptions::default())
        .expect("options are valid");
    for (file, result) in again.iter().zip(&results) {
        assert_eq!(
            result.as_ref().ok(),
            Some(&(file.data.len() as u64)),
            "{}",
            file.path
        );
        assert_eq!(read_all(&mut client, file.path.as_str()), file.data);
    }
}
