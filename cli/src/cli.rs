//! The `dfs` command: argument parsing (clap) and one function per
//! subcommand. Output goes to a writer so the commands can be driven by
//! tests; errors end as one `dfs: <message>` line and exit status 1.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use dfs_engine::limits::MINIONS_MAX;
use dfs_engine::msg::{EntryKind, EntryStatus, ErrorKind, MinionId};
use dfs_engine::path::DfsPath;
use dfs_engine::{units, Error, IoContext, Result};

use dfs_client::client::AttributeChange;
use dfs_client::config;
use dfs_client::write::{check_block_bytes, check_blocks_in_flight, check_replication};
use dfs_client::{
    temporary_spool, BlockSource, Client, Compacted, LocalFile, Spooled, Unseekable, WriteOptions,
};

use crate::format;
use crate::issue;
use crate::local::{self, LocalOptions};

/// Permission bits of directories made by `mkdir`, before the umask.
const DIRECTORY_MODE: u32 = 0o777;
/// Permission bits of files written by `put`, before the umask.
const FILE_MODE: u32 = 0o666;

/// This process's umask (as `mkdir` and `cp` apply it).
fn umask() -> u32 {
    // SAFETY: umask cannot fail; it is set back at once to what it was.
    unsafe {
        let mask = libc::umask(0o022);
        libc::umask(mask);
        mask as u32
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "dfs",
    version,
    about = "Copy files into and out of the distributed file system and manage its namespace"
)]
pub struct Cli {
    /// The master's address; else $DFS_MASTER, else `master` in the config
    /// file ($DFS_CONFIG or ~/.config/dfs/config.toml)
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub master: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy a local file (`-`: standard input) into the cluster
    Put(PutArgs),
    /// Copy a file out of the cluster (LOCAL `-`: standard output)
    Get { remote: OsString, local: OsString },
    /// Write files to standard output
    Cat {
        #[arg(required = true)]
        remotes: Vec<OsString>,
    },
    /// List a directory
    Ls {
        /// Long format: mode, owner, group, size, replication, time
        #[arg(short = 'l')]
        long: bool,
        /// Everything below PATH, as full paths
        #[arg(short = 'R')]
        recursive: bool,
        path: Option<OsString>,
    },
    /// Make directories
    Mkdir {
        /// Make missing parents; an existing directory is fine
        #[arg(short = 'p')]
        parents: bool,
        #[arg(required = true)]
        paths: Vec<OsString>,
    },
    /// Remove files and directories
    Rm {
        /// Remove directories and everything below them
        #[arg(short = 'r')]
        recursive: bool,
        #[arg(required = true)]
        paths: Vec<OsString>,
    },
    /// Rename or move (into TARGET when it is a directory)
    Mv { source: OsString, target: OsString },
    /// Change permission bits (octal, e.g. 640 or 2775)
    Chmod {
        /// Also everything below a directory
        #[arg(short = 'R')]
        recursive: bool,
        mode: String,
        #[arg(required = true)]
        paths: Vec<OsString>,
    },
    /// Change owner and/or group: OWNER, OWNER:GROUP or :GROUP
    Chown {
        /// Also everything below a directory
        #[arg(short = 'R')]
        recursive: bool,
        owner: String,
        #[arg(required = true)]
        paths: Vec<OsString>,
    },
    /// Change the group (as `chown :GROUP`)
    Chgrp {
        /// Also everything below a directory
        #[arg(short = 'R')]
        recursive: bool,
        group: String,
        #[arg(required = true)]
        paths: Vec<OsString>,
    },
    /// Cut or extend (with zeros) a file to SIZE (e.g. 0, 4K, 10M)
    Truncate {
        #[arg(short = 's', long = "size")]
        size: String,
        path: OsString,
    },
    /// Write fragmented files again as whole blocks (files that many
    /// writes into their middle cut into small pieces); holes stay holes
    Compact {
        /// Whatever their pieces
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        paths: Vec<OsString>,
    },
    /// Make a hard link LINK to the file TARGET, or with -s a symbolic
    /// link LINK whose target is the text TARGET
    Ln {
        /// A symbolic link (TARGET is kept as text, resolved by readers)
        #[arg(short = 's')]
        symbolic: bool,
        target: OsString,
        link: OsString,
    },
    /// Show an entry's status and, for a file, its blocks
    Stat { path: OsString },
    /// Show the cluster's capacity and minions
    Df,
    /// Run a master and minions on this machine until interrupted
    Local(LocalArgs),
    /// Copy files and trees into, out of and within the cluster (as dfs-cp)
    #[command(after_help = crate::cp::args::PLACEMENT_HELP)]
    Cp(crate::cp::CpArgs),
    /// Print each file's CRC32C (of all its bytes), length and path
    Checksum {
        #[arg(required = true)]
        paths: Vec<OsString>,
    },
    /// Check the blocks of the files at or under PATH (default /)
    #[command(long_about = FSCK_ABOUT)]
    Fsck { path: Option<OsString> },
    /// Mount the cluster at MOUNTPOINT (FUSE; runs `dfs-mount` in the
    /// foreground until SIGINT or SIGTERM, or until unmounted)
    Mount {
        mountpoint: OsString,
        /// Mount options, comma-separated: allow_other, ro, rw
        #[arg(short = 'o', value_name = "OPTIONS")]
        options: Option<String>,
        /// Return once mounted and serve in the background
        #[arg(long)]
        daemon: bool,
    },
    /// Unmount a mounted cluster (as `fusermount3 -u`, or `umount` as root)
    Umount { mountpoint: OsString },
    /// Administer the cluster's minions
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

const FSCK_ABOUT: &str = "Check the blocks of the files at or under PATH (default /).

Prints one line per block that is missing (no good replica on a live, stale \
or decommissioning minion), corrupt (a replica failed its checksum), \
under-replicated (fewer good replicas on live minions in service than the \
file's replication) or over-replicated, then a one-line summary last. \
Files being written are not looked at.

Exit status: 0 when no block is missing, corrupt or under-replicated (an \
over-replicated block is reported but healthy: the master trims surplus \
replicas), 1 otherwise or on error.";

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Show every minion: state, capacity, used and available bytes,
    /// blocks, last heartbeat and failed data directories
    Report,
    /// Drain a minion (id as shown by `admin report`, or HOST:PORT): its
    /// blocks are copied elsewhere and it gets no new ones; once it shows
    /// as decommissioned it can be switched off
    Decommission { minion: String },
    /// Put a decommissioning or decommissioned minion back in service
    Recommission { minion: String },
    /// Write a new cluster key to FILE (mode 0600; never overwrites): give
    /// it to `dfs-master --key` and to every `dfs-minion --key`
    Keygen { file: std::path::PathBuf },
    /// Issue identities to users (run where the cluster key is)
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Issue identities to trusted hosts (run where the cluster key is)
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Issue user NAME an identity: every request it proves is made as
    /// NAME with the groups issued. Written to the user's
    /// ~/.config/dfs/identity (mode 0600, theirs) when they have an account
    /// here, else to --out
    Add {
        name: String,
        /// Their groups, primary first (default: their groups on this
        /// machine, or NAME alone)
        #[arg(long, value_delimiter = ',', value_name = "GROUP,...")]
        groups: Option<Vec<String>>,
        /// The cluster key
        #[arg(long, value_name = "FILE", default_value = issue::CLUSTER_KEY_DEFAULT)]
        key: PathBuf,
        /// Where to write the identity (never overwritten)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Issue host NAME an identity: a client running as root there (a
    /// mount) asserts its callers' users and groups, as NFS sec=sys does.
    /// Copy it to that host's /etc/dfs/host.identity (mode 0600, root's)
    Add {
        name: String,
        /// The cluster key
        #[arg(long, value_name = "FILE", default_value = issue::CLUSTER_KEY_DEFAULT)]
        key: PathBuf,
        /// Where to write the identity (never overwritten)
        #[arg(long, value_name = "FILE", default_value = dfs_client::config::HOST_IDENTITY_FILE)]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// Replicas of each block (1 to 16; default: the cluster's)
    #[arg(short = 'r', long = "replication", value_name = "N")]
    pub replication: Option<u64>,
    /// Block size, e.g. 64M (default: the cluster's)
    #[arg(long = "block-size", value_name = "SIZE")]
    pub block_size: Option<String>,
    /// Replace an existing file
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Do not wait for blocks to reach stable storage
    #[arg(long = "no-sync")]
    pub no_sync: bool,
    /// Blocks of a local file sent at once, each through its own pipeline
    /// (1 to 16; default 1)
    #[arg(long = "blocks-in-flight", value_name = "N")]
    pub blocks_in_flight: Option<u64>,
    pub local: OsString,
    pub remote: OsString,
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Directory for the daemons' data (DIR/master, DIR/minion-<i>)
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Number of minions
    #[arg(long, value_name = "N")]
    pub minions: usize,
    /// Host the daemons listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Listen on a host other machines reach although the cluster has no
    /// key (the daemons refuse to otherwise)
    #[arg(long)]
    pub insecure: bool,
    /// Run the cluster with a key (DIR/cluster.key, made when missing):
    /// minions prove it, clients must prove an identity (the key itself
    /// serves: DFS_IDENTITY=DIR/cluster.key, printed after DFS_MASTER),
    /// and connections to the master run TLS
    #[arg(long)]
    pub key: bool,
    /// As --key, and block data travels over TLS too
    #[arg(long)]
    pub tls_data: bool,
}

/// Runs the command line of this process and returns its exit status.
pub fn main() -> ExitCode {
    main_with_args(std::env::args_os())
}

/// Parses `args` (program name first), runs the command with standard
/// output, and returns the exit status. Usage errors exit through clap (2).
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let status = run_to_status(cli, &mut out).and_then(|status| {
        out.flush().context("write standard output")?;
        Ok(status)
    });
    match status {
        Ok(status) => status,
        Err(error) => {
            eprintln!("dfs: {}", one_line(&error.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// Error messages stay on one line whatever they quote.
fn one_line(message: &str) -> String {
    message.replace(['\n', '\r'], " ")
}

/// Runs one parsed command, printing to `out`; the exit status of a
/// command that ran to its end (`fsck` fails when it found problems,
/// without an error message: its summary says so).
pub fn run_to_status(cli: Cli, out: &mut dyn Write) -> Result<ExitCode> {
    match cli.command {
        Command::Fsck { path } => {
            let healthy = fsck(cli.master.as_deref(), path.as_deref(), out)?;
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        command => run(
            Cli {
                master: cli.master,
                command,
            },
            out,
        )
        .map(|()| ExitCode::SUCCESS),
    }
}

/// Runs one parsed command, printing to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let master = cli.master.as_deref();
    match cli.command {
        Command::Put(args) => put(master, &args),
        Command::Get { remote, local } => get(master, &remote, &local, out),
        Command::Cat { remotes } => cat(master, &remotes, out),
        Command::Ls {
            long,
            recursive,
            path,
        } => ls(master, path.as_deref(), long, recursive, out),
        Command::Mkdir { parents, paths } => {
            let paths = remote_paths(&paths)?;
            let mut client = connect(master)?;
            paths
                .iter()
                .try_for_each(|path| client.mkdir(path, parents, DIRECTORY_MODE & !umask()))
        }
        Command::Rm { recursive, paths } => {
            let paths = remote_paths(&paths)?;
            if let Some(root) = paths.iter().find(|path| path.is_root()) {
                return Err(Error::Invalid(format!(
                    "{root}: refusing to remove the root directory"
                )));
            }
            let mut client = connect(master)?;
            paths
                .iter()
                .try_for_each(|path| client.delete(path, recursive))
        }
        Command::Mv { source, target } => mv(master, &source, &target),
        Command::Ln {
            symbolic,
            target,
            link,
        } => ln(master, symbolic, &target, &link),
        Command::Chmod {
            recursive,
            mode,
            paths,
        } => {
            let change = AttributeChange {
                mode: Some(parse_mode(&mode)?),
                ..AttributeChange::default()
            };
            change_attributes(master, &paths, recursive, &change)
        }
        Command::Chown {
            recursive,
            owner,
            paths,
        } => change_attributes(master, &paths, recursive, &parse_owner(&owner)?),
        Command::Chgrp {
            recursive,
            group,
            paths,
        } => {
            let change = parse_owner(&format!(":{group}"))?;
            change_attributes(master, &paths, recursive, &change)
        }
        Command::Truncate { size, path } => {
            let size = units::parse_bytes(&size)?;
            connect(master)?.truncate(&remote_path(&path)?, size)
        }
        Command::Compact { force, paths } => {
            let mut client = connect(master)?;
            for path in &paths {
                let path = remote_path(path)?;
                let line = match client.compact(&path, force)? {
                    Compacted::Done { before, after } => {
                        format!("{path}: {before} pieces written again as {after}")
                    }
                    Compacted::NotNeeded { pieces } => {
                        format!("{path}: {pieces} pieces, not fragmented")
                    }
                    Compacted::Raced => format!("{path}: changed meanwhile, left as it is"),
                };
                print_lines(out, &[line])?;
            }
            Ok(())
        }
        Command::Stat { path } => stat(master, &path, out),
        Command::Df => {
            let report = connect(master)?.cluster_report()?;
            print_lines(out, &format::df_lines(&report))
        }
        Command::Local(args) => {
            if args.minions > MINIONS_MAX {
                return Err(Error::Invalid(format!(
                    "{} minions: at most {MINIONS_MAX}",
                    args.minions
                )));
            }
            let options = LocalOptions {
                dir: args.dir,
                minions: args.minions,
                host: args.host,
                insecure: args.insecure,
                key: args.key || args.tls_data,
                tls_data: args.tls_data,
            };
            local::run(&options, out)
        }
        Command::Cp(args) => {
            let summary = crate::cp::run(master, &args, out)?;
            if summary.failed > 0 {
                return Err(Error::Invalid(format!(
                    "cp: {} of {} files failed",
                    summary.failed,
                    summary.failed + summary.files + summary.skipped
                )));
            }
            Ok(())
        }
        Command::Fsck { path } => {
            if fsck(master, path.as_deref(), out)? {
                Ok(())
            } else {
                Err(Error::Invalid("fsck: the file system is UNHEALTHY".into()))
            }
        }
        Command::Admin { command } => admin(master, command, out),
        Command::Mount {
            mountpoint,
            options,
            daemon,
        } => mount(master, &mountpoint, options.as_deref(), daemon),
        Command::Umount { mountpoint } => umount(&mountpoint),
        Command::Checksum { paths } => {
            let paths = remote_paths(&paths)?;
            let mut client = connect(master)?;
            for path in &paths {
                let checksum = client.file_checksum(path)?;
                // As `cksum`: checksum, length, name.
                writeln!(
                    out,
                    "{:08x}  {}  {path}",
                    checksum.crc32c, checksum.length_bytes
                )
                .context("write standard output")?;
            }
            Ok(())
        }
    }
}

/// `dfs fsck`: prints the blocks to list, then the summary; true when
/// healthy.
fn fsck(master: Option<&str>, path: Option<&OsStr>, out: &mut dyn Write) -> Result<bool> {
    let path = match path {
        Some(raw) => remote_path(raw)?,
        None => DfsPath::root(),
    };
    let mut client = connect(master)?;
    let mut summary = format::FsckSummary::default();
    let scanned = client.fsck_each(&path, |file| {
        summary.add(&file);
        print_lines(out, &format::fsck_file_lines(&file))
    })?;
    summary.files = scanned.files;
    summary.blocks = scanned.blocks;
    writeln!(out, "{}", format::fsck_summary_line(&summary)).context("write standard output")?;
    Ok(summary.is_healthy())
}

fn admin(master: Option<&str>, command: AdminCommand, out: &mut dyn Write) -> Result<()> {
    let issue::Issued { identity, path } = match command {
        AdminCommand::Keygen { file } => {
            dfs_engine::auth::ClusterKey::create(&file)?;
            return writeln!(
                out,
                "{}: a new cluster key; copy it (mode 0600) to the master and every minion",
                file.display()
            )
            .context("write standard output");
        }
        AdminCommand::User {
            command:
                UserCommand::Add {
                    name,
                    groups,
                    key,
                    out: file,
                },
        } => issue::add_user(&key, &name, groups, file)?,
        AdminCommand::Host {
            command:
                HostCommand::Add {
                    name,
                    key,
                    out: file,
                },
        } => issue::add_host(&key, &name, file)?,
        other => {
            return admin_of_cluster(master, other, out);
        }
    };
    writeln!(
        out,
        "{}: the identity of {}",
        path.display(),
        describe(identity.principal())
    )
    .context("write standard output")
}

/// How `dfs admin user/host add` names what it issued.
fn describe(principal: &dfs_engine::msg::ClientPrincipal) -> String {
    use dfs_engine::msg::ClientPrincipal;
    match principal {
        ClientPrincipal::Member => "the cluster (member)".into(),
        ClientPrincipal::Host { name, .. } => format!("host {name}"),
        ClientPrincipal::User { name, groups, .. } => {
            format!("user {name} (groups {})", groups.join(","))
        }
    }
}

/// The `dfs admin` commands the master answers.
fn admin_of_cluster(
    master: Option<&str>,
    command: AdminCommand,
    out: &mut dyn Write,
) -> Result<()> {
    let mut client = connect(master)?;
    match command {
        AdminCommand::Report => {
            let report = client.cluster_report()?;
            print_lines(out, &format::admin_report_lines(&report))
        }
        AdminCommand::Decommission { minion } => {
            let id = resolve_minion(&mut client, &minion)?;
            client.decommission(id)?;
            writeln!(
                out,
                "minion {id}: decommissioning (see `dfs admin report` for when it is decommissioned)"
            )
            .context("write standard output")
        }
        AdminCommand::Recommission { minion } => {
            let id = resolve_minion(&mut client, &minion)?;
            client.recommission(id)?;
            writeln!(out, "minion {id}: back in service").context("write standard output")
        }
        AdminCommand::Keygen { .. } | AdminCommand::User { .. } | AdminCommand::Host { .. } => {
            Ok(())
        }
    }
}

/// A minion named on the command line: HOST:PORT as the cluster report
/// shows it, or its id in hex.
fn resolve_minion(client: &mut Client, text: &str) -> Result<MinionId> {
    if text.contains(':') {
        let report = client.cluster_report()?;
        let found: Vec<MinionId> = report
            .minions
            .iter()
            .filter(|minion| minion.address == text)
            .map(|minion| minion.id)
            .collect();
        return match found.as_slice() {
            [id] => Ok(*id),
            [] => Err(Error::Invalid(format!(
                "{text}: no minion registered at this address"
            ))),
            _ => Err(Error::Invalid(format!(
                "{text}: several minions registered at this address; name one by id"
            ))),
        };
    }
    parse_minion_id(text)
}

/// A minion id as `admin report` shows it: up to 16 hex digits.
pub fn parse_minion_id(text: &str) -> Result<MinionId> {
    let valid = !text.is_empty() && text.len() <= 16 && text.bytes().all(|b| b.is_ascii_hexdigit());
    match u64::from_str_radix(text, 16) {
        Ok(id) if valid => Ok(MinionId(id)),
        _ => Err(Error::Invalid(format!(
            "{text}: not a minion id (up to 16 hex digits) nor HOST:PORT"
        ))),
    }
}

fn connect(master: Option<&str>) -> Result<Client> {
    Client::connect(&config::master_address(master)?)
}

/// A cluster path from the command line: UTF-8 and valid.
pub fn remote_path(raw: &OsStr) -> Result<DfsPath> {
    DfsPath::parse_bytes(raw.as_bytes())
}

fn remote_paths(raws: &[OsString]) -> Result<Vec<DfsPath>> {
    raws.iter().map(|raw| remote_path(raw)).collect()
}

fn print_lines(out: &mut dyn Write, lines: &[String]) -> Result<()> {
    lines
        .iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .context("write standard output")
}

fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::Remote(remote) if remote.kind == ErrorKind::NotFound)
}

/// The options of `put`, checked before anything is sent.
pub fn write_options(args: &PutArgs) -> Result<WriteOptions> {
    let replication = args.replication.map(check_replication).transpose()?;
    let block_bytes = match &args.block_size {
        Some(text) => Some(check_block_bytes(text, units::parse_bytes(text)?)?),
        None => None,
    };
    Ok(WriteOptions {
        replication,
        block_bytes,
        overwrite: args.force,
        sync: !args.no_sync,
        mode: FILE_MODE & !umask(),
        modified_ns: None,
        blocks_in_flight: match args.blocks_in_flight {
            Some(blocks) => check_blocks_in_flight(blocks)?,
            None => WriteOptions::default().blocks_in_flight,
        },
    })
}

fn put(master: Option<&str>, args: &PutArgs) -> Result<()> {
    let options = write_options(args)?;
    let remote = remote_path(&args.remote)?;
    let from_stdin = args.local == "-";
    let mut source: Box<dyn BlockSource> = if from_stdin {
        unseekable_source(io::stdin().lock())
    } else {
        open_local_source(Path::new(&args.local))?
    };
    let local_name = if from_stdin {
        None
    } else {
        Path::new(&args.local).file_name()
    };
    let mut client = connect(master)?;
    let target = put_target(&mut client, &remote, local_name, args.force)?;
    client.put(&target, options, &mut *source)?;
    Ok(())
}

fn open_local_source(path: &Path) -> Result<Box<dyn BlockSource>> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let metadata = file
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?;
    if metadata.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: is a directory",
            path.display()
        )));
    }
    if metadata.is_file() {
        // Read by ranges, several blocks at once.
        let source = LocalFile::new(file).with_context(|| format!("seek {}", path.display()))?;
        Ok(Box::new(source))
    } else {
        // A FIFO or a device: read once, in order.
        Ok(unseekable_source(file))
    }
}

