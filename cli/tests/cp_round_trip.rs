//! `dfs-cp` on a real three-minion cluster: a tree with empty files, deep
//! directories, unicode names and files at block-size edges goes local ->
//! cluster -> cluster -> local and comes back byte for byte; a rerun skips
//! everything and lands in the same place (`SRC` goes to `DST/SRC`, `SRC/`
//! into `DST`, whether DST exists or not); globs, `--dry-run`, `--json`,
//! `-p`, `--verify`, `dfs cp` and `dfs checksum` (equal to the CRC32C of
//! the local bytes at several block sizes) behave as documented.

mod cp_support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, UNIX_EPOCH};

use cp_support::{
    assert_trees_equal, cluster_files, cp_ok, make_tree, summary_field, tree_files, MIB,
};
use dfs_testkit::{assert_files_equal, utf8, write_random_file, Cluster, ClusterOptions};

#[test]
fn trees_round_trip_through_the_cluster_and_reruns_skip_everything() {
    let cluster = Cluster::start(ClusterOptions::default());
    let source = cluster.dir().join("source");
    make_tree(&source);
    let files = tree_files();
    let total_bytes: u64 = files.iter().map(|(_, length)| length).sum();
    let mut expected: Vec<(String, u64)> = files
        .iter()
        .map(|(name, length)| (name.to_string(), *length))
        .collect();
    expected.sort();

    // Local -> cluster, into an existing directory: DST/<name>.
    let json = cp_ok(
        &cluster,
        [
            "--json",
            "-q",
            "--block-size",
            "1M",
            utf8(&source),
            "dfs:///",
        ],
    );
    assert_eq!(summary_field(&json, "files"), files.len() as f64, "{json}");
    assert_eq!(summary_field(&json, "bytes"), total_bytes as f64, "{json}");
    assert_eq!(summary_field(&json, "failed"), 0.0, "{json}");
    assert_eq!(cluster_files(&cluster, "/source"), expected);
    cluster
        .stat("/source/one-byte-more")
        .assert_layout(MIB + 1, MIB);
    cluster
        .stat("/source/exactly-one-block")
        .assert_layout(MIB, MIB);
    cluster
        .stat("/source/three-blocks-ragged")
        .assert_fully_replicated(3);

    // The same command again: everything is skipped, nothing copied.
    let json = cp_ok(&cluster, ["--json", "-q", utf8(&source), "dfs:///"]);
    assert_eq!(summary_field(&json, "files"), 0.0, "{json}");
    assert_eq!(
        summary_field(&json, "skipped"),
        files.len() as f64,
        "{json}"
    );

    // Cluster -> cluster: a directory named without a trailing slash goes
    // into DST under its own name, DST made if missing; run again, it
    // skips everything and nests nothing.
    let nested: Vec<(String, u64)> = expected
        .iter()
        .map(|(name, length)| (format!("source/{name}"), *length))
        .collect();
    for _ in 0..2 {
        cp_ok(&cluster, ["-q", "dfs:///source", "dfs:///copy"]);
        assert_eq!(cluster_files(&cluster, "/copy"), nested);
    }

    // Cluster -> local, through `dfs cp`; bytes and `diff -r` agree. A
    // trailing slash copies the directory's contents into DST.
    let back = cluster.dir().join("back");
    for _ in 0..2 {
        cluster.dfs_ok(["cp", "-q", "dfs:///copy/source/", utf8(&back)]);
        assert_trees_equal(&back, &source);
    }
    assert!(
        back.join("empty-dir").is_dir(),
        "empty directories are copied"
    );
    // Without the slash, twice: DST/<name>, nothing nested.
    let named = cluster.dir().join("named");
    for _ in 0..2 {
        cp_ok(&cluster, ["-q", "dfs:///source", utf8(&named)]);
        assert_eq!(
            std::fs::read_dir(&named).expect("list").count(),
            1,
            "only {}/source",
            named.display()
        );
        assert_trees_equal(&named.join("source"), &source);
    }
}

