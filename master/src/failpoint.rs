//! Failpoints for crash tests: `DFS_FAILPOINT=NAME` (or `NAME@N`, the N-th
//! time it is reached) makes the process kill itself with SIGKILL at the
//! named point, exactly as a `kill -9` there would. Unset, a failpoint costs
//! one atomic load.
//!
//! Points: `checkpoint-temp-created`, `checkpoint-before-sync`,
//! `checkpoint-before-rename`, `checkpoint-after-rename`,
//! `checkpoint-after-directory-sync`, `checkpoint-removed-old`,
//! `checkpoint-removed-segment`, `journal-before-roll`,
//! `journal-segment-renamed`, `journal-mid-append` (between a record's header
//! and its payload), `journal-before-flush`, `journal-tail-cleared`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms a failpoint.
pub const FAILPOINT_ENV: &str = "DFS_FAILPOINT";

struct Armed {
    name: String,
    /// Reaching the point this many times kills the process.
    hits_to_crash: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(FAILPOINT_ENV).ok()?;
            parse(&value)
        })
        .as_ref()
}

fn parse(value: &str) -> Option<Armed> {
    let (name, hits_to_crash) = match value.split_once('@') {
        Some((name, count)) => (name, count.parse().ok().filter(|&n: &u64| n > 0)?),
        None => (value, 1),
    };
    if name.is_empty() {
        return None;
    }
    Some(Armed {
        name: name.to_string(),
        hits_to_crash,
        hits: AtomicU64::new(0),
    })
}

/// Marks a point where a crash must leave a loadable state.
pub fn hit(name: &str) {
    let Some(armed) = armed() else {
        return;
    };
    if armed.name != name {
        return;
    }
    let hits = armed.hits.fetch_add(1, Ordering::AcqRel) + 1;
    if hits == armed.hits_to_crash {
        eprintln!("failpoint {name} reached (hit {hits}): killing the process");
        // SAFETY: kill(2) on our own pid with SIGKILL touches no memory; it
        // ends the process like an external kill -9 would.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_optional_hit_count() {
        let check = |text: &str, expected: Option<(&str, u64)>| {
            let parsed = parse(text).map(|a| (a.name.clone(), a.hits_to_crash));
            assert_eq!(
                parsed,
                expected.map(|(n, h)| (n.to_string(), h)),
                "{text:?}"
            );
        };
        check(
            "checkpoint-after-rename",
            Some(("checkpoint-after-rename", 1)),
        );
        check("journal-roll@3", Some(("journal-roll", 3)));
        check("x@0", None);
        check("x@many", None);
        check("", None);
        check("@2", None);
    }
}
