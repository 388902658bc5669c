//! Alternated comparisons, shared by `dfs-perf throughput` and `dfs-perf
//! mount`: the two sides of a pair (A, B: ours and a baseline, the mount
//! and `dfs`) run over `--rounds` rounds, the order swapped every round (A
//! first in the first), one line printed as each round ends. A pair's
//! report gives each side's median MiB/s with its min-max, the ratio of
//! the medians with the min-max of the per-round ratios (`stats`), and
//! median CPU seconds per GiB; its text here is what both tables start
//! with and the JSON of pairs, rounds and samples.
//!
//! A subcommand keeps what differs: its steps and how one runs (the
//! closure `measure_pair` calls), what its samples record (`Measured`),
//! what it calls its sides (`StepPair::SIDES`, which also names the JSON
//! keys) and its own columns.

pub(crate) mod stats;

use std::fmt::Write as _;

use anyhow::{bail, Result};

use crate::common::Settled;
use stats::{compare, spread, Comparison};

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;
/// Rounds when `--rounds` is not given.
pub(crate) const ROUNDS_DEFAULT: usize = 3;

/// Fails unless `rounds` is odd.
pub(crate) fn check_rounds(rounds: usize) -> Result<()> {
    if rounds.is_multiple_of(2) {
        bail!("--rounds must be odd, so that a median is one round's number");
    }
    Ok(())
}

pub(crate) fn mib_per_second(size_bytes: u64, seconds: f64) -> f64 {
    size_bytes as f64 / MIB / seconds.max(1e-9)
}

pub(crate) fn per_gib(size_bytes: u64, seconds: f64) -> f64 {
    seconds / (size_bytes as f64 / GIB)
}

/// One side of a pair: A is the one that goes first in the first round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    A,
    B,
}

