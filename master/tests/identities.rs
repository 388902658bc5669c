//! Client identities on a keyed cluster (`dfs admin user add`, `dfs admin
//! host add`): a client that proves none is refused before anything is
//! looked at or changed; a user identity is that user whatever its
//! requests say; a host identity asserts its callers' users; damaged,
//! readable or foreign identities are refused with one line that says
//! why; `--insecure` serves anonymous clients. Real processes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use dfs_engine::msg::{Credentials, ErrorKind, MasterRequest, MasterResponse};
use dfs_engine::rpc::Connection;
use dfs_testkit::keys::{keyed_cluster, keygen};
use dfs_testkit::{Cluster, ClusterOptions};

/// `dfs ARGS` as the process user `user` says it is (`$USER`), proving
/// the identity at `identity` (or none).
fn dfs_as(cluster: &Cluster, identity: Option<&Path>, user: &str, args: &[&str]) -> Output {
    let mut command = cluster.dfs_command();
    command
        .env(
            "DFS_IDENTITY",
            identity.map_or(std::ffi::OsStr::new("none"), Path::as_os_str),
        )
        .env("USER", user)
        .env("DFS_MASTER_WAIT", "0s")
        .args(args);
    command.output().expect("run dfs")
}

fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refused(output: &Output, what: &str, wanted: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{what}: succeeded");
    assert!(stderr.contains(wanted), "{what}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
}

/// `dfs admin ARGS` issuing an identity with the cluster key.
fn issue(cluster: &Cluster, key: &Path, args: &[&str]) -> String {
    let mut command = cluster.dfs_command();
    command.args(["admin"]).args(args).arg("--key").arg(key);
    ok(&command.output().expect("run dfs admin"), "issue")
}

/// The owner `dfs stat` shows for `path`, as the member.
fn owner(cluster: &Cluster, path: &str) -> String {
    cluster.stat(path).field("owner").to_string()
}

#[test]
fn clients_prove_an_identity_and_users_are_who_it_says() {
    let (keys, cluster) = keyed_cluster(ClusterOptions {
        minions: 1,
        replication: Some(1),
        ..ClusterOptions::default()
    });
    let key = keys.path().join("cluster.key");
    cluster.dfs_ok(["mkdir", "/shared", "/private"]);
    cluster.dfs_ok(["chmod", "1777", "/shared"]);

    // No identity: refused, whatever user it says it is, before anything
    // is looked at or changed.
    for args in [
        &["ls", "/"][..],
        &["mkdir", "/anonymous"],
        &["chmod", "777", "/"],
    ] {
        refused(
            &dfs_as(&cluster, None, "root", args),
            &format!("anonymous {args:?}"),
            "serves only clients that prove an identity",
        );
    }
    let mut connection = Connection::open(cluster.master_address()).expect("connect");
    let answer: MasterResponse = connection
        .call(
            &Credentials {
                user: "root".into(),
                groups: vec!["root".into()],
                token: Vec::new(),
            },
            MasterRequest::SetAttributes {
                path: "/".into(),
                mode: Some(0o7777),
                owner: Some("mallory".into()),
                group: Some("evil".into()),
                modified_ns: None,
                accessed_ns: None,
            },
        )
        .expect("an answer");
    assert!(
        matches!(&answer, MasterResponse::Error(e) if e.kind == ErrorKind::PermissionDenied),
        "{answer:?}"
    );
    let root = cluster.stat("/");
    assert_eq!((root.field("owner"), root.field("mode")), ("root", "1777"));
    assert!(!cluster.dfs(["stat", "/anonymous"]).status.success());

    // A user identity: its requests are ann's, even when the process says
    // it is root; ann is no superuser.
    let ann = keys.path().join("ann.identity");
    let issued = issue(
        &cluster,
        &key,
        &[
            "user",
            "add",
            "ann",
            "--groups",
            "ann,staff",
            "--out",
            ann.to_str().expect("utf-8"),
        ],
    );
    assert!(issued.contains("user ann (groups ann,staff)"), "{issued}");
    let mode = std::fs::metadata(&ann)
        .expect("identity")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    ok(
        &dfs_as(&cluster, Some(&ann), "root", &["mkdir", "/shared/ann"]),
        "ann mkdir",
    );
    assert_eq!(owner(&cluster, "/shared/ann"), "ann");
    refused(
        &dfs_as(
            &cluster,
            Some(&ann),
            "root",
            &["chown", "root", "/shared/ann"],
        ),
        "ann gives her directory away",
        "ermission denied",
    );
    refused(
        &dfs_as(&cluster, Some(&ann), "root", &["mkdir", "/private/ann"]),
        "ann in root's directory",
        "ermission denied",
    );
    refused(
        &dfs_as(
            &cluster,
            Some(&ann),
            "root",
            &["admin", "decommission", cluster.minion_address(0)],
        ),
        "ann decommissions",
        "may not decommission",
    );
    // Her files' blocks are written and read with tokens minted for her.
    let source = keys.path().join("data");
    std::fs::write(&source, vec![3u8; 200_000]).expect("write");
    ok(
        &dfs_as(
            &cluster,
            Some(&ann),
            "root",
            &["put", source.to_str().expect("utf-8"), "/shared/ann/data"],
        ),
        "ann put",
    );
    let read = dfs_as(&cluster, Some(&ann), "root", &["cat", "/shared/ann/data"]);
    assert!(read.status.success() && read.stdout.len() == 200_000);

    // A host identity asserts its callers: bob's directory is bob's.
    let host = keys.path().join("host.identity");
    let issued = issue(
        &cluster,
        &key,
        &[
            "host",
            "add",
            "ws12",
            "--out",
            host.to_str().expect("utf-8"),
        ],
    );
    assert!(issued.contains("host ws12"), "{issued}");
    ok(
        &dfs_as(&cluster, Some(&host), "bob", &["mkdir", "/shared/bob"]),
        "bob mkdir",
    );
    assert_eq!(owner(&cluster, "/shared/bob"), "bob");

    // Damaged, readable-by-others and foreign identities: one line each.
    let text = std::fs::read_to_string(&ann).expect("read");
    let key_line = text
        .lines()
        .find(|line| line.starts_with("key "))
        .expect("key line");
    let flipped = if key_line.ends_with('0') { "1" } else { "0" };
    let tampered_key = format!("{}{flipped}", &key_line[..key_line.len() - 1]);
    let write_private = |path: &Path, text: &str| {
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    };
    let tampered = keys.path().join("tampered.identity");
    write_private(&tampered, &text.replace(key_line, &tampered_key));
    refused(
        &dfs_as(&cluster, Some(&tampered), "ann", &["ls", "/"]),
        "a tampered key",
        "another cluster's, or damaged",
    );
    let promoted = keys.path().join("promoted.identity");
    write_private(
        &promoted,
        &text.replace("groups ann,staff", "groups ann,staff,dfsadmin"),
    );
    refused(
        &dfs_as(&cluster, Some(&promoted), "ann", &["ls", "/"]),
        "groups added by hand",
        "another cluster's, or damaged",
    );
    let readable = keys.path().join("readable.identity");
    std::fs::write(&readable, &text).expect("write");
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    refused(
        &dfs_as(&cluster, Some(&readable), "ann", &["ls", "/"]),
        "an identity others may read",
        "chmod 600",
    );
    let other_key = keys.path().join("other.key");
    keygen(&other_key);
    let foreign = keys.path().join("foreign.identity");
    issue(
        &cluster,
        &other_key,
        &[
            "user",
            "add",
            "ann",
            "--groups",
            "ann,staff",
            "--out",
            foreign.to_str().expect("utf-8"),
        ],
    );
    refused(
        &dfs_as(&cluster, Some(&foreign), "ann", &["ls", "/"]),
        "another cluster's identity",
        "another cluster's, or damaged",
    );
    // None of it changed anything; honest clients go on.
    assert_eq!(cluster.stat("/").field("mode"), "1777");
    let listing = ok(
        &dfs_as(&cluster, Some(&ann), "ann", &["ls", "/shared"]),
        "ann ls",
    );
    assert!(
        listing.contains("ann") && listing.contains("bob"),
        "{listing}"
    );
    cluster.assert_clean_logs();
}

#[test]
fn an_insecure_keyed_master_serves_anonymous_clients_as_they_say() {
    let (_keys, cluster) = keyed_cluster(ClusterOptions {
        minions: 1,
        replication: Some(1),
        master_arguments: vec!["--insecure"],
        ..ClusterOptions::default()
    });
    ok(
        &dfs_as(&cluster, None, "carol", &["mkdir", "/carol"]),
        "anonymous mkdir",
    );
    assert_eq!(owner(&cluster, "/carol"), "carol");
    // And an unkeyed master tells a client with an identity what to do.
    let open = Cluster::start(ClusterOptions {
        minions: 0,
        ..ClusterOptions::default()
    });
    refused(
        &dfs_as(
            &open,
            Some(&_keys.path().join("cluster.key")),
            "root",
            &["ls", "/"],
        ),
        "an identity for a master without a key",
        "unset DFS_IDENTITY",
    );
}
