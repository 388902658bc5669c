//! This machine's users and groups: names to ids and back, through the
//! system's databases (files, NSS), with the reentrant calls. The client
//! names itself with them, and a mount maps the owners the master keeps to
//! local ids (as NFS `sec=sys` does).

use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;

/// A buffer for the reentrant lookups, as large as the system suggests.
fn lookup_buffer(which: libc::c_int) -> Vec<libc::c_char> {
    // SAFETY: sysconf only reads a configuration value.
    let suggested = unsafe { libc::sysconf(which) };
    vec![
        0;
        usize::try_from(suggested)
            .unwrap_or(16 * 1024)
            .clamp(1024, 1 << 20)
    ]
}

/// A name from a lookup's result, when it is one.
fn name_of(pointer: *const libc::c_char) -> Option<String> {
    if pointer.is_null() {
        return None;
    }
    // SAFETY: a successful lookup left a NUL-terminated string there, in
    // the buffer its caller still holds.
    let name = unsafe { CStr::from_ptr(pointer) }
        .to_string_lossy()
        .into_owned();
    (!name.is_empty()).then_some(name)
}

/// The name of the user `uid`.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buffer = lookup_buffer(libc::_SC_GETPW_R_SIZE_MAX);
    // SAFETY: an all-zero passwd is a valid value for an out-parameter.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buffer.len()` is its size.
    let status = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() {
        return None;
    }
    name_of(entry.pw_name)
}

/// The name of the group `gid`.
pub fn group_name(gid: u32) -> Option<String> {
    let mut buffer = lookup_buffer(libc::_SC_GETGR_R_SIZE_MAX);
    // SAFETY: an all-zero group is a valid value for an out-parameter.
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in user_name.
    let status = unsafe {
        libc::getgrgid_r(
            gid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() {
        return None;
    }
    name_of(entry.gr_name)
}

/// The uid of the user `name`.
pub fn user_id(name: &str) -> Option<u32> {
    account(name).map(|account| account.uid)
}

/// The gid of the group `name`.
pub fn group_id(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    let mut buffer = lookup_buffer(libc::_SC_GETGR_R_SIZE_MAX);
    // SAFETY: as in group_name.
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in group_name; `name` is NUL-terminated.
    let status = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    (status == 0 && !found.is_null()).then_some(entry.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_both_ways_and_strangers_are_not() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(group_name(0).as_deref(), Some("root"));
        assert_eq!(user_id("root"), Some(0));
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(user_id("no-such-user-here"), None);
        assert_eq!(user_id("bad\0name"), None);
    }
}

/// A user of this machine, as its user database has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub home: std::path::PathBuf,
}

/// The user `name`'s ids and home directory.
pub fn account(name: &str) -> Option<Account> {
    let name = CString::new(name).ok()?;
    let mut buffer = lookup_buffer(libc::_SC_GETPW_R_SIZE_MAX);
    // SAFETY: as in user_name.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in user_name; `name` is NUL-terminated.
    let status = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() || entry.pw_dir.is_null() {
        return None;
    }
    // SAFETY: the lookup left a NUL-terminated string in `buffer`.
    let home = unsafe { CStr::from_ptr(entry.pw_dir) };
    Some(Account {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
        home: std::path::PathBuf::from(OsStr::from_bytes(home.to_bytes())),
    })
}

/// The groups of the user `name` whose primary group is `gid`: `gid`
/// first, then the others the group database gives them (at most 256).
pub fn user_groups(name: &str, gid: u32) -> Vec<u32> {
    let Ok(name) = CString::new(name) else {
        return vec![gid];
    };
    let mut groups: Vec<libc::gid_t> = vec![0; 256];
    let mut count = groups.len() as libc::c_int;
    // SAFETY: `groups` has room for `count` ids; `name` is NUL-terminated.
    let status = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
    if status < 0 {
        return vec![gid];
    }
    groups.truncate(usize::try_from(count).unwrap_or(0));
    let mut ordered = vec![gid];
    ordered.extend(groups.into_iter().filter(|&group| group != gid));
    ordered
}
