//! `dfs-cp` (also `dfs cp`): bulk copies of files and directory trees into,
//! out of and within the cluster, with parallel streams, skip rules that
//! make reruns cheap, files made visible only once complete, progress and a
//! summary.
//!
//! Threads: the walk (one thread, with its own connections) feeds file jobs
//! through a bounded channel to `streams` workers, each with its own master
//! connections; the calling thread prints what the others report. A worker
//! that takes a small file into the cluster also takes the small files
//! queued behind it and writes them together (`Client::put_small_files`):
//! a few messages for the lot instead of three exchanges each.

pub mod args;
pub mod blocks;
pub mod glob;
pub mod plan;
pub mod progress;
pub mod side;
pub mod url;
pub mod worker;

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;

use dfs_engine::limits::{WRITE_BATCH_BLOCKS_MAX, WRITE_BATCH_BYTES_MAX};
use dfs_engine::{Error, IoContext, Result};

use dfs_client::config;

pub use args::{CpArgs, CpCommand, Options};
pub use progress::Summary;

use plan::{Destination, FileJob, Named, Note, Planner, Source};
use progress::Counters;
use side::Sides;
use url::{Argument, Location};
use worker::{Outcome, Worker};

/// File jobs waiting per stream: enough to keep every stream busy, few
/// enough that a huge tree is never held in memory.
const QUEUED_JOBS_PER_STREAM: usize = 4;

/// Runs `dfs-cp` with this process's arguments.
pub fn main() -> ExitCode {
    main_with_args(std::env::args_os())
}

