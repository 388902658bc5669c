//! What to copy where: sources expanded (globs, component by component, on
//! either side), the destination chosen by the rules of `cp -r`, and
//! directory trees walked into one stream of file jobs. Target directories
//! are made as the walk reaches them, and temporary files an interrupted run
//! left in them are removed first.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use dfs_engine::limits::PATH_DEPTH_MAX;
use dfs_engine::path::DfsPath;
use dfs_engine::{Error, Result};

use super::args::Options;
use super::glob;
use super::side::{Entry, Kind, Sides};
use super::url::{Argument, Location};
use super::worker::is_temporary_name;

/// Permission bits of directories made in the target when modes are not preserved.
const DIRECTORY_MODE: u32 = 0o755;

/// One file to copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileJob {
    pub source: Location,
    pub target: Location,
    /// The source as the walk saw it.
    pub entry: Entry,
}

/// What the walk tells the user besides the jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// Something not copied on purpose (a symlink, a socket).
    Skipped(String),
    /// Something that failed: `what: why`.
    Failed(String),
}

/// The concrete locations an argument names: itself, or what its glob
/// patterns match (sorted); an error when a pattern matches nothing.
pub fn expand(argument: &Argument, sides: &mut Sides) -> Result<Vec<Location>> {
    let (base, components, shown): (Location, Vec<String>, String) = match argument {
        Argument::Local(raw) => {
            let text = raw.to_string_lossy();
            if !glob::is_pattern(&text) || raw.to_str().is_none() {
                return Ok(vec![Location::Local(PathBuf::from(raw))]);
            }
            let base = if raw.as_bytes().starts_with(b"/") {
                PathBuf::from("/")
            } else {
                PathBuf::from(".")
            };
            let components = text.split('/').filter(|c| !c.is_empty()).map(String::from);
            (
                Location::Local(base),
                components.collect(),
                text.into_owned(),
            )
        }
        Argument::Cluster { master, path } => {
            let shown = format!("dfs://{master}{path}");
            if !glob::is_pattern(path) {
                return Ok(vec![Location::Cluster {
                    master: master.clone(),
                    path: DfsPath::parse(path)?,
                }]);
            }
            let base = Location::Cluster {
                master: master.clone(),
                path: DfsPath::root(),
            };
            let components = path.split('/').filter(|c| !c.is_empty()).map(String::from);
            (base, components.collect(), shown)
        }
    };
    let mut candidates = vec![base];
    for component in &components {
        let mut next = Vec::new();
        for candidate in &candidates {
            if glob::is_pattern(component) {
                // A candidate that is not a listable directory matches nothing.
                let Ok(entries) = sides.list(candidate) else {
                    continue;
                };
                for (name, _) in entries {
                    if glob::matches(component, &name.to_string_lossy()) {
                        next.push(candidate.join(&name)?);
                    }
                }
            } else {
                next.push(candidate.join(OsStr::new(&glob::unquote(component)))?);
            }
        }
        candidates = next;
    }
    let mut found = Vec::new();
    for candidate in candidates {
        if sides.stat(&candidate)?.is_some() {
            found.push(strip_dot(candidate));
        }
    }
    if found.is_empty() {
        return Err(Error::Invalid(format!("{shown}: no match")));
    }
    found.sort_by_key(|location| location.to_string());
    Ok(found)
}

/// `./a` from a relative pattern shows as `a`, as the shell would.
fn strip_dot(location: Location) -> Location {
    match location {
        Location::Local(path) => match path.strip_prefix(".") {
            Ok(rest) if !rest.as_os_str().is_empty() => Location::Local(rest.to_path_buf()),
            _ => Location::Local(path),
        },
        other => other,
    }
}

