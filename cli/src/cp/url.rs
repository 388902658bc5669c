//! The two kinds of `dfs-cp` arguments: a local path, or a cluster path as
//! `dfs://HOST:PORT/path` (that master) or `dfs:///path` (the master from
//! `--master`, `DFS_MASTER` or the config file, as `dfs` finds it).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use dfs_engine::limits::ADDRESS_BYTES_MAX;
use dfs_engine::path::DfsPath;
use dfs_engine::{Error, Result};

use super::glob;

const SCHEME: &str = "dfs://";

/// One argument as typed: the path part may still hold glob patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Argument {
    Local(OsString),
    Cluster { master: String, path: String },
}

impl Argument {
    /// Parses one argument; `default_master` is asked only for `dfs:///path`.
    pub fn parse(raw: &OsStr, default_master: &dyn Fn() -> Result<String>) -> Result<Argument> {
        let bytes = raw.as_bytes();
        if !bytes.starts_with(SCHEME.as_bytes()) {
            if bytes.is_empty() {
                return Err(Error::Invalid("empty path".into()));
            }
            return Ok(Argument::Local(raw.to_os_string()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| {
            Error::Invalid(format!(
                "{}: cluster paths must be UTF-8",
                raw.to_string_lossy()
            ))
        })?;
        let rest = &text[SCHEME.len()..];
        let (host, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        if host.len() > ADDRESS_BYTES_MAX {
            return Err(Error::Invalid(format!("{text}: master address too long")));
        }
        let master = if host.is_empty() {
            default_master()?
        } else {
            host.to_string()
        };
        Ok(Argument::Cluster {
            master,
            path: path.to_string(),
        })
    }

    /// Holds glob patterns that `plan::expand` matches against names.
    pub fn is_pattern(&self) -> bool {
        match self {
            // Patterns match names as text; other bytes are taken as they are.
            Argument::Local(path) => path.to_str().is_some_and(glob::is_pattern),
            Argument::Cluster { path, .. } => glob::is_pattern(path),
        }
    }

    /// Ends with `/` or `/.`: a directory source whose contents are copied,
    /// as in rsync, rather than the directory itself.
    pub fn names_contents(&self) -> bool {
        let bytes = match self {
            Argument::Local(path) => path.as_bytes(),
            Argument::Cluster { path, .. } => path.as_bytes(),
        };
        bytes.ends_with(b"/") || bytes.ends_with(b"/.")
    }

    /// Ends with `/`: names a directory even when it does not exist yet.
    pub fn names_directory(&self) -> bool {
        match self {
            Argument::Local(path) => path.as_bytes().ends_with(b"/"),
            Argument::Cluster { path, .. } => path.len() > 1 && path.ends_with('/'),
        }
    }
}

/// A concrete file or directory on one side of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Cluster { master: String, path: DfsPath },
}

impl Location {
    /// The entry `name` inside this directory.
    pub fn join(&self, name: &OsStr) -> Result<Location> {
        match self {
            Location::Local(path) => Ok(Location::Local(path.join(name))),
            Location::Cluster { master, path } => {
                let name = name.to_str().ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: name is not UTF-8, which cluster paths must be",
                        name.to_string_lossy()
                    ))
                })?;
                Ok(Location::Cluster {
                    master: master.clone(),
                    path: path.join(name)?,
                })
            }
        }
    }

    /// The last component, if any (the root has none).
    pub fn name(&self) -> Option<OsString> {
        match self {
            Location::Local(path) => path.file_name().map(OsStr::to_os_string),
            Location::Cluster { path, .. } => path.name().map(OsString::from),
        }
    }

    /// The directory holding this entry.
    pub fn parent(&self) -> Option<Location> {
        match self {
            Location::Local(path) => {
                let parent = path.parent()?;
                Some(Location::Local(if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                }))
            }
            Location::Cluster { master, path } => Some(Location::Cluster {
                master: master.clone(),
                path: path.parent()?,
            }),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Location::Cluster { .. })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Cluster { master, path } => write!(f, "dfs://{master}{path}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_master() -> Result<String> {
        Ok("default:7000".into())
    }

    #[test]
    fn arguments_parse() {
        let cluster = |master: &str, path: &str| Argument::Cluster {
            master: master.into(),
            path: path.into(),
        };
        for (raw, expected, directory) in [
            ("dfs://m:1/a/b", cluster("m:1", "/a/b"), false),
            ("dfs://m:1", cluster("m:1", "/"), false),
            ("dfs:///a/", cluster("default:7000", "/a/"), true),
            ("dfs:///", cluster("default:7000", "/"), false),
            (
                "dfs:///data/*.csv",
                cluster("default:7000", "/data/*.csv"),
                false,
            ),
            ("local/dir/", Argument::Local("local/dir/".into()), true),
            ("file", Argument::Local("file".into()), false),
            ("dfs:/x", Argument::Local("dfs:/x".into()), false),
        ] {
            let parsed = Argument::parse(OsStr::new(raw), &default_master).expect(raw);
            assert_eq!(parsed, expected, "{raw}");
            assert_eq!(parsed.names_directory(), directory, "{raw}");
        }
    }

    #[test]
    fn sources_name_contents_or_patterns() {
        for (raw, contents, pattern) in [
            ("dir", false, false),
            ("dir/", true, false),
            ("dir/.", true, false),
            ("dir/..", false, false),
            ("dir.d", false, false),
            ("/", true, false),
            ("d*/", true, true),
            ("a\\*", false, false),
            ("dfs:///dir", false, false),
            ("dfs:///dir/", true, false),
            ("dfs://m:1/dir/.", true, false),
            ("dfs:///", true, false),
            ("dfs:///data/*.csv", false, true),
        ] {
            let parsed = Argument::parse(OsStr::new(raw), &default_master).expect(raw);
            assert_eq!(parsed.names_contents(), contents, "{raw}");
            assert_eq!(parsed.is_pattern(), pattern, "{raw}");
        }
    }

    #[test]
    fn bad_arguments_are_refused() {
        let no_master = || -> Result<String> { Err(Error::Invalid("no master address".into())) };
        for (raw, message) in [("", "empty path"), ("dfs:///x", "no master address")] {
            let error = Argument::parse(OsStr::new(raw), &no_master).expect_err(raw);
            assert!(error.to_string().contains(message), "{raw}: {error}");
        }
        let bad = OsStr::from_bytes(b"dfs:///\xff");
        assert!(Argument::parse(bad, &default_master).is_err());
    }

    #[test]
    fn locations_join_and_display() {
        let root = Location::Cluster {
            master: "m:1".into(),
            path: DfsPath::root(),
        };
        let child = root.join(OsStr::new("ü")).expect("join");
        assert_eq!(child.to_string(), "dfs://m:1/ü");
        assert_eq!(child.parent(), Some(root.clone()));
        assert_eq!(root.name(), None);
        let bad = OsStr::from_bytes(b"\xff");
        assert!(root.join(bad).is_err());
        let local = Location::Local(PathBuf::from("a"));
        assert_eq!(local.parent(), Some(Location::Local(PathBuf::from("."))));
        assert_eq!(
            local.join(bad).expect("local names are bytes").name(),
            Some(bad.into())
        );
    }
}
