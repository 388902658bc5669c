//! `dfs-mount` on a real cluster: ordinary programs and the standard library
//! work in the mounted directory, two mounts of the same cluster (two
//! workstations) see each other's files once they are closed, what the
//! mount cannot do yet fails with a clear errno, and SIGTERM unmounts.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use dfs_engine::limits::SPOOL_BYTES_MAX;
use dfs_testkit::{
    assert_files_equal, binary, random_bytes, utf8, wait_for, write_random_file, ChildGuard,
    Cluster, ClusterOptions, Signal,
};

mod support;

use support::{cluster_of, errno, is_mounted, python, Mounted, MOUNT_WAIT};

#[test]
fn programs_work_in_the_mounted_cluster_and_a_second_mount_sees_closed_files() {
    let cluster = Cluster::start(ClusterOptions {
        minions: 3,
        block_size: Some("1M"),
        ..ClusterOptions::default()
    });
    let mut here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start_with(&cluster, &cluster.dir().join("there"), true, &[]);

    // Directories, and a file of several blocks written with std::fs.
    fs::create_dir_all(here.path("home/ann/data")).expect("mkdir -p");
    let source = cluster.dir().join("source");
    write_random_file(&source, 18, 3 * 1024 * 1024 + 4321);
    fs::copy(&source, here.path("home/ann/data/big")).expect("copy into the mount");
    assert_files_equal(&here.path("home/ann/data/big"), &source);
    let metadata = fs::metadata(here.path("home/ann/data/big")).expect("stat");
    assert_eq!(metadata.len(), 3 * 1024 * 1024 + 4321);
    assert!(metadata.is_file());

    // The other workstation sees it once the copy's close returned (as
    // NFS's close-to-open has it), and so does `dfs` itself.
    assert_files_equal(&there.path("home/ann/data/big"), &source);
    let listed = cluster.dfs_ok(["ls", "/home/ann/data"]);
    assert!(listed.contains("big"), "{listed}");

    // Reads at any offset, across block boundaries.
    let expected = fs::read(&source).expect("read the source");
    let mut file = File::open(there.path("home/ann/data/big")).expect("open");
    // (closed below, before the mounts end: an open file keeps a mount)
    for offset in [0u64, 1_048_575, 2_097_000, 3 * 1024 * 1024 + 4000] {
        file.seek(SeekFrom::Start(offset)).expect("seek");
        let mut buffer = vec![0u8; 5000];
        let read = file.read(&mut buffer).expect("read");
        let start = offset as usize;
        let end = (start + 5000).min(expected.len());
        assert!(read > 0, "a read at {offset}");
        assert_eq!(buffer[..read], expected[start..start + read], "at {offset}");
        assert!(start + read <= end);
    }
    drop(file);

    // A file written with the shell's redirection (its descriptor is
    // duplicated and the first copy closed before the write).
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo hello > {}",
            utf8(&here.path("home/ann/note"))
        ))
        .status()
        .expect("run sh");
    assert!(status.success(), "echo > file in the mount");
    assert_eq!(
        fs::read_to_string(here.path("home/ann/note")).expect("read the note here"),
        "hello\n"
    );
    assert_eq!(
        fs::read_to_string(there.path("home/ann/note")).expect("read the note there"),
        "hello\n"
    );

    // Rewriting a file (open with O_TRUNC) replaces it and keeps its mode.
    fs::set_permissions(
        here.path("home/ann/note"),
        fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    fs::write(here.path("home/ann/note"), b"again\n").expect("rewrite");
    assert_eq!(
        fs::read(here.path("home/ann/note")).expect("read"),
        b"again\n"
    );
    let mode = fs::metadata(here.path("home/ann/note"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);

    // rename replaces its target; listings show what is there.
    fs::write(here.path("home/ann/old"), b"old").expect("write old");
    fs::rename(here.path("home/ann/note"), here.path("home/ann/old")).expect("rename over");
    assert_eq!(
        fs::read(here.path("home/ann/old")).expect("read"),
        b"again\n"
    );
    let mut names: Vec<String> = fs::read_dir(here.path("home/ann"))
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["data", "old"]);

    // tar in and out.
    let tree = cluster.dir().join("tree");
    fs::create_dir_all(tree.join("a/b")).expect("mkdir tree");
    fs::write(tree.join("a/b/c.txt"), random_bytes(7, 10_000)).expect("write tree");
    fs::write(tree.join("a/d.bin"), random_bytes(8, 70_000)).expect("write tree");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -cf - a | tar -C {} -xf -",
            utf8(&tree),
            utf8(&here.path("home/ann"))
        ))
        .status()
        .expect("run tar");
    assert!(status.success(), "tar into the mount");
    let diff = Command::new("diff")
        .arg("-r")
        .arg(tree.join("a"))
        .arg(here.path("home/ann/a"))
        .output()
        .expect("run diff");
    assert!(
        diff.status.success(),
        "diff -r: {}",
        String::from_utf8_lossy(&diff.stdout)
    );

    // An append rewrites the file with the new bytes after the old.
    OpenOptions::new()
        .append(true)
        .open(here.path("home/ann/old"))
        .and_then(|mut file| file.write_all(b"more\n"))
        .expect("append");
    assert_eq!(
        fs::read(here.path("home/ann/old")).expect("read"),
        b"again\nmore\n"
    );

    // cp -p: mode and times set while the copy is open are kept.
    let preserved = cluster.dir().join("preserved");
    fs::write(&preserved, b"keep my attributes").expect("write");
    fs::set_permissions(&preserved, fs::Permissions::from_mode(0o640)).expect("chmod");
    let status = Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06"])
        .arg(&preserved)
        .status()
        .expect("touch");
    assert!(status.success());
    let status = Command::new("cp")
        .arg("-p")
        .arg(&preserved)
        .arg(here.path("home/ann/preserved"))
        .status()
        .expect("cp -p");
    assert!(status.success(), "cp -p into the mount");
    let seconds = |path: &Path| {
        fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .map(|time| {
                time.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs())
            })
            .expect("mtime")
    };
    let copied = fs::metadata(here.path("home/ann/preserved")).expect("stat");
    assert_eq!(copied.permissions().mode() & 0o7777, 0o640);
    assert_eq!(
        seconds(&here.path("home/ann/preserved")),
        seconds(&preserved)
    );

    // A sparse file: the hole reads as zeros.
    {
        let mut sparse = File::create(here.path("home/ann/sparse")).expect("create");
        sparse.write_all(b"head").expect("write");
        sparse
            .seek(SeekFrom::Start(100_000))
            .expect("seek past the end");
        sparse.write_all(b"tail").expect("write after the hole");
    }
    let sparse = fs::read(here.path("home/ann/sparse")).expect("read");
    assert_eq!(sparse.len(), 100_004);
    assert!(sparse[4..100_000].iter().all(|&byte| byte == 0));
    assert_eq!(&sparse[100_000..], b"tail");

    // rmdir of a directory with entries, and removal.
    let error = fs::remove_dir(here.path("home/ann/a")).expect_err("rmdir of a full directory");
    assert_eq!(errno(&error), libc::ENOTEMPTY);
    fs::remove_dir_all(here.path("home/ann/a")).expect("rm -r");
    fs::remove_file(here.path("home/ann/old")).expect("rm");
    fs::remove_file(here.path("home/ann/preserved")).expect("rm");
    fs::remove_file(here.path("home/ann/sparse")).expect("rm");
    assert!(
        !there.path("home/ann/old").exists() || {
            // The other mount may hold the name for its entry time.
            std::thread::sleep(Duration::from_millis(1500));
            !there.path("home/ann/old").exists()
        }
    );

    // statfs reports the cluster's capacity.
    let df = Command::new("df")
        .arg("-k")
        .arg(&here.mountpoint)
        .output()
        .expect("run df");
    assert!(df.status.success(), "df on the mount");

    // SIGTERM unmounts and exits cleanly.
    assert!(here.terminate(), "dfs-mount exits cleanly on SIGTERM");
    assert!(!is_mounted(&here.mountpoint), "unmounted after SIGTERM");
    drop(there);
    cluster.assert_clean_logs();
}

#[test]
fn a_file_being_written_is_there_for_its_writer_before_it_is_closed() {
    let cluster = cluster_of(2);
    let mut mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let path = mounted.path("growing");
    let mut file = File::create(&path).expect("create");
    file.write_all(&random_bytes(3, 100_000)).expect("write");
    file.flush().expect("flush");
    // By path, through a lookup, while the descriptor is open.
    let metadata = fs::metadata(&path).expect("stat a file being written");
    assert!(metadata.is_file());
    // (Not asked of `dfs` here: starting a process closes a copy of every
    // descriptor, and each close commits what was written, as NFS does.)
    file.write_all(b"tail").expect("write more");
    drop(file);
    // Committed when the close returned.
    assert!(cluster.dfs(["stat", "/growing"]).status.success());

    // A commit that fails fails the close: the directory went meanwhile.
    fs::create_dir(mounted.path("d")).expect("mkdir");
    let mut file = File::create(mounted.path("d/f")).expect("create");
    file.write_all(b"lost?").expect("write");
    cluster.dfs_ok(["rm", "-r", "/d"]);
    // (Starting `dfs` closed a copy of the descriptor, which committed the
    // first write: this one comes after the directory went.)
    file.write_all(b" and more").expect("write");
    let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
    // SAFETY: `fd` is an open descriptor this test owns and closes once.
    let closed = unsafe { libc::close(fd) };
    assert_eq!(closed, -1, "close reports the failed commit");
    assert_eq!(fs::metadata(&path).expect("stat").len(), 100_004);
    let output = cluster.dfs_ok(["stat", "/growing"]);
    assert!(output.contains("100004"), "{output}");

    // `dfs umount` unmounts, and the mount program then ends by itself.
    cluster.dfs_ok(["umount", utf8(&mounted.mountpoint)]);
    assert!(!is_mounted(&mounted.mountpoint));
    let process = mounted.process.as_mut().expect("the mount process");
    assert!(
        process.wait_exit(MOUNT_WAIT).success(),
        "dfs-mount after umount"
    );
    mounted.process = None;
}

