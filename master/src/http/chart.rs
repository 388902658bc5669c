//! Small line charts as inline SVG, drawn on the server: no script, no
//! external asset. A chart has at most `CHART_POINTS_MAX` points whatever
//! the series holds (longer series are averaged into that many buckets),
//! so a page's size stays bounded.

use std::fmt::Write;

use super::pages::escape;

/// Most points one chart draws.
pub const CHART_POINTS_MAX: usize = 180;

/// The drawing's coordinate box; the page scales it to its width.
const WIDTH: f64 = 320.0;
const HEIGHT: f64 = 96.0;
/// The plot area inside it, leaving room for the labels.
const LEFT: f64 = 44.0;
const RIGHT: f64 = 314.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 78.0;

/// A value at a time, milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChartPoint {
    pub time_ms: u64,
    pub value: f64,
}

/// A line chart of `points` (oldest first) over the `window_ms` before
/// `now_ms`, titled `title` (for screen readers) with values in `unit`.
/// Points outside the window are left out; an empty series draws the axes
/// and says there is no data yet.
pub fn line_chart(
    title: &str,
    unit: &str,
    points: &[ChartPoint],
    window_ms: u64,
    now_ms: u64,
) -> String {
    let window_ms = window_ms.max(1);
    let start_ms = now_ms.saturating_sub(window_ms);
    let inside: Vec<ChartPoint> = points
        .iter()
        .filter(|point| point.time_ms >= start_ms && point.time_ms <= now_ms)
        .map(|point| ChartPoint {
            time_ms: point.time_ms,
            value: if point.value.is_finite() {
                point.value.max(0.0)
            } else {
                0.0
            },
        })
        .collect();
    let drawn = downsample(&inside, CHART_POINTS_MAX);
    let top_value = nice_ceiling(drawn.iter().map(|point| point.value).fold(0.0, f64::max));
    let x = |time_ms: u64| {
        LEFT + (RIGHT - LEFT) * (time_ms.saturating_sub(start_ms) as f64 / window_ms as f64)
    };
    let y = |value: f64| BOTTOM - (BOTTOM - TOP) * (value / top_value);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">"#,
        label = escape(title)
    );
    let _ = write!(svg, "<title>{}</title>", escape(title));
    // Axes and the top grid line.
    let _ = write!(
        svg,
        r#"<path class="axis" d="M{LEFT} {TOP}V{BOTTOM}H{RIGHT}"/><path class="grid" d="M{LEFT} {TOP}H{RIGHT}"/>"#
    );
    let _ = write!(
        svg,
        r#"<text x="{lx}" y="{ty}" text-anchor="end">{top}</text><text x="{lx}" y="{by}" text-anchor="end">0</text>"#,
        lx = LEFT - 4.0,
        ty = TOP + 4.0,
        by = BOTTOM,
        top = escape(&format_value(top_value)),
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="{ly}">-{minutes} min</text><text x="{RIGHT}" y="{ly}" text-anchor="end">now</text><text x="{mx}" y="{ly}" text-anchor="middle">{unit}</text>"#,
        ly = HEIGHT - 4.0,
        minutes = window_ms / 60_000,
        mx = (LEFT + RIGHT) / 2.0,
        unit = escape(unit),
    );
    if drawn.is_empty() {
        let _ = write!(
            svg,
            r#"<text class="empty" x="{mx}" y="{my}" text-anchor="middle">no data yet</text>"#,
            mx = (LEFT + RIGHT) / 2.0,
            my = (TOP + BOTTOM) / 2.0,
        );
    } else {
        svg.push_str(r#"<polyline class="line" points=""#);
        for (index, point) in drawn.iter().enumerate() {
            if index > 0 {
                svg.push(' ');
            }
            let _ = write!(svg, "{:.1},{:.1}", x(point.time_ms), y(point.value));
        }
        svg.push_str(r#""/>"#);
    }
    svg.push_str("</svg>");
    svg
}

/// At most `max` points: consecutive runs averaged (time and value), so
/// the shape stays and the count is bounded.
fn downsample(points: &[ChartPoint], max: usize) -> Vec<ChartPoint> {
    if points.len() <= max {
        return points.to_vec();
    }
    let per_bucket = points.len().div_ceil(max.max(1));
    points
        .chunks(per_bucket)
        .map(|bucket| {
            let count = bucket.len() as f64;
            let time_ms = bucket.iter().map(|p| p.time_ms as f64).sum::<f64>() / count;
            let value = bucket.iter().map(|p| p.value).sum::<f64>() / count;
            ChartPoint {
                time_ms: time_ms as u64,
                value,
            }
        })
        .collect()
}

/// The smallest of 1, 2 or 5 times a power of ten at or above `value`
/// (at least 1), so the top label is a round number.
fn nice_ceiling(value: f64) -> f64 {
    if value.is_nan() || value <= 1.0 {
        return 1.0;
    }
    let mut magnitude = 1.0;
    while magnitude * 10.0 <= value {
        magnitude *= 10.0;
    }
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= value {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn format_value(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.0}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.0}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW_MS: u64 = 30 * 60 * 1000;
    const NOW_MS: u64 = 1_700_000_000_000;

    fn polyline_points(svg: &str) -> usize {
        let start = svg.find(r#"points=""#).expect("a polyline") + r#"points=""#.len();
        let end = start + svg[start..].find('"').expect("end of points");
        svg[start..end].split(' ').count()
    }

    #[test]
    fn an_empty_history_draws_axes_and_says_so() {
        let svg = line_chart("ops", "per second", &[], WINDOW_MS, NOW_MS);
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.ends_with("</svg>"), "{svg}");
        assert!(svg.contains("no data yet"), "{svg}");
        assert!(!svg.contains("<polyline"), "{svg}");
        assert!(svg.contains(r#"class="axis""#), "{svg}");
    }

    #[test]
    fn a_long_series_is_drawn_with_a_bounded_number_of_points() {
        let points: Vec<ChartPoint> = (0..100_000u64)
            .map(|i| ChartPoint {
                time_ms: NOW_MS - WINDOW_MS + i * (WINDOW_MS / 100_000),
                value: (i % 7) as f64,
            })
            .collect();
        let svg = line_chart("ops", "per second", &points, WINDOW_MS, NOW_MS);
        let drawn = polyline_points(&svg);
        assert!(drawn <= CHART_POINTS_MAX, "{drawn} points drawn");
        assert!(drawn >= CHART_POINTS_MAX / 2, "{drawn} points drawn");
        assert!(svg.len() < 16 * 1024, "{} bytes", svg.len());
    }

    #[test]
    fn points_outside_the_window_and_odd_values_are_tamed() {
        let points = [
            ChartPoint {
                time_ms: NOW_MS - 2 * WINDOW_MS,
                value: 1e12,
            },
            ChartPoint {
                time_ms: NOW_MS - 1000,
                value: f64::NAN,
            },
            ChartPoint {
                time_ms: NOW_MS,
                value: 37.0,
            },
        ];
        let svg = line_chart("ops", "per second", &points, WINDOW_MS, NOW_MS);
        assert_eq!(polyline_points(&svg), 2, "{svg}");
        assert!(svg.contains(">50<"), "the top label rounds 37 up: {svg}");
        assert!(!svg.contains("NaN"), "{svg}");
    }

    #[test]
    fn titles_are_escaped() {
        let svg = line_chart("<b>&", "</svg>", &[], WINDOW_MS, NOW_MS);
        assert!(svg.contains("&lt;b&gt;&amp;"), "{svg}");
        assert_eq!(svg.matches("</svg>").count(), 1, "{svg}");
    }

    #[test]
    fn round_tops() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1.5), 2.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(430.0), 500.0);
    }
}
