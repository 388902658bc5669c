//! Real programs on `dfs-mount`, and faults under them: `rsync -a` of a
//! tree in and out (bytes, modes, symbolic links and times kept, a second
//! run transfers nothing), `make` of a small C project (rebuilds only what
//! changed), a writer that appends and fsyncs through a minion's `kill -9`
//! and a master restart (loses nothing it wrote), and SIGTERM to a mount
//! whose files are still open (detached at once, the files committed when
//! their process closes them).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dfs_testkit::{random_bytes, utf8, wait_for, ChildGuard, Cluster, ClusterOptions, Signal};

mod support;

use support::{is_mounted, Mounted, MOUNT_WAIT};

/// How long a program run in the mount (rsync of the whole tree, make) may take.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `command` (at most `PROGRAM_TIMEOUT`), asserts it succeeded and
/// returns its standard output.
fn run_ok(command: &mut Command, what: &str) -> String {
    let output: Output = dfs_testkit::run(command, None, PROGRAM_TIMEOUT);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The lines a child prints, one by one, each with when it arrived, read
/// by a thread.
struct Lines {
    receiver: mpsc::Receiver<(Instant, String)>,
}

impl Lines {
    fn of(stdout: ChildStdout) -> Lines {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Lines { receiver }
    }

    /// The next line and when it arrived; panics naming `what` if none
    /// comes within `timeout`.
    fn next_timed(&self, timeout: Duration, what: &str) -> (Instant, String) {
        self.receiver
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no line from {what} within {timeout:?}: {e}"))
    }

    fn next(&self, timeout: Duration, what: &str) -> String {
        self.next_timed(timeout, what).1
    }
}

// --- rsync ---

/// Sets a path's modification time (not following a symbolic link) to
/// `seconds` since the epoch, as `touch -h -d @SECONDS` does.
fn set_mtime(path: &Path, seconds: u64) {
    let status = Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{seconds}"))
        .arg(path)
        .status()
        .expect("run touch");
    assert!(
        status.success(),
        "touch -h -d @{seconds} {}",
        path.display()
    );
}

/// A tree of a few hundred files in nested directories: random sizes up to
/// 200 KiB (some empty), modes 0600 to 0775, a third of the files
/// and every directory with a modification time in the past, and two
/// symbolic links (one into the tree, one dangling).
fn make_tree(root: &Path) {
    const FILES: u64 = 300;
    const SIZE_MAX_BYTES: u64 = 200 * 1024;
    let directories = [
        "",
        "src",
        "src/core",
        "src/core/deep",
        "src/util",
        "docs",
        "docs/img",
        "data",
        "data/a",
        "data/a/b",
        "data/a/b/c",
        "private",
    ];
    // Group-writable ones too, which a umask of 022 would change.
    let modes = [0o600, 0o640, 0o644, 0o664, 0o755, 0o775];
    // The tree's shape, from a fixed seed.
    let mut dice = dfs_testkit::seeded::SplitMix64(20_240_601);
    for directory in directories {
        fs::create_dir_all(root.join(directory)).expect("create a source directory");
    }
    for index in 0..FILES {
        let directory = directories[dice.below(directories.len() as u64) as usize];
        let path = root.join(directory).join(format!("file-{index:03}.dat"));
        let size = if index % 40 == 0 {
            0
        } else {
            dice.below(SIZE_MAX_BYTES + 1)
        };
        fs::write(&path, random_bytes(index + 1, size as usize)).expect("write a source file");
        let mode = modes[dice.below(modes.len() as u64) as usize];
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod a source file");
        if dice.below(3) == 0 {
            set_mtime(&path, 1_000_000_000 + dice.below(600_000_000));
        }
    }
    std::os::unix::fs::symlink("../data/a/file-target", root.join("src/link-into-tree"))
        .expect("make a symbolic link");
    fs::write(root.join("data/a/file-target"), b"the link's target\n").expect("write");
    set_mtime(&root.join("data/a/file-target"), 1_300_000_000);
    set_mtime(&root.join("src/link-into-tree"), 1_200_000_000);
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("docs/dangling"))
        .expect("make a dangling symbolic link");
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o700))
        .expect("chmod a directory");
    fs::set_permissions(root.join("data/a/b"), fs::Permissions::from_mode(0o2775))
        .expect("chmod a directory");
    // Directories last, deepest first, once nothing changes inside them.
    for (index, directory) in directories.iter().enumerate().rev() {
        set_mtime(&root.join(directory), 1_100_000_000 + index as u64 * 86_400);
    }
}