#[test]
fn symbolic_and_hard_links_work_through_the_mount_and_dfs() {
    let cluster = cluster_of(2);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    fs::create_dir(mounted.path("d")).expect("mkdir");
    fs::write(mounted.path("d/file"), b"contents\n").expect("write");

    // A symbolic link the kernel follows, relative to its directory.
    std::os::unix::fs::symlink("file", mounted.path("d/link")).expect("ln -s");
    assert_eq!(
        fs::read_link(mounted.path("d/link")).expect("readlink"),
        PathBuf::from("file")
    );
    assert_eq!(
        fs::read(mounted.path("d/link")).expect("read through"),
        b"contents\n"
    );
    assert!(fs::symlink_metadata(mounted.path("d/link"))
        .expect("lstat")
        .file_type()
        .is_symlink());
    let stat = cluster.dfs_ok(["stat", "/d/link"]);
    assert!(
        stat.contains("symbolic link") && stat.contains("target: file"),
        "{stat}"
    );

    // A hard link: one inode, two names; the data stays until both go.
    fs::hard_link(mounted.path("d/file"), mounted.path("hard")).expect("ln");
    let first = fs::metadata(mounted.path("d/file")).expect("stat");
    let second = fs::metadata(mounted.path("hard")).expect("stat");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(first.ino(), second.ino());
    assert_eq!(second.nlink(), 2);
    fs::remove_file(mounted.path("d/file")).expect("rm one name");
    assert_eq!(fs::read(mounted.path("hard")).expect("read"), b"contents\n");
    assert_eq!(fs::metadata(mounted.path("hard")).expect("stat").nlink(), 1);
    // The symbolic link now dangles.
    assert!(fs::read(mounted.path("d/link")).is_err());

    // Any name that is left still reaches the file.
    fs::hard_link(mounted.path("hard"), mounted.path("n1")).expect("ln");
    fs::hard_link(mounted.path("hard"), mounted.path("n2")).expect("ln");
    fs::remove_file(mounted.path("hard")).expect("rm");
    fs::remove_file(mounted.path("n2")).expect("rm");
    assert_eq!(
        fs::symlink_metadata(mounted.path("n1"))
            .expect("lstat")
            .nlink(),
        1
    );
    fs::rename(mounted.path("n1"), mounted.path("hard")).expect("mv back");

    // A directory has one name.
    let error = fs::hard_link(mounted.path("d"), mounted.path("d2")).expect_err("ln of a dir");
    assert_eq!(errno(&error), libc::EPERM);

    // The same through dfs ln.
    cluster.dfs_ok(["ln", "-s", "/hard", "/abs"]);
    assert!(
        fs::read(mounted.path("abs")).is_err(),
        "an absolute target is the workstation's own path"
    );
    cluster.dfs_ok(["ln", "/hard", "/d/again"]);
    wait_for(
        || {
            fs::metadata(mounted.path("hard"))
                .map(|m| m.nlink())
                .unwrap_or(0)
                == 2
        },
        Duration::from_secs(5),
        "the new name to show",
    );
    assert_eq!(
        fs::read(mounted.path("d/again")).expect("read"),
        b"contents\n"
    );
}

/// A python3 process that takes a lock on `path` (`how`: "lockf" for an
/// fcntl lock, "flock" for flock), prints "locked" once it holds it, and
/// keeps it until killed.
fn lock_holder(path: &Path, how: &str) -> ChildGuard {
    let script = format!(
        "import fcntl, sys, time\n\
         f = open(sys.argv[1], 'r+')\n\
         fcntl.{how}(f, fcntl.LOCK_EX)\n\
         print('locked', flush=True)\n\
         time.sleep(600)\n"
    );
    let child = Command::new("python3")
        .args(["-c", &script])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start python3");
    let mut guard = ChildGuard::new("lock holder", child);
    let stdout = guard.child().stdout.take().expect("stdout");
    let line = dfs_testkit::read_first_line(stdout, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the lock holder did not lock: {e:?}"));
    assert_eq!(line.trim(), "locked");
    guard
}

/// Tries a lock without waiting: Ok(true) taken (and dropped again),
/// Ok(false) held elsewhere.
fn try_lock(path: &Path, how: &str) -> bool {
    let script = format!(
        "import fcntl, sys\n\
         f = open(sys.argv[1], 'r+')\n\
         try:\n    fcntl.{how}(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n    print('free')\n\
         except BlockingIOError:\n    print('held')\n"
    );
    let output = Command::new("python3")
        .args(["-c", &script])
        .arg(path)
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "try {how}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    text.trim() == "free"
}

#[test]
fn locks_hold_across_mounts_and_die_with_their_holder() {
    let cluster = Cluster::start(ClusterOptions {
        minions: 2,
        replication: Some(2),
        master_arguments: vec!["--lock-lease", "2s"],
        ..ClusterOptions::default()
    });
    let mut here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    fs::write(here.path("db"), b"database").expect("write");
    wait_for(
        || there.path("db").exists(),
        Duration::from_secs(10),
        "the file on the other mount",
    );

    for how in ["lockf", "flock"] {
        // Held on one workstation: refused on the other, and free again
        // once its holder exits.
        let mut holder = lock_holder(&here.path("db"), how);
        assert!(
            !try_lock(&there.path("db"), how),
            "{how} held on the other mount"
        );
        holder.signal(Signal::Kill);
        holder.wait_exit(Duration::from_secs(10));
        wait_for(
            || try_lock(&there.path("db"), how),
            Duration::from_secs(10),
            "the lock to be free once its holder exited",
        );
    }

    // A waiting lock is granted when the holder lets go.
    let mut holder = lock_holder(&here.path("db"), "lockf");
    let waiter_script = "import fcntl, sys\n\
         f = open(sys.argv[1], 'r+')\n\
         fcntl.lockf(f, fcntl.LOCK_EX)\n\
         print('granted', flush=True)\n";
    let waiter = Command::new("python3")
        .args(["-c", waiter_script])
        .arg(there.path("db"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the waiter");
    let mut waiter = ChildGuard::new("lock waiter", waiter);
    std::thread::sleep(Duration::from_millis(500));
    assert!(waiter.try_status().is_none(), "the waiter waits");
    holder.signal(Signal::Kill);
    holder.wait_exit(Duration::from_secs(10));
    assert!(
        waiter.wait_exit(Duration::from_secs(20)).success(),
        "the waiter got the lock"
    );

    // A mount that dies holding a lock loses it when its lease runs out.
    let _holder = lock_holder(&here.path("db"), "lockf");
    assert!(!try_lock(&there.path("db"), "lockf"));
    if let Some(mut process) = here.process.take() {
        process.signal(Signal::Kill);
        process.wait_exit(MOUNT_WAIT);
    }
    wait_for(
        || try_lock(&there.path("db"), "lockf"),
        Duration::from_secs(20),
        "the dead mount's lock to expire with its lease",
    );
}

#[test]
fn an_existing_file_opened_for_writing_is_rewritten_from_its_head() {
    let cluster = cluster_of(2);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let path = mounted.path("f");
    fs::write(&path, b"0123456789").expect("write");
    let inode = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&path).expect("stat").ino()
    };

    // Opened read-write and only read (a lock file, say): nothing changes.
    {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("r+");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("read");
        assert_eq!(text, "0123456789");
    }
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&path).expect("stat").ino(), inode, "untouched");
    }

    // A write at the head keeps the tail.
    {
        let mut file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all(b"ab").expect("write the head");
    }
    assert_eq!(fs::read(&path).expect("read"), b"ab23456789");

    // Rewritten and truncated to what was written (as editors save).
    {
        let mut file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all(b"xyz").expect("write");
        file.set_len(3).expect("ftruncate");
    }
    assert_eq!(fs::read(&path).expect("read"), b"xyz");

    // truncate(1) opens without O_TRUNC and cuts to nothing.
    let status = Command::new("truncate")
        .args(["-s", "0"])
        .arg(&path)
        .status()
        .expect("run truncate");
    assert!(status.success());
    assert_eq!(fs::metadata(&path).expect("stat").len(), 0);

    // A rewrite keeps the file's owner and group.
    fs::write(&path, b"0123456789").expect("write");
    let status = Command::new("chown")
        .arg("1234:2345")
        .arg(&path)
        .status()
        .expect("chown");
    assert!(status.success());
    fs::write(&path, b"rewritten").expect("rewrite");
    {
        use std::os::unix::fs::MetadataExt;
        let metadata = fs::metadata(&path).expect("stat");
        assert_eq!((metadata.uid(), metadata.gid()), (1234, 2345));
    }

    // Writing anywhere in a file, as on a local disk.
    fs::write(&path, b"0123456789").expect("write");
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut file| {
            file.seek(SeekFrom::Start(6))?;
            file.write_all(b"xy")?;
            file.seek(SeekFrom::Start(1))?;
            file.write_all(b"a")
        })
        .expect("write in the middle");
    assert_eq!(fs::read(&path).expect("read"), b"0a2345xy89");
    // Read back through the same descriptor before it is closed.
    {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("r+");
        file.seek(SeekFrom::Start(3)).expect("seek");
        file.write_all(b"Q").expect("write");
        file.seek(SeekFrom::Start(0)).expect("seek");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("read back");
        assert_eq!(text, "0a2Q45xy89");
    }
}

#[test]
fn a_directory_larger_than_a_listing_page_lists_whole() {
    let cluster = cluster_of(1);
    // More than two pages of the master's listing (1,000 entries a page).
    let count = 2_345;
    let mut expected: Vec<String> = (0..count).map(|i| format!("d{i:05}")).collect();
    let mut arguments = vec!["mkdir".to_string(), "-p".to_string()];
    arguments.extend(expected.iter().map(|name| format!("/big/{name}")));
    cluster.dfs_ok(&arguments);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let mut names: Vec<String> = fs::read_dir(mounted.path("big"))
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    expected.sort();
    assert_eq!(names.len(), count);
    assert_eq!(names, expected);
    let output = Command::new("ls")
        .arg("-f")
        .arg(mounted.path("big"))
        .output()
        .expect("ls -f");
    assert!(output.status.success());
    // ls -f lists "." and ".." too, unsorted.
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).lines().count(),
        count + 2
    );
}

#[test]
fn a_daemon_mount_returns_once_up_and_ends_with_its_unmount() {
    let cluster = cluster_of(1);
    let mountpoint = cluster.dir().join("daemon-mnt");
    fs::create_dir_all(&mountpoint).expect("mkdir");
    // The form mount(8) uses for an fstab line of type fuse.dfs-mount.
    let output = dfs_testkit::run(
        Command::new(binary("dfs-mount"))
            .arg(cluster.master_address())
            .arg(&mountpoint)
            .args(["-o", "rw,nosuid,nodev,_netdev,daemon"]),
        None,
        dfs_testkit::COMMAND_TIMEOUT,
    );
    dfs_testkit::expect_success(&output, "dfs-mount -o daemon");
    assert!(is_mounted(&mountpoint), "mounted when the command returns");
    fs::write(mountpoint.join("f"), b"served in the background").expect("write");
    assert_eq!(
        fs::read(mountpoint.join("f")).expect("read"),
        b"served in the background"
    );
    let mentioning = || dfs_testkit::processes_mentioning(utf8(&mountpoint));
    assert!(!mentioning().is_empty(), "the daemon runs");
    cluster.dfs_ok(["umount", utf8(&mountpoint)]);
    assert!(!is_mounted(&mountpoint));
    wait_for(
        || mentioning().is_empty(),
        MOUNT_WAIT,
        "the daemon to end with its unmount",
    );
    // A mount that cannot come up fails the command itself.
    let output = dfs_testkit::run(
        Command::new(binary("dfs-mount"))
            .arg("127.0.0.1:1")
            .arg(&mountpoint)
            .args(["-o", "daemon"])
            .env("DFS_MASTER_WAIT", "1s"),
        None,
        dfs_testkit::COMMAND_TIMEOUT,
    );
    assert!(!output.status.success(), "no master, no mount");
    assert!(!is_mounted(&mountpoint));
}

/// Runs a python3 script with `path` as its argument; its standard output.