/// Parses `args` (program name first), copies, and returns the exit status:
/// 0 when everything was copied or skipped, 1 when anything failed, 2 for
/// usage errors.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let command = match CpCommand::try_parse_from(args) {
        Ok(command) => command,
        Err(error) => error.exit(),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = run(command.master.as_deref(), &command.args, &mut out).and_then(|summary| {
        out.flush()
            .context("write standard output")
            .map(|()| summary)
    });
    match result {
        Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("dfs-cp: {}", one_line(&error.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn one_line(message: &str) -> String {
    message.replace(['\n', '\r'], " ")
}

/// Copies as `args` say; `master` is `--master`. Per-file failures are
/// printed and counted in the summary; an error is returned only when
/// nothing can be copied at all (bad arguments, no master, a destination
/// that cannot be a directory).
pub fn run(master: Option<&str>, args: &CpArgs, out: &mut dyn Write) -> Result<Summary> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = args.options(cores)?;
    let started = Instant::now();
    let default_master = || config::master_address(master);
    let (destination_raw, source_raws) = args
        .paths
        .split_last()
        .ok_or_else(|| Error::Invalid("give SRC... DST".into()))?;
    let destination_argument = Argument::parse(destination_raw, &default_master)?;
    let source_arguments = source_raws
        .iter()
        .map(|raw| Argument::parse(raw, &default_master))
        .collect::<Result<Vec<_>>>()?;

    let counters = Counters::default();
    let mut planner = Planner::new(Sides::new(options.follow_symlinks), &options);

    let sources = expand_sources(&source_arguments, &mut planner.sides, &counters);
    let destination = find_destination(&destination_argument, &mut planner.sides)?;
    let placement = plan::place(&sources, Named::of(&source_arguments), &destination)?;
    if placement.make_destination && !options.dry_run {
        planner
            .sides
            .make_directory(&destination.location, 0o755)
            .map_err(|error| Error::Invalid(format!("{}: {error}", destination.location)))?;
    }
    let pairs: Vec<(Location, side::Entry, Location)> = sources
        .into_iter()
        .zip(placement.targets)
        .map(|(source, target)| (source.location, source.entry, target))
        .collect();

    let stop = AtomicBool::new(false);
    let budget = blocks::StreamBudget::new(options.streams);
    // A dry run prints in the order of the walk.
    let streams = if options.dry_run { 1 } else { options.streams };
    let (job_sender, job_receiver) =
        mpsc::sync_channel::<FileJob>(streams * QUEUED_JOBS_PER_STREAM);
    let job_receiver = Arc::new(Mutex::new(job_receiver));
    let (line_sender, line_receiver) = mpsc::channel::<String>();
    let (progress_stop, progress_wait) = mpsc::channel::<()>();
    std::thread::scope(|scope| -> Result<()> {
        if !options.quiet {
            let counters = &counters;
            scope.spawn(move || progress::show(counters, started, &progress_wait));
        } else {
            drop(progress_wait);
        }
        for _ in 0..streams {
            let receiver = Arc::clone(&job_receiver);
            let lines = line_sender.clone();
            let (options, counters, stop, budget) = (&options, &counters, &stop, &budget);
            scope.spawn(move || work(options, budget, &receiver, &lines, counters, stop));
        }
        drop(line_sender);
        {
            let (counters, stop) = (&counters, &stop);
            scope.spawn(move || walk(planner, pairs, job_sender, counters, stop));
        }
        // The lines end when every worker has ended.
        let mut written = Ok(());
        for line in line_receiver {
            if written.is_ok() {
                written = writeln!(out, "{line}").context("write standard output");
            }
        }
        drop(progress_stop);
        written
    })?;
    let summary = counters.summary(started.elapsed());
    if options.json {
        writeln!(out, "{}", summary.json()).context("write standard output")?;
    } else if !options.quiet && !options.dry_run {
        eprintln!("dfs-cp: {}", summary.text());
    }
    Ok(summary)
}

/// The sources the arguments name, globs expanded; one that is missing
/// fails alone.
fn expand_sources(arguments: &[Argument], sides: &mut Sides, counters: &Counters) -> Vec<Source> {
    let mut sources = Vec::new();
    for argument in arguments {
        let expanded = match plan::expand(argument, sides) {
            Ok(expanded) => expanded,
            Err(error) => {
                report_failure(counters, &error.to_string());
                continue;
            }
        };
        for location in expanded {
            match sides.stat(&location) {
                Ok(Some(entry)) => sources.push(Source {
                    location,
                    entry,
                    contents: argument.names_contents(),
                }),
                Ok(None) => {
                    report_failure(counters, &format!("{location}: no such file or directory"))
                }
                Err(error) => report_failure(counters, &format!("{location}: {error}")),
            }
        }
    }
    sources
}

/// The one place the destination argument names, and what is there now.
fn find_destination(argument: &Argument, sides: &mut Sides) -> Result<Destination> {
    let location = match plan::expand(argument, sides)? {
        mut one if one.len() == 1 => one.remove(0),
        many => {
            return Err(Error::Invalid(format!(
                "the destination matches {} paths; it must name one",
                many.len()
            )))
        }
    };
    let kind = sides.stat(&location)?.map(|entry| entry.kind);
    Ok(Destination {
        location,
        kind,
        names_directory: argument.names_directory(),
    })
}

fn report_failure(counters: &Counters, message: &str) {
    Counters::add(&counters.failed, 1);
    eprintln!("dfs-cp: {}", one_line(message));
}

/// The walk thread: every source tree into the job channel.
fn walk(
    mut planner: Planner<'_>,
    pairs: Vec<(Location, side::Entry, Location)>,
    jobs: SyncSender<FileJob>,
    counters: &Counters,
    stop: &AtomicBool,
) {
    let quiet = planner.options.quiet;
    let fail_fast = planner.options.fail_fast;
    let mut send = |job: FileJob| -> bool {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        Counters::add(&counters.planned_files, 1);
        Counters::add(&counters.planned_bytes, job.entry.size_bytes);
        jobs.send(job).is_ok()
    };
    let mut note = |note: Note| match note {
        Note::Skipped(message) => {
            Counters::add(&counters.skipped, 1);
            if !quiet {
                eprintln!("dfs-cp: {}", one_line(&message));
            }
        }
        Note::Failed(message) => {
            report_failure(counters, &message);
            if fail_fast {
                stop.store(true, Ordering::Relaxed);
            }
        }
    };
    for (source, entry, target) in pairs {
        if !planner.walk(source, entry, target, &mut send, &mut note) {
            break;
        }
    }
}

/// A worker thread: jobs until the channel closes. A small file into the
/// cluster goes in a batch with the small files queued behind it (see
/// `take_batch`); the jobs a batch leaves over are processed one by one.
fn work(
    options: &Options,
    budget: &blocks::StreamBudget,
    jobs: &Mutex<Receiver<FileJob>>,
    lines: &mpsc::Sender<String>,
    counters: &Counters,
    stop: &AtomicBool,
) {
    let mut worker = Worker::new(Sides::new(options.follow_symlinks), options, budget);
    let report = |job: &FileJob, outcome: Result<Outcome>| {
        report_outcome(options, job, outcome, lines, counters, stop)
    };
    // A job taken while gathering a batch that did not fit it: the next one.
    let mut next: Option<FileJob> = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            // The lock is held only to take one job.
            None => match jobs.lock().map(|receiver| receiver.recv()) {
                Ok(Ok(job)) => job,
                _ => return,
            },
        };
        if stop.load(Ordering::Relaxed) {
            continue;
        }
        if !worker.batchable(&job) {
            report(&job, worker.process(&job));
            continue;
        }
        let (batch, left) = take_batch(&worker, job, jobs);
        next = left;
        if batch.len() == 1 {
            // Alone, a batch saves nothing.
            report(&batch[0], worker.process(&batch[0]));
            continue;
        }
        let outcomes = worker.write_batch(&batch);
        for (job, outcome) in batch.iter().zip(outcomes) {
            match outcome {
                Some(outcome) => report(job, outcome),
                None if stop.load(Ordering::Relaxed) => {}
                None => report(job, worker.process(job)),
            }
        }
    }
}

