//! The nemesis on real processes for about a minute: writers, readers and
//! namespace changers work through the `dfs` binary while minions and the
//! master are SIGKILLed, SIGSTOPped, restarted and (as root) partitioned at
//! random (`dfs_testkit::nemesis`; the seed is printed, and
//! `DFS_NEMESIS_SEED` repeats its choices). Afterwards `dfs fsck /` is
//! healthy within two minutes, every acknowledged file reads back byte for
//! byte, every acknowledged namespace change shows, nothing in doubt is
//! half-written, and the daemons logged no error the faults do not explain.

use std::time::Duration;

use dfs_testkit::nemesis::{self, Options};

#[test]
fn acknowledged_data_and_changes_survive_random_crashes_stops_and_partitions() {
    let report = nemesis::run(Options::for_duration(Duration::from_secs(60)));
    println!("{report}");
    assert!(
        report.acknowledged() > 0,
        "nothing was acknowledged:\n{report}"
    );
    assert!(
        report.faults.values().sum::<u64>() > 0,
        "no fault was injected:\n{report}"
    );
    assert!(report.is_clean(), "{report}");
}