#[test]
fn sqlite_works_in_the_mount_and_its_locks_hold_across_workstations() {
    let cluster = cluster_of(2);
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    let create = "import sqlite3, sys\n\
         db = sqlite3.connect(sys.argv[1])\n\
         db.execute('create table t (k integer primary key, v text)')\n\
         db.executemany('insert into t (v) values (?)', [('row %d' % i,) for i in range(500)])\n\
         db.commit()\n\
         db.execute('update t set v = ? where k = 250', ('changed',))\n\
         db.commit()\n\
         print(db.execute('select count(*) from t').fetchone()[0])\n";
    assert_eq!(python(create, &here.path("test.db")), "500");
    wait_for(
        || there.path("test.db").exists(),
        Duration::from_secs(10),
        "the database on the other mount",
    );
    let read = "import sqlite3, sys\n\
         db = sqlite3.connect(sys.argv[1])\n\
         print(db.execute('select count(*), (select v from t where k = 250) from t').fetchone())\n\
         print(db.execute('pragma integrity_check').fetchone()[0])\n";
    assert_eq!(python(read, &there.path("test.db")), "(500, 'changed')\nok");

    // A write transaction on one workstation keeps the other's out.
    let holder = "import sqlite3, sys, time\n\
         db = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
         db.execute('begin exclusive')\n\
         print('holding', flush=True)\n\
         time.sleep(600)\n";
    let child = Command::new("python3")
        .args(["-c", holder])
        .arg(here.path("test.db"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the holder");
    let mut holder = ChildGuard::new("sqlite holder", child);
    let stdout = holder.child().stdout.take().expect("stdout");
    let line = dfs_testkit::read_first_line(stdout, Duration::from_secs(30)).expect("holding");
    assert_eq!(line.trim(), "holding");
    let try_write = "import sqlite3, sys\n\
         db = sqlite3.connect(sys.argv[1], timeout=0.2)\n\
         try:\n    db.execute('insert into t (v) values (1)'); db.commit(); print('wrote')\n\
         except sqlite3.OperationalError as e:\n    print(e)\n";
    assert_eq!(
        python(try_write, &there.path("test.db")),
        "database is locked"
    );
    holder.signal(Signal::Kill);
    holder.wait_exit(Duration::from_secs(10));
    wait_for(
        || python(try_write, &there.path("test.db")) == "wrote",
        Duration::from_secs(20),
        "the other workstation to write once the holder is gone",
    );
}

#[test]
fn sqlite_connections_kept_open_on_two_workstations_see_each_others_rows() {
    let cluster = cluster_of(1);
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    let create = "import sqlite3, sys\n\
         db = sqlite3.connect(sys.argv[1])\n\
         db.execute('create table t (k integer primary key, who text, seen integer)')\n\
         db.commit()\n\
         print('made')";
    assert_eq!(python(create, &here.path("shared.db")), "made");
    // Each workstation keeps one connection open and adds 15 rows, each in
    // a transaction that counts the rows it sees first: a connection that
    // read stale pages would lose the other's rows or count wrong.
    let writer = "import sqlite3, sys, time\n\
         db = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)\n\
         for i in range(15):\n\
         \x20   db.execute('begin immediate')\n\
         \x20   seen = db.execute('select count(*) from t').fetchone()[0]\n\
         \x20   db.execute('insert into t (who, seen) values (?, ?)', (sys.argv[2], seen))\n\
         \x20   db.execute('commit')\n\
         \x20   time.sleep(0.02)\n\
         print('done')";
    let start = |mounted: &Mounted, who: &str| {
        let child = Command::new("python3")
            .args(["-c", writer])
            .arg(mounted.path("shared.db"))
            .arg(who)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a writer");
        ChildGuard::new("sqlite writer", child)
    };
    let mut writers = [start(&here, "here"), start(&there, "there")];
    for writer in &mut writers {
        let status = writer.wait_exit(Duration::from_secs(120));
        assert!(status.success(), "a writer failed");
    }
    let check = "import sqlite3, sys\n\
         db = sqlite3.connect(sys.argv[1])\n\
         rows = db.execute('select seen from t order by k').fetchall()\n\
         print(len(rows), [s for (s,) in rows] == list(range(len(rows))))\n\
         print(db.execute('pragma integrity_check').fetchone()[0])";
    assert_eq!(python(check, &there.path("shared.db")), "30 True\nok");
    assert_eq!(python(check, &here.path("shared.db")), "30 True\nok");
}

#[test]
fn new_entries_belong_to_their_caller_and_setgid_directories_pass_their_group_on() {
    use std::os::unix::fs::MetadataExt;
    let cluster = cluster_of(1);
    // Other users reach the mountpoint, and the mount lets them in.
    fs::set_permissions(cluster.dir(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let mounted = Mounted::start_with(
        &cluster,
        &cluster.dir().join("mnt"),
        false,
        &["-o", "allow_other"],
    );
    fs::create_dir(mounted.path("shared")).expect("mkdir");
    fs::set_permissions(mounted.path("shared"), fs::Permissions::from_mode(0o1777))
        .expect("chmod 1777");
    fs::create_dir(mounted.path("team")).expect("mkdir");
    let status = Command::new("chown")
        .arg(":4321")
        .arg(mounted.path("team"))
        .status()
        .expect("chown");
    assert!(status.success());
    fs::set_permissions(mounted.path("team"), fs::Permissions::from_mode(0o2777))
        .expect("chmod 2777");
    // As uid and gid 65534 (nobody).
    let as_nobody = |script: &str| {
        let status = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                script,
            ])
            .current_dir(&mounted.mountpoint)
            .status()
            .expect("run setpriv");
        assert!(status.success(), "as nobody: {script}");
    };
    as_nobody("echo mine > shared/file && mkdir shared/dir && ln -s file shared/link && touch team/file && mkdir team/dir");
    for name in ["shared/file", "shared/dir"] {
        let metadata = fs::metadata(mounted.path(name)).expect("stat");
        assert_eq!((metadata.uid(), metadata.gid()), (65534, 65534), "{name}");
    }
    let link = fs::symlink_metadata(mounted.path("shared/link")).expect("lstat");
    assert_eq!(link.uid(), 65534, "the link is the caller's");
    // In a setgid directory: the directory's group, and setgid subdirectories.
    let file = fs::metadata(mounted.path("team/file")).expect("stat");
    assert_eq!((file.uid(), file.gid()), (65534, 4321));
    let directory = fs::metadata(mounted.path("team/dir")).expect("stat");
    assert_eq!(directory.gid(), 4321);
    assert_ne!(
        directory.mode() & libc::S_ISGID,
        0,
        "setgid passes on to directories"
    );
    // The owner may change its file's mode; the kernel checks against it.
    as_nobody("chmod 600 shared/file && cat shared/file > /dev/null");
    assert_eq!(
        fs::metadata(mounted.path("shared/file"))
            .expect("stat")
            .mode()
            & 0o7777,
        0o600
    );
}

#[test]
fn a_file_removed_while_open_lives_on_until_closed() {
    use std::os::unix::fs::MetadataExt;
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    // Python's TemporaryFile: created, removed at once, then used.
    let script = "import tempfile, sys\n\
         with tempfile.TemporaryFile(dir=sys.argv[1]) as f:\n\
         \x20   f.write(b'scratch data' * 1000)\n\
         \x20   f.seek(8)\n\
         \x20   print(f.read(4).decode())\n";
    assert_eq!(python(script, &mounted.mountpoint), "data");
    // An existing file removed while open: still read and written through
    // the descriptor, gone from the directory, and not back at the close.
    fs::write(mounted.path("old"), b"old contents").expect("write");
    {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(mounted.path("old"))
            .expect("open");
        fs::remove_file(mounted.path("old")).expect("rm while open");
        assert!(!mounted.path("old").exists());
        assert_eq!(file.metadata().expect("fstat").nlink(), 0);
        file.seek(SeekFrom::End(0)).expect("seek");
        file.write_all(b", more").expect("write after rm");
        file.seek(SeekFrom::Start(0)).expect("seek");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("read after rm");
        assert_eq!(text, "old contents, more");
    }
    assert!(
        !mounted.path("old").exists(),
        "not written back at the close"
    );
    // Open for reading only, then removed: still read, and fstat says so.
    fs::write(mounted.path("kept"), b"still here").expect("write");
    {
        let mut file = File::open(mounted.path("kept")).expect("open");
        fs::remove_file(mounted.path("kept")).expect("rm while open");
        // (Read at once: the master lets the minions delete the blocks of
        // a removed file at their next heartbeat; only the mount keeps
        // what it wrote itself.)
        let mut text = String::new();
        file.read_to_string(&mut text).expect("read after rm");
        assert_eq!(text, "still here");
        assert_eq!(file.metadata().expect("fstat").nlink(), 0);
    }
    fs::create_dir(mounted.path("d")).expect("mkdir");
    {
        let _open = File::create(mounted.path("d/new")).expect("create");
        fs::remove_file(mounted.path("d/new")).expect("rm a new file while open");
        fs::remove_dir(mounted.path("d")).expect("its directory is empty now");
    }
}

#[test]
fn fifos_sockets_and_device_nodes_are_entries_every_workstation_sees() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let cluster = cluster_of(1);
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    let status = Command::new("mkfifo")
        .arg(here.path("pipe"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let status = Command::new("mknod")
        .arg(here.path("null"))
        .args(["c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(status.success());
    let socket = std::os::unix::net::UnixListener::bind(here.path("sock")).expect("bind");
    drop(socket);
    wait_for(
        || there.path("sock").exists() || fs::symlink_metadata(there.path("sock")).is_ok(),
        Duration::from_secs(10),
        "the entries on the other mount",
    );
    let kinds = |mounted: &Mounted| {
        let pipe = fs::symlink_metadata(mounted.path("pipe")).expect("stat pipe");
        let null = fs::symlink_metadata(mounted.path("null")).expect("stat null");
        let sock = fs::symlink_metadata(mounted.path("sock")).expect("stat sock");
        (
            pipe.file_type().is_fifo(),
            null.file_type().is_char_device(),
            null.rdev(),
            sock.file_type().is_socket(),
        )
    };
    let expected_rdev = libc::makedev(1, 3);
    assert_eq!(kinds(&here), (true, true, expected_rdev, true));
    assert_eq!(kinds(&there), (true, true, expected_rdev, true));
    // A FIFO works as one on the machine that opens it.
    let writer = std::thread::spawn({
        let pipe = here.path("pipe");
        move || fs::write(pipe, b"through the pipe").expect("write the fifo")
    });
    assert_eq!(
        fs::read(here.path("pipe")).expect("read the fifo"),
        b"through the pipe"
    );
    writer.join().expect("writer");
    let listing = cluster.dfs_ok(["ls", "-l", "/"]);
    assert!(
        listing
            .lines()
            .any(|line| line.starts_with('p') && line.ends_with("pipe")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|line| line.starts_with('c') && line.ends_with("null")),
        "{listing}"
    );
    fs::remove_file(here.path("pipe")).expect("rm");
}

#[test]
fn what_was_written_is_what_stat_and_read_show_at_once() {
    use std::os::unix::fs::MetadataExt;
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let path = mounted.path("f");
    fs::write(&path, b"x").expect("write");
    assert_eq!(fs::metadata(&path).expect("stat").len(), 1);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .expect("open");
        file.write_all(b"hello").expect("write");
        assert_eq!(
            file.metadata().expect("fstat").size(),
            5,
            "fstat while written"
        );
    }
    // Right after the close, with the old size cached a moment ago.
    assert_eq!(fs::metadata(&path).expect("stat").len(), 5);
    assert_eq!(fs::read(&path).expect("read"), b"hello");
    // Written, removed, closed: it stays removed.
    {
        let mut file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all(b"HELLO").expect("write");
        fs::remove_file(&path).expect("rm while open");
    }
    assert!(!path.exists(), "not back after the close");
}

#[test]
fn a_compiler_and_git_work_in_the_mount() {
    let cluster = cluster_of(2);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let run = |script: &str| {
        let output = Command::new("sh")
            .args(["-c", script])
            .current_dir(&mounted.mountpoint)
            .output()
            .expect("run sh");
        assert!(
            output.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // The linker writes its output out of order: through the local copy.
    run("mkdir project && cd project && printf 'int main(void) { return 42; }\\n' > main.c && cc -o main main.c");
    let status = Command::new(mounted.path("project/main"))
        .status()
        .expect("run the program built in the mount");
    assert_eq!(status.code(), Some(42));
    // git: objects, an index, lock files renamed into place, a commit.
    let log = run(
        "cd project && git init -q && git add main.c && \
         git -c user.email=ann@lab -c user.name=ann commit -q -m first && \
         echo '/* two */' >> main.c && git -c user.email=ann@lab -c user.name=ann commit -qam second && \
         git log --format=%s && git status --porcelain && git fsck --no-progress",
    );
    assert_eq!(log, "second\nfirst\n?? main\n");
}

#[test]
fn descriptors_of_one_file_share_its_contents() {
    let cluster = cluster_of(2);
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    // Two descriptors of one process write different places: both stay.
    let path = here.path("shared");
    fs::write(&path, b"0123456789012345678901234567890").expect("write");
    {
        let mut first = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let mut second = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        first.write_all(b"AAAA").expect("write");
        second.seek(SeekFrom::Start(20)).expect("seek");
        second.write_all(b"BBBB").expect("write");
        // The other descriptor reads what the first wrote.
        let mut head = [0u8; 4];
        second.seek(SeekFrom::Start(0)).expect("seek");
        second.read_exact(&mut head).expect("read");
        assert_eq!(&head, b"AAAA");
    }
    assert_eq!(
        fs::read(&path).expect("read"),
        b"AAAA4567890123456789BBBB4567890"
    );
}

/// The pieces of a cluster file: (block id, bytes of it used), 0 for a hole.
fn pieces_of(cluster: &Cluster, path: &str) -> Vec<(u64, u64)> {
    let mut client = dfs_client::Client::connect(cluster.master_address()).expect("connect");
    let path = dfs_engine::path::DfsPath::parse(path).expect("path");
    client
        .get_blocks(&path)
        .expect("get blocks")
        .blocks
        .iter()
        .map(|piece| (piece.id.0, piece.length_bytes))
        .collect()
}

#[test]
fn writes_into_a_file_send_only_what_changed_as_a_patch() {
    let cluster = Cluster::start(ClusterOptions {
        minions: 2,
        replication: Some(2),
        block_size: Some("1M"),
        ..ClusterOptions::default()
    });
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let path = mounted.path("data");
    let size = 6 * 1024 * 1024 + 100;
    let mut model = random_bytes(61, size);
    fs::write(&path, &model).expect("write the file");
    let before = pieces_of(&cluster, "/data");
    assert_eq!(before.len(), 7, "written front to back: whole blocks");
    let inode = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&path).expect("stat").ino()
    };

    // Small writes here and there, and an append, through one descriptor.
    let edits: [(usize, &[u8]); 4] = [
        (10, b"head"),
        (3 * 1024 * 1024 - 2, b"across a block edge"),
        (5 * 1024 * 1024 + 7, b"late"),
        (size, b"appended"),
    ];
    {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("r+");
        for (offset, bytes) in edits {
            file.seek(SeekFrom::Start(offset as u64)).expect("seek");
            file.write_all(bytes).expect("write");
            let end = offset + bytes.len();
            if model.len() < end {
                model.resize(end, 0);
            }
            model[offset..end].copy_from_slice(bytes);
        }
        // Read back through the same descriptor before the commit.
        let mut back = vec![0u8; 19];
        file.seek(SeekFrom::Start(3 * 1024 * 1024 - 2))
            .expect("seek");
        file.read_exact(&mut back).expect("read back");
        assert_eq!(&back, b"across a block edge");
    }
    assert_eq!(
        fs::read(&path).expect("read"),
        model,
        "the mount reads the patched file"
    );
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(&path).expect("stat").ino(),
            inode,
            "the same file"
        );
    }
    // What was sent is what was written: the old blocks stay (in pieces),
    // new blocks hold only the written bytes.
    let after = pieces_of(&cluster, "/data");
    let old: std::collections::HashSet<u64> = before.iter().map(|&(id, _)| id).collect();
    let new_bytes: u64 = after
        .iter()
        .filter(|(id, _)| !old.contains(id))
        .map(|&(_, length)| length)
        .sum();
    let written: usize = edits.iter().map(|(_, bytes)| bytes.len()).sum();
    assert_eq!(new_bytes, written as u64, "pieces {after:?}");
    // Another client reads the same bytes.
    let copy = cluster.dir().join("copy");
    let status = Command::new(binary("dfs"))
        .args(["--master", cluster.master_address(), "get", "/data"])
        .arg(&copy)
        .status()
        .expect("run dfs get");
    assert!(status.success());
    assert_eq!(fs::read(&copy).expect("read the copy"), model);

    // Cut into the middle of a block, grown again (the gap reads as zeros),
    // then a sparse extension far past the end holds no data.
    let cut = 2 * 1024 * 1024 + 5;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|file| {
            file.set_len(cut as u64)?;
            file.set_len(cut as u64 + 1000)
        })
        .expect("ftruncate");
    model.truncate(cut);
    model.resize(cut + 1000, 0);
    assert_eq!(fs::read(&path).expect("read"), model);
    let status = Command::new("truncate")
        .args(["-s", "1G"])
        .arg(&path)
        .status()
        .expect("run truncate");
    assert!(status.success());
    assert_eq!(fs::metadata(&path).expect("stat").len(), 1 << 30);
    let pieces = pieces_of(&cluster, "/data");
    let (hole_id, hole_length) = *pieces.last().expect("pieces");
    assert_eq!(hole_id, 0, "the extension is a hole: {pieces:?}");
    assert_eq!(hole_length, (1 << 30) - (cut as u64 + 1000));
    let mut file = File::open(&path).expect("open");
    let mut tail = vec![1u8; 4096];
    file.seek(SeekFrom::Start((1 << 30) - 4096)).expect("seek");
    file.read_exact(&mut tail).expect("read the hole");
    assert!(tail.iter().all(|&b| b == 0));
}

#[test]
fn user_extended_attributes_are_kept_by_the_cluster() {
    let cluster = cluster_of(1);
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    fs::write(here.path("f"), b"data").expect("write");
    let set = "import os, sys\n\
        p = sys.argv[1]\n\
        os.setxattr(p, 'user.origin', b'lab 4')\n\
        os.setxattr(p, 'user.empty', b'')\n\
        try:\n    os.setxattr(p, 'user.origin', b'x', os.XATTR_CREATE)\n    print('created twice')\n\
        except FileExistsError:\n    pass\n\
        try:\n    os.setxattr(p, 'user.none', b'x', os.XATTR_REPLACE)\n    print('replaced nothing')\n\
        except OSError as e:\n    assert e.errno == 61, e\n\
        try:\n    os.setxattr(p, 'trusted.x', b'x')\n    print('set trusted')\n\
        except OSError as e:\n    assert e.errno == 95, e\n\
        print('ok')";
    assert_eq!(python(set, &here.path("f")), "ok");
    // Another workstation sees them.
    let get = "import os, sys\n\
        p = sys.argv[1]\n\
        print(sorted(os.listxattr(p)), os.getxattr(p, 'user.origin'), os.getxattr(p, 'user.empty'))";
    assert_eq!(
        python(get, &there.path("f")),
        "['user.empty', 'user.origin'] b'lab 4' b''"
    );
    // Removed there, gone here; a name never set is ENODATA.
    let remove = "import os, sys\n\
        p = sys.argv[1]\n\
        os.removexattr(p, 'user.empty')\n\
        try:\n    os.getxattr(p, 'user.empty')\n    print('still there')\n\
        except OSError as e:\n    assert e.errno == 61, e\n\
        print(os.listxattr(p))";
    assert_eq!(python(remove, &there.path("f")), "['user.origin']");
    assert_eq!(
        python(
            "import os, sys\nprint(os.listxattr(sys.argv[1]))",
            &here.path("f")
        ),
        "['user.origin']"
    );
    // They go with the file through a rename, and with a directory too.
    fs::rename(here.path("f"), here.path("g")).expect("rename");
    assert_eq!(
        python(
            "import os, sys\nprint(os.getxattr(sys.argv[1], 'user.origin'))",
            &there.path("g")
        ),
        "b'lab 4'"
    );
    fs::create_dir(here.path("d")).expect("mkdir");
    python(
        "import os, sys\nos.setxattr(sys.argv[1], 'user.d', b'1')",
        &here.path("d"),
    );
    assert_eq!(
        python(
            "import os, sys\nprint(os.listxattr(sys.argv[1]))",
            &there.path("d")
        ),
        "['user.d']"
    );
}

#[test]
fn a_file_a_commit_cut_into_many_pieces_is_compacted_in_the_background() {
    let cluster = Cluster::start(ClusterOptions {
        minions: 1,
        replication: Some(1),
        block_size: Some("1M"),
        ..ClusterOptions::default()
    });
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let path = mounted.path("f");
    let mut model = random_bytes(71, 4 << 20);
    fs::write(&path, &model).expect("write");
    // 200 one-byte changes here and there, committed by one close.
    let script = "import sys\n\
        with open(sys.argv[1], 'r+b') as f:\n    for i in range(200):\n        f.seek(i * 9000 + 5)\n        f.write(b'#')\n\
        print('ok')";
    assert_eq!(python(script, &path), "ok");
    for i in 0..200 {
        model[i * 9000 + 5] = b'#';
    }
    // Cut into some 400 pieces, then written again as four whole blocks.
    wait_for(
        || pieces_of(&cluster, "/f").len() == 4,
        Duration::from_secs(60),
        "the file to be compacted",
    );
    assert!(pieces_of(&cluster, "/f")
        .iter()
        .all(|&(_, length)| length == 1 << 20));
    assert_eq!(fs::read(&path).expect("read"), model);
    let log = fs::read_to_string(cluster.dir().join("mount-mnt.log")).expect("the mount's log");
    assert!(
        log.contains("compacted /f: ") && log.contains("pieces written again as 4"),
        "{log}"
    );
}

#[test]
fn files_open_for_writing_move_with_a_rename_and_one_renamed_over_lives_on() {
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    fs::create_dir(mounted.path("d")).expect("mkdir");
    // A new file, never closed, moves with its directory and commits there.
    let mut new = File::create(mounted.path("d/new")).expect("create");
    new.write_all(b"first ").expect("write");
    fs::rename(mounted.path("d"), mounted.path("e")).expect("rename the directory");
    new.write_all(b"second").expect("write after the rename");
    drop(new);
    assert_eq!(
        fs::read(mounted.path("e/new")).expect("read"),
        b"first second"
    );
    assert!(!mounted.path("d").exists());

    // A file open for writing, renamed (as a log is rotated), goes on.
    fs::write(mounted.path("log"), b"0123456789").expect("write");
    let mut log = OpenOptions::new()
        .append(true)
        .open(mounted.path("log"))
        .expect("open");
    log.write_all(b"ab").expect("append");
    fs::rename(mounted.path("log"), mounted.path("log.1")).expect("rotate");
    log.write_all(b"cd").expect("append after the rename");
    drop(log);
    assert_eq!(
        fs::read(mounted.path("log.1")).expect("read"),
        b"0123456789abcd"
    );
    assert!(!mounted.path("log").exists());

    // A file renamed over one open for writing: the open one lives on for
    // its descriptor and never overwrites what replaced it.
    fs::write(mounted.path("target"), b"old contents").expect("write");
    fs::write(mounted.path("incoming"), b"replacement").expect("write");
    let mut open = OpenOptions::new()
        .read(true)
        .write(true)
        .open(mounted.path("target"))
        .expect("open");
    open.write_all(b"OLD").expect("write");
    fs::rename(mounted.path("incoming"), mounted.path("target")).expect("rename over");
    open.seek(SeekFrom::Start(0)).expect("seek");
    let mut text = String::new();
    open.read_to_string(&mut text).expect("read the open one");
    assert_eq!(text, "OLD contents");
    open.write_all(b"!").expect("write more");
    drop(open);
    assert_eq!(
        fs::read(mounted.path("target")).expect("read"),
        b"replacement"
    );
}

#[test]
fn commits_follow_the_file_not_its_name() {
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    // One of two names removed while the file is open for writing: the
    // writes land in the file, seen through the other name.
    fs::write(mounted.path("a"), b"0123456789").expect("write");
    fs::hard_link(mounted.path("a"), mounted.path("b")).expect("link");
    let mut open = OpenOptions::new()
        .write(true)
        .open(mounted.path("a"))
        .expect("open");
    open.write_all(b"xy").expect("write");
    fs::remove_file(mounted.path("a")).expect("rm a");
    open.write_all(b"z").expect("write after the rm");
    drop(open);
    assert_eq!(fs::read(mounted.path("b")).expect("read b"), b"xyz3456789");
    assert!(!mounted.path("a").exists());

    // Renamed by another client while open here: the commit changes the
    // file at its new name and makes nothing at the old one.
    fs::write(mounted.path("c"), b"abcdef").expect("write");
    let mut open = OpenOptions::new()
        .write(true)
        .open(mounted.path("c"))
        .expect("open");
    open.write_all(b"AB").expect("write");
    cluster.dfs_ok(["mv", "/c", "/moved"]);
    drop(open);
    let mut client = dfs_client::Client::connect(cluster.master_address()).expect("connect");
    let moved = dfs_engine::path::DfsPath::parse("/moved").expect("path");
    let mut bytes = Vec::new();
    client
        .open(&moved)
        .expect("open /moved")
        .read_to_end(&mut bytes)
        .expect("read /moved");
    assert_eq!(bytes, b"ABcdef");
    assert!(cluster.dfs_err(["stat", "/c"]).contains("no such file"));
}

/// Files the namespace counts (also those kept open without a name).
fn file_count(cluster: &Cluster) -> u64 {
    match cluster
        .master_call(dfs_engine::msg::MasterRequest::ClusterReport)
        .expect("cluster report")
    {
        dfs_engine::msg::MasterResponse::Cluster { file_count, .. } => file_count,
        other => panic!("cluster report: {other:?}"),
    }
}

#[test]
fn a_file_removed_on_one_workstation_stays_readable_and_writable_where_it_is_open() {
    let mut cluster = Cluster::start(ClusterOptions {
        minions: 1,
        replication: Some(1),
        block_size: Some("1M"),
        master_arguments: vec!["--lock-lease", "2s"],
        ..ClusterOptions::default()
    });
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    let data = random_bytes(81, 3 * (1 << 20) + 17);
    fs::write(here.path("read"), &data).expect("write");
    fs::write(here.path("write"), b"0123456789").expect("write");
    let files = file_count(&cluster);

    let mut reader = File::open(here.path("read")).expect("open for reading");
    let mut head = vec![0u8; 1000];
    reader.read_exact(&mut head).expect("read the head");
    let mut writer = OpenOptions::new()
        .read(true)
        .write(true)
        .open(here.path("write"))
        .expect("open for writing");
    writer.write_all(b"ab").expect("write");
    // Removed on the other workstation: gone from every directory...
    fs::remove_file(there.path("read")).expect("rm there");
    fs::remove_file(there.path("write")).expect("rm there");
    wait_for(
        || !here.path("read").exists() && !here.path("write").exists(),
        Duration::from_secs(10),
        "the names to go here too",
    );
    // ... but open here: read to the end, written and read back.
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("read the rest of the removed file");
    head.extend_from_slice(&rest);
    assert!(head == data, "the removed file reads whole");
    writer.write_all(b"cd").expect("write more");
    writer.flush().expect("flush");
    writer.sync_all().expect("fsync commits the nameless file");
    writer.seek(SeekFrom::Start(0)).expect("seek");
    let mut text = String::new();
    writer.read_to_string(&mut text).expect("read back");
    assert_eq!(text, "abcd456789");
    assert_eq!(file_count(&cluster), files, "both kept while open");

    // A master restart: the mount holds its open files again in a new
    // session, and the master keeps them meanwhile.
    cluster.stop_master_gracefully();
    cluster.start_master();
    cluster.wait_for_live_minions(1);
    std::thread::sleep(Duration::from_secs(6));
    reader.seek(SeekFrom::Start(1 << 20)).expect("seek");
    let mut again = vec![0u8; 4096];
    reader
        .read_exact(&mut again)
        .expect("read after the restart");
    assert!(again[..] == data[1 << 20..(1 << 20) + 4096]);

    // Closed: both go, with their blocks.
    drop(reader);
    drop(writer);
    wait_for(
        || file_count(&cluster) == files - 2,
        Duration::from_secs(20),
        "the removed files to go once closed",
    );
}

#[test]
fn locks_held_through_a_master_restart_are_taken_again_before_anyone_else_gets_them() {
    let mut cluster = Cluster::start(ClusterOptions {
        minions: 1,
        replication: Some(1),
        master_arguments: vec!["--lock-lease", "2s"],
        ..ClusterOptions::default()
    });
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    fs::write(here.path("db"), b"database").expect("write");
    let mut holder = lock_holder(&here.path("db"), "lockf");
    assert!(!try_lock(&there.path("db"), "lockf"));

    cluster.stop_master_gracefully();
    cluster.start_master();
    cluster.wait_for_live_minions(1);
    // In the grace after the restart and after it: the holder's mount took
    // its lock again, so the other workstation never gets it.
    let until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < until {
        assert!(
            !try_lock(&there.path("db"), "lockf"),
            "the lock stayed with its holder through the restart"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    holder.signal(Signal::Kill);
    holder.wait_exit(Duration::from_secs(10));
    wait_for(
        || try_lock(&there.path("db"), "lockf"),
        Duration::from_secs(20),
        "the lock to be free once its holder exited",
    );
}

#[test]
fn times_are_kept_to_the_nanosecond() {
    let cluster = cluster_of(1);
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    fs::write(here.path("f"), b"data").expect("write");
    let status = Command::new("touch")
        .args(["-m", "-d", "2020-01-02 03:04:05.123456789 UTC"])
        .arg(here.path("f"))
        .status()
        .expect("run touch");
    assert!(status.success());
    let mtime = |path: &Path| {
        let output = Command::new("stat")
            .args(["-c", "%.9Y"])
            .arg(path)
            .output()
            .expect("run stat");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(mtime(&here.path("f")), "1577934245.123456789");
    assert_eq!(mtime(&there.path("f")), "1577934245.123456789");
    // cp -p out of the mount keeps it too.
    let copy = cluster.dir().join("copy");
    let status = Command::new("cp")
        .arg("-p")
        .arg(there.path("f"))
        .arg(&copy)
        .status()
        .expect("run cp");
    assert!(status.success());
    assert_eq!(mtime(&copy), "1577934245.123456789");
}

#[test]
fn a_long_listing_shows_each_entry_as_it_is() {
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    fs::create_dir(mounted.path("d")).expect("mkdir");
    for i in 0..50u64 {
        fs::write(
            mounted.path(&format!("d/f{i:02}")),
            vec![b'x'; (i * 37) as usize],
        )
        .expect("write");
    }
    // One being written here: the listing shows the size as written.
    let mut open = File::create(mounted.path("d/open")).expect("create");
    open.write_all(&[1u8; 1234]).expect("write");
    open.sync_all().expect("fsync");
    open.write_all(&[2u8; 100]).expect("write more");
    let listing = Command::new("ls")
        .args(["-ln"])
        .arg(mounted.path("d"))
        .output()
        .expect("run ls");
    let text = String::from_utf8_lossy(&listing.stdout);
    let sizes: std::collections::BTreeMap<String, u64> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 9).then(|| (fields[8].to_string(), fields[4].parse().unwrap_or(0)))
        })
        .collect();
    for i in 0..50u64 {
        assert_eq!(sizes.get(&format!("f{i:02}")), Some(&(i * 37)), "{text}");
    }
    assert_eq!(sizes.get("open"), Some(&1334), "{text}");
    drop(open);
    // Another workstation's change shows once the attribute cache (1 s) ran out.
    cluster.dfs_ok(["truncate", "-s", "5", "/d/f10"]);
    wait_for(
        || fs::metadata(mounted.path("d/f10")).is_ok_and(|m| m.len() == 5),
        Duration::from_secs(5),
        "the new size",
    );
}

#[test]
fn descriptors_on_one_workstation_see_each_others_writes_at_once() {
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let path = mounted.path("f");
    fs::write(&path, b"0123456789").expect("write");
    // A reader opened before the writer reads what the writer writes.
    let mut reader = File::open(&path).expect("open for reading");
    let mut first = [0u8; 2];
    reader.read_exact(&mut first).expect("read");
    assert_eq!(&first, b"01");
    let mut writer = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open for writing");
    writer.write_all(b"ab").expect("write");
    writer.seek(SeekFrom::Start(10)).expect("seek");
    writer.write_all(b"XYZ").expect("extend");
    let mut all = String::new();
    reader.seek(SeekFrom::Start(0)).expect("seek");
    reader.read_to_string(&mut all).expect("read again");
    assert_eq!(all, "ab23456789XYZ", "the reader sees the writer's bytes");
    // A fresh lookup of the name answers the size as written, also once
    // the kernel's entry has expired.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(fs::metadata(&path).expect("stat").len(), 13);
    drop(writer);
    drop(reader);

    // A new file committed, cut to nothing and removed while still open:
    // no crash, and the mount goes on.
    let mut empty = File::create(mounted.path("empty")).expect("create");
    empty.write_all(b"abc").expect("write");
    empty.sync_all().expect("fsync commits it");
    empty.set_len(0).expect("cut to nothing");
    fs::remove_file(mounted.path("empty")).expect("rm while open");
    empty.write_all(b"late").expect("write after the rm");
    empty
        .set_len(2)
        .expect("ftruncate of a file removed while open");
    assert_eq!(empty.metadata().expect("fstat").len(), 2);
    drop(empty);
    assert!(!mounted.path("empty").exists());
    fs::write(mounted.path("after"), b"still serving").expect("the mount goes on");
    assert_eq!(
        fs::read(mounted.path("after")).expect("read"),
        b"still serving"
    );
}

#[test]
fn a_new_file_still_being_written_is_listed_where_it_is_written() {
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    fs::create_dir(mounted.path("logs")).expect("mkdir");
    fs::write(mounted.path("logs/old"), b"closed").expect("write");
    let mut log = File::create(mounted.path("logs/new.log")).expect("create");
    log.write_all(b"still open").expect("write");
    let mut names: Vec<String> = fs::read_dir(mounted.path("logs"))
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["new.log", "old"]);
    let listing = Command::new("ls")
        .args(["-ln"])
        .arg(mounted.path("logs"))
        .output()
        .expect("run ls");
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(
        text.lines()
            .any(|line| line.ends_with(" new.log") && line.contains(" 10 ")),
        "{text}"
    );
    drop(log);
    let names: Vec<String> = fs::read_dir(mounted.path("logs"))
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names.len(), 2, "listed once when committed: {names:?}");
}