/// An input read once, in order, whose current block is kept in a temporary
/// file so it can go to a fresh pipeline; where no temporary file can be
/// made, the block cannot be sent again.
fn unseekable_source<R: io::Read + 'static>(input: R) -> Box<dyn BlockSource> {
    match temporary_spool() {
        Ok(spool) => Box::new(Spooled::with_spool(input, spool)),
        Err(_) => Box::new(Unseekable(input)),
    }
}

/// Where `put` writes: REMOTE, or REMOTE/<name of LOCAL> when REMOTE is a
/// directory. Without `force`, an existing file there is refused.
fn put_target(
    client: &mut Client,
    remote: &DfsPath,
    local_name: Option<&OsStr>,
    force: bool,
) -> Result<DfsPath> {
    let status = match client.stat(remote) {
        Ok(status) => status,
        Err(error) if is_not_found(&error) => return Ok(remote.clone()),
        Err(error) => return Err(error),
    };
    if status.kind == EntryKind::File {
        if force {
            return Ok(remote.clone());
        }
        return Err(Error::Invalid(format!("{remote}: file exists")));
    }
    let Some(name) = local_name else {
        return Err(Error::Invalid(format!(
            "{remote}: is a directory (standard input needs a file name: {}/NAME)",
            if remote.is_root() {
                ""
            } else {
                remote.as_str()
            }
        )));
    };
    let name = name.to_str().ok_or_else(|| {
        Error::Invalid(format!(
            "{}: invalid file name: not valid UTF-8",
            name.to_string_lossy()
        ))
    })?;
    let target = remote.join(name)?;
    match client.stat(&target) {
        Ok(status) if status.kind == EntryKind::Directory => {
            Err(Error::Invalid(format!("{target}: is a directory")))
        }
        Ok(_) if !force => Err(Error::Invalid(format!("{target}: file exists"))),
        Ok(_) => Ok(target),
        Err(error) if is_not_found(&error) => Ok(target),
        Err(error) => Err(error),
    }
}

