//! What to copy where: sources expanded (globs, component by component, on
//! either side), the destination of each chosen by the rule of rsync, and
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
            if !argument.is_pattern() {
                return Ok(vec![Location::Local(PathBuf::from(raw))]);
            }
            let text = raw.to_string_lossy();
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
            if !argument.is_pattern() {
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

/// One source as the destination plan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub location: Location,
    pub entry: Entry,
    /// Named with a trailing slash (`dir/`, `dir/.`): a directory's
    /// contents are copied, not the directory itself.
    pub contents: bool,
}

/// How many sources the command line names. A glob names several however
/// many paths it matches, so its target is a directory either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Named {
    One,
    Several,
}

impl Named {
    pub fn of(arguments: &[Argument]) -> Named {
        if arguments.len() > 1 || arguments.iter().any(Argument::is_pattern) {
            Named::Several
        } else {
            Named::One
        }
    }
}

/// The destination as typed and as found before the copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub location: Location,
    /// None when nothing is there yet.
    pub kind: Option<Kind>,
    /// Typed with a trailing `/`: a directory even when it does not exist.
    pub names_directory: bool,
}

/// Where each source goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// One target per source, in the order of the sources.
    pub targets: Vec<Location>,
    /// The destination is a directory that does not exist yet: make it
    /// before the walk, which makes only the directories below it.
    pub make_destination: bool,
}

/// Where the sources go, by the rule of rsync: a directory named without
/// a trailing slash goes into the destination under its own name, `dir/`
/// puts its contents there; one file goes onto a destination that is
/// missing or not a directory, and into one that is a directory or ends in
/// `/`; several sources go into a directory. The result never depends on
/// whether the destination exists, so the same command run again, after a
/// run that was killed at any moment, copies to the same places (no I/O
/// here: `kind` is what the caller found).
pub fn place(sources: &[Source], named: Named, destination: &Destination) -> Result<Placement> {
    let into_directory = named == Named::Several
        || destination.names_directory
        || destination.kind == Some(Kind::Directory)
        || sources
            .iter()
            .any(|source| source.entry.kind == Kind::Directory);
    if !into_directory {
        // One file (or a link or device, which the walk reports) onto a name.
        return Ok(Placement {
            targets: vec![destination.location.clone(); sources.len()],
            make_destination: false,
        });
    }
    if destination.kind.is_some_and(|kind| kind != Kind::Directory) {
        return Err(Error::Invalid(format!(
            "{}: exists and is not a directory",
            destination.location
        )));
    }
    let targets = sources
        .iter()
        .map(|source| target_in(source, &destination.location))
        .collect::<Result<Vec<Location>>>()?;
    Ok(Placement {
        targets,
        make_destination: destination.kind.is_none() && !sources.is_empty(),
    })
}