/// Where one source goes, and whether the destination directory must be
/// made first. The rules of `cp -r`: several sources, or a destination that
/// is a directory or ends in `/`, go into it under their own names; one
/// source and a missing destination becomes it.
pub fn target_of(
    source: &Location,
    source_kind: Kind,
    source_count: usize,
    destination: &Location,
    destination_kind: Option<Kind>,
    destination_names_directory: bool,
) -> Result<(Location, bool)> {
    let into = |make: bool| -> Result<(Location, bool)> {
        match source.name() {
            Some(name) => Ok((destination.join(&name)?, make)),
            // The root or `.`: its contents go into the destination.
            None => Ok((destination.clone(), make)),
        }
    };
    let not_a_directory = || {
        Err(Error::Invalid(format!(
            "{destination}: exists and is not a directory"
        )))
    };
    match destination_kind {
        Some(Kind::Directory) => into(false),
        Some(_) if source_count > 1 || destination_names_directory => not_a_directory(),
        Some(_) if source_kind == Kind::Directory => not_a_directory(),
        Some(_) => Ok((destination.clone(), false)),
        None if source_count > 1 || destination_names_directory => into(true),
        None => Ok((destination.clone(), false)),
    }
}

/// Walks sources into file jobs, making target directories on the way.
pub struct Planner<'a> {
    pub sides: Sides,
    pub options: &'a Options,
    /// Target directories already cleaned of temporary files.
    cleaned: HashSet<String>,
}

impl<'a> Planner<'a> {
    pub fn new(sides: Sides, options: &'a Options) -> Planner<'a> {
        Planner {
            sides,
            options,
            cleaned: HashSet::new(),
        }
    }

    /// Plans the copy of `source` (whose entry is `entry`) to `target`:
    /// `send` gets each file job and answers false to stop; `note` gets what
    /// is skipped or failed on the way.
    pub fn walk(
        &mut self,
        source: Location,
        entry: Entry,
        target: Location,
        send: &mut dyn FnMut(FileJob) -> bool,
        note: &mut dyn FnMut(Note),
    ) -> bool {
        let mut stack: Vec<(Location, Entry, Location, usize)> = vec![(source, entry, target, 0)];
        while let Some((source, entry, target, depth)) = stack.pop() {
            match entry.kind {
                Kind::File => {
                    if let Some(parent) = target.parent() {
                        if let Err(error) = self.clean(&parent) {
                            note(Note::Failed(error.to_string()));
                        }
                    }
                    if !send(FileJob {
                        source,
                        target,
                        entry,
                    }) {
                        return false;
                    }
                }
                Kind::Symlink => note(Note::Skipped(format!(
                    "{source}: skipping symbolic link (use -L to follow)"
                ))),
                Kind::Other => note(Note::Skipped(format!(
                    "{source}: skipping: not a regular file or directory"
                ))),
                Kind::Directory => {
                    if depth >= PATH_DEPTH_MAX {
                        note(Note::Failed(format!(
                            "{source}: deeper than {PATH_DEPTH_MAX} directories (a symbolic link loop?)"
                        )));
                        continue;
                    }
                    match self.enter_directory(&source, &entry, &target) {
                        Ok(children) => {
                            // Reversed so the stack pops them in name order.
                            for (name, child) in children.into_iter().rev() {
                                match (source.join(&name), target.join(&name)) {
                                    (Ok(child_source), Ok(child_target)) => {
                                        stack.push((child_source, child, child_target, depth + 1))
                                    }
                                    (Err(error), _) | (_, Err(error)) => note(Note::Failed(
                                        format!("{source}/{}: {error}", name.to_string_lossy()),
                                    )),
                                }
                            }
                        }
                        Err(error) => note(Note::Failed(error.to_string())),
                    }
                }
            }
        }
        true
    }

    /// Makes the target directory (unless a dry run), cleans it and lists
    /// the source directory.
    fn enter_directory(
        &mut self,
        source: &Location,
        entry: &Entry,
        target: &Location,
    ) -> Result<Vec<(OsString, Entry)>> {
        self.check_not_inside(source, target)?;
        if !self.options.dry_run {
            let mode = if self.options.preserve {
                // The copy must be able to write into it.
                entry.mode | 0o700
            } else {
                DIRECTORY_MODE
            };
            self.sides.make_directory(target, mode)?;
            self.clean(target)?;
        }
        self.sides.list(source)
    }

    /// Refuses to copy a directory into itself, which would never end.
    fn check_not_inside(&mut self, source: &Location, target: &Location) -> Result<()> {
        let inside = match (source, target) {
            (
                Location::Cluster { master, path },
                Location::Cluster {
                    master: target_master,
                    path: target_path,
                },
            ) => master == target_master && target_path.is_within(path),
            (Location::Local(source_path), Location::Local(target_path)) => {
                let canonical_source = source_path.canonicalize().ok();
                let canonical_target = target_path.canonicalize().ok().or_else(|| {
                    let parent = target_path.parent()?;
                    let parent = if parent.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        parent.to_path_buf()
                    };
                    Some(parent.canonicalize().ok()?.join(target_path.file_name()?))
                });
                match (canonical_source, canonical_target) {
                    (Some(source), Some(target)) => target.starts_with(source),
                    _ => false,
                }
            }
            _ => false,
        };
        if inside {
            return Err(Error::Invalid(format!(
                "{source}: cannot copy a directory into itself ({target})"
            )));
        }
        Ok(())
    }