/// What the random-operation model test found, each as one case: a
/// listing after a new file's first commit names it by the number the
/// kernel knows it by (a later open joins its copy); a hard link made
/// while a file is being written keeps the size as written; a truncate by
/// path is seen by a descriptor that only reads; a directory whose file
/// open here was removed is empty for rmdir; and fstat of a file whose
/// name was removed while other names are left counts those names.
#[test]
fn descriptors_follow_the_file_through_links_listings_and_truncates() {
    use std::os::unix::fs::MetadataExt;
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    fs::create_dir(mounted.path("d")).expect("mkdir");

    // A new file, committed by fsync, listed, then opened again by name.
    let mut first = File::create(mounted.path("d/new")).expect("create");
    first.write_all(&[1u8; 5000]).expect("write");
    first.sync_all().expect("fsync");
    let listed: Vec<_> = fs::read_dir(mounted.path("d"))
        .expect("list")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(listed, ["new"]);
    let second = OpenOptions::new()
        .write(true)
        .open(mounted.path("d/new"))
        .expect("open again");
    first.set_len(0).expect("ftruncate");
    assert_eq!(second.metadata().expect("fstat").len(), 0, "one copy");
    drop(first);
    assert_eq!(second.metadata().expect("fstat").len(), 0);
    drop(second);
    assert_eq!(fs::metadata(mounted.path("d/new")).expect("stat").len(), 0);

    // A link while written: the size as written, two links.
    fs::write(mounted.path("d/linked"), b"committed").expect("write");
    let mut writer = OpenOptions::new()
        .write(true)
        .open(mounted.path("d/linked"))
        .expect("open");
    writer.write_all(&[2u8; 70_000]).expect("write");
    fs::hard_link(mounted.path("d/linked"), mounted.path("d/other")).expect("link");
    let status = writer.metadata().expect("fstat");
    assert_eq!((status.len(), status.nlink()), (70_000, 2));
    // The name it was opened by goes; the other is left and counted.
    fs::remove_file(mounted.path("d/linked")).expect("rm");
    let status = writer.metadata().expect("fstat");
    assert_eq!((status.len(), status.nlink()), (70_000, 1));
    drop(writer);
    assert_eq!(
        fs::read(mounted.path("d/other")).expect("read"),
        [2u8; 70_000]
    );

    // A reader sees a truncate made by path.
    fs::write(mounted.path("d/grown"), b"short").expect("write");
    let reader = File::open(mounted.path("d/grown")).expect("open");
    let status = Command::new("truncate")
        .args(["-s", "20000"])
        .arg(mounted.path("d/grown"))
        .status()
        .expect("run truncate");
    assert!(status.success());
    let mut buffer = vec![9u8; 100];
    let read = std::os::unix::fs::FileExt::read_at(&reader, &mut buffer, 10_000).expect("pread");
    assert_eq!((read, buffer == [0u8; 100]), (100, true));
    drop(reader);

    // A directory whose only file was removed while open here is empty.
    fs::create_dir(mounted.path("e")).expect("mkdir");
    fs::write(mounted.path("e/held"), b"held").expect("write");
    let held = OpenOptions::new()
        .read(true)
        .write(true)
        .open(mounted.path("e/held"))
        .expect("open");
    fs::remove_file(mounted.path("e/held")).expect("rm");
    fs::remove_dir(mounted.path("e")).expect("rmdir of the emptied directory");
    assert_eq!(held.metadata().expect("fstat").nlink(), 0);
    drop(held);
    drop(mounted);
    cluster.assert_clean_logs();
}

