//! Where a run's metrics go: `metrics.jsonl` in the output folder (always), Trackio's
//! inbox (`--report_to trackio`), and a loss-curve picture at the end.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Appends one JSON object per line to `output_dir/metrics.jsonl`.
pub struct MetricsFile {
    path: PathBuf,
}

impl MetricsFile {
    /// Starts the file from `history` (a resumed run rewrites what the checkpoint knew).
    pub fn start(output_dir: &Path, history: &[Value]) -> Result<Self, String> {
        let path = output_dir.join("metrics.jsonl");
        let mut text = String::new();
        for entry in history {
            text.push_str(&entry.to_string());
            text.push('\n');
        }
        crate::checkpoint::write_file(&path, text.as_bytes())?;
        Ok(Self { path })
    }

    pub fn append(&self, entry: &Value) -> Result<(), String> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        writeln!(f, "{entry}").map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// Writes Trackio inbox fragments: `TRACKIO_DIR/inbox/<writer>/<seq:08d>.jsonl`, each
/// written as `.tmp` and renamed, which `trackio show` imports.
pub struct Trackio {
    dir: PathBuf,
    project: String,
    run: String,
    run_id: String,
    seq: u64,
    config: Option<Value>,
}

impl Trackio {
    pub fn new(project: &str, run: &str, config: Value) -> Result<Self, String> {
        let base = std::env::var_os("TRACKIO_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("trackio")))
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".cache/huggingface/trackio"))
            })
            .ok_or("cannot find Trackio's folder: set TRACKIO_DIR")?;
        let run_id = hex_id(run);
        let dir =
            base.join("inbox")
                .join(format!("sft-train-{}-{}", std::process::id(), &run_id[..8]));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self {
            dir,
            project: project.into(),
            run: run.into(),
            run_id,
            seq: 0,
            config: Some(config),
        })
    }

    pub fn log(&mut self, step: usize, metrics: &Value) -> Result<(), String> {
        let mut clean = serde_json::Map::new();
        if let Value::Object(m) = metrics {
            for (k, v) in m {
                if k == "step" {
                    continue;
                }
                let v = match v.as_f64() {
                    Some(x) if x.is_nan() => Value::from("NaN"),
                    Some(x) if x == f64::INFINITY => Value::from("Infinity"),
                    Some(x) if x == f64::NEG_INFINITY => Value::from("-Infinity"),
                    _ => v.clone(),
                };
                clean.insert(k.clone(), v);
            }
        }
        let record = json!({
            "v": 1, "kind": "metric", "project": self.project, "run": self.run,
            "run_id": self.run_id, "step": step, "timestamp": timestamp(),
            "metrics": clean, "config": self.config.take(),
            "log_id": hex_id(&format!("{}-{}-{}", self.run_id, self.seq, step)),
        });
        let path = self.dir.join(format!("{:08}.jsonl", self.seq));
        self.seq += 1;
        crate::checkpoint::write_file(&path, format!("{record}\n").as_bytes())
    }
}

fn hex_id(seed: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut rng = crate::rng::SplitMix64::new(
        seed.bytes()
            .fold(nanos as u64 ^ std::process::id() as u64, |h, b| {
                h.rotate_left(5) ^ b as u64
            }),
    );
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

/// UTC now as `2026-01-01T00:00:00.000000+00:00`.
pub fn timestamp() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let t = sft_template::NaiveDateTime::from_unix(d.as_secs() as i64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        d.subsec_micros()
    )
}

/// A named, coloured line of (x, y) points.
pub type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// An SVG line chart of named series of (x, y) points.
pub fn line_chart_svg(title: &str, x_label: &str, series: &[Series]) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 400.0, 70.0, 20.0, 40.0, 50.0);
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        w / 2.0,
        escape(title)
    );
    if points.is_empty() {
        svg.push_str("<text x=\"360\" y=\"200\" text-anchor=\"middle\">no data</text>\n</svg>\n");
        return svg;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    y0 -= pad;
    y1 += pad;
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let sy = |y: f64| top + (y1 - y) / (y1 - y0) * (h - top - bottom);
    for i in 0..=4 {
        let y = y0 + (y1 - y0) * i as f64 / 4.0;
        let x = x0 + (x1 - x0) * i as f64 / 4.0;
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{y:.3}</text>\n<text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            w - right,
            left - 6.0,
            sy(y) + 4.0,
            h - bottom + 18.0,
            if x1 - x0 >= 10.0 { format!("{x:.0}") } else { format!("{x:.2}") },
            py = sy(y),
            px = sx(x),
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
        (left + w - right) / 2.0,
        h - 10.0,
        escape(x_label)
    ));
    for (i, (name, colour, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if path.len() == 1 {
            svg.push_str(&format!(
                "<circle cx=\"{}\" r=\"3\" fill=\"{colour}\" cy=\"{}\"/>\n",
                path[0].split(',').next().unwrap(),
                path[0].split(',').nth(1).unwrap()
            ));
        } else {
            svg.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
                path.join(" ")
            ));
        }
        let ly = top + 16.0 * i as f64;
        svg.push_str(&format!(
            "<line x1=\"{}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{colour}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
            w - right - 120.0,
            w - right - 100.0,
            w - right - 95.0,
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
        &[
            ("train loss", "#1f77b4", pick("loss")),
            ("eval loss", "#d62728", pick("eval_loss")),
        ],
    )
}

/// Peak resident memory of this process in MB (Linux), if known.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_has_trackio_shape() {
        let t = super::timestamp();
        assert_eq!(t.len(), "2026-01-01T00:00:00.000000+00:00".len(), "{t}");
        assert!(t.ends_with("+00:00") && t.as_bytes()[10] == b'T', "{t}");
    }
}
