//! The master checks POSIX permissions for every request against the user
//! the request names (its credentials, as NFS `sec=sys`): through `dfs`
//! and `dfs-cp` as two users, with root (the superuser) allowed
//! everything. Real processes; the users are `$USER` of each command.

use std::process::{Command, Output};

use dfs_testkit::{binary, utf8, Cluster, ClusterOptions};

fn as_user(mut command: Command, user: &str) -> Output {
    command
        .env("USER", user)
        .env_remove("LOGNAME")
        .output()
        .expect("run a command")
}

/// `dfs ARGS` as `user`.
fn dfs_as(cluster: &Cluster, user: &str, args: &[&str]) -> Output {
    let mut command = cluster.dfs_command();
    command.args(args);
    as_user(command, user)
}

fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The one line a refused command prints, checked to say permission denied.
fn denied(output: &Output, what: &str) -> String {
    assert!(!output.status.success(), "{what}: should be refused");
    let text = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert!(
        text.contains("permission denied"),
        "{what}: expected a permission refusal, got {text:?}"
    );
    assert_eq!(text.lines().count(), 1, "{what}: one line: {text:?}");
    text
}

#[test]
fn users_get_what_the_mode_bits_give_them_and_root_gets_everything() {
    let cluster = Cluster::start(ClusterOptions {
        minions: 1,
        ..ClusterOptions::default()
    });
    let source = cluster.dir().join("source");
    std::fs::write(&source, b"ann's words").expect("write");
    let source = utf8(&source);

    // A new cluster's root is open to all, as /tmp: ann makes her own
    // directory there, with a private and a shared file.
    ok(&dfs_as(&cluster, "ann", &["mkdir", "/ann"]), "ann mkdir");
    ok(
        &dfs_as(&cluster, "ann", &["put", source, "/ann/secret"]),
        "ann put",
    );
    ok(
        &dfs_as(&cluster, "ann", &["chmod", "600", "/ann/secret"]),
        "ann chmod",
    );
    ok(
        &dfs_as(&cluster, "ann", &["put", source, "/ann/shared"]),
        "ann put shared",
    );
    let listing = ok(&dfs_as(&cluster, "ann", &["ls", "/ann"]), "ann ls");
    assert!(listing.contains("secret"), "{listing}");

    // Bob reads what others may read, and nothing else.
    let line = denied(
        &dfs_as(&cluster, "bob", &["cat", "/ann/secret"]),
        "bob cat secret",
    );
    assert!(line.contains("/ann/secret"), "{line}");
    assert_eq!(
        ok(&dfs_as(&cluster, "bob", &["cat", "/ann/shared"]), "bob cat"),
        "ann's words"
    );
    denied(
        &dfs_as(&cluster, "bob", &["put", source, "/ann/bobs"]),
        "bob put into ann's directory",
    );
    denied(
        &dfs_as(&cluster, "bob", &["rm", "/ann/shared"]),
        "bob rm in ann's directory",
    );
    denied(
        &dfs_as(&cluster, "bob", &["chmod", "666", "/ann/shared"]),
        "bob chmod",
    );
    denied(
        &dfs_as(&cluster, "bob", &["chown", "bob", "/ann/shared"]),
        "bob chown",
    );
    // The root directory is sticky: bob may not move or remove ann's
    // entries in it, only his own.
    denied(
        &dfs_as(&cluster, "bob", &["mv", "/ann", "/mine"]),
        "bob mv of ann's directory",
    );
    denied(&dfs_as(&cluster, "bob", &["rm", "-r", "/ann"]), "bob rm -r");
    ok(&dfs_as(&cluster, "bob", &["mkdir", "/bob"]), "bob mkdir");
    ok(&dfs_as(&cluster, "bob", &["mv", "/bob", "/bob2"]), "bob mv");

    // dfs-cp as bob is refused the same way, and copies nothing there.
    let mut copy = Command::new(binary("dfs-cp"));
    copy.args([
        "--master",
        cluster.master_address(),
        source,
        "dfs:///ann/copied",
    ]);
    let output = as_user(copy, "bob");
    assert!(!output.status.success(), "dfs-cp into ann's directory");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("permission denied"), "{text}");
    let listing = ok(&dfs_as(&cluster, "ann", &["ls", "/ann"]), "ann ls");
    assert!(
        !listing.contains("copied") && !listing.contains("bobs"),
        "{listing}"
    );

    // A directory that may not be searched hides what is in it.
    ok(
        &dfs_as(&cluster, "ann", &["chmod", "700", "/ann"]),
        "ann chmod dir",
    );
    denied(
        &dfs_as(&cluster, "bob", &["cat", "/ann/shared"]),
        "bob cat through a closed directory",
    );
    denied(
        &dfs_as(&cluster, "bob", &["stat", "/ann/shared"]),
        "bob stat through a closed directory",
    );

    // chgrp: the owner, to a group of their own (here the process's).
    let own_group = {
        let text = ok(&dfs_as(&cluster, "ann", &["stat", "/ann/shared"]), "stat");
        text.lines()
            .find_map(|line| line.strip_prefix("group:"))
            .map(|group| group.trim().to_string())
            .expect("a group line")
    };
    ok(
        &dfs_as(&cluster, "ann", &["chgrp", "-R", &own_group, "/ann"]),
        "ann chgrp to her group",
    );
    denied(
        &dfs_as(&cluster, "ann", &["chgrp", "no-such-group", "/ann/shared"]),
        "ann chgrp to a group not hers",
    );
    // put and mkdir honour the umask.
    let mut command = std::process::Command::new("sh");
    command.arg("-c").arg(format!(
        "umask 077 && {dfs} --master {master} put {source} /ann/private && \
         {dfs} --master {master} mkdir /ann/closed",
        dfs = utf8(&binary("dfs")),
        master = cluster.master_address(),
    ));
    ok(&as_user(command, "ann"), "put and mkdir under umask 077");
    for (path, mode) in [("/ann/private", "0600"), ("/ann/closed", "0700")] {
        let text = ok(&dfs_as(&cluster, "ann", &["stat", path]), "stat");
        assert!(text.contains(&format!("mode: {mode}")), "{path}: {text}");
    }

    // Root (the superuser) may do anything, and gives files away.
    assert_eq!(
        ok(
            &dfs_as(&cluster, "root", &["cat", "/ann/secret"]),
            "root cat"
        ),
        "ann's words"
    );
    ok(
        &dfs_as(&cluster, "root", &["chown", "bob", "/ann/shared"]),
        "root chown",
    );
    ok(
        &dfs_as(&cluster, "root", &["rm", "-r", "/ann"]),
        "root rm -r",
    );
    cluster.assert_clean_logs();
}