fn get(master: Option<&str>, remote: &OsStr, local: &OsStr, out: &mut dyn Write) -> Result<()> {
    let remote = remote_path(remote)?;
    let mut client = connect(master)?;
    let mut reader = client.open(&remote)?;
    if local == "-" {
        reader.copy_to(out, "standard output")?;
        return Ok(());
    }
    let mut target = PathBuf::from(local);
    if target.is_dir() {
        // A file always has a name: the root is a directory.
        target.push(remote.name().unwrap_or("file"));
    }
    let name = target.display().to_string();
    if let Some(mut special) = open_special(&target)? {
        reader.copy_to(&mut special, &name)?;
        return Ok(());
    }
    write_replacing(&target, |file| {
        reader.copy_to(file, &name)?;
        Ok(())
    })
}

/// An existing device, FIFO or socket at `target`, opened for writing: it
/// is written in place, as `cp` does (`dfs get /f /dev/null`), never
/// replaced by a regular file. None when `target` is anything else.
pub fn open_special(target: &Path) -> Result<Option<File>> {
    use std::os::unix::fs::FileTypeExt;
    let kind = match std::fs::metadata(target) {
        Ok(metadata) => metadata.file_type(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io(target.display().to_string(), error)),
    };
    if !(kind.is_char_device() || kind.is_block_device() || kind.is_fifo() || kind.is_socket()) {
        return Ok(None);
    }
    OpenOptions::new()
        .write(true)
        .open(target)
        .map(Some)
        .with_context(|| format!("open {} for writing", target.display()))
}