/// Where `source` goes in the directory `directory`.
fn target_in(source: &Source, directory: &Location) -> Result<Location> {
    let contents = source.contents && source.entry.kind == Kind::Directory;
    match source.location.name() {
        Some(name) if !contents => directory.join(&name),
        // `dir/`, the root or `.`: its contents go into the directory.
        _ => Ok(directory.clone()),
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

    /// The side a path of a placement test is on.
    #[derive(Clone, Copy, Debug)]
    enum Side {
        Local,
        Cluster,
    }

    fn on(side: Side, text: &str) -> Location {
        match side {
            Side::Local => local(text),
            Side::Cluster => Location::Cluster {
                master: "m:1".into(),
                path: DfsPath::parse(&format!("/{text}")).expect("path"),
            },
        }
    }

    /// A source written as `f:PATH` (a file) or `d:PATH` (a directory;
    /// `d:PATH/` names its contents).
    fn source(side: Side, spec: &str) -> Source {
        let (kind, path) = match spec.split_once(':') {
            Some(("f", path)) => (Kind::File, path),
            Some(("d", path)) => (Kind::Directory, path),
            _ => panic!("bad source spec {spec}"),
        };
        Source {
            location: on(side, path),
            entry: Entry {
                kind,
                size_bytes: 0,
                mode: 0o644,
                modified_ns: 0,
            },
            contents: path.ends_with('/') || path.ends_with("/."),
        }
    }

    /// Places `sources` (as `source` reads them) named as `named` onto the
    /// target `t` (`t/` when `slash`), which is `target_exists` before the
    /// copy, on every pair of sides: `expected` is the targets and whether
    /// `t` is made first, or the error.
    fn check(
        sources: &[&str],
        named: Named,
        slash: bool,
        target_exists: Option<Kind>,
        expected: std::result::Result<(&[&str], bool), &str>,
    ) {
        let sides = [Side::Local, Side::Cluster];
        for (from, to) in sides
            .into_iter()
            .flat_map(|from| sides.map(|to| (from, to)))
        {
            let what =
                format!("{sources:?} {named:?} slash={slash} {target_exists:?} {from:?}->{to:?}");
            let sources: Vec<Source> = sources.iter().map(|spec| source(from, spec)).collect();
            let destination = Destination {
                location: on(to, "t"),
                kind: target_exists,
                names_directory: slash,
            };
            match (place(&sources, named, &destination), expected) {
                (Ok(placement), Ok((targets, make))) => {
                    let want: Vec<Location> = targets.iter().map(|path| on(to, path)).collect();
                    assert_eq!(placement.targets, want, "{what}");
                    assert_eq!(placement.make_destination, make, "{what}");
                }
                (Err(error), Err(message)) => {
                    assert_eq!(
                        error.to_string(),
                        format!("{}: {message}", on(to, "t")),
                        "{what}"
                    )
                }
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn placement_follows_rsync_whether_the_target_exists_or_not() {
        use Kind::{Directory, File, Other};
        use Named::{One, Several};
        let not_a_directory = "exists and is not a directory";
        // A directory without a trailing slash: always t/<name>.
        check(&["d:a/s"], One, false, None, Ok((&["t/s"], true)));
        check(
            &["d:a/s"],
            One,
            false,
            Some(Directory),
            Ok((&["t/s"], false)),
        );
        check(&["d:a/s"], One, true, None, Ok((&["t/s"], true)));
        check(&["d:a/s"], One, false, Some(File), Err(not_a_directory));
        // With one: its contents into t.
        check(&["d:a/s/"], One, false, None, Ok((&["t"], true)));
        check(
            &["d:a/s/"],
            One,
            false,
            Some(Directory),
            Ok((&["t"], false)),
        );
        check(
            &["d:a/s/."],
            One,
            true,
            Some(Directory),
            Ok((&["t"], false)),
        );
        check(&["d:a/s/"], One, false, Some(File), Err(not_a_directory));
        // The root has no name: its contents.
        check(&["d:"], One, false, None, Ok((&["t"], true)));
        // One file: onto t when t is missing or not a directory...
        check(&["f:a/f"], One, false, None, Ok((&["t"], false)));
        check(&["f:a/f"], One, false, Some(File), Ok((&["t"], false)));
        check(&["f:a/f"], One, false, Some(Other), Ok((&["t"], false)));
        // ...into it when it is one or ends in `/`.
        check(
            &["f:a/f"],
            One,
            false,
            Some(Directory),
            Ok((&["t/f"], false)),
        );
        check(&["f:a/f"], One, true, None, Ok((&["t/f"], true)));
        check(&["f:a/f"], One, true, Some(File), Err(not_a_directory));
        // Several sources (or a glob): into a directory, made if missing,
        // each by the same rule.
        let several: &[&str] = &["f:a/f", "d:a/s", "d:b/u/"];
        check(
            several,
            Several,
            false,
            None,
            Ok((&["t/f", "t/s", "t"], true)),
        );
        check(
            several,
            Several,
            true,
            Some(Directory),
            Ok((&["t/f", "t/s", "t"], false)),
        );
        check(several, Several, false, Some(File), Err(not_a_directory));
        // A glob that matched one file still names a directory.
        check(&["f:a/f"], Several, false, None, Ok((&["t/f"], true)));
        // Every source failed: nothing to place, nothing made.
        check(&[], Several, false, None, Ok((&[], false)));
    }

    #[test]
    fn globs_name_several_sources() {
        let master = || Ok("m:1".to_string());
        for (arguments, expected) in [
            (vec!["a"], Named::One),
            (vec!["a/"], Named::One),
            (vec!["a", "b"], Named::Several),
            (vec!["a*"], Named::Several),
            (vec!["dfs:///x/[ab]"], Named::Several),
            (vec!["a\\*"], Named::One),
        ] {
            let parsed: Vec<Argument> = arguments
                .iter()
                .map(|raw| Argument::parse(OsStr::new(raw), &master).expect("argument"))
                .collect();
            assert_eq!(Named::of(&parsed), expected, "{arguments:?}");
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
