//! Who this minion is: its id and the cluster it joined, kept in a small text
//! file in every data directory (`DIR/minion.id`, layout in docs/format.md).
//!
//! Invariant: all data directories of a running minion carry the same minion
//! id, and at most one cluster id; a directory that disagrees is refused
//! before anything in it is touched.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use dfs_engine::msg::{ClusterId, MinionId};
use dfs_engine::{Error, IoContext, Result};

pub const IDENTITY_FILE_NAME: &str = "minion.id";
const IDENTITY_TEMPORARY_NAME: &str = "minion.id.tmp";
pub const IDENTITY_FORMAT_VERSION: u32 = 1;
/// The first line of every identity file.
const IDENTITY_HEADING: &str = "dfs-minion identity";
/// Longest identity file read; a real one is under 100 bytes.
const IDENTITY_FILE_BYTES_MAX: u64 = 4096;

/// What one identity file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityRecord {
    pub minion: MinionId,
    pub cluster: Option<ClusterId>,
}

impl IdentityRecord {
    /// The file's text; see docs/format.md.
    pub fn render(&self) -> String {
        let cluster = match self.cluster {
            Some(cluster) => cluster.to_string(),
            None => "none".to_string(),
        };
        format!(
            "{IDENTITY_HEADING}\nversion {IDENTITY_FORMAT_VERSION}\nminion {}\ncluster {cluster}\n",
            self.minion
        )
    }

    /// Parses the file's text strictly; the error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<IdentityRecord, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| "does not end with a newline".to_string())?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [heading, version, minion, cluster] = lines[..] else {
            return Err(format!("has {} lines, expected 4", lines.len()));
        };
        if heading != IDENTITY_HEADING {
            return Err(format!("first line is not {IDENTITY_HEADING:?}"));
        }
        let version = field(version, "version")?;
        if version != IDENTITY_FORMAT_VERSION.to_string() {
            return Err(format!(
                "unsupported version {version:?} (this build reads {IDENTITY_FORMAT_VERSION})"
            ));
        }
        let minion = MinionId(parse_id(field(minion, "minion")?)?);
        let cluster = match field(cluster, "cluster")? {
            "none" => None,
            hex => Some(ClusterId(parse_id(hex)?)),
        };
        Ok(IdentityRecord { minion, cluster })
    }
}

fn field<'a>(line: &'a str, name: &str) -> Result<&'a str, String> {
    line.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| format!("expected a line \"{name} ...\", found {line:?}"))
}

/// 16 lowercase hex digits, as ids are displayed.
fn parse_id(hex: &str) -> Result<u64, String> {
    let well_formed =
        hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    well_formed
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
        .ok_or_else(|| format!("{hex:?} is not an id of 16 lowercase hex digits"))
}

/// The identity shared by all data directories of this minion.
#[derive(Debug)]
pub struct Identity {
    dirs: Vec<PathBuf>,
    record: IdentityRecord,
}

impl Identity {
    /// Creates missing data directories, reads their identity files, checks
    /// that they agree, and writes the identity into every directory that
    /// lacks it. A minion with no identity anywhere gets a new random id.
    pub fn load_or_create(dirs: &[PathBuf]) -> Result<Identity> {
        if dirs.is_empty() {
            return Err(Error::Invalid(
                "a minion needs at least one data directory".into(),
            ));
        }
        let mut found: Vec<(&Path, IdentityRecord)> = Vec::new();
        for dir in dirs {
            fs::create_dir_all(dir)
                .with_context(|| format!("create data directory {}", dir.display()))?;
            if let Some(record) = read_record(dir)? {
                found.push((dir, record));
            }
        }
        let record = merge(&found)?;
        let record = match record {
            Some(record) => record,
            None => IdentityRecord {
                minion: MinionId(dfs_engine::rpc::random_u64()?),
                cluster: None,
            },
        };
        let identity = Identity {
            dirs: dirs.to_vec(),
            record,
        };
        identity.write_where_different()?;
        Ok(identity)
    }

    pub fn minion(&self) -> MinionId {
        self.record.minion
    }

