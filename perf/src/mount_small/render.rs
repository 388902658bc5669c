//! The results of `dfs-perf mount --small-files` / `--stat-entries` as
//! text: a line per round, a table per kind of step, and JSON with every
//! round's raw numbers.

use std::fmt::Write as _;

use dfs_engine::units::format_bytes;

use super::systems::{System, REPLICATION};
use super::{Report, Sample, Step, StepRuns, STAT_TARGET_SECONDS, WRITE_TARGET_RATIO};
use crate::alternate::stats::{spread, Spread};
use crate::alternate::{json_number, json_option, json_string};

/// Width of the tables' first column (the step).
const STEP_COLUMN_WIDTH: usize = 22;

/// One side's part of a round's line.
pub(super) fn round_cell(step: Step, count: usize, system: System, sample: &Sample) -> String {
    if step.writes() {
        let waited = if sample.seconds > sample.command_seconds {
            format!(
                ", {} exited at {:.2} s",
                step.name(),
                sample.command_seconds
            )
        } else {
            String::new()
        };
        format!(
            " {} {:.0} files/s ({:.2} s{waited});",
            system.name(),
            count as f64 / sample.seconds.max(1e-9),
            sample.seconds
        )
    } else {
        format!(" {} {:.3} s;", system.name(), sample.seconds)
    }
}

/// The writes' table, the stats' table, the mount processes' CPU, the
/// load and the command.
pub(super) fn table(report: &Report) -> String {
    let mut out = String::new();
    let rounds = report.rounds;
    let writes: Vec<&StepRuns> = report.steps.iter().filter(|r| r.step.writes()).collect();
    let stats: Vec<&StepRuns> = report.steps.iter().filter(|r| !r.step.writes()).collect();
    if let Some((files, directories)) = report.tree {
        let _ = writeln!(
            out,
            "small files: {files} files of {} in {directories} directories, replication \
             {REPLICATION}, {rounds} rounds: files/s median (min-max); ratio of medians \
             dfs-mount/mfsmount (min-max of per-round ratios)",
            format_bytes(report.file_size)
        );
        out.push_str(&head());
        for runs in writes {
            let ours = runs.ours_rates();
            let comparison = runs.comparison();
            let baseline = comparison.map(|c| c.baseline);
            let verdict = comparison.map_or_else(String::new, |c| {
                format!(
                    "{WRITE_TARGET_RATIO:.1}x {}",
                    met(c.ratio_of_medians >= WRITE_TARGET_RATIO)
                )
            });
            let ratio = comparison.map(|c| {
                format!(
                    "{:.2}x ({:.2}-{:.2})",
                    c.ratio_of_medians, c.round_ratios.min, c.round_ratios.max
                )
            });
            out.push_str(&row(
                runs.step.name(),
                [rate_cell(ours), rate_cell(baseline)],
                ratio,
                &verdict,
            ));
        }
    }
    if let Some(first) = stats.first() {
        let _ = writeln!(
            out,
            "stat of every entry of a directory of {} from a fresh mount (cold caches), \
             {rounds} rounds: seconds median (min-max); ratio of speeds dfs-mount/mfsmount \
             (mfsmount's seconds over ours; min-max of per-round ratios)",
            first.count
        );
        out.push_str(&head());
        for runs in stats {
            let seconds = |system| spread(&seconds_of(runs.samples(system)));
            let ours = seconds(System::Ours);
            let verdict = ours.map_or_else(String::new, |s| {
                format!(
                    "< {STAT_TARGET_SECONDS:.0} s {}",
                    met(s.median < STAT_TARGET_SECONDS)
                )
            });
            let ratio = runs.comparison().map(|c| {
                format!(
                    "{:.2}x ({:.2}-{:.2})",
                    c.ratio_of_medians, c.round_ratios.min, c.round_ratios.max
                )
            });
            out.push_str(&row(
                runs.step.name(),
                [seconds_cell(ours), seconds_cell(seconds(System::MooseFs))],
                ratio,
                &verdict,
            ));
        }
    }
    let _ = writeln!(
        out,
        "CPU seconds of the mount process per step, median:\n  {:<STEP_COLUMN_WIDTH$} {:>10} {:>10}",
        "step", "dfs-mount", "mfsmount"
    );
    for runs in &report.steps {
        let cpu = |system| {
            let values: Vec<f64> = runs
                .samples(system)
                .iter()
                .map(|sample| sample.mount_cpu_seconds)
                .collect();
            spread(&values).map_or_else(|| "-".to_string(), |s| format!("{:.2}", s.median))
        };
        let _ = writeln!(
            out,
            "  {:<STEP_COLUMN_WIDTH$} {:>10} {:>10}",
            runs.step.name(),
            cpu(System::Ours),
            cpu(System::MooseFs)
        );
    }
    // Other work on the machine skews every number: say how busy it was.
    let _ = writeln!(
        out,
        "load average (1 min): {:.2} at the start, {:.2} at the end",
        report.load[0], report.load[1]
    );
    let _ = writeln!(
        out,
        "verified: every copy read back through a fresh mount matches the source's crc32c, \
         file by file; every stat saw every entry"
    );
    let _ = writeln!(out, "command: {}", report.command);
    out
}