/// Writes `target` through a temporary file in the same directory, renamed
/// over it only when `fill` succeeded: a failed copy leaves no partial file.
pub fn write_replacing(target: &Path, fill: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let directory = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{}: not a file name", target.display())))?;
    let random = dfs_engine::rpc::random_u64()?;
    let mut temporary_name = OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".dfs-{random:016x}"));
    let temporary = TemporaryFile(directory.join(temporary_name));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary.0)
        .with_context(|| format!("create a temporary file in {}", directory.display()))?;
    fill(&mut file)?;
    file.sync_all()
        .with_context(|| format!("sync {}", temporary.0.display()))?;
    drop(file);
    std::fs::rename(&temporary.0, target)
        .with_context(|| format!("rename {} to {}", temporary.0.display(), target.display()))?;
    std::mem::forget(temporary);
    Ok(())
}

/// Removes the file at its path when dropped, unless forgotten.
struct TemporaryFile(PathBuf);

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        // Best effort: the error that made us drop it is what gets reported.
        let _ = std::fs::remove_file(&self.0);
    }
}

fn cat(master: Option<&str>, remotes: &[OsString], out: &mut dyn Write) -> Result<()> {
    let remotes = remote_paths(remotes)?;
    let mut client = connect(master)?;
    for remote in &remotes {
        client.open(remote)?.copy_to(out, "standard output")?;
    }
    Ok(())
}