    pub fn cluster(&self) -> Option<ClusterId> {
        self.record.cluster
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Remembers the cluster this minion joined, in every data directory.
    pub fn set_cluster(&mut self, cluster: ClusterId) -> Result<()> {
        if self.record.cluster == Some(cluster) {
            return Ok(());
        }
        self.record.cluster = Some(cluster);
        self.write_where_different()
    }

    fn write_where_different(&self) -> Result<()> {
        for dir in &self.dirs {
            if read_record(dir)? != Some(self.record) {
                write_record(dir, &self.record)?;
            }
        }
        Ok(())
    }
}

/// The single identity the found records agree on, or why they don't.
fn merge(found: &[(&Path, IdentityRecord)]) -> Result<Option<IdentityRecord>> {
    let Some(&(first_dir, first)) = found.first() else {
        return Ok(None);
    };
    let mut merged = first;
    let mut cluster_dir = first_dir;
    for &(dir, record) in &found[1..] {
        if record.minion != merged.minion {
            return Err(Error::Invalid(format!(
                "data directory {} belongs to minion {}, but {} belongs to minion {}; \
                 a minion's data directories must all be its own",
                dir.display(),
                record.minion,
                first_dir.display(),
                merged.minion
            )));
        }
        match (merged.cluster, record.cluster) {
            (Some(known), Some(other)) if known != other => {
                return Err(Error::Invalid(format!(
                    "data directory {} belongs to cluster {other}, but {} belongs to cluster {known}",
                    dir.display(),
                    cluster_dir.display()
                )));
            }
            (None, Some(other)) => {
                merged.cluster = Some(other);
                cluster_dir = dir;
            }
            _ => {}
        }
    }
    Ok(Some(merged))
}

/// Reads `dir/minion.id`; `None` when there is none.
fn read_record(dir: &Path) -> Result<Option<IdentityRecord>> {
    let path = dir.join(IDENTITY_FILE_NAME);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io(format!("open {}", path.display()), error)),
    };
    let mut bytes = Vec::new();
    file.take(IDENTITY_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("read {}", path.display()))?;
    let parsed = if bytes.len() as u64 > IDENTITY_FILE_BYTES_MAX {
        Err(format!("longer than {IDENTITY_FILE_BYTES_MAX} bytes"))
    } else {
        IdentityRecord::parse(&bytes)
    };
    parsed.map(Some).map_err(|why| {
        Error::Invalid(format!(
            "data directory {}: {} is not a minion identity file ({why}); refusing to use the directory",
            dir.display(),
            path.display()
        ))
    })
}