    /// Removes temporary files an interrupted run left in `directory`, once
    /// per directory per run.
    fn clean(&mut self, directory: &Location) -> Result<()> {
        if self.options.dry_run || !self.cleaned.insert(directory.to_string()) {
            return Ok(());
        }
        let entries = match self.sides.list(directory) {
            Ok(entries) => entries,
            // Missing: nothing to clean; the copy itself will say why.
            Err(_) => return Ok(()),
        };
        for (name, entry) in entries {
            if entry.kind == Kind::File && is_temporary_name(&name) {
                self.sides.remove_file(&directory.join(&name)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn local(text: &str) -> Location {
        Location::Local(PathBuf::from(text))
    }

    #[test]
    fn destinations_follow_cp_r() {
        use Kind::{Directory, File};
        let exists = "exists and is not a directory";
        for (source, kind, count, destination_kind, names_directory, expected) in [
            ("a/f", File, 1, None, false, Ok(("d", false))),
            ("a/f", File, 1, Some(File), false, Ok(("d", false))),
            ("a/f", File, 1, Some(Directory), false, Ok(("d/f", false))),
            ("a/f", File, 1, None, true, Ok(("d/f", true))),
            ("a/s", Directory, 1, None, false, Ok(("d", false))),
            (
                "a/s",
                Directory,
                1,
                Some(Directory),
                false,
                Ok(("d/s", false)),
            ),
            ("a/s", Directory, 1, Some(File), false, Err(exists)),
            ("a/f", File, 2, None, false, Ok(("d/f", true))),
            ("a/f", File, 2, Some(Directory), false, Ok(("d/f", false))),
            ("a/f", File, 2, Some(File), false, Err(exists)),
            ("a/f", File, 1, Some(File), true, Err(exists)),
            (".", Directory, 1, Some(Directory), false, Ok(("d", false))),
        ] {
            let got = target_of(
                &local(source),
                kind,
                count,
                &local("d"),
                destination_kind,
                names_directory,
            );
            match (got, expected) {
                (Ok((target, make)), Ok((want, want_make))) => {
                    assert_eq!((target, make), (local(want), want_make), "{source} {count}")
                }
                (Err(error), Err(want)) => {
                    assert_eq!(error.to_string(), format!("d: {want}"), "{source} {count}")
                }
                (got, want) => panic!("{source} {count}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn local_globs_expand_component_by_component() {
        let dir = tempfile::tempdir().expect("temporary directory");
        for name in [
            "x/a1/f.txt",
            "x/a2/f.txt",
            "x/a2/g.csv",
            "x/b1/f.txt",
            "x/.h/f.txt",
        ] {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, b"data").expect("write");
        }
        let root = dir.path().to_str().expect("utf-8");
        let mut sides = Sides::new(false);
        for (pattern, expected) in [
            ("x/a*/f.txt", vec!["x/a1/f.txt", "x/a2/f.txt"]),
            ("x/*/*.csv", vec!["x/a2/g.csv"]),
            ("x/[ab]1", vec!["x/a1", "x/b1"]),
            ("x/?2/*", vec!["x/a2/f.txt", "x/a2/g.csv"]),
            ("x/.*/f.txt", vec!["x/.h/f.txt"]),
        ] {
            let argument = Argument::Local(format!("{root}/{pattern}").into());
            let found = expand(&argument, &mut sides).expect(pattern);
            let want: Vec<Location> = expected
                .iter()
                .map(|name| Location::Local(dir.path().join(name)))
                .collect();
            assert_eq!(found, want, "{pattern}");
        }
        let missing = Argument::Local(format!("{root}/x/z*").into());
        let error = expand(&missing, &mut sides).expect_err("no match");
        assert!(error.to_string().ends_with("/x/z*: no match"), "{error}");
        let plain = Argument::Local("no/such/file".into());
        assert_eq!(
            expand(&plain, &mut sides).expect("plain"),
            vec![local("no/such/file")]
        );
    }

    #[test]
    fn walk_makes_directories_cleans_temporaries_and_sends_files_in_order() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let source = dir.path().join("source");
        fs::create_dir_all(source.join("sub/deeper")).expect("mkdir");
        fs::create_dir_all(source.join("empty")).expect("mkdir");
        fs::write(source.join("b"), b"1").expect("write");
        fs::write(source.join("a"), b"22").expect("write");
        fs::write(source.join("sub/deeper/c"), b"333").expect("write");
        std::os::unix::fs::symlink("a", source.join("link")).expect("symlink");
        let target = dir.path().join("target");
        fs::create_dir_all(&target).expect("mkdir");
        let leftover = target.join(".a.dfs-cp-0123456789abcdef");
        fs::write(&leftover, b"partial").expect("write");

        let options = super::super::args::CpArgs {
            jobs: None,
            recursive: false,
            preserve: false,
            follow_symlinks: false,
            force: false,
            update: false,
            checksum: false,
            verify: false,
            dry_run: false,
            quiet: true,
            json: false,
            fail_fast: false,
            no_sync: false,
            replication: None,
            block_size: None,
            paths: vec![],
        }
        .options(1)
        .expect("options");
        let mut planner = Planner::new(Sides::new(false), &options);
        let entry = planner
            .sides
            .stat(&Location::Local(source.clone()))
            .expect("stat")
            .expect("exists");
        let mut jobs = Vec::new();
        let mut notes = Vec::new();
        let finished = planner.walk(
            Location::Local(source.clone()),
            entry,
            Location::Local(target.clone()),
            &mut |job| {
                jobs.push(job);
                true
            },
            &mut |note| notes.push(note),
        );
        assert!(finished);
        let pairs: Vec<(PathBuf, PathBuf)> = jobs
            .into_iter()
            .map(|job| match (job.source, job.target) {
                (Location::Local(s), Location::Local(t)) => (s, t),
                other => panic!("not local: {other:?}"),
            })
            .collect();
        assert_eq!(
            pairs,
            vec![
                (source.join("a"), target.join("a")),
                (source.join("b"), target.join("b")),
                (source.join("sub/deeper/c"), target.join("sub/deeper/c")),
            ]
        );
        assert!(target.join("empty").is_dir());
        assert!(target.join("sub/deeper").is_dir());
        assert!(!leftover.exists(), "the leftover temporary file is removed");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            matches!(&notes[0], Note::Skipped(text) if text.contains("link: skipping symbolic link"))
        );

        // Into itself: refused.
        let inside = planner.walk(
            Location::Local(source.clone()),
            entry,
            Location::Local(source.join("sub/copy")),
            &mut |_| true,
            &mut |note| notes.push(note),
        );
        assert!(inside);
        assert!(
            matches!(notes.last(), Some(Note::Failed(text)) if text.contains("cannot copy a directory into itself"))
        );
    }
}
