//! `dfs-perf throughput --tls`: what encrypting block data costs. Two local
//! clusters with a key run side by side, one with `--tls-data` (every
//! connection encrypted) and one without (connections to the master
//! encrypted, block data plain), and the same steps alternate between
//! them from the same state as in `throughput`: a durable `put -r 3` and
//! a cold `get`. The ratio is TLS over plain, of the median MiB/s; the
//! CPU seconds per GiB of the client and the minions say where the cost
//! goes. Every result is checked by CRC32C.

use anyhow::{Context, Result};
use dfs_engine::units::format_bytes;

use crate::alternate::{
    self, check_rounds, comparison_columns, cpu_cell, head_columns, Side, StepPair,
};
use crate::common::{drop_caches, generate, work_dir};

use super::{load_average, replica_file_count, Bench, Options, Sample, Source, Step, READ_REMOTE};

/// One step, run on the TLS cluster (A) and on the plain one (B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TlsPair {
    step: Step,
}

impl StepPair for TlsPair {
    const SIDES: [&'static str; 2] = ["tls", "plain"];

    fn step_name(self, _side: Side) -> &'static str {
        self.step.name()
    }
}

const PAIRS: [TlsPair; 2] = [
    TlsPair {
        step: Step::PutDurable,
    },
    TlsPair { step: Step::Get },
];

type PairReport = alternate::PairReport<TlsPair, Sample>;

/// The two clusters.
struct Benches {
    tls: Bench,
    plain: Bench,
}

impl Benches {
    fn side(&mut self, side: Side) -> &mut Bench {
        match side {
            Side::A => &mut self.tls,
            Side::B => &mut self.plain,
        }
    }

    /// Both clusters back to their start state, then `step` on `side`'s.
    fn measure(&mut self, source: &Source, side: Side, step: Step) -> Result<Sample> {
        self.tls.remove_outputs()?;
        self.plain.remove_outputs()?;
        self.side(side).measure(source, step)
    }

    /// Every pair at one size: the puts, then the gets of a file written
    /// once to each cluster.
    fn measure_size(&mut self, source: &Source, rounds: usize) -> Result<Vec<PairReport>> {
        println!("{}", source.heading());
        let mut reports = Vec::new();
        for pair in PAIRS.iter().filter(|pair| pair.step.writes()) {
            reports.push(self.measure_pair(source, *pair, rounds)?);
        }
        for side in [Side::A, Side::B] {
            let bench = self.side(side);
            bench.remove_outputs()?;
            bench.dfs(&["put", "-r", "3", source.text()?, READ_REMOTE], false)?;
            bench.replica_files_kept = replica_file_count(&bench.cluster.dir)?;
        }
        for pair in PAIRS.iter().filter(|pair| !pair.step.writes()) {
            reports.push(self.measure_pair(source, *pair, rounds)?);
        }
        for side in [Side::A, Side::B] {
            let bench = self.side(side);
            bench.dfs(&["rm", READ_REMOTE], false)?;
            bench.replica_files_kept = 0;
            bench.wait_for_replica_files()?;
        }
        Ok(reports)
    }

    fn measure_pair(
        &mut self,
        source: &Source,
        pair: TlsPair,
        rounds: usize,
    ) -> Result<PairReport> {
        alternate::measure_pair(pair, rounds, source.size_bytes, |side| {
            self.measure(source, side, pair.step)
        })
    }
}

pub(super) fn run(options: Options) -> Result<()> {
    check_rounds(options.rounds)?;
    if options.json.is_some() {
        anyhow::bail!("--json is written by the data path comparison, not with --tls");
    }
    let (dir, _scratch) = work_dir(options.dir.as_deref())?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!(
        "throughput --tls: {} in {}; two clusters of 1 master and {} minions on 127.0.0.1, \
         both with a key, one with --tls-data; {} rounds, order alternating",
        options
            .sizes_bytes
            .iter()
            .map(|&size| format_bytes(size))
            .collect::<Vec<_>>()
            .join(", "),
        dir.display(),
        super::MINION_COUNT,
        options.rounds
    );
    if !drop_caches() {
        anyhow::bail!("can't drop the page cache (needs root): the cold numbers would be lies");
    }
    let load_before = load_average();
    let mut benches = Benches {
        tls: Bench::start_with(&dir, "tls", &["--tls-data"])?,
        plain: Bench::start_with(&dir, "plain", &["--key"])?,
    };
    let mut results = Vec::new();
    for (index, &size_bytes) in options.sizes_bytes.iter().enumerate() {
        let path = dir.join(format!("source-{index}.bin"));
        let crc = generate(&path, size_bytes)?;
        let source = Source {
            path,
            size_bytes,
            crc,
        };
        let reports = benches.measure_size(&source, options.rounds)?;
        std::fs::remove_file(&source.path)
            .with_context(|| format!("remove {}", source.path.display()))?;
        results.push((size_bytes, reports));
    }
    drop(benches);
    let load_after = load_average();
    println!();
    for (size_bytes, reports) in &results {
        print!("{}", render(*size_bytes, reports));
    }
    println!("load average (1 min): {load_before:.2} at the start, {load_after:.2} at the end");
    println!("verified: every result matches its source's crc32c");
    println!("command: {command}");
    Ok(())
}

const NAME_WIDTH: usize = 18;

/// One size's table: medians, spreads and the ratio, then the median CPU
/// seconds per GiB of each side (tls | plain).
fn render(size_bytes: u64, reports: &[PairReport]) -> String {
    let mut text = format!(
        "{} (MiB/s: median (min-max); ratio of medians (min-max per round); CPU s/GiB tls | plain)\n{}  {:>13} {:>13}\n",
        format_bytes(size_bytes),
        head_columns::<TlsPair>(NAME_WIDTH),
        "client CPU",
        "minions CPU"
    );
    for report in reports {
        let Some(comparison) = report.comparison(size_bytes) else {
            continue;
        };
        let cells = |side: Side| {
            let client = report.cpu_per_gib(size_bytes, |round| {
                Some(round.side(side).client_cpu_seconds)
            });
            let minions =
                report.cpu_per_gib(size_bytes, |round| round.side(side).minion_cpu_seconds);
            (cpu_cell(client), cpu_cell(minions))
        };
        let ((tls_client, tls_minions), (plain_client, plain_minions)) =
            (cells(Side::A), cells(Side::B));
        text.push_str(&format!(
            "{}  {:>13} {:>13}\n",
            comparison_columns(NAME_WIDTH, report.pair.step.name(), &comparison),
            format!("{tls_client} | {plain_client}"),
            format!("{tls_minions} | {plain_minions}"),
        ));
    }
    text
}
