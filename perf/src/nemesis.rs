//! `dfs-perf nemesis`: the randomized fault test of the CI suite
//! (`dfs_testkit::nemesis`), run for as long as asked. A cluster of five
//! minions serves writers, readers and namespace changers while minions
//! and the master are killed, stopped, restarted and (as root) partitioned
//! at random; afterwards `dfs fsck /` must be healthy and every
//! acknowledged file and change must be there. Prints the report (seed,
//! operations acknowledged and in doubt, faults by kind, time to healthy,
//! every failure) and fails when it found any.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use dfs_testkit::nemesis::{self, Options};

pub fn usage() -> &'static str {
    "usage: dfs-perf nemesis [--minutes N] [--seed S]"
}

pub fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options::for_duration(Duration::from_secs(60));
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--minutes" => {
                let minutes: f64 = value()?.parse().context("--minutes")?;
                if !(minutes > 0.0 && minutes.is_finite()) {
                    bail!("--minutes must be positive\n{}", usage());
                }
                options.duration = Duration::from_secs_f64(minutes * 60.0);
            }
            "--seed" => options.seed = Some(value()?.parse().context("--seed")?),
            other => bail!("unknown option {other}\n{}", usage()),
        }
    }
    Ok(options)
}

pub fn run(options: Options) -> Result<()> {
    let report = nemesis::run(options);
    println!("{report}");
    if !report.is_clean() {
        bail!(
            "nemesis found {} failures (seed {})",
            report.failures.len(),
            report.seed
        );
    }
    Ok(())
}
