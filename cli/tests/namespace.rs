//! The namespace commands (`mkdir`, `ls`, `mv`, `rm`, `put` over a file) do
//! what the CLI contract says and fail with its exact one-line messages:
//! driven through the real `dfs` binary against a real cluster, checked on
//! stdout, stderr, exit status and the resulting tree.

use dfs_testkit::{assert_files_equal, utf8, write_random_file, Cluster, ClusterOptions};

const MIB: u64 = 1 << 20;

fn put_random(cluster: &Cluster, remote: &str, seed: u64, length_bytes: u64) {
    let local = cluster.dir().join(format!("source-{seed}"));
    write_random_file(&local, seed, length_bytes);
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&local), remote]);
}

fn assert_missing(cluster: &Cluster, path: &str) {
    assert_eq!(
        cluster.dfs_err(["stat", path]),
        format!("dfs: {path}: no such file or directory")
    );
}

#[test]
fn mkdir_and_ls_formats() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.dfs_ok(["mkdir", "-p", "/a/b/c", "/a/d"]);
    // -p also accepts what already exists.
    cluster.dfs_ok(["mkdir", "-p", "/a/b"]);
    put_random(&cluster, "/a/f1", 1, 10);
    put_random(&cluster, "/a/b/f2", 2, 3000);

    assert_eq!(cluster.dfs_ok(["ls", "/"]), "a/\n");
    assert_eq!(cluster.dfs_ok(["ls"]), "a/\n", "ls without a path lists /");
    assert_eq!(cluster.dfs_ok(["ls", "/a"]), "b/\nd/\nf1\n");
    assert_eq!(cluster.dfs_ok(["ls", "/a/b/c"]), "");
    let stat = cluster.dfs_ok(["stat", "/a/b"]);
    assert!(
        stat.lines().any(|line| line == "path: /a/b")
            && stat.lines().any(|line| line == "type: directory"),
        "dfs stat /a/b:\n{stat}"
    );
    assert_eq!(
        cluster.dfs_ok(["ls", "-R", "/a"]),
        "/a/b/\n/a/b/c/\n/a/b/f2\n/a/d/\n/a/f1\n"
    );
    assert_eq!(
        cluster.dfs_ok(["ls", "-R", "/"]),
        "/a/\n/a/b/\n/a/b/c/\n/a/b/f2\n/a/d/\n/a/f1\n"
    );

    // -l: one line per entry in name order, ending with the name, with the
    // size among the columns.
    let long = cluster.dfs_ok(["ls", "-l", "/a"]);
    let lines: Vec<&str> = long.lines().collect();
    assert_eq!(lines.len(), 3, "ls -l /a:\n{long}");
    for (line, name) in lines.iter().zip(["b", "d", "f1"]) {
        let last = line.split_whitespace().last().unwrap_or_default();
        assert!(
            last == name || last == format!("{name}/"),
            "ls -l line {line:?} should end with {name}"
        );
    }
    assert!(
        lines[2].split_whitespace().any(|column| column == "10"),
        "ls -l should show the size 10 of f1: {:?}",
        lines[2]
    );
    let long = cluster.dfs_ok(["ls", "-l", "/a/b"]);
    assert!(
        long.lines()
            .any(|line| line.ends_with("f2") && line.split_whitespace().any(|c| c == "3000")),
        "ls -l /a/b should show f2 with size 3000:\n{long}"
    );
}

#[test]
fn mv_and_rm() {
    let cluster = Cluster::start(ClusterOptions::default());
    let content = cluster.dir().join("content");
    write_random_file(&content, 7, MIB + 5);
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&content), "/f"]);

    // A file to a new name.
    cluster.dfs_ok(["mv", "/f", "/g"]);
    assert_missing(&cluster, "/f");
    let copy = cluster.dir().join("copy-g");
    cluster.dfs_ok(["get", "/g", utf8(&copy)]);
    assert_files_equal(&copy, &content);

    // A directory with its contents to a new name.
    cluster.dfs_ok(["mkdir", "-p", "/d1/sub"]);
    put_random(&cluster, "/d1/sub/x", 8, 100);
    cluster.dfs_ok(["mv", "/d1", "/d2"]);
    assert_missing(&cluster, "/d1");
    assert_eq!(cluster.dfs_ok(["ls", "-R", "/d2"]), "/d2/sub/\n/d2/sub/x\n");

    // Into an existing directory: a file, then a directory.
    cluster.dfs_ok(["mkdir", "/target"]);
    cluster.dfs_ok(["mv", "/g", "/target"]);
    cluster.dfs_ok(["mv", "/d2", "/target"]);
    assert_eq!(
        cluster.dfs_ok(["ls", "-R", "/"]),
        "/target/\n/target/d2/\n/target/d2/sub/\n/target/d2/sub/x\n/target/g\n"
    );
    let copy = cluster.dir().join("copy-target-g");
    cluster.dfs_ok(["get", "/target/g", utf8(&copy)]);
    assert_files_equal(&copy, &content);

    // rm: a file; a non-empty directory only with -r.
    cluster.dfs_ok(["rm", "/target/g"]);
    assert_missing(&cluster, "/target/g");
    assert_eq!(
        cluster.dfs_err(["rm", "/target"]),
        "dfs: /target: directory not empty"
    );
    assert_eq!(
        cluster.dfs_ok(["ls", "-R", "/"]),
        "/target/\n/target/d2/\n/target/d2/sub/\n/target/d2/sub/x\n"
    );
    cluster.dfs_ok(["rm", "-r", "/target"]);
    assert_missing(&cluster, "/target");
    assert_eq!(cluster.dfs_ok(["ls", "/"]), "");

    // Several paths at once.
    cluster.dfs_ok(["mkdir", "/m1", "/m2"]);
    put_random(&cluster, "/m3", 9, 1);
    cluster.dfs_ok(["rm", "-r", "/m1", "/m2", "/m3"]);
    assert_eq!(cluster.dfs_ok(["ls", "/"]), "");
}

