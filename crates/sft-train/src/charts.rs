//! Charts a person reads: SVG line charts of a run's loss curves and of metrics per
//! checkpoint (`loss.svg` of `sft-train`, the plots of `sft-eval`).

use serde_json::Value;

/// A named, coloured line of (x, y) points.
pub type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// Series with at most this many points get a marker on each point.
const MARKED_POINTS: usize = 24;

/// Tick values covering `lo..=hi` at a round spacing (1, 2 or 5 times a power of ten),
/// at least 1 apart when `whole` (steps).
fn ticks(lo: f64, hi: f64, whole: bool) -> Vec<f64> {
    let raw = ((hi - lo) / 5.0).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let mut spacing = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    if whole {
        spacing = spacing.max(1.0).round();
    }
    let first = (lo / spacing).ceil() as i64;
    let last = (hi / spacing).floor() as i64;
    (first..=last).map(|k| k as f64 * spacing).collect()
}

/// A tick's label with as many decimals as the spacing needs.
fn tick_label(v: f64, ticks: &[f64]) -> String {
    let spacing = match ticks {
        [a, b, ..] => b - a,
        _ => 1.0,
    };
    let decimals = if spacing >= 1.0 {
        0
    } else {
        (-spacing.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

/// An SVG line chart of named series of (x, y) points. Steps on the x axis (`x_label`
/// "step") get whole-number ticks; series without points get no legend entry; series of
/// few points get a marker on each; the legend sits beside the plot, never on the data.
pub fn line_chart_svg(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (w, h, left, right, top, bottom) = (760.0, 400.0, 80.0, 170.0, 40.0, 50.0);
    let finite = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
        pts.iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    };
    let drawn: Vec<Series> = series
        .iter()
        .map(|(name, colour, pts)| (*name, *colour, finite(pts)))
        .filter(|s| !s.2.is_empty())
        .collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        (left + w - right) / 2.0,
        escape(title)
    );
    if drawn.is_empty() {
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no data</text>\n</svg>\n",
            (left + w - right) / 2.0,
            h / 2.0
        ));
        return svg;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in drawn.iter().flat_map(|s| s.2.iter()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let whole_x = x_label == "step";
    if x1 <= x0 {
        x0 -= 1.0;
        x1 += 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    y0 -= pad;
    y1 += pad;
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let sy = |y: f64| top + (y1 - y) / (y1 - y0) * (h - top - bottom);
    let y_ticks = ticks(y0, y1, false);
    for &y in &y_ticks {
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            w - right,
            left - 6.0,
            sy(y) + 4.0,
            tick_label(y, &y_ticks),
            py = sy(y),
        ));
    }
    let x_ticks = ticks(x0, x1, whole_x);
    for &x in &x_ticks {
        svg.push_str(&format!(
            "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/><text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            h - bottom,
            h - bottom + 5.0,
            h - bottom + 18.0,
            tick_label(x, &x_ticks),
            px = sx(x),
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n<text transform=\"translate(18 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
        w - right,
        h - bottom,
        h - bottom,
        (left + w - right) / 2.0,
        h - 10.0,
        escape(x_label),
        (top + h - bottom) / 2.0,
        escape(y_label)
    ));
    for (i, (name, colour, pts)) in drawn.iter().enumerate() {
        if pts.len() > 1 {
            let path: Vec<String> = pts
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            svg.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
                path.join(" ")
            ));
        }
        if pts.len() <= MARKED_POINTS {
            for &(x, y) in pts {
                svg.push_str(&format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>\n",
                    sx(x),
                    sy(y)
                ));
            }
        }
        let (lx, ly) = (w - right + 15.0, top + 10.0 + 18.0 * i as f64);
        svg.push_str(&format!(
            "<line x1=\"{lx}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{colour}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
            lx + 20.0,
            lx + 25.0,
            ly + 4.0,
            escape(name)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The loss picture of a run from its log history: train loss and eval loss per step.
pub fn loss_chart(history: &[Value], title: &str) -> String {
    let pick = |key: &str| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|e| Some((e.get("step")?.as_f64()?, e.get(key)?.as_f64()?)))
            .collect()
    };
    line_chart_svg(
        title,
        "step",
        "loss",
        &[
            ("train loss", "#1f77b4", pick("loss")),
            ("eval loss", "#d62728", pick("eval_loss")),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ticks_are_whole_numbers_and_round() {
        assert_eq!(ticks(1.0, 3.0, true), [1.0, 2.0, 3.0]);
        assert_eq!(ticks(0.0, 40.0, true), [0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(ticks(2.31, 2.39, false).len(), 4);
        let t = ticks(2.31, 2.39, false);
        assert_eq!(tick_label(t[0], &t), "2.32");
    }

    #[test]
    fn empty_series_get_no_legend_few_points_get_markers_and_the_axes_are_labelled() {
        let svg = line_chart_svg(
            "t",
            "step",
            "loss",
            &[
                (
                    "train loss",
                    "#1f77b4",
                    vec![(1.0, 3.0), (2.0, 2.5), (3.0, 2.0)],
                ),
                ("eval loss", "#d62728", vec![]),
            ],
        );
        assert!(
            svg.contains(">train loss<") && !svg.contains(">eval loss<"),
            "{svg}"
        );
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("rotate(-90)\" text-anchor=\"middle\">loss<"));
        // Whole steps only: no 1.5 tick.
        assert!(!svg.contains(">1.5<"));
        let many: Vec<(f64, f64)> = (0..100)
            .map(|i| (i as f64, 1.0 / (1.0 + i as f64)))
            .collect();
        let svg = line_chart_svg("t", "step", "loss", &[("train loss", "#1f77b4", many)]);
        assert_eq!(svg.matches("<circle").count(), 0);
        assert!(line_chart_svg("t", "step", "loss", &[("a", "#000", vec![])]).contains("no data"));
    }
}
