//! The statistics of a side-by-side comparison, pure: medians and spreads
//! of each side's rates over the rounds, the ratio of the medians and the
//! spread of the per-round ratios.

/// The median of some values and their range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// Median (the mean of the middle two for an even count), least and
/// greatest of `values`; None when there are none.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let min = *sorted.first()?;
    let max = *sorted.last()?;
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    };
    Some(Spread { median, min, max })
}

/// Ours against a baseline over the same rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Comparison {
    pub ours: Spread,
    pub baseline: Spread,
    /// Median of ours over median of the baseline: what the README quotes.
    pub ratio_of_medians: f64,
    /// Spread of ours / baseline taken round by round.
    pub round_ratios: Spread,
}

/// Compares rates (higher is better) measured in the same rounds: `ours[i]`
/// and `baseline[i]` ran in round i. None when the rounds are missing or
/// the two sides have different counts.
pub fn compare(ours: &[f64], baseline: &[f64]) -> Option<Comparison> {
    if ours.len() != baseline.len() {
        return None;
    }
    let ratios: Vec<f64> = ours
        .iter()
        .zip(baseline)
        .map(|(ours, baseline)| ours / baseline)
        .collect();
    let ours = spread(ours)?;
    let baseline = spread(baseline)?;
    Some(Comparison {
        ours,
        baseline,
        ratio_of_medians: ours.median / baseline.median,
        round_ratios: spread(&ratios)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_spread(values: &[f64], expected: Option<(f64, f64, f64)>) {
        let expected = expected.map(|(median, min, max)| Spread { median, min, max });
        assert_eq!(spread(values), expected, "{values:?}");
    }

    #[test]
    fn spreads_take_the_middle_value_and_the_range() {
        check_spread(&[], None);
        check_spread(&[5.0], Some((5.0, 5.0, 5.0)));
        check_spread(&[3.0, 1.0, 2.0], Some((2.0, 1.0, 3.0)));
        check_spread(&[10.0, 1.0, 2.0, 9.0, 3.0], Some((3.0, 1.0, 10.0)));
        check_spread(&[4.0, 1.0, 2.0, 3.0], Some((2.5, 1.0, 4.0)));
    }

    #[test]
    fn the_ratio_is_of_medians_and_round_ratios_are_paired() {
        let comparison = compare(&[100.0, 300.0, 200.0], &[100.0, 100.0, 400.0]).expect("rounds");
        assert_eq!(comparison.ours.median, 200.0);
        assert_eq!(comparison.baseline.median, 100.0);
        assert_eq!(comparison.ratio_of_medians, 2.0);
        // Round by round: 1.0, 3.0 and 0.5, not any other pairing.
        assert_eq!(
            comparison.round_ratios,
            Spread {
                median: 1.0,
                min: 0.5,
                max: 3.0
            }
        );
    }

    #[test]
    fn comparisons_need_the_same_rounds_on_both_sides() {
        assert_eq!(compare(&[], &[]), None);
        assert_eq!(compare(&[1.0, 2.0], &[1.0]), None);
    }
}