/// `first` and the batchable jobs queued behind it for the same master,
/// taken without waiting while the lock is held briefly: at most
/// `WRITE_BATCH_BLOCKS_MAX` files of `WRITE_BATCH_BYTES_MAX` bytes in all,
/// one `WriteBlocks` exchange. The job that ended the gathering (not
/// batchable, or too large for what is left) is returned to go next.
fn take_batch(
    worker: &Worker<'_>,
    first: FileJob,
    jobs: &Mutex<Receiver<FileJob>>,
) -> (Vec<FileJob>, Option<FileJob>) {
    let master = worker::cluster_master(&first.target).map(str::to_string);
    let mut bytes = first.entry.size_bytes;
    let mut batch = vec![first];
    let Ok(receiver) = jobs.lock() else {
        return (batch, None);
    };
    while batch.len() < WRITE_BATCH_BLOCKS_MAX {
        let Ok(job) = receiver.try_recv() else {
            break;
        };
        let fits = worker.batchable(&job)
            && worker::cluster_master(&job.target) == master.as_deref()
            && bytes + job.entry.size_bytes <= WRITE_BATCH_BYTES_MAX;
        if !fits {
            return (batch, Some(job));
        }
        bytes += job.entry.size_bytes;
        batch.push(job);
    }
    (batch, None)
}

/// Counts and prints how one job ended.
fn report_outcome(
    options: &Options,
    job: &FileJob,
    outcome: Result<Outcome>,
    lines: &mpsc::Sender<String>,
    counters: &Counters,
    stop: &AtomicBool,
) {
    match outcome {
        Ok(Outcome::Copied { length_bytes }) => {
            Counters::add(&counters.files, 1);
            Counters::add(&counters.bytes, length_bytes);
        }
        Ok(Outcome::WouldCopy) => {
            Counters::add(&counters.files, 1);
            Counters::add(&counters.bytes, job.entry.size_bytes);
            let _ = lines.send(format!("copy {} -> {}", job.source, job.target));
        }
        Ok(Outcome::Skipped { reason }) => {
            Counters::add(&counters.skipped, 1);
            if options.dry_run {
                let _ = lines.send(format!("skip {} -> {} ({reason})", job.source, job.target));
            }
        }
        Err(error) => {
            report_failure(counters, &format!("{}: {error}", job.source));
            if options.fail_fast {
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
}