#[test]
fn errors_carry_the_exact_messages() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.dfs_ok(["mkdir", "-p", "/a/b"]);
    put_random(&cluster, "/f", 1, 100);
    let local = cluster.dir().join("local");
    write_random_file(&local, 2, 10);
    let target = cluster.dir().join("target");

    for (args, expected) in [
        (
            vec!["stat", "/nope"],
            "dfs: /nope: no such file or directory",
        ),
        (
            vec!["stat", "/nope/x"],
            "dfs: /nope/x: no such file or directory",
        ),
        (vec!["ls", "/nope"], "dfs: /nope: no such file or directory"),
        (
            vec!["cat", "/nope"],
            "dfs: /nope: no such file or directory",
        ),
        (vec!["rm", "/nope"], "dfs: /nope: no such file or directory"),
        (
            vec!["mv", "/nope", "/x"],
            "dfs: /nope: no such file or directory",
        ),
        (
            vec!["get", "/nope", utf8(&target)],
            "dfs: /nope: no such file or directory",
        ),
        (vec!["mkdir", "/a"], "dfs: /a: file exists"),
        (vec!["mkdir", "/f"], "dfs: /f: file exists"),
        (vec!["put", utf8(&local), "/f"], "dfs: /f: file exists"),
        (vec!["cat", "/a"], "dfs: /a: is a directory"),
        (vec!["get", "/a", utf8(&target)], "dfs: /a: is a directory"),
        (vec!["rm", "/a"], "dfs: /a: directory not empty"),
    ] {
        assert_eq!(cluster.dfs_err(&args), expected, "dfs {}", args.join(" "));
    }
    assert!(
        !target.exists(),
        "a failed get created {}",
        target.display()
    );

    // Which of the two paths is named is a matter of taste; the wording is not.
    for args in [vec!["mkdir", "/f/x"], vec!["mkdir", "-p", "/f/x/y"]] {
        let line = cluster.dfs_err(&args);
        assert!(
            line.starts_with("dfs: /f") && line.ends_with(": not a directory"),
            "dfs {}: {line}",
            args.join(" ")
        );
    }

    // Nothing above changed the tree.
    assert_eq!(cluster.dfs_ok(["ls", "-R", "/"]), "/a/\n/a/b/\n/f\n");
}

#[test]
fn put_over_an_existing_file_needs_force_and_readers_see_old_or_new() {
    let cluster = Cluster::start(ClusterOptions::default());
    let old = cluster.dir().join("old");
    let new = cluster.dir().join("new");
    write_random_file(&old, 1, 3 * MIB);
    write_random_file(&new, 2, 2 * MIB + 7);
    let old_bytes = std::fs::read(&old).expect("read old");
    let new_bytes = std::fs::read(&new).expect("read new");
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&old), "/f"]);

    assert_eq!(
        cluster.dfs_err(["put", "--block-size", "1M", utf8(&new), "/f"]),
        "dfs: /f: file exists"
    );
    let copy = cluster.dir().join("copy-after-refusal");
    cluster.dfs_ok(["get", "/f", utf8(&copy)]);
    assert_files_equal(&copy, &old);

    // A reader runs while the file is replaced back and forth (ending with
    // the new content): each read sees all of the old or all of the new.
    let writer_done = std::sync::atomic::AtomicBool::new(false);
    let reads = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0;
            while !writer_done.load(std::sync::atomic::Ordering::SeqCst) || reads == 0 {
                let output = cluster.dfs(["get", "/f", "-"]);
                assert!(
                    output.status.success(),
                    "a get during the overwrite failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                assert!(
                    output.stdout == old_bytes || output.stdout == new_bytes,
                    "a get during the overwrite returned {} bytes that are neither the old nor the new file",
                    output.stdout.len()
                );
                reads += 1;
            }
            reads
        });
        for source in [&new, &old, &new, &old, &new] {
            cluster.dfs_ok(["put", "-f", "--block-size", "1M", utf8(source), "/f"]);
        }
        writer_done.store(true, std::sync::atomic::Ordering::SeqCst);
        reader.join().expect("reader thread")
    });
    assert!(reads > 0);
    eprintln!("{reads} reads during the overwrites");

    let copy = cluster.dir().join("copy-after-overwrite");
    cluster.dfs_ok(["get", "/f", utf8(&copy)]);
    assert_files_equal(&copy, &new);
    let stat = cluster.stat("/f");
    stat.assert_layout(2 * MIB + 7, MIB);
    stat.assert_fully_replicated(3);
    assert_eq!(cluster.dfs_ok(["ls", "/"]), "f\n");
}

