//! Locks that refuse to serve state a panic may have left half-changed.
//!
//! A lock is poisoned when a thread panicked while holding it: what it
//! guards may be halfway through a change. Serving that state is worse than
//! stopping, so a poisoned lock aborts the process; the daemons go further
//! and abort at the first panic anywhere (`abort_on_panic`), so that no
//! other thread goes on with a half-changed namespace or block map until a
//! lock is next taken. A restart recovers from what is durable.

use std::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

fn poisoned(what: &str) -> ! {
    eprintln!("a {what} was poisoned by a panic: aborting rather than serving half-changed state");
    std::process::abort()
}

/// Locks `mutex`; aborts the process if a panic poisoned it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|_| poisoned("mutex"))
}

/// Takes `lock` for reading; aborts the process if a panic poisoned it.
pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|_| poisoned("read-write lock"))
}

/// Takes `lock` for writing; aborts the process if a panic poisoned it.
pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|_| poisoned("read-write lock"))
}

/// `Condvar::wait_timeout_while`, aborting on a poisoned lock; true when it
/// timed out with `condition` still true.
pub fn wait_timeout_while<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
    condition: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    let (guard, result) = condvar
        .wait_timeout_while(guard, timeout, condition)
        .unwrap_or_else(|_| poisoned("mutex"));
    (guard, result.timed_out())
}

/// `Condvar::wait_timeout`, aborting on a poisoned lock; true when it
/// timed out.
pub fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> (MutexGuard<'a, T>, bool) {
    let (guard, result) = condvar
        .wait_timeout(guard, timeout)
        .unwrap_or_else(|_| poisoned("mutex"));
    (guard, result.timed_out())
}

/// `Condvar::wait_while`, aborting on a poisoned lock.
pub fn wait_while<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    condition: impl FnMut(&mut T) -> bool,
) -> MutexGuard<'a, T> {
    condvar
        .wait_while(guard, condition)
        .unwrap_or_else(|_| poisoned("mutex"))
}

/// `Condvar::wait`, aborting on a poisoned lock.
pub fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(|_| poisoned("mutex"))
}

/// Makes every panic in this process abort it, after the usual message:
/// for daemons, where a panic is a bug and the state it interrupted must
/// not be served (release builds also compile with `panic = "abort"`;
/// this covers every build, the ones tests run included).
pub fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("aborting: a panic is a bug, and the state it interrupted must not be served");
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_and_waits_work_while_unpoisoned() {
        let mutex = Mutex::new(1);
        *lock(&mutex) += 1;
        assert_eq!(*lock(&mutex), 2);
        let rw = RwLock::new(5);
        *write(&rw) += 1;
        assert_eq!(*read(&rw), 6);
        let condvar = Condvar::new();
        let (guard, timed_out) =
            wait_timeout_while(&condvar, lock(&mutex), Duration::from_millis(1), |v| {
                *v == 2
            });
        assert!(timed_out);
        assert_eq!(*guard, 2);
    }
}