fn ls(
    master: Option<&str>,
    path: Option<&OsStr>,
    long: bool,
    recursive: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let path = match path {
        Some(raw) => remote_path(raw)?,
        None => DfsPath::root(),
    };
    let mut client = connect(master)?;
    let status = client.stat(&path)?;
    let mut print = |entry: &EntryStatus, name: &str| -> Result<()> {
        let line = if long {
            format::long_line(entry, name)
        } else {
            name.to_string()
        };
        writeln!(out, "{line}").context("write standard output")
    };
    if status.kind == EntryKind::File {
        return print(&status, path.as_str());
    }
    if !recursive {
        return client.list_each(&path, |entry| {
            print(&entry, &format::listed_name(&entry.name, entry.kind))
        });
    }
    // Depth first in name order, one directory listing per level in memory;
    // the depth is bounded by the path depth limit.
    let mut stack = vec![(path.clone(), client.list(&path)?.into_iter())];
    while let Some((directory, entries)) = stack.last_mut() {
        let Some(entry) = entries.next() else {
            stack.pop();
            continue;
        };
        let full = directory.join(&entry.name)?;
        print(&entry, &format::listed_name(full.as_str(), entry.kind))?;
        if entry.kind == EntryKind::Directory {
            let children = client.list(&full)?;
            stack.push((full, children.into_iter()));
        }
    }
    Ok(())
}