/// Two users on one workstation: the second cannot read, change or remove
/// the first's private file through the mount (the kernel's checks), nor
/// through `dfs` as that user (the master's, which agree with them).
#[test]
fn a_second_user_on_the_workstation_cannot_read_the_first_users_private_file() {
    let cluster = cluster_of(1);
    two_users_on_one_workstation(&cluster, &cluster.identity_env());
}

/// The same on a cluster with a key, the mount proving the workstation's
/// host identity (`dfs admin host add`): it asserts its callers' users.
#[test]
fn a_trusted_host_mounts_for_its_users_on_a_keyed_cluster() {
    let (keys, cluster) = dfs_testkit::keys::keyed_cluster(ClusterOptions {
        minions: 1,
        replication: Some(1),
        ..ClusterOptions::default()
    });
    let host = keys.path().join("host.identity");
    let issued = cluster
        .dfs_command()
        .args(["admin", "host", "add", "ws1", "--key"])
        .arg(keys.path().join("cluster.key"))
        .arg("--out")
        .arg(&host)
        .output()
        .expect("run dfs admin host add");
    assert!(issued.status.success(), "{issued:?}");
    two_users_on_one_workstation(&cluster, host.as_os_str());
    // The files the users made are theirs in the master's namespace.
    assert_eq!(cluster.stat("/diary").field("owner"), "4001");
}

