//! Failpoints for fault tests: `DFS_FAILPOINT` arms named points in a
//! daemon, each as `NAME[@N][:ACTION]`, several separated by commas.
//! The action runs at the N-th time the point is reached (default 1):
//!
//! - `kill` (the default): the process kills itself with SIGKILL, exactly
//!   as a `kill -9` at that point would;
//! - `panic`: the thread panics there (a daemon then aborts, see
//!   `sync::abort_on_panic`);
//! - `sleep=MS`: the thread sleeps MS milliseconds there, at the N-th time
//!   and every time after (a slow disk, a delayed flush);
//! - `on`: the point is on (`is_on` says so) from the N-th time on: the code
//!   behaves as a broken or hostile peer would there.
//!
//! Unset, a failpoint costs one atomic load.
//!
//! Points of the master: `checkpoint-temp-created`, `checkpoint-before-sync`,
//! `checkpoint-before-rename`, `checkpoint-after-rename`,
//! `checkpoint-after-directory-sync`, `checkpoint-removed-old`,
//! `checkpoint-removed-segment`, `journal-before-roll`,
//! `journal-segment-renamed`, `journal-mid-append` (between a record's header
//! and its payload), `journal-before-flush`, `journal-tail-cleared`,
//! `change-applied` (an op applied to the namespace, not yet journaled).
//!
//! Points of a minion: `read-serve-rotten` (`on`: it serves the first chunk
//! of every read rotten, with checksums rewritten to match),
//! `block-report-delay` (before each full block report, registering
//! included: `sleep=MS` keeps the master waiting for it), `delete-delay`
//! (before the replicas of each `Delete` command are removed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable that arms failpoints.
pub const FAILPOINT_ENV: &str = "DFS_FAILPOINT";

/// What an armed point does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Kill,
    Panic,
    Sleep(Duration),
    On,
}

struct Armed {
    name: String,
    /// Reaching the point this many times runs the action.
    hits_to_act: u64,
    action: Action,
    hits: AtomicU64,
}

fn armed() -> &'static [Armed] {
    static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var(FAILPOINT_ENV)
            .ok()
            .map(|value| parse(&value))
            .unwrap_or_default()
    })
}

/// Parses a `DFS_FAILPOINT` value; entries that do not parse are ignored.
fn parse(value: &str) -> Vec<Armed> {
    value.split(',').filter_map(parse_one).collect()
}

fn parse_one(entry: &str) -> Option<Armed> {
    let (point, action) = match entry.split_once(':') {
        Some((point, action)) => (point, parse_action(action)?),
        None => (entry, Action::Kill),
    };
    let (name, hits_to_act) = match point.split_once('@') {
        Some((name, count)) => (name, count.parse().ok().filter(|&n: &u64| n > 0)?),
        None => (point, 1),
    };
    if name.is_empty() {
        return None;
    }
    Some(Armed {
        name: name.to_string(),
        hits_to_act,
        action,
        hits: AtomicU64::new(0),
    })
}

fn parse_action(text: &str) -> Option<Action> {
    match text {
        "kill" => Some(Action::Kill),
        "panic" => Some(Action::Panic),
        "on" => Some(Action::On),
        _ => {
            let milliseconds: u64 = text.strip_prefix("sleep=")?.parse().ok()?;
            Some(Action::Sleep(Duration::from_millis(milliseconds)))
        }
    }
}

/// True when the point `name` is armed `on` and reached its N-th time (this
/// call counts as reaching it): the caller then misbehaves on purpose.
pub fn is_on(name: &str) -> bool {
    armed()
        .iter()
        .filter(|armed| armed.name == name && armed.action == Action::On)
        .any(|armed| armed.hits.fetch_add(1, Ordering::AcqRel) + 1 >= armed.hits_to_act)
}

/// Marks a point where a fault test may kill, panic or slow the process.
pub fn hit(name: &str) {
    for armed in armed().iter().filter(|armed| armed.name == name) {
        let hits = armed.hits.fetch_add(1, Ordering::AcqRel) + 1;
        match armed.action {
            Action::Kill if hits == armed.hits_to_act => {
                eprintln!("failpoint {name} reached (hit {hits}): killing the process");
                // SAFETY: kill(2) on our own pid with SIGKILL touches no
                // memory; it ends the process like an external kill -9 would.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
            Action::Panic if hits == armed.hits_to_act => {
                panic!("failpoint {name} reached (hit {hits}): panicking");
            }
            Action::Sleep(pause) if hits >= armed.hits_to_act => {
                eprintln!("failpoint {name} reached (hit {hits}): sleeping {pause:?}");
                std::thread::sleep(pause);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_counts_and_actions() {
        let check = |text: &str, expected: &[(&str, u64, Action)]| {
            let parsed: Vec<(String, u64, Action)> = parse(text)
                .into_iter()
                .map(|a| (a.name, a.hits_to_act, a.action))
                .collect();
            let expected: Vec<(String, u64, Action)> = expected
                .iter()
                .map(|(n, h, a)| (n.to_string(), *h, *a))
                .collect();
            assert_eq!(parsed, expected, "{text:?}");
        };
        check(
            "checkpoint-after-rename",
            &[("checkpoint-after-rename", 1, Action::Kill)],
        );
        check("journal-roll@3", &[("journal-roll", 3, Action::Kill)]);
        check("apply@2:panic", &[("apply", 2, Action::Panic)]);
        check("lie:on", &[("lie", 1, Action::On)]);
        check(
            "flush:sleep=250,x:kill",
            &[
                ("flush", 1, Action::Sleep(Duration::from_millis(250))),
                ("x", 1, Action::Kill),
            ],
        );
        for bad in [
            "x@0",
            "x@many",
            "",
            "@2",
            "x:explode",
            "x:sleep=",
            "x:sleep=-1",
        ] {
            check(bad, &[]);
        }
    }
}