/// Two steps compared side by side.
pub(crate) trait StepPair: Copy {
    /// What the subcommand calls sides A and B (`ours`, `baseline`): in
    /// the round lines, the table's head and the JSON keys.
    const SIDES: [&'static str; 2];

    /// The name of the step `side` runs.
    fn step_name(self, side: Side) -> &'static str;

    /// The pair's own JSON fields, after its two step names.
    fn json_fields(self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// "A's step / B's step".
    fn name(self) -> String {
        format!("{} / {}", self.step_name(Side::A), self.step_name(Side::B))
    }
}

/// One run of one step.
pub(crate) trait Measured {
    /// Until the step's result was there: what its MiB/s come from.
    fn seconds(&self) -> f64;

    /// What `settle` found before the step.
    fn settled(&self) -> Settled;

    /// The sample's own JSON fields, between `mib_per_second` and
    /// `settle_seconds`.
    fn json_fields(&self) -> Vec<(&'static str, String)>;

    /// Written just after the step's MiB/s in its round's line.
    fn round_note(&self) -> String {
        String::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Round<S> {
    pub(crate) a_first: bool,
    pub(crate) a: S,
    pub(crate) b: S,
}

impl<S> Round<S> {
    pub(crate) fn side(&self, side: Side) -> &S {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PairReport<P, S> {
    pub(crate) pair: P,
    pub(crate) rounds: Vec<Round<S>>,
}

impl<P, S: Measured> PairReport<P, S> {
    /// Side A's rates against side B's, round by round.
    pub(crate) fn comparison(&self, size_bytes: u64) -> Option<Comparison> {
        let rates = |side: Side| -> Vec<f64> {
            self.rounds
                .iter()
                .map(|round| mib_per_second(size_bytes, round.side(side).seconds()))
                .collect()
        };
        compare(&rates(Side::A), &rates(Side::B))
    }

    /// Median CPU seconds per GiB over the rounds.
    pub(crate) fn cpu_per_gib(
        &self,
        size_bytes: u64,
        cpu: impl Fn(&Round<S>) -> Option<f64>,
    ) -> Option<f64> {
        let values: Vec<f64> = self
            .rounds
            .iter()
            .filter_map(|round| cpu(round).map(|seconds| per_gib(size_bytes, seconds)))
            .collect();
        spread(&values).map(|spread| spread.median)
    }
}

/// Every pair measured on one source.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SizeReport<P, S> {
    pub(crate) size_bytes: u64,
    pub(crate) source_crc: u32,
    pub(crate) pairs: Vec<PairReport<P, S>>,
}

impl<P, S> SizeReport<P, S> {
    /// Rounds of each pair (those of the first).
    pub(crate) fn rounds(&self) -> usize {
        self.pairs.first().map_or(0, |pair| pair.rounds.len())
    }
}

/// Runs `rounds` rounds of `pair` on a source of `size_bytes`, A first in
/// even rounds (counting from 0) and B first in odd ones; `measure` brings
/// the machine to the start state, runs one side's step and checks its
/// result. Prints one line per round.
pub(crate) fn measure_pair<P: StepPair, S: Measured>(
    pair: P,
    rounds: usize,
    size_bytes: u64,
    mut measure: impl FnMut(Side) -> Result<S>,
) -> Result<PairReport<P, S>> {
    let mut report = PairReport {
        pair,
        rounds: Vec::new(),
    };
    for index in 0..rounds {
        let a_first = index.is_multiple_of(2);
        let (a, b) = if a_first {
            let a = measure(Side::A)?;
            (a, measure(Side::B)?)
        } else {
            let b = measure(Side::B)?;
            (measure(Side::A)?, b)
        };
        let round = Round { a_first, a, b };
        println!("{}", round_line(pair, index, rounds, size_bytes, &round));
        report.rounds.push(round);
    }
    Ok(report)
}

/// "  round 2/3 (baseline first): STEP 123.4 MiB/s, STEP 234.5 MiB/s".
fn round_line<P: StepPair, S: Measured>(
    pair: P,
    index: usize,
    rounds: usize,
    size_bytes: u64,
    round: &Round<S>,
) -> String {
    let [a, b] = P::SIDES;
    format!(
        "  round {}/{rounds} ({} first): {} {:.1} MiB/s{}, {} {:.1} MiB/s{}",
        index + 1,
        if round.a_first { a } else { b },
        pair.step_name(Side::A),
        mib_per_second(size_bytes, round.a.seconds()),
        round.a.round_note(),
        pair.step_name(Side::B),
        mib_per_second(size_bytes, round.b.seconds()),
        round.b.round_note(),
    )
}

/// The columns a comparison table starts with, for its head: "A / B", A,
/// B, ratio. `name_width` is the first column's; no line end.
pub(crate) fn head_columns<P: StepPair>(name_width: usize) -> String {
    let [a, b] = P::SIDES;
    columns(name_width, &format!("{a} / {b}"), [a, b, "ratio"])
}

/// The same columns for one pair: each side's median MiB/s (min-max), the
/// ratio of medians (min-max of the per-round ratios).
pub(crate) fn comparison_columns(name_width: usize, name: &str, comparison: &Comparison) -> String {
    let (a, b, ratios) = (
        comparison.ours,
        comparison.baseline,
        comparison.round_ratios,
    );
    columns(
        name_width,
        name,
        [
            &format!("{:.1} ({:.0}-{:.0})", a.median, a.min, a.max),
            &format!("{:.1} ({:.0}-{:.0})", b.median, b.min, b.max),
            &format!(
                "{:.2}x ({:.2}-{:.2})",
                comparison.ratio_of_medians, ratios.min, ratios.max
            ),
        ],
    )
}

fn columns(name_width: usize, name: &str, [a, b, ratio]: [&str; 3]) -> String {
    format!("  {name:<name_width$} {a:>20} {b:>20} {ratio:>19}")
}

/// CPU seconds per GiB in a table: two decimals, `-` for none.
pub(crate) fn cpu_cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
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

/// `"key": value, ...` (the values are JSON already).
fn json_fields(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(key, value)| format!("\"{key}\": {value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One sample as a JSON object on one line.
fn json_sample<S: Measured>(name: &str, size_bytes: u64, sample: &S) -> String {
    let seconds = sample.seconds();
    let settled = sample.settled();
    let rate = mib_per_second(size_bytes, seconds);
    let mut fields = vec![
        ("name", json_string(name)),
        ("seconds", json_number(seconds)),
        ("mib_per_second", json_number(rate)),
    ];
    fields.extend(sample.json_fields());
    fields.extend([
        ("settle_seconds", json_number(settled.waited.as_secs_f64())),
        ("dirty_bytes_at_start", settled.dirty_bytes.to_string()),
    ]);
    format!("{{{}}}", json_fields(&fields))
}

/// One pair as a JSON object `indent` spaces in, every round on a line of
/// its own; the keys are named after `P::SIDES`.
fn json_pair<P: StepPair, S: Measured>(
    size_bytes: u64,
    report: &PairReport<P, S>,
    indent: usize,
) -> String {
    let pair = report.pair;
    let [a, b] = P::SIDES;
    let comparison = report.comparison(size_bytes);
    let a_first = format!("{a}_first");
    let rounds: Vec<String> = report
        .rounds
        .iter()
        .map(|round| {
            let sample = |side| json_sample(pair.step_name(side), size_bytes, round.side(side));
            let fields = [
                (a_first.as_str(), round.a_first.to_string()),
                (a, sample(Side::A)),
                (b, sample(Side::B)),
            ];
            format!(
                "{:indent$}{{{}}}",
                "",
                json_fields(&fields),
                indent = indent + 4
            )
        })
        .collect();
    let a_median = format!("{a}_median_mib_per_second");
    let b_median = format!("{b}_median_mib_per_second");
    let mut fields = vec![
        (a, json_string(pair.step_name(Side::A))),
        (b, json_string(pair.step_name(Side::B))),
    ];
    fields.extend(pair.json_fields());
    let statistic = |of: fn(Comparison) -> f64| json_option(comparison.map(of));
    fields.extend([
        (a_median.as_str(), statistic(|c| c.ours.median)),
        (b_median.as_str(), statistic(|c| c.baseline.median)),
        ("ratio_of_medians", statistic(|c| c.ratio_of_medians)),
        ("round_ratio_min", statistic(|c| c.round_ratios.min)),
        ("round_ratio_max", statistic(|c| c.round_ratios.max)),
    ]);
    format!(
        "{:indent$}{{{},\n{:inner$}\"rounds\": [\n{}\n{:inner$}]}}",
        "",
        json_fields(&fields),
        "",
        rounds.join(",\n"),
        "",
        inner = indent + 2,
    )
}

/// The pairs of one source as JSON objects `indent` spaces in, one after
/// the other (no brackets).
pub(crate) fn json_pairs<P: StepPair, S: Measured>(
    size_bytes: u64,
    pairs: &[PairReport<P, S>],
    indent: usize,
) -> String {
    pairs
        .iter()
        .map(|pair| json_pair(size_bytes, pair, indent))
        .collect::<Vec<_>>()
        .join(",\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct TestPair;

    impl StepPair for TestPair {
        const SIDES: [&'static str; 2] = ["left", "right"];

        fn step_name(self, side: Side) -> &'static str {
            match side {
                Side::A => "step a",
                Side::B => "step b",
            }
        }

        fn json_fields(self) -> Vec<(&'static str, String)> {
            vec![("target", json_number(1.5))]
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct TestSample {
        seconds: f64,
        cpu_seconds: f64,
    }

    impl Measured for TestSample {
        fn seconds(&self) -> f64 {
            self.seconds
        }

        fn settled(&self) -> Settled {
            Settled {
                waited: Duration::from_millis(1500),
                dirty_bytes: 8192,
            }
        }

        fn json_fields(&self) -> Vec<(&'static str, String)> {
            vec![("cpu_seconds", json_number(self.cpu_seconds))]
        }

        fn round_note(&self) -> String {
            if self.cpu_seconds > 1.0 {
                " (busy)".to_string()
            } else {
                String::new()
            }
        }
    }

    fn sample(seconds: f64) -> TestSample {
        TestSample {
            seconds,
            cpu_seconds: 0.5,
        }
    }

    #[test]
    fn rounds_alternate_starting_with_a() {
        let mut order = Vec::new();
        let mut next_seconds = 0.0;
        let report = measure_pair(TestPair, 3, 1 << 30, |side| {
            order.push(side);
            next_seconds += 1.0;
            Ok(sample(next_seconds))
        })
        .expect("rounds");
        assert_eq!(
            order,
            [Side::A, Side::B, Side::B, Side::A, Side::A, Side::B]
        );
        let firsts: Vec<bool> = report.rounds.iter().map(|round| round.a_first).collect();
        assert_eq!(firsts, [true, false, true]);
        // Each sample lands on its side whichever ran first.
        assert_eq!(report.rounds[1].a, sample(4.0));
        assert_eq!(report.rounds[1].b, sample(3.0));
    }

    #[test]
    fn a_failed_step_ends_the_pair() {
        let mut steps = 0;
        let result = measure_pair(TestPair, 3, 1 << 30, |side| {
            steps += 1;
            if side == Side::B {
                bail!("step b failed");
            }
            Ok(sample(1.0))
        });
        assert!(result.is_err());
        assert_eq!(steps, 2);
    }

    #[test]
    fn round_lines_name_the_first_side_and_carry_notes() {
        let round = Round {
            a_first: false,
            a: TestSample {
                seconds: 2.0,
                cpu_seconds: 2.0,
            },
            b: sample(4.0),
        };
        assert_eq!(
            round_line(TestPair, 1, 3, 1 << 30, &round),
            "  round 2/3 (right first): step a 512.0 MiB/s (busy), step b 256.0 MiB/s"
        );
    }

    #[test]
    fn reports_compare_side_a_with_side_b() {
        let round = |a, b| Round {
            a_first: true,
            a: sample(a),
            b: sample(b),
        };
        let report = PairReport {
            pair: TestPair,
            rounds: vec![round(1.0, 2.0), round(4.0, 2.0), round(2.0, 4.0)],
        };
        let comparison = report.comparison(1 << 30).expect("rounds");
        assert_eq!(comparison.ours.median, 512.0);
        assert_eq!(comparison.baseline.median, 512.0);
        assert_eq!(comparison.round_ratios.min, 0.5);
        assert_eq!(comparison.round_ratios.max, 2.0);
        let cpu = report.cpu_per_gib(1 << 29, |round| Some(round.b.cpu_seconds));
        assert_eq!(cpu, Some(1.0));
        assert_eq!(report.cpu_per_gib(1 << 30, |_| None), None);
    }

    #[test]
    fn columns_line_up_under_the_head() {
        let comparison = compare(&[512.0, 256.0, 1024.0], &[256.0; 3]).expect("rounds");
        let head = head_columns::<TestPair>(20);
        let row = comparison_columns(20, "step a / step b", &comparison);
        assert_eq!(
            head,
            "  left / right                         left                right               ratio"
        );
        assert_eq!(
            row,
            "  step a / step b          512.0 (256-1024)      256.0 (256-256)   2.00x (1.00-4.00)"
        );
        assert_eq!(cpu_cell(Some(1.234)), "1.23");
        assert_eq!(cpu_cell(None), "-");
    }

    #[test]
    fn json_pairs_name_their_keys_after_the_sides() {
        let report = PairReport {
            pair: TestPair,
            rounds: vec![Round {
                a_first: true,
                a: sample(1.0),
                b: sample(2.0),
            }],
        };
        let json = json_pairs(1 << 30, &[report.clone(), report], 2);
        let pair = "  {\"left\": \"step a\", \"right\": \"step b\", \"target\": 1.5000, \
             \"left_median_mib_per_second\": 1024.0000, \"right_median_mib_per_second\": 512.0000, \
             \"ratio_of_medians\": 2.0000, \"round_ratio_min\": 2.0000, \"round_ratio_max\": 2.0000,\n    \
             \"rounds\": [\n      {\"left_first\": true, \
             \"left\": {\"name\": \"step a\", \"seconds\": 1.0000, \"mib_per_second\": 1024.0000, \
             \"cpu_seconds\": 0.5000, \"settle_seconds\": 1.5000, \"dirty_bytes_at_start\": 8192}, \
             \"right\": {\"name\": \"step b\", \"seconds\": 2.0000, \"mib_per_second\": 512.0000, \
             \"cpu_seconds\": 0.5000, \"settle_seconds\": 1.5000, \"dirty_bytes_at_start\": 8192}}\n    ]}";
        assert_eq!(json, format!("{pair},\n{pair}"));
    }

    #[test]
    fn json_numbers_and_strings() {
        assert_eq!(json_number(1.0 / 3.0), "0.3333");
        assert_eq!(json_number(f64::NAN), "null");
        assert_eq!(json_option(None), "null");
        assert_eq!(json_option(Some(2.0)), "2.0000");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn rounds_must_be_odd() {
        assert!(check_rounds(1).is_ok());
        assert!(check_rounds(3).is_ok());
        assert!(check_rounds(0).is_err());
        assert!(check_rounds(4).is_err());
    }
}