fn mv(master: Option<&str>, source: &OsStr, target: &OsStr) -> Result<()> {
    let source = remote_path(source)?;
    let mut target = remote_path(target)?;
    let Some(name) = source.name() else {
        return Err(Error::Invalid("/: cannot move the root directory".into()));
    };
    let mut client = connect(master)?;
    match client.stat(&target) {
        Ok(status) if status.kind == EntryKind::Directory => target = target.join(name)?,
        Ok(_) => {}
        Err(error) if is_not_found(&error) => {}
        Err(error) => return Err(error),
    }
    if target != source && target.is_within(&source) {
        return Err(Error::Invalid(format!(
            "cannot move {source} into itself ({target})"
        )));
    }
    client.rename(&source, &target)
}

fn stat(master: Option<&str>, raw: &OsStr, out: &mut dyn Write) -> Result<()> {
    let path = remote_path(raw)?;
    let mut client = connect(master)?;
    let status = client.stat(&path)?;
    let lines = match status.kind {
        EntryKind::File => format::file_stat_lines(path.as_str(), &client.get_blocks(&path)?),
        EntryKind::Directory
        | EntryKind::Fifo
        | EntryKind::Socket
        | EntryKind::CharDevice
        | EntryKind::BlockDevice => format::stat_lines(path.as_str(), &status, None),
        EntryKind::Symlink => {
            let mut lines = format::stat_lines(path.as_str(), &status, None);
            lines.push(format!("target: {}", client.read_link(&path)?));
            lines
        }
    };
    print_lines(out, &lines)
}