fn met(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn head() -> String {
    format!(
        "  {:<STEP_COLUMN_WIDTH$} {:>24} {:>24} {:>19}  target\n",
        "step", "dfs-mount", "mfsmount", "ratio"
    )
}

fn row(name: &str, [ours, baseline]: [String; 2], ratio: Option<String>, verdict: &str) -> String {
    format!(
        "  {name:<STEP_COLUMN_WIDTH$} {ours:>24} {baseline:>24} {:>19}  {verdict}\n",
        ratio.unwrap_or_else(|| "-".to_string())
    )
}

fn rate_cell(rates: Option<Spread>) -> String {
    rates.map_or_else(
        || "-".to_string(),
        |s| format!("{:.1} ({:.0}-{:.0})", s.median, s.min, s.max),
    )
}

fn seconds_cell(seconds: Option<Spread>) -> String {
    seconds.map_or_else(
        || "-".to_string(),
        |s| format!("{:.3} ({:.3}-{:.3})", s.median, s.min, s.max),
    )
}

fn seconds_of(samples: &[Sample]) -> Vec<f64> {
    samples.iter().map(|sample| sample.seconds).collect()
}

/// Every round's numbers as JSON.
pub(super) fn json(report: &Report) -> String {
    let steps: Vec<String> = report.steps.iter().map(json_step).collect();
    let (files, directories) = report
        .tree
        .map_or((None, None), |(f, d)| (Some(f), Some(d)));
    let count = |value: Option<usize>| value.map_or_else(|| "null".to_string(), |v| v.to_string());
    format!(
        "{{\n  \"command\": {},\n  \"rounds\": {},\n  \"file_size\": {},\n  \
         \"small_files\": {},\n  \"directories\": {},\n  \"replication\": {REPLICATION},\n  \
         \"moosefs\": {},\n  \"load_average_start_end\": [{}, {}],\n  \"steps\": [\n{}\n  ]\n}}\n",
        json_string(&report.command),
        report.rounds,
        report.file_size,
        count(files),
        count(directories),
        report
            .moosefs
            .as_deref()
            .map_or_else(|| "null".to_string(), json_string),
        json_number(report.load[0]),
        json_number(report.load[1]),
        steps.join(",\n")
    )
}

fn json_step(runs: &StepRuns) -> String {
    let comparison = runs.comparison();
    let moosefs_median = comparison.map(|c| c.baseline.median);
    let statistic = |of: fn(super::Comparison) -> f64| json_option(comparison.map(of));
    let rounds: Vec<String> = (0..runs.ours.len())
        .map(|index| {
            let moosefs = runs
                .moosefs
                .get(index)
                .map_or_else(|| "null".to_string(), |s| json_sample(runs.count, s));
            format!(
                "      {{\"ours_first\": {}, \"dfs-mount\": {}, \"mfsmount\": {moosefs}}}",
                runs.ours_first.get(index).copied().unwrap_or(true),
                json_sample(runs.count, &runs.ours[index]),
            )
        })
        .collect();
    format!(
        "    {{\"step\": {}, \"count\": {}, \"dfs-mount_median_per_second\": {}, \
         \"mfsmount_median_per_second\": {}, \"ratio_of_medians\": {}, \
         \"round_ratio_min\": {}, \"round_ratio_max\": {},\n      \"rounds\": [\n{}\n      ]}}",
        json_string(runs.step.name()),
        runs.count,
        json_option(runs.ours_rates().map(|s| s.median)),
        json_option(moosefs_median),
        statistic(|c| c.ratio_of_medians),
        statistic(|c| c.round_ratios.min),
        statistic(|c| c.round_ratios.max),
        rounds.join(",\n")
    )
}

fn json_sample(count: usize, sample: &Sample) -> String {
    format!(
        "{{\"seconds\": {}, \"per_second\": {}, \"command_seconds\": {}, \
         \"mount_cpu_seconds\": {}, \"settle_seconds\": {}, \"dirty_bytes_at_start\": {}}}",
        json_number(sample.seconds),
        json_number(count as f64 / sample.seconds.max(1e-9)),
        json_number(sample.command_seconds),
        json_number(sample.mount_cpu_seconds),
        json_number(sample.settled.waited.as_secs_f64()),
        sample.settled.dirty_bytes
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::common::Settled;

    fn sample(seconds: f64) -> Sample {
        Sample {
            seconds,
            command_seconds: seconds,
            mount_cpu_seconds: 1.5,
            settled: Settled {
                waited: Duration::from_secs(1),
                dirty_bytes: 4096,
            },
        }
    }

    fn runs(step: Step, count: usize, ours: [f64; 3], moosefs: &[f64]) -> StepRuns {
        StepRuns {
            step,
            count,
            ours_first: vec![true, false, true],
            ours: ours.iter().map(|&s| sample(s)).collect(),
            moosefs: moosefs.iter().map(|&s| sample(s)).collect(),
        }
    }

    /// 2000 files: cp -r at 100, 200 and 400 files/s against MooseFS at
    /// 200; ls -l of 1000 entries in 0.5, 1.0 and 2.0 s against 2.0 s.
    fn report(moosefs: bool) -> Report {
        let pick = |values: &'static [f64]| if moosefs { values } else { &[] };
        Report {
            command: "dfs-perf mount --small-files 2000".to_string(),
            rounds: 3,
            file_size: 4096,
            tree: Some((2000, 10)),
            moosefs: moosefs.then(|| "3.0.117".to_string()),
            load: [0.5, 1.25],
            steps: vec![
                runs(Step::CopyTree, 2000, [20.0, 10.0, 5.0], pick(&[10.0; 3])),
                runs(Step::ListLong, 1000, [0.5, 1.0, 2.0], pick(&[2.0; 3])),
            ],
        }
    }

    #[test]
    fn the_table_shows_rates_seconds_and_ratios() {
        let table = table(&report(true));
        assert!(table.contains("200.0 (100-400)"), "{table}");
        assert!(table.contains("200.0 (200-200)"), "{table}");
        assert!(table.contains("1.00x (0.50-2.00)"), "{table}");
        assert!(table.contains("3.0x NOT met"), "{table}");
        // ls -l: 1.0 s (0.5-2.0) against 2.0 s: twice as fast.
        assert!(table.contains("1.000 (0.500-2.000)"), "{table}");
        assert!(table.contains("2.00x (1.00-4.00)"), "{table}");
        assert!(table.contains("< 1 s NOT met"), "{table}");
        assert!(table.contains("1.50       1.50"), "{table}");
        let alone = super::table(&report(false));
        assert!(
            alone.contains("200.0 (100-400)                        -"),
            "{alone}"
        );
        assert!(alone.contains("1.50          -"), "{alone}");
    }

    #[test]
    fn rounds_name_the_rate_and_when_the_command_exited() {
        let mut late = sample(4.0);
        late.command_seconds = 3.5;
        assert_eq!(
            round_cell(Step::CopyTree, 2000, System::Ours, &late),
            " dfs-mount 500 files/s (4.00 s, cp -r exited at 3.50 s);"
        );
        assert_eq!(
            round_cell(Step::ExtractTar, 2000, System::MooseFs, &sample(4.0)),
            " mfsmount 500 files/s (4.00 s);"
        );
        assert_eq!(
            round_cell(Step::StatWalk, 1000, System::Ours, &sample(0.25)),
            " dfs-mount 0.250 s;"
        );
    }

    #[test]
    fn the_json_keeps_every_round() {
        let json = json(&report(true));
        assert_eq!(json.matches("\"ours_first\"").count(), 6, "{json}");
        assert!(json.contains("\"ratio_of_medians\": 1.0000"), "{json}");
        assert!(
            json.contains("\"dfs-mount_median_per_second\": 200.0000"),
            "{json}"
        );
        assert!(json.contains("\"moosefs\": \"3.0.117\""), "{json}");
        let alone = super::json(&report(false));
        assert!(alone.contains("\"mfsmount\": null"), "{alone}");
        assert!(alone.contains("\"ratio_of_medians\": null"), "{alone}");
    }
}
