//! `dfs-minion`: parses the command line, sets up logging and signals, and
//! runs the minion library until SIGINT/SIGTERM (exit 0) or a fatal refusal
//! by the master (exit 1).

use std::io::{IsTerminal, Write};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use dfs_minion::config::Config;

fn main() {
    dfs_engine::sync::abort_on_panic();
    if let Err(error) = run() {
        eprintln!("dfs-minion: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    // Signals first, so a stop that comes during start-up still exits cleanly.
    let stop_requested = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop_requested))
            .context("install signal handlers")?;
    }
    let (config, cores) =
        Config::from_args_with_cores(std::env::args_os()).unwrap_or_else(|error| error.exit());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(tracing::Level::INFO)
        .init();
    raise_open_file_limit();
    // Engine errors already print their cause; `{e}` keeps it from
    // appearing twice in the `{:#}` chain.
    let minion = dfs_minion::start_with_cores(config, cores)
        .map_err(|e| anyhow!("start the minion: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", minion.local_address())
        .and_then(|()| stdout.flush())
        .context("print the listening address")?;
    drop(stdout);
    minion
        .run_until(&stop_requested)
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Raises the soft limit on open files to the hard one, as servers do: a
/// minion holds a socket per connection and, while a batch of small blocks
/// is written, a file per block, and the usual soft limit of 1024 would
/// fail writes long before memory or the disk ran out.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return;
        }
        let soft = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
            tracing::info!(
                from = soft,
                to = limit.rlim_max,
                "raised the open file limit"
            );
        }
    }
}