/// What a tree entry is, as compared.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Directory,
    /// Length and an FNV-1a hash of the bytes.
    File(u64, u64),
    Link(PathBuf),
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    /// Permission bits (none for links: theirs are always 0777).
    mode: u32,
    /// Whole seconds.
    mtime_seconds: i64,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every entry under `root` (itself as ""), by relative path.
fn manifest(root: &Path) -> BTreeMap<String, Entry> {
    fn walk(root: &Path, relative: &Path, into: &mut BTreeMap<String, Entry>) {
        let path = root.join(relative);
        let metadata =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let kind = if metadata.file_type().is_symlink() {
            Kind::Link(
                fs::read_link(&path).unwrap_or_else(|e| panic!("readlink {}: {e}", path.display())),
            )
        } else if metadata.is_dir() {
            Kind::Directory
        } else {
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            assert_eq!(
                bytes.len() as u64,
                metadata.len(),
                "{}: size",
                path.display()
            );
            Kind::File(metadata.len(), fnv1a(&bytes))
        };
        let is_link = matches!(kind, Kind::Link(_));
        into.insert(
            relative.to_string_lossy().into_owned(),
            Entry {
                kind,
                mode: if is_link { 0 } else { metadata.mode() & 0o7777 },
                mtime_seconds: metadata.mtime(),
            },
        );
        if metadata.is_dir() {
            let entries =
                fs::read_dir(&path).unwrap_or_else(|e| panic!("list {}: {e}", path.display()));
            for entry in entries {
                let entry = entry.unwrap_or_else(|e| panic!("list {}: {e}", path.display()));
                walk(root, &relative.join(entry.file_name()), into);
            }
        }
    }
    let mut entries = BTreeMap::new();
    walk(root, Path::new(""), &mut entries);
    entries
}