#[test]
fn put_into_an_existing_directory_keeps_the_local_name() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.dfs_ok(["mkdir", "/dir"]);
    let local = cluster.dir().join("report.bin");
    write_random_file(&local, 5, 1234);
    cluster.dfs_ok(["put", utf8(&local), "/dir"]);
    assert_eq!(cluster.dfs_ok(["ls", "/dir"]), "report.bin\n");
    let copy = cluster.dir().join("copy");
    cluster.dfs_ok(["get", "/dir/report.bin", utf8(&copy)]);
    assert_files_equal(&copy, &local);
}

#[test]
fn chmod_chown_and_truncate() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.dfs_ok(["mkdir", "-p", "/t/sub"]);
    put_random(&cluster, "/t/sub/f", 3, 3 * MIB + 5);
    put_random(&cluster, "/t/g", 4, 100);

    cluster.dfs_ok(["chmod", "-R", "2750", "/t"]);
    cluster.dfs_ok(["chown", "-R", "ann:lab", "/t"]);
    cluster.dfs_ok(["chown", ":staff", "/t/g"]);
    let long = cluster.dfs_ok(["ls", "-l", "-R", "/t"]);
    for name in ["/t/sub/", "/t/sub/f", "/t/g"] {
        let line = long
            .lines()
            .find(|line| line.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} in\n{long}"));
        let group = if name == "/t/g" { "staff" } else { "lab" };
        assert!(line.contains(&format!(" ann {group} ")), "{line}");
        assert_eq!(
            &line[1..10],
            "rwxr-s---",
            "setgid, nothing for others: {line}"
        );
    }
    assert!(cluster
        .dfs_err(["chmod", "999", "/t"])
        .contains("not an octal mode"));
    assert!(cluster.dfs_err(["chown", ":", "/t"]).contains("OWNER"));

    // Cut, then grown with zeros; the file stays the same inode.
    let local = cluster.dir().join("source-3");
    let original = std::fs::read(&local).expect("read the source");
    let inode = cluster.stat("/t/sub/f").fields.get("inode").cloned();
    assert!(inode.is_some(), "dfs stat names the inode");
    cluster.dfs_ok(["truncate", "-s", "1000", "/t/sub/f"]);
    let copy = cluster.dir().join("copy");
    cluster.dfs_ok(["get", "/t/sub/f", utf8(&copy)]);
    assert_eq!(std::fs::read(&copy).expect("read"), &original[..1000]);
    cluster.dfs_ok(["truncate", "-s", "2M", "/t/sub/f"]);
    std::fs::remove_file(&copy).expect("rm");
    cluster.dfs_ok(["get", "/t/sub/f", utf8(&copy)]);
    let grown = std::fs::read(&copy).expect("read");
    assert_eq!(grown.len(), 2 * MIB as usize);
    assert_eq!(&grown[..1000], &original[..1000]);
    assert!(grown[1000..].iter().all(|&byte| byte == 0));
    assert_eq!(cluster.stat("/t/sub/f").fields.get("inode").cloned(), inode);
    assert!(cluster
        .dfs_err(["truncate", "-s", "1", "/t"])
        .contains("not a file"));

    // Two pieces (1000 bytes of a block and a hole): not fragmented, but
    // written again when forced; the bytes stay.
    let said = cluster.dfs_ok(["compact", "/t/sub/f"]);
    assert_eq!(said.trim(), "/t/sub/f: 2 pieces, not fragmented");
    let said = cluster.dfs_ok(["compact", "-f", "/t/sub/f"]);
    assert_eq!(said.trim(), "/t/sub/f: 2 pieces written again as 2");
    std::fs::remove_file(&copy).expect("rm");
    cluster.dfs_ok(["get", "/t/sub/f", utf8(&copy)]);
    assert_eq!(std::fs::read(&copy).expect("read"), grown);
    assert!(cluster.dfs_err(["compact", "/t"]).contains("/t"));
}
