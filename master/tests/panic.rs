//! A bug never leaves a half-changed namespace serving. A failpoint makes
//! the master panic inside a change, after the op changed the namespace in
//! memory and before it was journaled: the process must abort at once
//! (not keep serving lookups from the changed state with a poisoned lock
//! ignored), the client must see its change unacknowledged, and a restart
//! must show the namespace without it.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use dfs_engine::msg::{MasterRequest, MasterResponse};
use support::{call, list, CallError, MasterDir};

fn mkdir(path: &str) -> MasterRequest {
    MasterRequest::Mkdir {
        path: path.into(),
        parents: false,
        mode: 0o755,
    }
}

#[test]
fn a_panic_inside_a_change_aborts_the_master_and_the_change_is_not_kept() {
    let dir = MasterDir::new();
    // The first change is /kept (acknowledged); the second panics.
    let mut master = dir.start(&[], Some("change-applied@2:panic"));
    let mut connection = master.connect();
    call(&mut connection, mkdir("/kept")).expect("the first change is acknowledged");
    match call(&mut connection, mkdir("/half")) {
        Err(CallError::Connection(_)) => {}
        other => panic!("the panicking change was answered: {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !master.has_exited() {
        assert!(
            Instant::now() < deadline,
            "the master kept running after a panic inside a change"
        );
        // A master that survived would answer this from the changed state;
        // a dying one may still accept the connection, then reset it.
        if let Ok(mut other) = dfs_engine::rpc::Connection::open(&master.address) {
            if let Ok(MasterResponse::Status(status)) = call(
                &mut other,
                MasterRequest::Stat {
                    path: "/half".into(),
                },
            ) {
                panic!("a lookup saw the change the panic interrupted: {status:?}");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = master.guard.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "the master should abort, it exited with {status}"
    );
    assert!(
        dir.log_text().contains("failpoint change-applied reached"),
        "{}",
        dir.log_text()
    );

    let restarted = dir.start(&[], None);
    let mut connection = restarted.connect();
    let entries = list(&mut connection, "/");
    assert!(entries.contains_key("kept"), "{entries:?}");
    assert!(!entries.contains_key("half"), "{entries:?}");
    restarted.stop();
}