/// Panics listing (the first few) differences between two trees.
fn assert_same_tree(expected: &Path, actual: &Path) {
    let (want, got) = (manifest(expected), manifest(actual));
    let mut differences = Vec::new();
    for (path, entry) in &want {
        match got.get(path) {
            None => differences.push(format!("{path:?}: missing")),
            Some(other) if other != entry => {
                differences.push(format!("{path:?}: expected {entry:?}, found {other:?}"))
            }
            Some(_) => {}
        }
    }
    for path in got.keys().filter(|path| !want.contains_key(*path)) {
        differences.push(format!("{path:?}: not in {}", expected.display()));
    }
    assert!(
        differences.is_empty(),
        "{} differs from {} in {} entries (of {}), e.g.:\n{}",
        actual.display(),
        expected.display(),
        differences.len(),
        want.len(),
        differences[..differences.len().min(20)].join("\n")
    );
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(expected)
        .arg(actual)
        .output()
        .expect("run diff");
    assert!(
        diff.status.success(),
        "diff -r {} {}: {}{}",
        expected.display(),
        actual.display(),
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
}

fn rsync(source: &Path, target: &Path, itemize: bool) -> String {
    let mut command = Command::new("rsync");
    command.arg("-a");
    if itemize {
        command.arg("--itemize-changes");
    }
    // Trailing slashes: the contents of `source` into `target`.
    command
        .arg(format!("{}/", utf8(source)))
        .arg(format!("{}/", utf8(target)));
    run_ok(&mut command, &format!("rsync -a {source:?} {target:?}"))
}

#[test]
fn rsync_copies_a_tree_in_and_out_and_a_second_run_transfers_nothing() {
    let cluster = Cluster::start(ClusterOptions {
        minions: 2,
        replication: Some(2),
        ..ClusterOptions::default()
    });
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let source = cluster.dir().join("source");
    make_tree(&source);
    // 300 files, the links' target, two links, twelve directories.
    assert_eq!(manifest(&source).len(), 315);
    let into = mounted.path("copy");
    let out = cluster.dir().join("out");

    let started = Instant::now();
    rsync(&source, &into, false);
    eprintln!("rsync into the mount: {:?}", started.elapsed());
    assert_same_tree(&source, &into);

    let started = Instant::now();
    rsync(&into, &out, false);
    eprintln!("rsync out of the mount: {:?}", started.elapsed());
    assert_same_tree(&source, &out);

    // Nothing changed: a second run finds every file up to date, both ways
    // (rsync's quick check compares sizes and whole seconds of mtime; the
    // mount keeps milliseconds).
    let again = rsync(&source, &into, true);
    assert!(
        again.is_empty(),
        "a second rsync into the mount changed {} entries:\n{}",
        again.lines().count(),
        again.lines().take(20).collect::<Vec<_>>().join("\n")
    );
    let back = rsync(&into, &out, true);
    assert!(
        back.is_empty(),
        "a second rsync out of the mount changed {} entries:\n{}",
        back.lines().count(),
        back.lines().take(20).collect::<Vec<_>>().join("\n")
    );

    // The check is live: one file's time changed at the source is the one
    // change the next run makes.
    let changed = manifest(&source)
        .into_iter()
        .find(|(_, entry)| matches!(entry.kind, Kind::File(size, _) if size > 0))
        .map(|(path, _)| path)
        .expect("a file in the tree");
    set_mtime(&source.join(&changed), 1_234_567_890);
    let again = rsync(&source, &into, true);
    assert_eq!(
        again.lines().collect::<Vec<_>>(),
        [format!(">f..t...... {changed}")],
        "a run after one file's time changed"
    );
    assert_eq!(
        fs::symlink_metadata(into.join(&changed))
            .expect("stat the changed file in the mount")
            .mtime(),
        1_234_567_890
    );
    assert!(rsync(&source, &into, true).is_empty(), "and then nothing");
    drop(mounted);
    cluster.assert_clean_logs();
}

// --- make ---

const MAKEFILE: &str = "\
CC = cc
CFLAGS = -O0 -Wall -Werror

prog: main.o greet.o count.o
\t$(CC) -o prog main.o greet.o count.o

main.o: main.c project.h
\t$(CC) $(CFLAGS) -c main.c

greet.o: greet.c project.h
\t$(CC) $(CFLAGS) -c greet.c

count.o: count.c project.h
\t$(CC) $(CFLAGS) -c count.c

clean:
\trm -f prog main.o greet.o count.o

.PHONY: clean
";

const PROJECT_H: &str = "\
#ifndef PROJECT_H
#define PROJECT_H
const char *greeting(const char *name);
int count_words(const char *text);
#endif
";

const MAIN_C: &str = "\
#include <stdio.h>
#include \"project.h\"

int main(void) {
    printf(\"%s, %d words\\n\", greeting(\"mount\"), count_words(\"one two  three four\"));
    return 0;
}
";

const GREET_C: &str = "\
#include <stdio.h>
#include \"project.h\"

const char *greeting(const char *name) {
    static char buffer[64];
    snprintf(buffer, sizeof buffer, \"hello %s\", name);
    return buffer;
}
";

const COUNT_C: &str = "\
#include \"project.h\"

int count_words(const char *text) {
    int words = 0, inside = 0;
    for (; *text; text++) {
        if (*text == ' ') {
            inside = 0;
        } else if (!inside) {
            inside = 1;
            words++;
        }
    }
    return words;
}
";

const COMPILE: &str = "cc -O0 -Wall -Werror -c";
const LINK: &str = "cc -o prog main.o greet.o count.o";

#[test]
fn make_builds_a_c_project_in_the_mount_and_rebuilds_only_what_changed() {
    let cluster = Cluster::start(ClusterOptions {
        minions: 2,
        replication: Some(2),
        ..ClusterOptions::default()
    });
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let project = mounted.path("project");
    fs::create_dir(&project).expect("mkdir the project");
    for (name, text) in [
        ("Makefile", MAKEFILE),
        ("project.h", PROJECT_H),
        ("main.c", MAIN_C),
        ("greet.c", GREET_C),
        ("count.c", COUNT_C),
    ] {
        fs::write(project.join(name), text).expect("write a project file");
    }
    let make = |target: Option<&str>| -> Vec<String> {
        let mut command = Command::new("make");
        command
            .current_dir(&project)
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL")
            .env("LC_ALL", "C");
        command.args(target);
        run_ok(&mut command, &format!("make {}", target.unwrap_or("")))
            .lines()
            .map(str::to_string)
            .collect()
    };
    let run_program = || {
        run_ok(
            &mut Command::new(project.join("prog")),
            "the program built in the mount",
        )
    };
    let compile = |file: &str| format!("{COMPILE} {file}");
    // Make compares modification times: the next change comes later than
    // what the last build wrote, whatever the clock's granularity.
    let later = || std::thread::sleep(Duration::from_millis(1100));

    let started = Instant::now();
    assert_eq!(
        make(None),
        [
            compile("main.c"),
            compile("greet.c"),
            compile("count.c"),
            LINK.to_string()
        ]
    );
    eprintln!("the first build: {:?}", started.elapsed());
    assert_eq!(run_program(), "hello mount, 4 words\n");
    assert_eq!(make(None), ["make: 'prog' is up to date."]);

    // Touching one source rebuilds its object and the link, nothing else.
    later();
    run_ok(
        Command::new("touch").arg(project.join("greet.c")),
        "touch greet.c",
    );
    assert_eq!(make(None), [compile("greet.c"), LINK.to_string()]);
    assert_eq!(make(None), ["make: 'prog' is up to date."]);

    // Changing it (sed -i writes a new file and renames it over the old).
    later();
    run_ok(
        Command::new("sed")
            .args(["-i", "s/hello %s/hi %s/"])
            .arg(project.join("greet.c")),
        "sed -i greet.c",
    );
    assert_eq!(make(None), [compile("greet.c"), LINK.to_string()]);
    assert_eq!(run_program(), "hi mount, 4 words\n");

    // The header: every object.
    later();
    run_ok(
        Command::new("touch").arg(project.join("project.h")),
        "touch project.h",
    );
    assert_eq!(
        make(None),
        [
            compile("main.c"),
            compile("greet.c"),
            compile("count.c"),
            LINK.to_string()
        ]
    );
    assert_eq!(run_program(), "hi mount, 4 words\n");

    assert_eq!(make(Some("clean")), ["rm -f prog main.o greet.o count.o"]);
    let mut left: Vec<String> = fs::read_dir(&project)
        .expect("list the project")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["Makefile", "count.c", "greet.c", "main.c", "project.h"]
    );
    let listed = cluster.dfs_ok(["ls", "/project"]);
    assert!(
        !listed.contains("prog") && !listed.contains(".o"),
        "{listed}"
    );
    drop(mounted);
    cluster.assert_clean_logs();
}

// --- a writer under faults ---

/// Appends numbered lines to a file (argv[1]) with one write each, fsyncs
/// after every 50 and prints `synced N`; once the file argv[2] exists it
/// finishes the current 50, fsyncs, closes and prints `done N`.
const APPENDER: &str = "\
import os, sys, time
path, stop = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n = 0
while True:
    n += 1
    os.write(fd, ('%08d ' % n + 'x' * 90 + '\\n').encode())
    if n % 50 == 0:
        os.fsync(fd)
        print('synced %d' % n, flush=True)
        if os.path.exists(stop):
            break
    time.sleep(0.001)
os.close(fd)
print('done %d' % n, flush=True)
";

fn appended_lines(count: u64) -> String {
    (1..=count)
        .map(|n| format!("{n:08} {}\n", "x".repeat(90)))
        .collect()
}

fn parse_synced(line: &str) -> u64 {
    line.strip_prefix("synced ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the appender printed {line:?}"))
}

/// How far the appender got: lines fsynced, when the last fsync
/// returned, and the longest time between two fsyncs since `reset`.
struct Progress {
    synced: u64,
    last_at: Instant,
    longest: Duration,
}

impl Progress {
    /// Reads progress until `target` lines are fsynced.
    fn wait(&mut self, lines: &Lines, target: u64, what: &str) {
        while self.synced < target {
            let (at, line) = lines.next_timed(Duration::from_secs(120), what);
            self.note(at, &line);
        }
    }

    fn note(&mut self, at: Instant, line: &str) {
        self.synced = parse_synced(line);
        self.longest = self.longest.max(at.duration_since(self.last_at));
        self.last_at = at;
    }

    /// The longest pause since the last call.
    fn reset(&mut self) -> Duration {
        std::mem::take(&mut self.longest)
    }
}

#[test]
fn a_writer_appending_and_fsyncing_survives_a_minion_kill_and_a_master_restart() {
    let mut cluster = Cluster::start(ClusterOptions {
        minions: 3,
        replication: Some(3),
        ..ClusterOptions::default()
    });
    let mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    let stop = cluster.dir().join("stop-writing");
    let mut command = Command::new("python3");
    command
        .args(["-c", APPENDER])
        .arg(mounted.path("log.txt"))
        .arg(&stop)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut writer = ChildGuard::new("the appender", command.spawn().expect("start python3"));
    let lines = Lines::of(writer.child().stdout.take().expect("the appender's stdout"));
    let started = Instant::now();
    let mut progress = Progress {
        synced: 0,
        last_at: Instant::now(),
        longest: Duration::ZERO,
    };

    progress.wait(&lines, 500, "the appender before the kill");
    progress.reset();
    cluster.kill_minion(1);
    progress.wait(&lines, 1000, "the appender after a minion's kill -9");
    eprintln!(
        "longest pause between fsyncs around the minion's kill: {:?}",
        progress.reset()
    );
    let down = Instant::now();
    cluster.stop_master_gracefully();
    cluster.start_master();
    eprintln!("the master was down for {:?}", down.elapsed());
    let target = progress.synced + 500;
    progress.wait(&lines, target, "the appender after the master's restart");
    eprintln!(
        "longest pause between fsyncs around the master's restart: {:?}",
        progress.reset()
    );
    File::create(&stop).expect("create the stop file");
    // At most one more fsync comes before the appender sees the file.
    let done = loop {
        let (at, line) = lines.next_timed(Duration::from_secs(120), "the appender's end");
        if let Some(count) = line.strip_prefix("done ") {
            break count
                .parse::<u64>()
                .unwrap_or_else(|e| panic!("the appender printed {line:?}: {e}"));
        }
        progress.note(at, &line);
    };
    let status = writer.wait_exit(Duration::from_secs(60));
    let mut stderr = String::new();
    if let Some(mut pipe) = writer.child().stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    assert!(status.success(), "the appender failed ({status}): {stderr}");
    assert!(stderr.is_empty(), "the appender complained: {stderr}");
    // It stops right after an fsync: every line it wrote was fsynced.
    assert_eq!(done, progress.synced, "the last line written was fsynced");
    eprintln!("{done} lines appended in {:?}", started.elapsed());

    let expected = appended_lines(done);
    let through_mount = fs::read(mounted.path("log.txt")).expect("read the log through the mount");
    assert!(
        through_mount == expected.as_bytes(),
        "the mount reads {} bytes, {} expected; first difference at {:?}",
        through_mount.len(),
        expected.len(),
        through_mount
            .iter()
            .zip(expected.as_bytes())
            .position(|(a, b)| a != b)
    );
    let output = cluster.dfs(["get", "/log.txt", "-"]);
    assert!(
        output.status.success(),
        "dfs get: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stdout == expected.as_bytes(),
        "dfs get reads {} bytes, {} expected; first difference at {:?}",
        output.stdout.len(),
        expected.len(),
        output
            .stdout
            .iter()
            .zip(expected.as_bytes())
            .position(|(a, b)| a != b)
    );
    drop(mounted);
    cluster.assert_clean_logs();
}

// --- SIGTERM with open files ---

/// Opens argv[1] (new) and argv[2] (existing) for writing, writes to both
/// without closing, prints `written`; on a line from stdin writes more to
/// both, closes them and prints `closed`.
const HOLDER: &str = "\
import sys
new = open(sys.argv[1], 'wb')
new.write(b'first part\\n')
new.flush()
old = open(sys.argv[2], 'r+b')
old.seek(4)
old.write(b'XXXX')
old.flush()
print('written', flush=True)
sys.stdin.readline()
new.write(b'second part\\n')
new.flush()
old.seek(0, 2)
old.write(b'TAIL')
old.flush()
new.close()
old.close()
print('closed', flush=True)
";

#[test]
fn sigterm_detaches_the_mount_and_open_files_are_committed_when_closed() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Only root may detach (umount -l); others unmount when idle.
        eprintln!("skipped: a lazy unmount needs root");
        return;
    }
    let cluster = Cluster::start(ClusterOptions {
        minions: 2,
        replication: Some(2),
        ..ClusterOptions::default()
    });
    let mut mounted = Mounted::start(&cluster, &cluster.dir().join("mnt"));
    fs::write(mounted.path("old"), b"0123456789abcdef").expect("write the existing file");
    let mut holder = ChildGuard::new(
        "the holder",
        Command::new("python3")
            .args(["-c", HOLDER])
            .arg(mounted.path("new"))
            .arg(mounted.path("old"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3"),
    );
    let lines = Lines::of(holder.child().stdout.take().expect("the holder's stdout"));
    assert_eq!(lines.next(Duration::from_secs(30), "the holder"), "written");

    let started = Instant::now();
    let mut process = mounted.process.take().expect("the mount process");
    process.signal(Signal::Terminate);
    wait_for(
        || !is_mounted(&mounted.mountpoint),
        MOUNT_WAIT,
        "the mount to detach on SIGTERM",
    );
    eprintln!("detached after {:?}", started.elapsed());
    // Gone from the namespace at once: the mountpoint is the empty
    // directory under it again, and nothing new opens through the mount.
    let names = fs::read_dir(&mounted.mountpoint)
        .expect("list the mountpoint")
        .count();
    assert_eq!(names, 0, "the mountpoint shows the directory under it");
    // ... yet the mount still serves the open files.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        process.try_status().is_none(),
        "dfs-mount serves its open files until they are closed"
    );

    let mut stdin = holder.child().stdin.take().expect("the holder's stdin");
    stdin
        .write_all(b"close\n")
        .expect("tell the holder to close");
    drop(stdin);
    assert_eq!(lines.next(Duration::from_secs(60), "the holder"), "closed");
    assert!(
        holder.wait_exit(Duration::from_secs(30)).success(),
        "the holder's writes and closes succeed after the detach"
    );
    let status = process.wait_exit(MOUNT_WAIT);
    assert!(
        status.success(),
        "dfs-mount after its last file closed: {status}"
    );
    eprintln!("the mount ended {:?} after SIGTERM", started.elapsed());

    let get = |path: &str| {
        let output = cluster.dfs(["get", path, "-"]);
        assert!(
            output.status.success(),
            "dfs get {path}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(get("/new"), "first part\nsecond part\n");
    assert_eq!(get("/old"), "0123XXXX89abcdefTAIL");
    let log = fs::read_to_string(cluster.dir().join("mount-mnt.log")).unwrap_or_default();
    assert!(log.contains("detached"), "the mount's log: {log}");
    drop(mounted);
    cluster.assert_clean_logs();
}