fn two_users_on_one_workstation(cluster: &Cluster, identity: &std::ffi::OsStr) {
    fs::set_permissions(cluster.dir(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let mounted = Mounted::start_proving(
        cluster,
        &cluster.dir().join("mnt"),
        false,
        &["-o", "allow_other"],
        identity,
    );
    let as_user = |uid: u32, script: &str| {
        Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "sh",
                "-c",
                script,
            ])
            .current_dir(&mounted.mountpoint)
            .output()
            .expect("run setpriv")
    };
    // The cluster's root is open to all (sticky): user 4001 makes a file
    // only they may read.
    let made = as_user(4001, "echo private > diary && chmod 600 diary && cat diary");
    assert!(made.status.success(), "{made:?}");
    assert_eq!(String::from_utf8_lossy(&made.stdout), "private\n");
    for script in [
        "cat diary",
        "echo more >> diary",
        "rm -f diary",
        "chmod 644 diary",
    ] {
        let refused = as_user(4002, script);
        assert!(!refused.status.success(), "user 4002: {script} must fail");
        let text = String::from_utf8_lossy(&refused.stderr);
        assert!(
            text.contains("Permission denied") || text.contains("Operation not permitted"),
            "user 4002: {script}: {text}"
        );
    }
    // The master says the same to `dfs` as that user (the mount names
    // users without an account by their number).
    let mut command = cluster.dfs_command();
    command
        .args(["cat", "/diary"])
        .env("USER", "4002")
        .env_remove("LOGNAME");
    let output = command.output().expect("run dfs");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("/diary: permission denied"), "{text}");
    let mut command = cluster.dfs_command();
    command
        .args(["cat", "/diary"])
        .env("USER", "4001")
        .env_remove("LOGNAME");
    let output = command.output().expect("run dfs");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "private\n");
    drop(mounted);
    cluster.assert_clean_logs();
}

/// The master's access, modification and change times of `path`.
fn times_of(client: &mut dfs_client::Client, path: &str) -> (u64, u64, u64) {
    let status = client
        .stat(&dfs_engine::path::DfsPath::parse(path).expect("a path"))
        .expect("stat");
    (status.accessed_ns, status.modified_ns, status.changed_ns)
}

#[test]
fn opening_a_file_to_read_moves_its_access_time_as_relatime_does() {
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let quiet = Mounted::start_with(
        &cluster,
        &cluster.dir().join("quiet"),
        false,
        &["-o", "noatime"],
    );
    let read_only = Mounted::start_with(&cluster, &cluster.dir().join("ro"), false, &["-o", "ro"]);
    fs::write(mounted.path("f"), b"hello").expect("write");
    let mut client = dfs_client::Client::connect_with(
        cluster.master_address(),
        dfs_client::client::process_credentials(),
        None,
    )
    .expect("connect");
    let (accessed, modified, changed) = times_of(&mut client, "/f");
    std::thread::sleep(Duration::from_millis(20));
    // Through a noatime or a read-only mount a read moves nothing.
    assert_eq!(fs::read(quiet.path("f")).expect("read"), b"hello");
    assert_eq!(fs::read(read_only.path("f")).expect("read"), b"hello");
    assert_eq!(times_of(&mut client, "/f"), (accessed, modified, changed));
    // The first read after a write moves the access time past the
    // modification time, and moves neither of the others.
    assert_eq!(fs::read(mounted.path("f")).expect("read"), b"hello");
    let (read_at, after_modified, after_changed) = times_of(&mut client, "/f");
    assert!(
        read_at > accessed && read_at > modified,
        "{read_at} after {accessed}, {modified}"
    );
    assert_eq!((after_modified, after_changed), (modified, changed));
    // Read again within a day: it stays.
    std::thread::sleep(Duration::from_millis(20));
    fs::read(mounted.path("f")).expect("read");
    assert_eq!(times_of(&mut client, "/f").0, read_at);
    // Written again: the next read moves it again.
    std::thread::sleep(Duration::from_millis(20));
    OpenOptions::new()
        .append(true)
        .open(mounted.path("f"))
        .and_then(|mut file| file.write_all(b"!"))
        .expect("append");
    let (_, rewritten, _) = times_of(&mut client, "/f");
    assert!(rewritten > read_at);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(fs::read(mounted.path("f")).expect("read"), b"hello!");
    assert!(times_of(&mut client, "/f").0 > rewritten);
}

/// `SyncReplicas` requests the minions `indexes` of `cluster` served, from
/// their `/metrics`.
fn replica_syncs_on(cluster: &Cluster, indexes: &[usize]) -> f64 {
    indexes
        .iter()
        .map(|&index| {
            cluster
                .minion_http_address(index)
                .expect("a metrics address")
        })
        .map(|address| {
            dfs_testkit::metrics::scrape(&address)
                .value("dfs_minion_requests_total", &[("kind", "SyncReplicas")])
                .expect("a SyncReplicas count")
        })
        .sum()
}