/// A lock session holds open and locks only files its user may read or
/// write: another user cannot keep a private file alive after its removal
/// (`Hold`) or lock it against its owner by its inode number.
#[test]
fn another_user_cannot_hold_or_lock_a_private_file_by_its_inode() {
    use dfs_engine::msg::{Credentials, LockKind, LockRange, MasterRequest, MasterResponse};
    use dfs_engine::rpc::Connection;
    let cluster = Cluster::start(ClusterOptions {
        minions: 1,
        replication: Some(1),
        ..ClusterOptions::default()
    });
    let source = cluster.dir().join("diary");
    std::fs::write(&source, b"private").expect("write");
    ok(
        &dfs_as(&cluster, "ann", &["put", utf8(&source), "/diary"]),
        "ann put",
    );
    ok(
        &dfs_as(&cluster, "ann", &["chmod", "600", "/diary"]),
        "ann chmod",
    );
    let inode: u64 = cluster
        .stat("/diary")
        .field("inode")
        .parse()
        .expect("an inode number");
    let as_user = |user: &str| {
        let mut connection = Connection::open(cluster.master_address()).expect("connect");
        let credentials = Credentials {
            user: user.into(),
            groups: vec![user.into()],
            token: Vec::new(),
        };
        let answer: MasterResponse = connection
            .call(&credentials, MasterRequest::OpenSession)
            .expect("a session");
        let MasterResponse::Session { session, .. } = answer else {
            panic!("expected a session, got {answer:?}");
        };
        let hold = connection
            .call::<_, MasterResponse>(&credentials, MasterRequest::Hold { session, inode })
            .expect("an answer");
        let lock = connection
            .call::<_, MasterResponse>(
                &credentials,
                MasterRequest::Lock {
                    session,
                    inode,
                    owner: 1,
                    kind: Some(LockKind::Write),
                    range: LockRange {
                        start: 0,
                        end: u64::MAX,
                    },
                },
            )
            .expect("an answer");
        (hold, lock)
    };
    let (hold, lock) = as_user("bob");
    for (what, answer) in [("hold", hold), ("lock", lock)] {
        assert!(
            matches!(&answer, MasterResponse::Error(e) if e.message.contains("permission denied")),
            "bob's {what}: {answer:?}"
        );
    }
    let (hold, lock) = as_user("ann");
    assert_eq!(hold, MasterResponse::Ok, "ann holds her file");
    assert_eq!(lock, MasterResponse::Ok, "ann locks her file");
    cluster.assert_clean_logs();
}
