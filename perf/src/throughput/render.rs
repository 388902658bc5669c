//! The run's results as text: a table per size, the disk checks, and JSON
//! with every round's raw numbers.

use std::fmt::Write as _;

use dfs_engine::units::format_bytes;

use super::{mib_per_second, DiskCheck, DiskRates, PairReport, Sample, SizeReport};

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
    let rounds = report.pairs.first().map_or(0, |pair| pair.rounds.len());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}, {rounds} rounds: MiB/s median (min-max); ratio of medians (min-max of per-round ratios); CPU s/GiB median",
        format_bytes(size_bytes)
    );
    let _ = writeln!(
        out,
        "  {:<42} {:>20} {:>20} {:>19} {:>12} {:>7} {:>7} {:>8}",
        "ours / baseline", "ours", "baseline", "ratio", "target", "client", "minions", "baseline"
    );
    for pair_report in &report.pairs {
        let Some(comparison) = pair_report.comparison(size_bytes) else {
            continue;
        };
        let pair = pair_report.pair;
        let cpu = |value: Option<f64>| value.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
        let client =
            pair_report.cpu_per_gib(size_bytes, |round| Some(round.ours.client_cpu_seconds));
        let minions = pair_report.cpu_per_gib(size_bytes, |round| round.ours.minion_cpu_seconds);
        let baseline_cpu =
            pair_report.cpu_per_gib(size_bytes, |round| Some(round.baseline.client_cpu_seconds));
        let verdict = if comparison.ratio_of_medians >= pair.target {
            "met"
        } else {
            "NOT met"
        };
        let _ = writeln!(
            out,
            "  {:<42} {:>20} {:>20} {:>19} {:>12} {:>7} {:>7} {:>8}",
            pair.name(),
            format!(
                "{:.1} ({:.0}-{:.0})",
                comparison.ours.median, comparison.ours.min, comparison.ours.max
            ),
            format!(
                "{:.1} ({:.0}-{:.0})",
                comparison.baseline.median, comparison.baseline.min, comparison.baseline.max
            ),
            format!(
                "{:.2}x ({:.2}-{:.2})",
                comparison.ratio_of_medians,
                comparison.round_ratios.min,
                comparison.round_ratios.max
            ),
            format!("{:.1}x {verdict}", pair.target),
            cpu(client),
            cpu(minions),
            cpu(baseline_cpu),
        );
    }
    out
}

pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
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

pub(crate) fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.4}")
    } else {
        "null".to_string()
    }
}

pub(crate) fn json_option(value: Option<f64>) -> String {
    value.map_or_else(|| "null".to_string(), json_number)
}

fn json_sample(name: &str, size_bytes: u64, sample: &Sample) -> String {
    format!(
        "{{\"name\": {}, \"seconds\": {}, \"mib_per_second\": {}, \"client_cpu_seconds\": {}, \
         \"minion_cpu_seconds\": {}, \"settle_seconds\": {}, \"dirty_bytes_at_start\": {}}}",
        json_string(name),
        json_number(sample.seconds),
        json_number(mib_per_second(size_bytes, sample.seconds)),
        json_number(sample.client_cpu_seconds),
        json_option(sample.minion_cpu_seconds),
        json_number(sample.settled.waited.as_secs_f64()),
        sample.settled.dirty_bytes
    )
}

fn json_pair(size_bytes: u64, report: &PairReport) -> String {
    let pair = report.pair;
    let comparison = report.comparison(size_bytes);
    let rounds: Vec<String> = report
        .rounds
        .iter()
        .map(|round| {
            format!(
                "          {{\"ours_first\": {}, \"ours\": {}, \"baseline\": {}}}",
                round.ours_first,
                json_sample(pair.ours.name(), size_bytes, &round.ours),
                json_sample(pair.baseline.name(), size_bytes, &round.baseline)
            )
        })
        .collect();
    format!(
        "      {{\"ours\": {}, \"baseline\": {}, \"target\": {}, \"ours_median_mib_per_second\": {}, \
         \"baseline_median_mib_per_second\": {}, \"ratio_of_medians\": {}, \"round_ratio_min\": {}, \
         \"round_ratio_max\": {},\n        \"rounds\": [\n{}\n        ]}}",
        json_string(pair.ours.name()),
        json_string(pair.baseline.name()),
        json_number(pair.target),
        json_option(comparison.map(|c| c.ours.median)),
        json_option(comparison.map(|c| c.baseline.median)),
        json_option(comparison.map(|c| c.ratio_of_medians)),
        json_option(comparison.map(|c| c.round_ratios.min)),
        json_option(comparison.map(|c| c.round_ratios.max)),
        rounds.join(",\n")
    )
}

pub(super) fn render_json(run: &JsonRun) -> String {
    let sizes: Vec<String> = run
        .reports
        .iter()
        .map(|report| {
            let pairs: Vec<String> = report
                .pairs
                .iter()
                .map(|pair| json_pair(report.size_bytes, pair))
                .collect();
            format!(
                "    {{\"size_bytes\": {}, \"source_crc32c\": \"{:08x}\", \"pairs\": [\n{}\n    ]}}",
                report.size_bytes,
                report.source_crc,
                pairs.join(",\n")
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
