//! Extended attributes (`user.` names) of an entry, as the master keeps
//! them: set, read, listed and removed by path.

use dfs_engine::msg::{MasterRequest, MasterResponse, XattrSet};
use dfs_engine::path::DfsPath;
use dfs_engine::Result;

use crate::client::{unexpected, Client};

impl Client {
    /// The value of the extended attribute `name` of the entry at `path`;
    /// a `NoAttribute` error when it has none of that name.
    pub fn get_xattr(&mut self, path: &DfsPath, name: &str) -> Result<Vec<u8>> {
        let request = MasterRequest::GetXattr {
            path: path.to_string(),
            name: name.to_string(),
        };
        match self.call_read_only(request)? {
            MasterResponse::XattrValue { value } => Ok(value),
            other => Err(unexpected("GetXattr", &other)),
        }
    }

    /// The names of the entry's extended attributes, in order.
    pub fn list_xattrs(&mut self, path: &DfsPath) -> Result<Vec<String>> {
        let request = MasterRequest::ListXattrs {
            path: path.to_string(),
        };
        match self.call_read_only(request)? {
            MasterResponse::XattrNames { names } => Ok(names),
            other => Err(unexpected("ListXattrs", &other)),
        }
    }

    /// Sets the extended attribute `name` to `value` (`how`: whether it may
    /// or must be there already).
    pub fn set_xattr(
        &mut self,
        path: &DfsPath,
        name: &str,
        value: &[u8],
        how: XattrSet,
    ) -> Result<()> {
        let request = MasterRequest::SetXattr {
            path: path.to_string(),
            name: name.to_string(),
            value: value.to_vec(),
            how,
        };
        self.call_expect_ok("SetXattr", request)
    }

    /// Removes the extended attribute `name` of the entry at `path`.
    pub fn remove_xattr(&mut self, path: &DfsPath, name: &str) -> Result<()> {
        let request = MasterRequest::RemoveXattr {
            path: path.to_string(),
            name: name.to_string(),
        };
        self.call_expect_ok("RemoveXattr", request)
    }
}