/// Replaces `dir/minion.id` atomically and durably.
fn write_record(dir: &Path, record: &IdentityRecord) -> Result<()> {
    let temporary = dir.join(IDENTITY_TEMPORARY_NAME);
    let target = dir.join(IDENTITY_FILE_NAME);
    let context = || format!("write {}", temporary.display());
    let mut file = File::create(&temporary).with_context(context)?;
    file.write_all(record.render().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(context)?;
    fs::rename(&temporary, &target).with_context(|| format!("replace {}", target.display()))?;
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .with_context(|| format!("sync directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(minion: u64, cluster: Option<u64>) -> IdentityRecord {
        IdentityRecord {
            minion: MinionId(minion),
            cluster: cluster.map(ClusterId),
        }
    }

    #[test]
    fn records_render_and_parse() {
        for record in [
            record(0xab, None),
            record(u64::MAX, Some(0x0123_4567_89ab_cdef)),
        ] {
            assert_eq!(
                IdentityRecord::parse(record.render().as_bytes()),
                Ok(record)
            );
        }
        assert_eq!(
            record(0xab, Some(1)).render(),
            "dfs-minion identity\nversion 1\nminion 00000000000000ab\ncluster 0000000000000001\n"
        );
    }

    #[test]
    fn bad_records_are_refused_with_a_reason() {
        let good = "dfs-minion identity\nversion 1\nminion 00000000000000ab\ncluster none\n";
        let cases: [(&str, &str); 9] = [
            ("", "does not end with a newline"),
            ("hello\n", "has 1 lines"),
            (&good[..good.len() - 1], "does not end with a newline"),
            (&good.replace("dfs-minion", "dfs-master"), "first line"),
            (
                &good.replace("version 1", "version 2"),
                "unsupported version \"2\"",
            ),
            (
                &good.replace("minion 00", "minion: 00"),
                "expected a line \"minion ...\"",
            ),
            (
                &good.replace("00000000000000ab", "00000000000000AB"),
                "not an id",
            ),
            (&good.replace("00000000000000ab", "ab"), "not an id"),
            (&good.replace("none", "nope"), "not an id"),
        ];
        for (text, expected) in cases {
            let error = IdentityRecord::parse(text.as_bytes()).expect_err(text);
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        assert!(IdentityRecord::parse(&[0xff, b'\n']).is_err());
    }

    fn dirs(count: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let root = tempfile::tempdir().expect("tempdir");
        let paths = (0..count)
            .map(|index| root.path().join(format!("disk{index}")))
            .collect();
        (root, paths)
    }

    #[test]
    fn a_new_minion_writes_one_id_into_every_dir_and_keeps_it() {
        let (_root, paths) = dirs(3);
        let mut identity = Identity::load_or_create(&paths).expect("create");
        assert_eq!(identity.cluster(), None);
        for path in &paths {
            let text = fs::read(path.join(IDENTITY_FILE_NAME)).expect("identity file");
            assert_eq!(IdentityRecord::parse(&text), Ok(identity.record));
        }
        identity.set_cluster(ClusterId(77)).expect("set cluster");
        let again = Identity::load_or_create(&paths).expect("load");
        assert_eq!(again.minion(), identity.minion());
        assert_eq!(again.cluster(), Some(ClusterId(77)));
    }

    #[test]
    fn an_added_dir_joins_the_existing_identity() {
        let (_root, paths) = dirs(2);
        let mut first = Identity::load_or_create(&paths[..1]).expect("create");
        first.set_cluster(ClusterId(5)).expect("set cluster");
        let both = Identity::load_or_create(&paths).expect("load both");
        assert_eq!(
            (both.minion(), both.cluster()),
            (first.minion(), Some(ClusterId(5)))
        );
        let text = fs::read(paths[1].join(IDENTITY_FILE_NAME)).expect("identity file");
        assert_eq!(IdentityRecord::parse(&text), Ok(both.record));
    }

    #[test]
    fn disagreeing_or_garbage_dirs_are_refused_by_name() {
        type Setup = fn(&[PathBuf]);
        let cases: [(&str, Setup, &str); 4] = [
            (
                "another minion's dir",
                |paths| write_record(&paths[1], &record(2, None)).expect("write"),
                "belongs to minion 0000000000000002",
            ),
            (
                "another cluster's dir",
                |paths| write_record(&paths[1], &record(1, Some(9))).expect("write"),
                "belongs to cluster 0000000000000009",
            ),
            (
                "garbage identity file",
                |paths| fs::write(paths[1].join(IDENTITY_FILE_NAME), b"PK\x03\x04").expect("write"),
                "is not a minion identity file",
            ),
            (
                "huge identity file",
                |paths| {
                    let text = "x".repeat(IDENTITY_FILE_BYTES_MAX as usize + 1);
                    fs::write(paths[1].join(IDENTITY_FILE_NAME), text).expect("write")
                },
                "longer than 4096 bytes",
            ),
        ];
        for (name, setup, expected) in cases {
            let (_root, paths) = dirs(2);
            for path in &paths {
                fs::create_dir_all(path).expect("mkdir");
            }
            write_record(&paths[0], &record(1, Some(8))).expect("write");
            setup(&paths);
            let error = Identity::load_or_create(&paths).expect_err(name);
            let message = error.to_string();
            assert!(message.contains(expected), "{name}: {message}");
            assert!(
                message.contains(&paths[1].display().to_string()),
                "{name}: {message} should name the dir"
            );
            // Nothing was rewritten.
            let first = fs::read(paths[0].join(IDENTITY_FILE_NAME)).expect("identity file");
            assert_eq!(
                IdentityRecord::parse(&first),
                Ok(record(1, Some(8))),
                "{name}"
            );
        }
    }
}
