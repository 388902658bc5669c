//! `dfs-perf throughput --tls`: what TLS costs. Three local clusters run
//! side by side: one without a key (nothing encrypted), one with a key
//! (connections to the master encrypted, block data plain) and one with a
//! key and `--tls-data` (everything encrypted). The same steps, a durable
//! `put -r 3` and a cold `get`, alternate between two of them from the
//! same state as in `throughput`: keyed against open gives the cost of
//! TLS to the master (with the proofs and tokens a key brings), tls-data
//! against keyed the cost of encrypting block data. The ratio is of the
//! median MiB/s, TLS over plain; the CPU seconds per GiB of the client and
//! the minions say where the cost goes. Every result is checked by CRC32C.

use anyhow::{Context, Result};
use dfs_engine::units::format_bytes;

use crate::alternate::{
    self, check_rounds, comparison_columns, cpu_cell, head_columns, Side, StepPair,
};
use crate::common::{drop_caches, generate, work_dir};

use super::{load_average, replica_file_count, Bench, Options, Sample, Source, Step, READ_REMOTE};

/// Which TLS a pair measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    /// The keyed cluster (A) against the open one (B).
    Control,
    /// The `--tls-data` cluster (A) against the keyed one (B).
    Data,
}

/// One step, run with a layer of TLS (A) and without it (B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TlsPair {
    layer: Layer,
    step: Step,
}

impl TlsPair {
    fn name(self) -> &'static str {
        match (self.layer, self.step) {
            (Layer::Control, Step::PutDurable) => "to master: put r=3",
            (Layer::Control, _) => "to master: get cold",
            (Layer::Data, Step::PutDurable) => "block data: put r=3",
            (Layer::Data, _) => "block data: get cold",
        }
    }
}

impl StepPair for TlsPair {
    const SIDES: [&'static str; 2] = ["tls", "plain"];

    fn step_name(self, _side: Side) -> &'static str {
        self.name()
    }
}

const PAIRS: [TlsPair; 4] = [
    TlsPair {
        layer: Layer::Control,
        step: Step::PutDurable,
    },
    TlsPair {
        layer: Layer::Data,
        step: Step::PutDurable,
    },
    TlsPair {
        layer: Layer::Control,
        step: Step::Get,
    },
    TlsPair {
        layer: Layer::Data,
        step: Step::Get,
    },
];

type PairReport = alternate::PairReport<TlsPair, Sample>;

/// The three clusters: open, keyed, keyed with `--tls-data`.
struct Benches {
    open: Bench,
    keyed: Bench,
    tls_data: Bench,
}

impl Benches {
    fn all(&mut self) -> [&mut Bench; 3] {
        [&mut self.open, &mut self.keyed, &mut self.tls_data]
    }

    fn side(&mut self, layer: Layer, side: Side) -> &mut Bench {
        match (layer, side) {
            (Layer::Control, Side::A) | (Layer::Data, Side::B) => &mut self.keyed,
            (Layer::Control, Side::B) => &mut self.open,
            (Layer::Data, Side::A) => &mut self.tls_data,
        }
    }

    /// Every cluster back to its start state, then `pair`'s step on
    /// `side`'s.
    fn measure(&mut self, source: &Source, pair: TlsPair, side: Side) -> Result<Sample> {
        for bench in self.all() {
            bench.remove_outputs()?;
        }
        self.side(pair.layer, side).measure(source, pair.step)
    }

    /// Every pair at one size: the puts, then the gets of a file written
    /// once to each cluster.
    fn measure_size(&mut self, source: &Source, rounds: usize) -> Result<Vec<PairReport>> {
        println!("{}", source.heading());
        let mut reports = Vec::new();
        for pair in PAIRS.iter().filter(|pair| pair.step.writes()) {
            reports.push(self.measure_pair(source, *pair, rounds)?);
        }
        for bench in self.all() {
            bench.remove_outputs()?;
            bench.dfs(&["put", "-r", "3", source.text()?, READ_REMOTE], false)?;
            bench.replica_files_kept = replica_file_count(&bench.cluster.dir)?;
        }
        for pair in PAIRS.iter().filter(|pair| !pair.step.writes()) {
            reports.push(self.measure_pair(source, *pair, rounds)?);
        }
        for bench in self.all() {
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
            self.measure(source, pair, side)
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
        "throughput --tls: {} in {}; three clusters of 1 master and {} minions on 127.0.0.1 \
         (no key; a key; a key and --tls-data); {} rounds, order alternating",
        options.sizes_text(),
        dir.display(),
        super::MINION_COUNT,
        options.rounds
    );
    if !drop_caches() {
        anyhow::bail!("can't drop the page cache (needs root): the cold numbers would be lies");
    }
    let load_before = load_average();
    let mut benches = Benches {
        open: Bench::start_with(&dir, "open", &[])?,
        keyed: Bench::start_with(&dir, "keyed", &["--key"])?,
        tls_data: Bench::start_with(&dir, "tls-data", &["--tls-data"])?,
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

const NAME_WIDTH: usize = 20;

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
            comparison_columns(NAME_WIDTH, report.pair.name(), &comparison),
            format!("{tls_client} | {plain_client}"),
            format!("{tls_minions} | {plain_minions}"),
        ));
    }
    text
}
