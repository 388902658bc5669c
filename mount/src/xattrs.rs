//! Extended attributes through the mount: `user.` names are the master's
//! (every workstation sees them, they go with the file); other name spaces
//! (`security.`, `system.`, `trusted.`) are not kept: reading one finds
//! nothing and setting one is not supported, as on a file system without
//! them, so `cp -a`, `rsync -X` and `ls` carry on.

use std::ffi::OsStr;

use dfs_client::Client;
use dfs_engine::limits::{XATTR_NAME_BYTES_MAX, XATTR_VALUE_BYTES_MAX};
use dfs_engine::msg::XattrSet;
use dfs_engine::path::DfsPath;
use fuser::Errno;

use crate::fs::errno;

/// What a reply carries for a request with a buffer of `size` bytes:
/// the size wanted (`size` 0), the bytes, or `ERANGE` when they do not fit.
pub enum Sized {
    Size(u32),
    Data(Vec<u8>),
}

fn sized(bytes: Vec<u8>, size: u32) -> Result<Sized, Errno> {
    let length = u32::try_from(bytes.len()).map_err(|_| Errno::E2BIG)?;
    if size == 0 {
        Ok(Sized::Size(length))
    } else if length > size {
        Err(Errno::ERANGE)
    } else {
        Ok(Sized::Data(bytes))
    }
}

/// A name the cluster keeps, or the errno for one it does not.
fn user_name(name: &OsStr, other: Errno) -> Result<&str, Errno> {
    let name = name.to_str().ok_or(Errno::EINVAL)?;
    if name.len() > XATTR_NAME_BYTES_MAX {
        return Err(Errno::ERANGE);
    }
    if name.starts_with("user.") {
        Ok(name)
    } else {
        Err(other)
    }
}

pub fn get(client: &mut Client, path: &DfsPath, name: &OsStr, size: u32) -> Result<Sized, Errno> {
    let name = user_name(name, Errno::ENODATA)?;
    let value = client.get_xattr(path, name).map_err(|e| errno(&e))?;
    sized(value, size)
}

pub fn list(client: &mut Client, path: &DfsPath, size: u32) -> Result<Sized, Errno> {
    let names = client.list_xattrs(path).map_err(|e| errno(&e))?;
    let mut bytes = Vec::new();
    for name in names {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
    }
    sized(bytes, size)
}

pub fn set(
    client: &mut Client,
    path: &DfsPath,
    name: &OsStr,
    value: &[u8],
    flags: i32,
) -> Result<(), Errno> {
    let name = user_name(name, Errno::EOPNOTSUPP)?;
    if value.len() > XATTR_VALUE_BYTES_MAX {
        return Err(Errno::E2BIG);
    }
    let how = if flags & libc::XATTR_CREATE != 0 {
        XattrSet::Create
    } else if flags & libc::XATTR_REPLACE != 0 {
        XattrSet::Replace
    } else {
        XattrSet::Either
    };
    client
        .set_xattr(path, name, value, how)
        .map_err(|e| errno(&e))
}

pub fn remove(client: &mut Client, path: &DfsPath, name: &OsStr) -> Result<(), Errno> {
    let name = user_name(name, Errno::ENODATA)?;
    client.remove_xattr(path, name).map_err(|e| errno(&e))
}
