//! The run's results as text: a table per size, the disk checks, and JSON
//! with every round's raw numbers.

use std::fmt::Write as _;

use dfs_engine::units::format_bytes;

use super::{DiskCheck, DiskRates, Pair, SizeReport};
use crate::alternate::{
    comparison_columns, cpu_cell, head_columns, json_number, json_pairs, json_string, StepPair,
};

/// Width of the table's first column (the pair).
const PAIR_COLUMN_WIDTH: usize = 42;

pub(super) fn render_disk_checks(checks: &[DiskCheck]) -> String {
    let mut out = String::from("disk check (a baseline must move at least 1/3 of dd's MiB/s):\n");
    for check in checks {
        let _ = writeln!(
            out,
            "  {:<24} {:>9} {:>8.1} MiB/s on disk vs dd {:>8.1}: {}",
            check.pair.baseline.name(),
            format_bytes(check.size_bytes),
            check.baseline_disk_mib_per_second,
            check.disk_mib_per_second,
            match (check.passed(), check.read_above_disk()) {
                (false, _) => "FAILED",
                (true, false) => "ok",
                (true, true) =>
                    "ok, but faster than the disk: a cache below this machine held the file",
            }
        );
    }
    out
}

pub(super) fn render_table(report: &SizeReport) -> String {
    let size_bytes = report.size_bytes;
    let rounds = report.rounds();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}, {rounds} rounds: MiB/s median (min-max); ratio of medians (min-max of per-round ratios); CPU s/GiB median",
        format_bytes(size_bytes)
    );
    let _ = writeln!(
        out,
        "{} {:>12} {:>7} {:>7} {:>8}",
        head_columns::<Pair>(PAIR_COLUMN_WIDTH),
        "target",
        "client",
        "minions",
        "baseline"
    );
    for pair_report in &report.pairs {
        let Some(comparison) = pair_report.comparison(size_bytes) else {
            continue;
        };
        let pair = pair_report.pair;
        let client = pair_report.cpu_per_gib(size_bytes, |round| Some(round.a.client_cpu_seconds));
        let minions = pair_report.cpu_per_gib(size_bytes, |round| round.a.minion_cpu_seconds);
        let baseline_cpu =
            pair_report.cpu_per_gib(size_bytes, |round| Some(round.b.client_cpu_seconds));
        let verdict = if comparison.ratio_of_medians >= pair.target {
            "met"
        } else {
            "NOT met"
        };
        let _ = writeln!(
            out,
            "{} {:>12} {:>7} {:>7} {:>8}",
            comparison_columns(PAIR_COLUMN_WIDTH, &pair.name(), &comparison),
            format!("{:.1}x {verdict}", pair.target),
            cpu_cell(client),
            cpu_cell(minions),
            cpu_cell(baseline_cpu),
        );
    }
    out
}

/// Everything the JSON file holds.
pub(super) struct JsonRun<'a> {
    pub(super) command: &'a str,
    pub(super) rounds: usize,
    /// At the start and at the end.
    pub(super) disk: [DiskRates; 2],
    pub(super) load: [f64; 2],
    pub(super) reports: &'a [SizeReport],
    pub(super) checks: &'a [DiskCheck],
}

pub(super) fn render_json(run: &JsonRun) -> String {
    let sizes: Vec<String> = run
        .reports
        .iter()
        .map(|report| {
            format!(
                "    {{\"size_bytes\": {}, \"source_crc32c\": \"{:08x}\", \"pairs\": [\n{}\n    ]}}",
                report.size_bytes,
                report.source_crc,
                json_pairs(report.size_bytes, &report.pairs, 6)
            )
        })
        .collect();
    let checks: Vec<String> = run
        .checks
        .iter()
        .map(|check| {
            format!(
                "    {{\"baseline\": {}, \"size_bytes\": {}, \"baseline_disk_mib_per_second\": {}, \
                 \"disk_mib_per_second\": {}, \"passed\": {}}}",
                json_string(check.pair.baseline.name()),
                check.size_bytes,
                json_number(check.baseline_disk_mib_per_second),
                json_number(check.disk_mib_per_second),
                check.passed()
            )
        })
        .collect();
    let [start, end] = run.disk;
    format!(
        "{{\n  \"command\": {},\n  \"rounds\": {},\n  \"disk_write_mib_per_second_start_end\": [{}, {}],\n  \
         \"disk_read_mib_per_second_start_end\": [{}, {}],\n  \"load_average_start_end\": [{}, {}],\n  \
         \"sizes\": [\n{}\n  ],\n  \"disk_checks\": [\n{}\n  ]\n}}\n",
        json_string(run.command),
        run.rounds,
        json_number(start.write),
        json_number(end.write),
        json_number(start.read),
        json_number(end.read),
        json_number(run.load[0]),
        json_number(run.load[1]),
        sizes.join(",\n"),
        checks.join(",\n")
    )
}
