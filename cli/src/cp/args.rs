//! The command line of `dfs-cp` (and `dfs cp`), and the checked options the
//! copy runs with.

use std::ffi::OsString;

use clap::{Args, Parser};

use dfs_engine::units;
use dfs_engine::{Error, Result};

use dfs_client::write::{check_block_bytes, check_replication};

/// Most parallel streams `-j` may ask for.
pub const STREAMS_MAX: usize = 64;
/// Streams per core when `-j` is not given: copies wait on the network and
/// on minions' disks far more than on this machine's cores.
const STREAMS_PER_CORE: usize = 4;

/// Where sources land, for `--help` of `dfs-cp` and `dfs cp`.
pub const PLACEMENT_HELP: &str = "\
Paths are local, dfs://HOST:PORT/path or dfs:///path (the default master).
Where things land follows rsync, whether DST exists or not, so the same
command run again resumes a copy and never nests:
  dfs-cp dir DST       copies to DST/dir (DST made if missing)
  dfs-cp dir/ DST      copies the contents of dir into DST
  dfs-cp file DST      copies to DST, or to DST/file when DST is a directory or ends in /
  dfs-cp a b DST       several sources, or a glob ('dfs:///data/*.csv'), go into DST/";

/// `dfs-cp [OPTIONS] SRC... DST`.
#[derive(Debug, Parser)]
#[command(
    name = "dfs-cp",
    version,
    about = "Copy files and directory trees into, out of and within the distributed file system",
    after_help = PLACEMENT_HELP
)]
pub struct CpCommand {
    /// The master's address for dfs:///path; else $DFS_MASTER, else the config file
    #[arg(long, value_name = "HOST:PORT")]
    pub master: Option<String>,

    #[command(flatten)]
    pub args: CpArgs,
}

#[derive(Clone, Debug, Args)]
pub struct CpArgs {
    /// Parallel streams (default: 4 per core, at most 64)
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Copy directories recursively (always done; accepted for cp habits)
    #[arg(short = 'r', short_alias = 'R', long = "recursive")]
    pub recursive: bool,
    /// Preserve mode and modification time
    #[arg(short = 'p', long = "preserve")]
    pub preserve: bool,
    /// Follow symbolic links in sources (default: skip them with a note)
    #[arg(short = 'L', long = "dereference")]
    pub follow_symlinks: bool,
    /// Overwrite targets that differ
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Skip targets with the same size and modification time; overwrite the rest
    #[arg(short = 'u', long = "update")]
    pub update: bool,
    /// Compare contents to decide what to skip, even with --update
    #[arg(short = 'c', long = "checksum")]
    pub checksum: bool,
    /// Check every copied file's checksum against its source afterwards
    #[arg(long = "verify")]
    pub verify: bool,
    /// Print what would be copied or skipped, and change nothing
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// No progress output
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Print a JSON summary on standard output at the end
    #[arg(long = "json")]
    pub json: bool,
    /// Stop at the first file that fails (small files are then not written
    /// in batches, so no file after the failing one is copied)
    #[arg(long = "fail-fast")]
    pub fail_fast: bool,
    /// Do not wait for data to reach stable storage
    #[arg(long = "no-sync")]
    pub no_sync: bool,
    /// Replicas of each block of files written into the cluster (1 to 16)
    #[arg(long = "replication", value_name = "N")]
    pub replication: Option<u64>,
    /// Block size of files written into the cluster, e.g. 64M
    #[arg(long = "block-size", value_name = "SIZE")]
    pub block_size: Option<String>,
    /// SRC... DST: a directory SRC goes to DST/SRC, SRC/ copies its contents into DST
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    pub paths: Vec<OsString>,
}

/// What to do with a target that exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Skip it when it has the same content; otherwise fail the file.
    Refuse,
    /// Skip it when it has the same content; otherwise overwrite it.
    Force,
    /// Skip it when it has the same size and mtime (content with
    /// `--checksum`); otherwise overwrite it.
    Update,
}

/// The checked options of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub streams: usize,
    pub preserve: bool,
    pub follow_symlinks: bool,
    pub existing: Existing,
    pub compare_content: bool,
    pub verify: bool,
    pub dry_run: bool,
    pub quiet: bool,
    pub json: bool,
    pub fail_fast: bool,
    pub sync: bool,
    pub replication: Option<u8>,
    pub block_bytes: Option<u64>,
}

impl CpArgs {
    /// Checks the options; `cores` sizes the default number of streams.
    pub fn options(&self, cores: usize) -> Result<Options> {
        let streams = match self.jobs {
            Some(0) => return Err(Error::Invalid("-j 0: at least one stream".into())),
            Some(jobs) if jobs > STREAMS_MAX => {
                return Err(Error::Invalid(format!(
                    "-j {jobs}: at most {STREAMS_MAX} streams"
                )))
            }
            Some(jobs) => jobs,
            None => (cores.max(1) * STREAMS_PER_CORE).min(STREAMS_MAX),
        };
        let existing = match (self.update, self.force) {
            (true, _) => Existing::Update,
            (false, true) => Existing::Force,
            (false, false) => Existing::Refuse,
        };
        let replication = self.replication.map(check_replication).transpose()?;
        let block_bytes = match &self.block_size {
            Some(text) => Some(check_block_bytes(text, units::parse_bytes(text)?)?),
            None => None,
        };
        Ok(Options {
            streams,
            preserve: self.preserve,
            follow_symlinks: self.follow_symlinks,
            existing,
            compare_content: self.checksum || !self.update,
            verify: self.verify,
            dry_run: self.dry_run,
            quiet: self.quiet,
            json: self.json,
            fail_fast: self.fail_fast,
            sync: !self.no_sync,
            replication,
            block_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[&str]) -> std::result::Result<CpCommand, clap::Error> {
        CpCommand::try_parse_from(std::iter::once("dfs-cp").chain(line.iter().copied()))
    }

    #[test]
    fn options_follow_the_flags() {
        for (line, streams, existing, compare_content) in [
            (vec!["a", "b"], 8, Existing::Refuse, true),
            (vec!["-j", "3", "a", "b"], 3, Existing::Refuse, true),
            (vec!["-f", "a", "b", "c"], 8, Existing::Force, true),
            (vec!["-u", "a", "b"], 8, Existing::Update, false),
            (vec!["-u", "-c", "a", "b"], 8, Existing::Update, true),
            (vec!["-u", "-f", "a", "b"], 8, Existing::Update, false),
            (vec!["-r", "-j", "64", "a", "b"], 64, Existing::Refuse, true),
        ] {
            let command = parse(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let options = command.args.options(2).expect("valid options");
            assert_eq!(options.streams, streams, "{line:?}");
            assert_eq!(options.existing, existing, "{line:?}");
            assert_eq!(options.compare_content, compare_content, "{line:?}");
        }
        let many_cores = parse(&["a", "b"])
            .expect("parse")
            .args
            .options(64)
            .expect("ok");
        assert_eq!(many_cores.streams, STREAMS_MAX);
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(parse(&["only-one"]).is_err());
        for (line, message) in [
            (vec!["-j", "0", "a", "b"], "-j 0: at least one stream"),
            (vec!["-j", "65", "a", "b"], "-j 65: at most 64 streams"),
            (
                vec!["--replication", "17", "a", "b"],
                "replication 17: must be between 1 and 16",
            ),
            (
                vec!["--block-size", "3G", "a", "b"],
                "block size 3G: must be between 1 byte and 2 GiB",
            ),
        ] {
            let command = parse(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let error = command.args.options(2).expect_err("refused");
            assert_eq!(error.to_string(), message, "{line:?}");
        }
    }
}
