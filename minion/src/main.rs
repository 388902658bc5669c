//! `dfs-minion`: parses the command line (and its config file), sets up
//! logging and signals, and runs the minion library until SIGINT/SIGTERM
//! (exit 0) or a fatal refusal by the master (exit 1).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use dfs_minion::config::{Config, Startup, CONFIG_FILE_DEFAULT};

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
    let startup =
        Config::from_command_line(std::env::args_os(), Some(Path::new(CONFIG_FILE_DEFAULT)))
            .unwrap_or_else(|error| error.exit());
    let (config, cores) = match startup {
        Startup::Run(config, cores) => (*config, cores),
        Startup::PrintConfig(text) => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .context("print the configuration")?;
            return Ok(());
        }
    };
    dfs_engine::logging::init(config.log_format).map_err(anyhow::Error::msg)?;
    if let Err(e) = dfs_engine::rlimit::raise_open_file_limit() {
        tracing::warn!("raise the open file limit: {e}");
    }
    // Engine errors already print their cause; `{e}` keeps it from
    // appearing twice in the `{:#}` chain.
    let minion = dfs_minion::start_with_cores(config, cores)
        .map_err(|e| anyhow!("start the minion: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", minion.local_address())
        .and_then(|()| match minion.http_address() {
            Some(http) => writeln!(stdout, "http on {http}"),
            None => Ok(()),
        })
        .and_then(|()| stdout.flush())
        .context("print the listening address")?;
    if let Some(http) = minion.http_address() {
        tracing::info!("serving metrics at http://{http}/metrics");
    }
    drop(stdout);
    minion
        .run_until(&stop_requested)
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