fn replica_syncs(cluster: &Cluster) -> f64 {
    replica_syncs_on(cluster, &[0, 1, 2])
}

#[test]
fn a_close_makes_a_file_visible_everywhere_and_fsync_makes_it_durable_on_every_member() {
    let mut cluster = Cluster::start(ClusterOptions {
        minions: 3,
        replication: Some(3),
        minion_arguments: vec!["--http", "127.0.0.1:0"],
        ..ClusterOptions::default()
    });
    wait_for(
        || (0..3).all(|index| cluster.minion_http_address(index).is_some()),
        MOUNT_WAIT,
        "the minions' metrics addresses",
    );
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let local = cluster.dir().join("local");
    let got = cluster.dir().join("got");

    // Closed: another client sees it whole at once, and no member was
    // asked to flush it yet (its blocks wait in their memory, as HDFS's
    // and MooseFS's do at a close).
    let first = random_bytes(0x5c, 300_000);
    fs::write(mounted.path("a"), &first).expect("write a");
    fs::write(&local, &first).expect("write the local copy");
    cluster.dfs_ok(["get", "/a", &got.to_string_lossy()]);
    assert_files_equal(&local, &got);
    assert_eq!(replica_syncs(&cluster), 0.0);

    // fsync through a new read-only descriptor after the writer closed:
    // each of the three members flushes the block.
    File::open(mounted.path("a"))
        .expect("open a")
        .sync_all()
        .expect("fsync a");
    assert_eq!(replica_syncs(&cluster), 3.0);
    // Nothing is left to flush for it.
    File::open(mounted.path("a"))
        .expect("open a")
        .sync_all()
        .expect("fsync a again");
    assert_eq!(replica_syncs(&cluster), 3.0);

    // fsync through the descriptor that writes: committed and flushed; its
    // close after that flushes nothing more.
    {
        let mut file = File::create(mounted.path("b")).expect("create b");
        file.write_all(&first).expect("write b");
        file.sync_all().expect("fsync b");
        assert_eq!(replica_syncs(&cluster), 6.0);
    }
    assert_eq!(replica_syncs(&cluster), 6.0);

    // A file past what the mount holds locally goes on as a stream, whose
    // blocks are made durable as they are written: its fsync has nothing
    // left to flush.
    {
        let large = random_bytes(0x5d, (SPOOL_BYTES_MAX + (1 << 20)) as usize);
        let mut file = File::create(mounted.path("large")).expect("create large");
        file.write_all(&large).expect("write large");
        file.sync_all().expect("fsync large");
        assert_eq!(replica_syncs(&cluster), 6.0);
    }

    // Rewritten twice since its last fsync: the first rewrite's blocks are
    // freed, which the members answer as nothing to flush.
    fs::write(mounted.path("a"), b"second").expect("rewrite a");
    fs::write(mounted.path("a"), b"third").expect("rewrite a again");
    File::open(mounted.path("a"))
        .expect("open a")
        .sync_all()
        .expect("fsync a after rewrites");
    assert_eq!(fs::read(mounted.path("a")).expect("read a"), b"third");

    // A member gone since the close: the others flush it and fsync
    // succeeds (the lost copy is healing's).
    fs::write(mounted.path("c"), &first).expect("write c");
    cluster.kill_minion(2);
    let before = replica_syncs_on(&cluster, &[0, 1]);
    File::open(mounted.path("c"))
        .expect("open c")
        .sync_all()
        .expect("fsync c with a member down");
    assert_eq!(replica_syncs_on(&cluster, &[0, 1]) - before, 2.0);
}

#[test]
fn a_rename_the_master_refuses_gives_back_only_the_names_it_took() {
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    // x is written at p and removed while open: its close commits nothing.
    let mut x = File::create(mounted.path("p")).expect("create x");
    x.write_all(b"removed while open").expect("write x");
    fs::remove_file(mounted.path("p")).expect("remove x");
    // y is written at p after it, and still open.
    let mut y = File::create(mounted.path("p")).expect("create y");
    y.write_all(b"the file at p").expect("write y");
    // A rename onto p whose source another workstation removed after
    // this one looked it up: the master refuses it, and y keeps its name.
    fs::write(mounted.path("s"), b"source").expect("write s");
    fs::metadata(mounted.path("s")).expect("stat s");
    cluster.dfs_ok(["rm", "/s"]);
    let refused = fs::rename(mounted.path("s"), mounted.path("p")).expect_err("s is gone");
    assert_eq!(errno(&refused), libc::ENOENT);
    drop(y);
    drop(x);
    // x lost its name before the rename: it stays nameless, so its close
    // does not write it over y.
    assert_eq!(
        fs::read(mounted.path("p")).expect("read p"),
        b"the file at p"
    );
}

#[test]
fn a_large_file_whose_first_descriptor_closed_empty_still_streams_into_whole_blocks() {
    use std::os::unix::fs::MetadataExt;
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    // As `dd` opens its output: create, duplicate, close the first
    // descriptor (which commits the file, empty), write through the copy.
    let created = File::create(mounted.path("big")).expect("create");
    let copy = created.try_clone().expect("dup");
    drop(created);
    let mut client = dfs_client::Client::connect(cluster.master_address()).expect("connect");
    let big = dfs_engine::path::DfsPath::parse("/big").expect("path");
    let empty = client.stat(&big).expect("stat /big");
    assert_eq!(empty.size_bytes, 0);
    let data = random_bytes(0x5e, (SPOOL_BYTES_MAX + (6 << 20)) as usize);
    let mut copy = copy;
    copy.write_all(&data).expect("write");
    copy.sync_all().expect("fsync");
    drop(copy);
    // Streamed: whole blocks of the default size in order, then the rest;
    // held locally instead, it would have been committed a part at a time
    // past 64 MiB, leaving a short piece in the middle.
    let status = client.stat(&big).expect("stat /big");
    let block = status.block_bytes;
    let pieces = pieces_of(&cluster, "/big");
    let (last, whole) = pieces.split_last().expect("pieces");
    assert!(
        whole.iter().all(|&(_, length)| length == block),
        "{pieces:?}"
    );
    assert_eq!(whole.len() as u64 * block + last.1, data.len() as u64);
    // The same file (its inode kept), whole.
    assert_eq!(status.inode, empty.inode);
    assert_eq!(
        fs::metadata(mounted.path("big")).expect("stat").ino(),
        empty.inode
    );
    assert!(fs::read(mounted.path("big")).expect("read") == data);
}

#[test]
fn a_file_open_for_writing_commits_whatever_became_of_the_name_it_was_opened_by() {
    use std::os::unix::fs::FileExt;
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    fs::create_dir(mounted.path("d")).expect("mkdir d");
    fs::write(mounted.path("d/f"), b"first ").expect("write d/f");
    // Written through a descriptor opened as d/f.
    let mut f = OpenOptions::new()
        .append(true)
        .open(mounted.path("d/f"))
        .expect("open d/f");
    // Its name moves to another directory, and a directory takes d/f.
    fs::hard_link(mounted.path("d/f"), mounted.path("kept")).expect("link");
    fs::remove_file(mounted.path("d/f")).expect("unlink d/f");
    fs::create_dir(mounted.path("d/f")).expect("a directory where it was");
    f.write_all(b"second").expect("write");
    f.sync_all()
        .expect("fsync once a directory has the name it was opened by");
    // Then the directory it was opened in goes too.
    fs::remove_dir(mounted.path("d/f")).expect("rmdir d/f");
    fs::remove_dir(mounted.path("d")).expect("rmdir d");
    f.write_all(b" third").expect("write");
    drop(f);
    assert_eq!(
        fs::read(mounted.path("kept")).expect("read kept"),
        b"first second third"
    );
    assert_eq!(cluster.dfs_ok(["cat", "/kept"]), "first second third");

    // A file with no name left at all is still written while open here.
    let g = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(mounted.path("g"))
        .expect("create g");
    g.write_all_at(b"nameless", 0).expect("write");
    g.sync_all().expect("fsync");
    fs::remove_file(mounted.path("g")).expect("unlink g");
    fs::create_dir(mounted.path("g")).expect("a directory where it was");
    g.write_all_at(b"NAME", 0).expect("write");
    g.sync_all().expect("fsync of a file without a name");
    let mut read = [0u8; 8];
    g.read_exact_at(&mut read, 0).expect("read back");
    assert_eq!(&read, b"NAMEless");
}

/// Another workstation writes a file of 2 MiB (random, from `seed`) and
/// renames it to `path`, over whatever was there.
fn another_workstation_puts_its_own_file_at(cluster: &Cluster, path: &str, seed: u64) {
    let theirs = cluster.dir().join("theirs");
    fs::write(&theirs, random_bytes(seed, 2 << 20)).expect("write theirs");
    cluster.dfs_ok(["put", utf8(&theirs), "/other"]);
    cluster.dfs_ok(["mv", "/other", path]);
}

#[test]
fn a_new_file_reads_its_own_bytes_after_another_workstation_takes_its_name() {
    use std::os::unix::fs::FileExt;
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    // Created here and committed (fsync): its bytes are in the cluster now,
    // and a read goes there for them.
    let mine = random_bytes(0xa1, 2 << 20);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(mounted.path("f"))
        .expect("create f");
    file.write_all_at(&mine, 0).expect("write");
    file.sync_all().expect("fsync");
    another_workstation_puts_its_own_file_at(&cluster, "/f", 0xb2);
    // This descriptor still reads its own file, not the one at the name.
    let mut read = vec![0u8; mine.len()];
    file.read_exact_at(&mut read, 0).expect("read back");
    assert!(read == mine, "the descriptor read another file's bytes");
}

#[test]
fn a_new_file_still_open_here_takes_a_hard_link_and_stays_one_file() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let first = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(mounted.path("new"))
        .expect("create new");
    first
        .write_all_at(b"written before the link", 0)
        .expect("write");
    // Linked before anything committed it.
    fs::hard_link(mounted.path("new"), mounted.path("linked")).expect("link a new open file");
    let (new, linked) = (
        fs::metadata(mounted.path("new")).expect("stat new"),
        fs::metadata(mounted.path("linked")).expect("stat linked"),
    );
    assert_eq!(new.ino(), linked.ino(), "two names of one file");
    assert_eq!((new.nlink(), linked.nlink()), (2, 2));
    // A descriptor opened by the new name writes the same file.
    let second = OpenOptions::new()
        .write(true)
        .open(mounted.path("linked"))
        .expect("open linked");
    second.write_all_at(b"WRITTEN", 0).expect("write");
    let mut read = [0u8; 23];
    first.read_exact_at(&mut read, 0).expect("read");
    assert_eq!(&read, b"WRITTEN before the link");
    // The first name can go; the file stays, by the other.
    fs::remove_file(mounted.path("new")).expect("unlink new");
    first.write_all_at(b"K", 22).expect("write");
    assert_eq!(first.metadata().expect("fstat").nlink(), 1);
    drop(first);
    drop(second);
    assert_eq!(
        fs::read(mounted.path("linked")).expect("read linked"),
        b"WRITTEN before the linK"
    );
    assert_eq!(
        cluster.dfs_ok(["cat", "/linked"]),
        "WRITTEN before the linK"
    );
}

