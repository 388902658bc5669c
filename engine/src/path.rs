//! Cluster paths: absolute, normalised, checked. Every path from a user or a
//! peer passes through `DfsPath::parse` before it touches the namespace.

use std::fmt;

use crate::error::{Error, Result};
use crate::limits::{NAME_BYTES_MAX, PATH_BYTES_MAX, PATH_DEPTH_MAX};

/// A normalised absolute path: "/" or "/a/b", no empty, "." or ".." components.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DfsPath(String);

impl DfsPath {
    pub fn root() -> DfsPath {
        DfsPath("/".into())
    }

    /// Normalises `raw`: a relative path is taken from the root, "." is dropped,
    /// ".." goes up one level. Refused: ".." above the root, empty components
    /// ("a//b"), NUL, names over 255 bytes, paths over 4096 bytes.
    pub fn parse(raw: &str) -> Result<DfsPath> {
        let invalid = |why: &str| Error::Invalid(format!("{}: invalid path: {why}", shown(raw)));
        if raw.is_empty() {
            return Err(Error::Invalid("invalid path: empty".into()));
        }
        if raw.len() > PATH_BYTES_MAX {
            return Err(invalid(&format!("longer than {PATH_BYTES_MAX} bytes")));
        }
        if raw.contains('\0') {
            return Err(invalid("contains a NUL byte"));
        }
        let body = raw.strip_prefix('/').unwrap_or(raw);
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut parts: Vec<&str> = Vec::new();
        if !body.is_empty() {
            for part in body.split('/') {
                match part {
                    "" => return Err(invalid("empty component")),
                    "." => {}
                    ".." => {
                        if parts.pop().is_none() {
                            return Err(invalid("'..' goes above the root"));
                        }
                    }
                    name if name.len() > NAME_BYTES_MAX => {
                        return Err(invalid(&format!(
                            "component longer than {NAME_BYTES_MAX} bytes"
                        )))
                    }
                    name => parts.push(name),
                }
            }
        }
        if parts.len() > PATH_DEPTH_MAX {
            return Err(invalid(&format!("deeper than {PATH_DEPTH_MAX} components")));
        }
        Ok(DfsPath(format!("/{}", parts.join("/"))))
    }

    /// Like `parse`, for bytes that may not be UTF-8 (OS arguments, file names).
    pub fn parse_bytes(raw: &[u8]) -> Result<DfsPath> {
        let text = std::str::from_utf8(raw).map_err(|_| {
            Error::Invalid(format!(
                "{}: invalid path: not valid UTF-8",
                String::from_utf8_lossy(raw)
            ))
        })?;
        DfsPath::parse(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The components, root first; empty for "/".
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|part| !part.is_empty())
    }

    /// The last component; None for the root.
    pub fn name(&self) -> Option<&str> {
        self.components().last()
    }

    /// The parent directory; None for the root.
    pub fn parent(&self) -> Option<DfsPath> {
        if self.is_root() {
            return None;
        }
        match self.0.rfind('/') {
            Some(0) => Some(DfsPath::root()),
            Some(index) => Some(DfsPath(self.0[..index].to_string())),
            None => None,
        }
    }

    /// `self` joined with one checked name.
    pub fn join(&self, name: &str) -> Result<DfsPath> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::Invalid(format!(
                "{}: invalid file name",
                shown(name)
            )));
        }
        if self.is_root() {
            DfsPath::parse(&format!("/{name}"))
        } else {
            DfsPath::parse(&format!("{}/{name}", self.0))
        }
    }

    /// True when `self` is `other` or lies below it.
    pub fn is_within(&self, other: &DfsPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }
}

/// A path for an error message: control characters escaped, length bounded.
fn shown(raw: &str) -> String {
    let mut out: String = raw.chars().take(200).flat_map(char::escape_debug).collect();
    if raw.chars().count() > 200 {
        out.push_str("...");
    }
    out
}

impl fmt::Display for DfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Result<&str, &str>) {
        match (DfsPath::parse(raw), expected) {
            (Ok(path), Ok(want)) => assert_eq!(path.as_str(), want, "{raw}"),
            (Err(error), Err(want)) => {
                assert!(
                    error.to_string().contains(want),
                    "{raw}: {error} lacks {want}"
                )
            }
            (got, want) => panic!("{raw}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_and_normalises() {
        check("/", Ok("/"));
        check("/a/b", Ok("/a/b"));
        check("a/b/", Ok("/a/b"));
        check("/a/./b/../c", Ok("/a/c"));
        check("/a/..", Ok("/"));
        check("/ünï/çødé", Ok("/ünï/çødé"));
    }

    #[test]
    fn refuses_bad_paths() {
        check("", Err("empty"));
        check("/..", Err("'..' goes above the root"));
        check("/a/../../b", Err("'..' goes above the root"));
        check("/a//b", Err("empty component"));
        check("/a\0b", Err("NUL"));
        check(
            &format!("/{}", "x".repeat(256)),
            Err("longer than 255 bytes"),
        );
        check(&"/x".repeat(3000), Err("longer than 4096 bytes"));
        assert!(DfsPath::parse_bytes(b"/a\xff").is_err());
        check(
            &format!("/{}", "x".repeat(255)),
            Ok(&format!("/{}", "x".repeat(255))),
        );
    }

    #[test]
    fn relations() {
        let p = |s| DfsPath::parse(s).expect("valid");
        assert_eq!(p("/a/b").parent(), Some(p("/a")));
        assert_eq!(p("/a").parent(), Some(p("/")));
        assert_eq!(p("/").parent(), None);
        assert_eq!(p("/a/b").name(), Some("b"));
        assert!(p("/a/b").is_within(&p("/a")));
        assert!(p("/a").is_within(&p("/a")));
        assert!(!p("/ab").is_within(&p("/a")));
        assert!(p("/ab").is_within(&p("/")));
        assert_eq!(p("/a").join("b").expect("join"), p("/a/b"));
        assert!(p("/a").join("..").is_err());
    }
}