#[test]
fn globs_dry_run_preserve_verify_and_checksums() {
    let cluster = Cluster::start(ClusterOptions::default());
    let source = cluster.dir().join("globbed");
    std::fs::create_dir_all(&source).expect("mkdir");
    for (name, length) in [
        ("a1.csv", 10),
        ("a2.csv", 20),
        ("b1.csv", 30),
        ("a3.txt", 5),
    ] {
        write_random_file(&source.join(name), length, length);
    }
    std::fs::set_permissions(
        source.join("a1.csv"),
        std::fs::Permissions::from_mode(0o640),
    )
    .expect("chmod");
    let old = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    std::fs::File::options()
        .write(true)
        .open(source.join("a1.csv"))
        .and_then(|file| file.set_modified(old))
        .expect("set mtime");

    // A dry run lists and changes nothing.
    let pattern = format!("{}/a*.csv", utf8(&source));
    let listed = cp_ok(&cluster, ["-n", "-q", &pattern, "dfs:///g/"]);
    let mut lines: Vec<&str> = listed.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            format!(
                "copy {}/a1.csv -> dfs://{}/g/a1.csv",
                utf8(&source),
                cluster.master_address()
            ),
            format!(
                "copy {}/a2.csv -> dfs://{}/g/a2.csv",
                utf8(&source),
                cluster.master_address()
            ),
        ]
    );
    assert!(
        cluster.dfs(["stat", "/g"]).status.code() == Some(1),
        "dry run made /g"
    );

    // Local glob -> cluster with -p and --verify: the mode is kept.
    cp_ok(&cluster, ["-q", "-p", "--verify", &pattern, "dfs:///g/"]);
    assert_eq!(
        cluster_files(&cluster, "/g"),
        vec![("a1.csv".to_string(), 10), ("a2.csv".to_string(), 20)]
    );
    assert_eq!(cluster.stat("/g/a1.csv").field("mode"), "0640");

    // Cluster glob -> local with -p: mode and mtime are kept locally.
    let out = cluster.dir().join("out");
    cp_ok(
        &cluster,
        [
            "-q",
            "-p",
            "--verify",
            "dfs:///g/a?.csv",
            &format!("{}/", utf8(&out)),
        ],
    );
    for name in ["a1.csv", "a2.csv"] {
        assert_files_equal(&out.join(name), &source.join(name));
    }
    let local_copy = cluster.dir().join("local-copy");
    cp_ok(
        &cluster,
        ["-q", "-p", utf8(&source.join("a1.csv")), utf8(&local_copy)],
    );
    let metadata = std::fs::metadata(&local_copy).expect("stat");
    assert_eq!(metadata.permissions().mode() & 0o777, 0o640);
    assert_eq!(metadata.modified().expect("mtime"), old);

    // --update on a local target: same size and mtime skip.
    let json = cp_ok(
        &cluster,
        [
            "--json",
            "-q",
            "-u",
            utf8(&source.join("a1.csv")),
            utf8(&local_copy),
        ],
    );
    assert_eq!(summary_field(&json, "skipped"), 1.0, "{json}");

    // Symbolic links: skipped with a note, followed with -L.
    std::os::unix::fs::symlink(source.join("a2.csv"), cluster.dir().join("link")).expect("symlink");
    let link = cluster.dir().join("link");
    let output = cp_support::cp(&cluster, [utf8(&link), "dfs:///link"]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("skipping symbolic link (use -L to follow)"),
        "{output:?}"
    );
    assert_eq!(cluster.dfs(["stat", "/link"]).status.code(), Some(1));
    cp_ok(&cluster, ["-q", "-L", utf8(&link), "dfs:///link"]);
    assert_eq!(cluster.stat("/link").size_bytes(), 20);

    // `dfs checksum` is the CRC32C of the bytes, whatever the block size.
    let data_path = cluster.dir().join("checksummed");
    write_random_file(&data_path, 77, 3 * MIB + 999);
    let data = std::fs::read(&data_path).expect("read");
    let expected_crc = crc32c::crc32c(&data);
    for block_size in ["64K", "1M", "2M", "4M"] {
        let remote = format!("/sum-{block_size}");
        cluster.dfs_ok(["put", "--block-size", block_size, utf8(&data_path), &remote]);
        let line = cluster.dfs_ok(["checksum", &remote]);
        assert_eq!(
            line,
            format!("{expected_crc:08x}  {}  {remote}\n", data.len()),
            "block size {block_size}"
        );
    }

    // -p keeps the mtime on a cluster target too, so --update can skip by
    // size and mtime there...
    assert_eq!(
        cluster.stat("/g/a1.csv").field("modified"),
        "2017-07-14 02:40:00 UTC"
    );
    let a1 = source.join("a1.csv");
    let json = cp_ok(
        &cluster,
        ["--json", "-q", "-u", "-p", utf8(&a1), "dfs:///g/a1.csv"],
    );
    assert_eq!(summary_field(&json, "skipped"), 1.0, "{json}");
    // ...and copies a source of the same size with a newer mtime again.
    write_random_file(&a1, 99, 10);
    let json = cp_ok(
        &cluster,
        ["--json", "-q", "-u", utf8(&a1), "dfs:///g/a1.csv"],
    );
    assert_eq!(summary_field(&json, "files"), 1.0, "{json}");
    let crc = crc32c::crc32c(&std::fs::read(&a1).expect("read"));
    assert_eq!(
        cluster.dfs_ok(["checksum", "/g/a1.csv"]),
        format!("{crc:08x}  10  /g/a1.csv\n")
    );
}

#[test]
fn large_cluster_files_copy_in_parallel_whatever_the_block_sizes() {
    let cluster = Cluster::start(ClusterOptions::default());
    let local = cluster.dir().join("large");
    write_random_file(&local, 5, 5 * MIB + 3);
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&local), "/large"]);
    // Same block size (ranges are whole source blocks), a smaller one and a
    // larger one (ranges start inside source blocks).
    for block_size in ["1M", "768K", "2M"] {
        let target = format!("/copy-{block_size}");
        cp_ok(
            &cluster,
            [
                "-q",
                "--verify",
                "--block-size",
                block_size,
                "dfs:///large",
                &format!("dfs://{target}"),
            ],
        );
        let back = cluster.dir().join(format!("back-{block_size}"));
        cluster.dfs_ok(["get", &target, utf8(&back)]);
        assert_files_equal(&back, &local);
        cluster.stat(&target).assert_fully_replicated(3);
    }
}