#[test]
fn a_new_file_committed_by_one_close_is_kept_for_its_other_descriptor() {
    use std::os::unix::fs::FileExt;
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let mine = random_bytes(0xc3, 2 << 20);
    let writer = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(mounted.path("f"))
        .expect("create f");
    let reader = File::open(mounted.path("f")).expect("open f again");
    writer.write_all_at(&mine, 0).expect("write");
    // The writer's close commits the file; the reader keeps it open.
    drop(writer);
    another_workstation_puts_its_own_file_at(&cluster, "/f", 0xd4);
    let mut read = vec![0u8; mine.len()];
    reader.read_exact_at(&mut read, 0).expect("read back");
    assert!(read == mine, "the descriptor read another file's bytes");
}

/// A shared, writable mapping of `length` bytes of `file`.
struct Mapping {
    address: *mut libc::c_void,
    length: usize,
}

impl Mapping {
    fn shared(file: &File, length: usize) -> std::io::Result<Mapping> {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh mapping of an open descriptor; it is only read
        // and written through `bytes`/`bytes_mut` within `length`, and
        // unmapped once, at drop.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping { address, length })
    }

    fn bytes(&self) -> Vec<u8> {
        // SAFETY: `length` bytes mapped at `address` (see `shared`).
        unsafe { std::slice::from_raw_parts(self.address as *const u8, self.length) }.to_vec()
    }

    fn write(&mut self, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= self.length);
        // SAFETY: within the mapping (asserted), which is writable.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                (self.address as *mut u8).add(offset),
                data.len(),
            );
        }
        // SAFETY: the whole mapping, synced before it is read elsewhere.
        let synced = unsafe { libc::msync(self.address, self.length, libc::MS_SYNC) };
        assert_eq!(synced, 0, "msync: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped by `shared`, unmapped only here.
        unsafe { libc::munmap(self.address, self.length) };
    }
}

#[test]
fn a_file_written_write_only_stays_one_file_for_its_other_descriptors_and_mappings() {
    use std::os::unix::fs::FileExt;
    let cluster = cluster_of(1);
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let length = 256 << 10;
    let first = random_bytes(0x51, length);
    // Write-only: written around the page cache.
    let writer = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(mounted.path("f"))
        .expect("create f");
    writer.write_all_at(&first, 0).expect("write");
    // A second descriptor, mapped shared while the first one writes on.
    let other = OpenOptions::new()
        .read(true)
        .write(true)
        .open(mounted.path("f"))
        .expect("open f again");
    let mut mapping = Mapping::shared(&other, length).expect("map f shared");
    assert!(mapping.bytes() == first, "the mapping shows other bytes");
    let second = random_bytes(0x52, 64 << 10);
    writer.write_all_at(&second, 100_000).expect("write again");
    let mut expected = first.clone();
    expected[100_000..100_000 + second.len()].copy_from_slice(&second);
    assert!(
        mapping.bytes() == expected,
        "the mapping kept bytes the writer replaced"
    );
    let mut read = vec![0u8; length];
    other.read_exact_at(&mut read, 0).expect("read");
    assert!(read == expected, "the other descriptor read stale bytes");
    // And the other way: what the mapping writes, the writer's file has.
    let third = random_bytes(0x53, 5000);
    mapping.write(7, &third);
    expected[7..7 + third.len()].copy_from_slice(&third);
    other.read_exact_at(&mut read, 0).expect("read after msync");
    assert!(read == expected, "a descriptor missed the mapping's write");
    drop(mapping);
    drop(other);
    drop(writer);
    let local = cluster.dir().join("f.got");
    cluster.dfs_ok(["get", "/f", utf8(&local)]);
    assert!(
        fs::read(&local).expect("read got") == expected,
        "the cluster has other bytes"
    );
}

/// How many of the first `length` bytes' pages of `file` the kernel's page
/// cache holds (mincore of a read-only mapping, which reads nothing).
fn resident_pages(file: &File, length: usize) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh read-only mapping, only passed to mincore and
    // unmapped before returning.
    let address = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            length,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert!(
        address != libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    let pages = length.div_ceil(4096);
    let mut vector = vec![0u8; pages];
    // SAFETY: `vector` has one byte per page of the mapping.
    let checked = unsafe { libc::mincore(address, length, vector.as_mut_ptr()) };
    let error = std::io::Error::last_os_error();
    // SAFETY: mapped above, unmapped once.
    unsafe { libc::munmap(address, length) };
    assert_eq!(checked, 0, "mincore: {error}");
    vector.iter().filter(|byte| *byte & 1 == 1).count()
}

#[test]
fn an_unchanged_file_keeps_its_cached_pages_across_opens_and_a_changed_one_is_read_anew() {
    let cluster = cluster_of(1);
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    let length = 1 << 20;
    let first = random_bytes(0x61, length);
    fs::write(there.path("f"), &first).expect("write f there");
    assert!(fs::read(here.path("f")).expect("read f") == first);
    // Opened again, unchanged: what the first read cached is still there.
    let again = File::open(here.path("f")).expect("open f again");
    assert_eq!(
        resident_pages(&again, length),
        length / 4096,
        "the open dropped the pages of an unchanged file"
    );
    drop(again);
    // Another workstation rewrites it, same size: the next open reads the
    // new contents, not the pages of the old ones.
    let second = random_bytes(0x62, length);
    fs::write(there.path("f"), &second).expect("rewrite f there");
    assert!(
        fs::read(here.path("f")).expect("read f anew") == second,
        "read the old contents from the page cache"
    );
    // And a change made here, through the mount, as well.
    let third = random_bytes(0x63, length);
    {
        use std::os::unix::fs::FileExt;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(here.path("f"))
            .expect("open f for writing");
        file.write_all_at(&third[..4096], 0).expect("write here");
    }
    let mut expected = second.clone();
    expected[..4096].copy_from_slice(&third[..4096]);
    assert!(fs::read(here.path("f")).expect("read f") == expected);
    assert!(fs::read(there.path("f")).expect("read f there") == expected);
}

#[test]
fn pages_of_a_file_are_not_kept_for_another_file_that_took_its_name_elsewhere() {
    use std::os::unix::fs::FileExt;
    let cluster = cluster_of(1);
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    let old = vec![b'O'; 64 << 10];
    let new = vec![b'N'; 64 << 10];
    fs::write(there.path("x"), &old).expect("write x there");
    // Looked up here: the kernel's entry for x names the old file for a
    // while (the entry lifetime), also once x is another file.
    let reader = File::open(here.path("x")).expect("open the old x");
    fs::rename(there.path("x"), there.path("z")).expect("mv x z there");
    fs::write(there.path("x"), &new).expect("write a new x there");
    // Opened here through the old entry: the new file is read, under the
    // old file's kernel number...
    drop(File::open(here.path("x")).expect("open x"));
    // ...whose pages the old file's reader fills.
    let mut read = vec![0u8; old.len()];
    reader.read_exact_at(&mut read, 0).expect("read the old x");
    assert!(read == old, "the old descriptor read other bytes");
    assert!(
        fs::read(here.path("x")).expect("read x") == new,
        "read the old file's pages for the new file"
    );
}

/// Something that has the kernel cache a file's size.
type CacheSize = fn(&Path);

/// Appends `bytes` to the file `name` through `mounted`.
fn append_to(mounted: &Mounted, name: &str, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .append(true)
        .open(mounted.path(name))
        .unwrap_or_else(|e| panic!("open {name} to append: {e}"));
    file.write_all(bytes).expect("append");
}

#[test]
fn an_open_sees_what_another_workstation_appended_whatever_cached_the_old_size_here() {
    let cluster = cluster_of(1);
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    // The kernel here caches a file's size for the attribute lifetime,
    // from a read (and its close) as from a stat.
    let ways: [(&str, CacheSize); 2] = [
        ("a read", |path| {
            assert!(!fs::read(path).expect("read").is_empty())
        }),
        ("a stat", |path| {
            assert!(fs::metadata(path).expect("stat").len() > 0)
        }),
    ];
    for (index, (how, cache_size)) in ways.into_iter().enumerate() {
        // An open after the other workstation's close reads all of it...
        let name = &format!("read{index}");
        fs::write(there.path(name), [b'x'; 100]).expect("write there");
        cache_size(&here.path(name));
        append_to(&there, name, &[b'y'; 100]);
        let read = fs::read(here.path(name)).expect("read");
        assert_eq!(
            read.len(),
            200,
            "after {how}: the read stopped at the old end"
        );
        // ...and an append here (a bare O_APPEND write: nothing asks for
        // the size first) goes after what the other one appended.
        let name = &format!("append{index}");
        fs::write(there.path(name), [b'x'; 100]).expect("write there");
        cache_size(&here.path(name));
        append_to(&there, name, &[b'z'; 100]);
        append_to(&here, name, &[b'w'; 50]);
        let mut expected = vec![b'x'; 100];
        expected.extend([b'z'; 100]);
        expected.extend([b'w'; 50]);
        let local = cluster.dir().join(format!("{name}.got"));
        cluster.dfs_ok(["get", &format!("/{name}"), utf8(&local)]);
        assert!(
            fs::read(&local).expect("read got") == expected,
            "after {how}: an append here overwrote the other workstation's"
        );
    }
}

#[test]
fn an_open_here_joins_what_another_workstation_committed_while_a_reader_kept_the_file_open() {
    let cluster = cluster_of(1);
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    fs::write(there.path("log"), b"start\n").expect("write log there");
    // A reader here (as tail -f) keeps the file open throughout.
    let reader = File::open(here.path("log")).expect("open log");
    append_to(&here, "log", b"here 1\n");
    append_to(&there, "log", b"there 1\n");
    append_to(&here, "log", b"here 2\n");
    let mut read = String::new();
    File::open(here.path("log"))
        .expect("open log again")
        .read_to_string(&mut read)
        .expect("read log");
    drop(reader);
    assert_eq!(read, "start\nhere 1\nthere 1\nhere 2\n");
    let local = cluster.dir().join("log.got");
    cluster.dfs_ok(["get", "/log", utf8(&local)]);
    assert_eq!(
        fs::read_to_string(&local).expect("read got"),
        "start\nhere 1\nthere 1\nhere 2\n",
        "an append here went into an old copy of the file"
    );
}

#[test]
fn a_truncating_open_that_joins_a_file_open_here_cuts_what_another_workstation_wrote() {
    let cluster = cluster_of(1);
    let here = Mounted::start(&cluster, &cluster.dir().join("here"));
    let there = Mounted::start(&cluster, &cluster.dir().join("there"));
    fs::write(there.path("f"), b"").expect("write an empty f there");
    // Open here, empty, for the whole test.
    let kept = OpenOptions::new()
        .read(true)
        .write(true)
        .open(here.path("f"))
        .expect("open f here");
    fs::write(there.path("f"), b"written there").expect("write f there");
    // `: > f` here: the file is empty afterwards, everywhere.
    drop(File::create(here.path("f")).expect("truncate f here"));
    drop(kept);
    assert_eq!(fs::read(there.path("f")).expect("read f there"), b"");
}