/// An octal mode of at most 4 digits (sticky, setgid, setuid included).
fn parse_mode(text: &str) -> Result<u32> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777 && !text.is_empty() && text.len() <= 4)
        .ok_or_else(|| Error::Invalid(format!("{text}: not an octal mode (e.g. 644, 2775)")))
}

/// OWNER, OWNER:GROUP, OWNER: (its group unchanged) or :GROUP.
fn parse_owner(text: &str) -> Result<AttributeChange> {
    let (owner, group) = match text.split_once(':') {
        Some((owner, group)) => (owner, Some(group)),
        None => (text, None),
    };
    let name = |name: &str| (!name.is_empty()).then(|| name.to_string());
    let change = AttributeChange {
        owner: name(owner),
        group: group.and_then(name),
        ..AttributeChange::default()
    };
    if change.owner.is_none() && change.group.is_none() {
        return Err(Error::Invalid(format!(
            "{text}: give OWNER, OWNER:GROUP or :GROUP"
        )));
    }
    Ok(change)
}

/// `chmod` and `chown`: `change` on each path, and with `recursive` on
/// everything below the directories among them.
fn change_attributes(
    master: Option<&str>,
    raws: &[OsString],
    recursive: bool,
    change: &AttributeChange,
) -> Result<()> {
    let mut client = connect(master)?;
    for path in remote_paths(raws)? {
        let mut pending = vec![path];
        while let Some(path) = pending.pop() {
            client.set_attributes(&path, change.clone())?;
            if !recursive || client.stat(&path)?.kind != EntryKind::Directory {
                continue;
            }
            client.list_each(&path, |entry| {
                pending.push(path.join(&entry.name)?);
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// `dfs ln [-s] TARGET LINK`.
fn ln(master: Option<&str>, symbolic: bool, target: &OsStr, link: &OsStr) -> Result<()> {
    let link = remote_path(link)?;
    let mut client = connect(master)?;
    if symbolic {
        let target = target.to_str().ok_or_else(|| {
            Error::Invalid(format!(
                "{}: a symbolic link's target must be valid UTF-8",
                target.to_string_lossy()
            ))
        })?;
        client.symlink(&link, target)
    } else {
        client.link(&remote_path(target)?, &link)
    }
}

/// `dfs mount`: the mount program, in this process's place.
fn mount(
    master: Option<&str>,
    mountpoint: &OsStr,
    options: Option<&str>,
    daemon: bool,
) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let program = crate::local::find_program("dfs-mount")?;
    let mut command = std::process::Command::new(&program);
    command.arg(mountpoint);
    if let Some(master) = master {
        command.args(["--master", master]);
    }
    if let Some(options) = options {
        command.args(["-o", options]);
    }
    if daemon {
        command.arg("--daemon");
    }
    let error = command.exec();
    Err(Error::io(format!("run {}", program.display()), error))
}

/// `dfs umount`: `fusermount3 -u`, which any user may run on their own
/// mount, else `umount` (root).
fn umount(mountpoint: &OsStr) -> Result<()> {
    let mut tried = Vec::new();
    for (program, args) in [("fusermount3", &["-u"][..]), ("umount", &[][..])] {
        match std::process::Command::new(program)
            .args(args)
            .arg(mountpoint)
            .status()
        {
            Ok(status) if status.success() => return Ok(()),
            Ok(status) => tried.push(format!("{program}: {status}")),
            Err(error) => tried.push(format!("{program}: {error}")),
        }
    }
    Err(Error::Invalid(format!(
        "unmount {}: {}",
        Path::new(mountpoint).display(),
        tried.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("dfs").chain(args.iter().copied()))
    }

    fn put_args(args: &[&str]) -> PutArgs {
        match parse(args).expect("parses").command {
            Command::Put(args) => args,
            other => panic!("not put: {other:?}"),
        }
    }

    #[test]
    fn put_options() {
        let args = put_args(&[
            "put",
            "-r",
            "2",
            "--block-size",
            "1M",
            "-f",
            "--no-sync",
            "--blocks-in-flight",
            "2",
            "a",
            "/b",
        ]);
        assert_eq!(
            write_options(&args).expect("valid"),
            WriteOptions {
                replication: Some(2),
                block_bytes: Some(1 << 20),
                overwrite: true,
                sync: false,
                mode: 0o644,
                modified_ns: None,
                blocks_in_flight: 2,
            }
        );
        assert_eq!(
            write_options(&put_args(&["put", "a", "/b"])).expect("valid"),
            WriteOptions::default()
        );
        for (args, message) in [
            (
                &["put", "-r", "0", "a", "/b"][..],
                "replication 0: must be between 1 and 16",
            ),
            (
                &["put", "--replication", "17", "a", "/b"][..],
                "replication 17: must be between 1 and 16",
            ),
            (
                &["put", "--block-size", "0", "a", "/b"][..],
                "block size 0: must be between 1 byte and 2 GiB",
            ),
            (
                &["put", "--block-size", "3G", "a", "/b"][..],
                "block size 3G: must be between 1 byte and 2 GiB",
            ),
            (
                &["put", "--blocks-in-flight", "0", "a", "/b"][..],
                "blocks in flight 0: must be between 1 and 16",
            ),
            (
                &["put", "--block-size", "1X", "a", "/b"][..],
                "invalid size",
            ),
        ] {
            let error = write_options(&put_args(args)).expect_err("refused");
            assert!(
                error.to_string().contains(message),
                "{error} lacks {message}"
            );
        }
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        for args in [
            &["put", "a"][..],
            &["put", "-r", "x", "a", "/b"],
            &["cat"],
            &["mkdir"],
            &["rm"],
            &["frobnicate"],
            &["local", "--dir", "d"],
        ] {
            let error = parse(args).expect_err("usage error");
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn flags_combine_and_master_is_global() {
        let cli = parse(&["ls", "-lR", "/a", "--master", "h:1"]).expect("parses");
        assert_eq!(cli.master.as_deref(), Some("h:1"));
        match cli.command {
            Command::Ls {
                long,
                recursive,
                path,
            } => {
                assert!(long && recursive);
                assert_eq!(path, Some(OsString::from("/a")));
            }
            other => panic!("not ls: {other:?}"),
        }
        let cli =
            parse(&["--master", "h:2", "local", "--dir", "d", "--minions", "3"]).expect("parses");
        match cli.command {
            Command::Local(args) => {
                assert_eq!((args.minions, args.host.as_str()), (3, "127.0.0.1"));
            }
            other => panic!("not local: {other:?}"),
        }
    }

    #[test]
    fn fsck_and_admin_arguments() {
        match parse(&["fsck"]).expect("parses").command {
            Command::Fsck { path } => assert_eq!(path, None),
            other => panic!("not fsck: {other:?}"),
        }
        match parse(&["fsck", "/a"]).expect("parses").command {
            Command::Fsck { path } => assert_eq!(path, Some(OsString::from("/a"))),
            other => panic!("not fsck: {other:?}"),
        }
        match parse(&["admin", "decommission", "00ab"])
            .expect("parses")
            .command
        {
            Command::Admin {
                command: AdminCommand::Decommission { minion },
            } => assert_eq!(minion, "00ab"),
            other => panic!("not admin decommission: {other:?}"),
        }
        for args in [
            &["admin"][..],
            &["admin", "decommission"],
            &["admin", "frobnicate"],
            &["fsck", "/a", "/b"],
        ] {
            let error = parse(args).expect_err("usage error");
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
        for (text, want) in [
            ("0000000000000001", Some(1)),
            ("00ab12cd34ef5678", Some(0x00ab_12cd_34ef_5678)),
            ("AB", Some(0xab)),
            ("", None),
            ("00000000000000001", None),
            ("+1", None),
            ("xyz", None),
        ] {
            assert_eq!(parse_minion_id(text).ok().map(|id| id.0), want, "{text:?}");
        }
    }

    #[test]
    fn remote_paths_are_checked() {
        assert_eq!(
            remote_path(OsStr::new("a/../b/")).expect("valid").as_str(),
            "/b"
        );
        for (raw, message) in [
            (&b"/a/\xff"[..], "not valid UTF-8"),
            (b"/..", "'..' goes above the root"),
            (b"/a//b", "empty component"),
        ] {
            let error = remote_path(OsStr::from_bytes(raw)).expect_err("refused");
            assert!(error.to_string().contains(message), "{error}");
        }
    }

    #[test]
    fn replacing_write_leaves_nothing_on_failure() {
        let directory = tempfile::tempdir().expect("temp dir");
        let target = directory.path().join("out");
        std::fs::write(&target, b"old").expect("write");
        let failed = write_replacing(&target, |file| {
            file.write_all(b"partial").context("write")?;
            Err(Error::Invalid("source failed".into()))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&target).expect("read"), b"old");
        let names: Vec<_> = std::fs::read_dir(directory.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, [OsString::from("out")]);

        write_replacing(&target, |file| file.write_all(b"new").context("write")).expect("replace");
        assert_eq!(std::fs::read(&target).expect("read"), b"new");
        assert_eq!(
            std::fs::read_dir(directory.path()).expect("list").count(),
            1
        );
    }
}
