//! `SetAttributes` changes an entry's mode, owner, group and times, refuses
//! bad values with one line naming the path, and is journaled like every
//! change: the values survive a kill -9 of the master. Real processes.

use dfs_engine::msg::{ErrorKind, MasterRequest, MasterResponse};
use dfs_testkit::{Cluster, ClusterOptions};

fn set(
    cluster: &Cluster,
    path: &str,
    mode: Option<u32>,
    owner: Option<&str>,
    modified_ns: Option<u64>,
) -> dfs_engine::Result<MasterResponse> {
    cluster.master_call(MasterRequest::SetAttributes {
        path: path.into(),
        mode,
        owner: owner.map(str::to_string),
        group: owner.map(|owner| format!("{owner}-group")),
        modified_ns,
        accessed_ns: modified_ns,
    })
}

#[test]
fn attribute_changes_are_checked_and_survive_a_crash() {
    let mut cluster = Cluster::start(ClusterOptions {
        minions: 1,
        ..ClusterOptions::default()
    });
    cluster.dfs_ok(["mkdir", "/dir"]);
    let source = cluster.dir().join("small");
    std::fs::write(&source, b"attributes").expect("write");
    cluster.dfs_ok(["put", dfs_testkit::utf8(&source), "/dir/file"]);

    // 2017-07-14 02:40:00 UTC
    let modified_ns = 1_500_000_000_000_000_000;
    for path in ["/dir", "/dir/file"] {
        let answer = set(&cluster, path, Some(0o700), Some("ana"), Some(modified_ns));
        assert!(
            matches!(answer, Ok(MasterResponse::Ok)),
            "{path}: {answer:?}"
        );
    }
    // None leaves a value as it is.
    let answer = set(&cluster, "/dir/file", Some(0o640), None, None);
    assert!(matches!(answer, Ok(MasterResponse::Ok)), "{answer:?}");

    for (path, bad, message) in [
        (
            "/dir/file",
            set(&cluster, "/dir/file", Some(0o17777), None, None),
            "/dir/file: mode 17777 has bits beyond 7777",
        ),
        (
            "/dir/file",
            set(&cluster, "/dir/file", None, Some("a:b"), None),
            "/dir/file: owner or group \"a:b\" must be 1 to 255 bytes without control characters or ':'",
        ),
        (
            "/nowhere",
            set(&cluster, "/nowhere", Some(0o600), None, None),
            "/nowhere: no such file or directory",
        ),
    ] {
        match bad {
            Ok(MasterResponse::Error(error)) => {
                assert!(
                    matches!(error.kind, ErrorKind::InvalidArgument | ErrorKind::NotFound),
                    "{path}: {error:?}"
                );
                assert_eq!(error.message, message);
            }
            other => panic!("{path}: expected a refusal, got {other:?}"),
        }
    }

    let check = |cluster: &Cluster| {
        let file = cluster.stat("/dir/file");
        assert_eq!(file.field("mode"), "0640");
        assert_eq!(file.field("owner"), "ana");
        assert_eq!(file.field("group"), "ana-group");
        assert_eq!(file.field("modified"), "2017-07-14 02:40:00 UTC");
        let dir = cluster.stat("/dir");
        assert_eq!(dir.field("mode"), "0700");
        assert_eq!(dir.field("modified"), "2017-07-14 02:40:00 UTC");
    };
    check(&cluster);
    // Acknowledged means journaled: a kill -9 loses none of it.
    cluster.kill_master();
    cluster.start_master();
    check(&cluster);
}
