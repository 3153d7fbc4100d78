//! PNG charts: the loss, accuracy and learning-rate curves of a training run (read from its
//! `metrics.jsonl`) and the ROC curve of an evaluation.
//!
//! Drawing uses plotters' in-memory bitmap backend and the `png` encoder; text is rendered with a
//! TrueType font read at run time (DejaVu Sans from the Debian package `fonts-dejavu-core`, or the
//! file named by `FAKESTORMER_FONT`), so no fontconfig/system font lookup is involved.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context};
use model::metrics::RocCurve;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Environment variable naming a `.ttf`/`.otf` file to use instead of the default font.
pub const FONT_ENV: &str = "FAKESTORMER_FONT";
/// Default font file (Debian package `fonts-dejavu-core`).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const FONT: &str = "sans-serif";
const CURVE_SIZE: (u32, u32) = (1000, 600);
const ROC_SIZE: (u32, u32) = (700, 700);
/// Moving-average window of the per-step training accuracy (shrunk for short runs).
const ACC_WINDOW: usize = 50;

/// Series colours (distinct, so tests can find each series by its pixels).
const C_LOSS: RGBColor = RGBColor(20, 20, 20);
const C_HM: RGBColor = RGBColor(31, 119, 180);
const C_CLS: RGBColor = RGBColor(214, 39, 40);
const C_SPATIAL: RGBColor = RGBColor(44, 160, 44);
const C_TRAIN_EPOCH: RGBColor = RGBColor(255, 127, 14);
const C_VAL: RGBColor = RGBColor(148, 103, 189);
const C_ACC_RAW: RGBColor = RGBColor(200, 200, 225);
const C_LR: RGBColor = RGBColor(31, 119, 180);
const C_CHANCE: RGBColor = RGBColor(150, 150, 150);

/// Reads the font file (path from [`FONT_ENV`] or [`DEFAULT_FONT`]).
fn font_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "font {}: cannot read it; charts need a TrueType font: install the Debian package \
             fonts-dejavu-core (scripts/setup.sh does) or set {FONT_ENV} to a .ttf file",
            path.display()
        )
    })
}

/// Registers the chart font with plotters once per process; later calls return the first result.
fn ensure_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = REGISTERED.get_or_init(|| {
        let path = std::env::var_os(FONT_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_FONT));
        let bytes = font_bytes(&path).map_err(|e| format!("{e:#}"))?;
        // plotters keeps a `&'static` reference; one font per process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FONT, FontStyle::Normal, bytes).map_err(|_| {
            format!(
                "font {}: not a valid TrueType/OpenType file",
                path.display()
            )
        })
    });
    result.clone().map_err(|e| anyhow!(e))
}

fn draw_err(e: impl Display) -> anyhow::Error {
    anyhow!("drawing chart: {e}")
}

/// Renders into an RGB buffer with `draw`, then writes it as PNG atomically.
fn render_png(
    out: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    ensure_font()?;
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().context("encoding PNG")?;
        writer.write_image_data(&buf).context("encoding PNG")?;
        writer.finish().context("encoding PNG")?;
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    model::atomic_write(out, &bytes)?;
    Ok(())
}

// Called by `eval` (issue 7), which is wired in separately.
#[allow(dead_code)]
/// Writes the ROC curve with its AUC and the chance diagonal to `out` (PNG, 700×700).
pub fn roc_png(curve: &RocCurve, auc: f64, title: &str, out: &Path) -> anyhow::Result<()> {
    let n = curve.fpr.len();
    if n == 0 || curve.tpr.len() != n {
        bail!(
            "ROC curve for {}: {} FPR and {} TPR values (need the same non-zero number)",
            out.display(),
            n,
            curve.tpr.len()
        );
    }
    let in_unit = |v: &f64| v.is_finite() && (0.0..=1.0).contains(v);
    if let Some(i) = (0..n).find(|&i| !in_unit(&curve.fpr[i]) || !in_unit(&curve.tpr[i])) {
        bail!(
            "ROC curve for {}: point {i} ({}, {}) is outside [0, 1]",
            out.display(),
            curve.fpr[i],
            curve.tpr[i]
        );
    }
    let points: Vec<(f64, f64)> = curve
        .fpr
        .iter()
        .copied()
        .zip(curve.tpr.iter().copied())
        .collect();
    let label = if auc.is_finite() {
        format!("ROC (AUC = {auc:.4})")
    } else {
        "ROC (AUC n/a)".to_string()
    };
    render_png(out, ROC_SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("false positive rate")
            .y_desc("true positive rate")
            .label_style((FONT, 14))
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, 0.0), (1.0, 1.0)],
                8,
                6,
                C_CHANCE.stroke_width(1),
            ))
            .map_err(draw_err)?
            .label("chance")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], C_CHANCE));
        chart
            .draw_series(LineSeries::new(points, C_CLS.stroke_width(2)))
            .map_err(draw_err)?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], C_CLS.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// One `"kind":"step"` record of `metrics.jsonl` (fields that are null or absent are `None`).
#[derive(Debug, Clone, Default, PartialEq)]
struct StepRecord {
    lr: Option<f64>,
    loss: Option<f64>,
    loss_hm: Option<f64>,
    loss_cls: Option<f64>,
    loss_spatial: Option<f64>,
    acc: Option<f64>,
}

/// One `"kind":"epoch"` record of `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq)]
struct EpochRecord {
    step: Option<f64>,
    lr: Option<f64>,
    train_loss: Option<f64>,
    train_acc: Option<f64>,
    val_loss: Option<f64>,
    val_acc: Option<f64>,
}

/// A run's records keyed by step / epoch. A resumed run repeats the steps after its checkpoint:
/// the later record of a step (or epoch) replaces the earlier one.
#[derive(Debug, Default)]
struct RunLog {
    steps: BTreeMap<u64, StepRecord>,
    epochs: BTreeMap<u64, EpochRecord>,
}

/// Largest magnitude drawn: plotters' tick search does not terminate for ranges near `f64::MAX`,
/// and a loss this large means the run diverged anyway.
const MAX_PLOTTED: f64 = 1e300;

/// A plottable number at `key`; null, absent, non-finite and beyond-[`MAX_PLOTTED`] all read as
/// `None` (nothing is drawn for them).
fn num(v: &serde_json::Value, key: &str) -> Option<f64> {
    v.get(key)
        .and_then(serde_json::Value::as_f64)
        .filter(|x| x.abs() <= MAX_PLOTTED)
}

fn index(v: &serde_json::Value, key: &str, what: &str, line: usize) -> anyhow::Result<u64> {
    v.get(key)
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| {
            anyhow!("line {line}: {what} record without a non-negative integer \"{key}\"")
        })
}

/// Parses `metrics.jsonl`. Unknown kinds and keys are ignored; a malformed line is an error,
/// except an unterminated last line (a run killed mid-write), which is skipped with a warning.
fn read_log(path: &Path) -> anyhow::Result<RunLog> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut log = RunLog::default();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut number = 0usize;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) if !line.ends_with('\n') => {
                tracing::warn!(
                    "{}: skipping unterminated last line {number}: {e}",
                    path.display()
                );
                break;
            }
            Err(e) => bail!("{}: line {number} is not JSON: {e}", path.display()),
        };
        match v.get("kind").and_then(serde_json::Value::as_str) {
            Some("step") => {
                let step = index(&v, "step", "step", number)
                    .with_context(|| path.display().to_string())?;
                log.steps.insert(
                    step,
                    StepRecord {
                        lr: num(&v, "lr"),
                        loss: num(&v, "loss"),
                        loss_hm: num(&v, "loss_hm"),
                        loss_cls: num(&v, "loss_cls"),
                        loss_spatial: num(&v, "loss_spatial"),
                        acc: num(&v, "acc"),
                    },
                );
            }
            Some("epoch") => {
                let epoch = index(&v, "epoch", "epoch", number)
                    .with_context(|| path.display().to_string())?;
                log.epochs.insert(
                    epoch,
                    EpochRecord {
                        step: num(&v, "step"),
                        lr: num(&v, "lr"),
                        train_loss: num(&v, "train_loss"),
                        train_acc: num(&v, "train_acc"),
                        val_loss: num(&v, "val_loss"),
                        val_acc: num(&v, "val_acc"),
                    },
                );
            }
            _ => {}
        }
    }
    Ok(log)
}

/// One line of a chart.
struct Series {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    /// Draw a marker at every point (sparse series such as per-epoch values).
    markers: bool,
}

impl Series {
    fn new(name: &'static str, color: RGBColor, points: Vec<(f64, f64)>, markers: bool) -> Self {
        Self {
            name,
            color,
            points,
            markers,
        }
    }
}

/// Padded range of `values`; a single value gets a window around it.
fn span(values: impl Iterator<Item = f64>, pad_frac: f64) -> Option<(f64, f64)> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return None;
    }
    let width = hi - lo;
    if width <= f64::EPSILON * hi.abs().max(lo.abs()).max(f64::MIN_POSITIVE) {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.5 };
        return Some((lo - d, hi + d));
    }
    Some((lo - width * pad_frac, hi + width * pad_frac))
}

fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(pos)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)
}

/// Draws `series` against step; `y_fixed` pins the y range (accuracies), else it fits the data.
/// With no points at all it says so instead of drawing axes.
fn line_chart(
    out: &Path,
    title: &str,
    y_desc: &str,
    series: &[Series],
    y_fixed: Option<(f64, f64)>,
    legend_at: SeriesLabelPosition,
) -> anyhow::Result<()> {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let x = span(all().map(|p| p.0), 0.0);
    let y = y_fixed.or_else(|| span(all().map(|p| p.1), 0.05));
    render_png(out, CURVE_SIZE, |root| {
        let (Some((x0, x1)), Some((y0, y1))) = (x, y) else {
            let area = root.titled(title, (FONT, 24)).map_err(draw_err)?;
            let (w, h) = area.dim_in_pixel();
            area.draw(&Text::new(
                "no data in metrics.jsonl",
                (w as i32 / 2 - 90, h as i32 / 2),
                (FONT, 18),
            ))
            .map_err(draw_err)?;
            return Ok(());
        };
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(y_desc)
            .label_style((FONT, 14))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format_tick(*v, (y1 - y0).abs()))
            .draw()
            .map_err(draw_err)?;
        for s in series.iter().filter(|s| !s.points.is_empty()) {
            let color = s.color;
            chart
                .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
                .map_err(draw_err)?
                .label(s.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            if s.markers || s.points.len() == 1 {
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(draw_err)?;
            }
        }
        legend(&mut chart, legend_at)
    })
}

/// Tick label readable for both losses (~1) and learning rates (~1e-5): the notation is chosen
/// per axis from its extent, and float noise around zero prints as 0.
fn format_tick(v: f64, extent: f64) -> String {
    if v.abs() <= extent * 1e-9 {
        "0".into()
    } else if !(1e-2..1e5).contains(&extent) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Trailing moving average over `window` points (fewer at the start).
fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= points[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

fn step_series(log: &RunLog, field: impl Fn(&StepRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    log.steps
        .iter()
        .filter_map(|(&s, r)| field(r).map(|v| (s as f64, v)))
        .collect()
}

/// Per-epoch values placed at the epoch's last step (epochs without a step are left out).
fn epoch_series(log: &RunLog, field: impl Fn(&EpochRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    log.epochs
        .values()
        .filter_map(|r| Some((r.step?, field(r)?)))
        .collect()
}

/// Reads `RUN_DIR/metrics.jsonl` and writes `RUN_DIR/plots/{loss,accuracy,lr}.png`; returns the
/// paths. A chart whose values are all missing says "no data"; a file with no step or epoch
/// record at all is an error.
pub fn plot_run(run_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let jsonl = run_dir.join("metrics.jsonl");
    let log = read_log(&jsonl)?;
    if log.steps.is_empty() && log.epochs.is_empty() {
        bail!(
            "{}: no \"step\" or \"epoch\" records: nothing to plot",
            jsonl.display()
        );
    }
    let plots = run_dir.join("plots");
    let name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run_dir.display().to_string());

    let loss = plots.join("loss.png");
    line_chart(
        &loss,
        &format!("{name}: training loss"),
        "loss",
        &[
            Series::new("loss", C_LOSS, step_series(&log, |r| r.loss), false),
            Series::new("loss_hm", C_HM, step_series(&log, |r| r.loss_hm), false),
            Series::new("loss_cls", C_CLS, step_series(&log, |r| r.loss_cls), false),
            Series::new(
                "loss_spatial",
                C_SPATIAL,
                step_series(&log, |r| r.loss_spatial),
                false,
            ),
            Series::new(
                "epoch mean",
                C_TRAIN_EPOCH,
                epoch_series(&log, |r| r.train_loss),
                true,
            ),
            Series::new("val loss", C_VAL, epoch_series(&log, |r| r.val_loss), true),
        ],
        None,
        SeriesLabelPosition::UpperRight,
    )?;

    let accuracy = plots.join("accuracy.png");
    let acc = step_series(&log, |r| r.acc);
    let window = ACC_WINDOW.min((acc.len() / 10).max(1));
    line_chart(
        &accuracy,
        &format!("{name}: accuracy"),
        "accuracy",
        &[
            Series::new("train acc (step)", C_ACC_RAW, acc.clone(), false),
            Series::new(
                "train acc (moving avg)",
                C_LOSS,
                moving_average(&acc, window),
                false,
            ),
            Series::new(
                "train acc (epoch)",
                C_TRAIN_EPOCH,
                epoch_series(&log, |r| r.train_acc),
                true,
            ),
            Series::new("val acc", C_VAL, epoch_series(&log, |r| r.val_acc), true),
        ],
        Some((0.0, 1.0)),
        SeriesLabelPosition::LowerRight,
    )?;

    let lr = plots.join("lr.png");
    let mut lr_points = step_series(&log, |r| r.lr);
    if lr_points.is_empty() {
        lr_points = epoch_series(&log, |r| r.lr);
    }
    line_chart(
        &lr,
        &format!("{name}: learning rate"),
        "learning rate",
        &[Series::new("lr", C_LR, lr_points, false)],
        None,
        SeriesLabelPosition::UpperRight,
    )?;
    Ok(vec![loss, accuracy, lr])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    struct Image {
        w: u32,
        h: u32,
        rgb: Vec<u8>,
    }

    impl Image {
        fn read(path: &Path) -> Image {
            let dec = png::Decoder::new(BufReader::new(std::fs::File::open(path).unwrap()));
            let mut reader = dec.read_info().unwrap();
            let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut rgb).unwrap();
            assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
            rgb.truncate(info.buffer_size());
            Image {
                w: info.width,
                h: info.height,
                rgb,
            }
        }

        fn pixels(&self) -> impl Iterator<Item = (u32, u32, [u8; 3])> + '_ {
            self.rgb.chunks_exact(3).enumerate().map(|(i, p)| {
                let i = i as u32;
                (i % self.w, i / self.w, [p[0], p[1], p[2]])
            })
        }

        /// Pixels drawn exactly in `c` (plotters draws opaque lines without anti-aliasing).
        fn count(&self, c: RGBColor) -> usize {
            self.pixels().filter(|p| p.2 == [c.0, c.1, c.2]).count()
        }

        fn rows_of(&self, c: RGBColor) -> Vec<u32> {
            self.pixels()
                .filter(|p| p.2 == [c.0, c.1, c.2])
                .map(|p| p.1)
                .collect()
        }

        fn non_white_in_rows(&self, rows: std::ops::Range<u32>) -> usize {
            self.pixels()
                .filter(|p| rows.contains(&p.1) && p.2 != [255, 255, 255])
                .count()
        }
    }

    /// A legend sample line is 20 px × 2 px; a drawn series across the chart is far longer.
    const SERIES_PIXELS: usize = 200;

    /// A run of `steps` steps in 3 epochs; `cls`/`val` switch those series on.
    fn write_run(dir: &Path, steps: u64, cls: bool, val: bool) {
        let mut s = String::new();
        let per_epoch = (steps / 3).max(1);
        for step in 1..=steps {
            let x = step as f64 / steps as f64;
            let loss_cls = if cls {
                format!("{:.4}", 0.7 - 0.4 * x)
            } else {
                "null".into()
            };
            writeln!(
                s,
                r#"{{"kind":"step","epoch":{},"step":{step},"batch":0,"lr":{:e},"loss":{:.4},"loss_hm":{:.4},"loss_cls":{loss_cls},"loss_spatial":{:.4},"acc":{},"grad_norm":3.1,"data_wait":0.02,"step_s":1.3,"future_key":[1,2]}}"#,
                (step - 1) / per_epoch,
                1e-7 + 1e-4 * x,
                1.2 - 0.8 * x,
                0.3 - 0.2 * x,
                0.2 - 0.1 * x,
                if step % 3 == 0 { 0.5 } else { 0.5 + 0.4 * x },
            )
            .unwrap();
            if step % per_epoch == 0 {
                let epoch = step / per_epoch - 1;
                let val_acc = if val && epoch > 0 {
                    format!("{:.3}", 0.6 + 0.1 * epoch as f64)
                } else {
                    "null".into()
                };
                writeln!(
                    s,
                    r#"{{"kind":"epoch","epoch":{epoch},"step":{step},"lr":1e-5,"train_loss":{:.3},"train_acc":{:.3},"val_acc":{val_acc},"val_loss":0.8,"best":true}}"#,
                    1.0 - 0.2 * epoch as f64,
                    0.55 + 0.1 * epoch as f64,
                )
                .unwrap();
            }
            if step == 2 {
                s.push_str("{\"kind\":\"note\",\"text\":\"kinds this reader does not know are skipped\"}\n\n");
            }
        }
        std::fs::write(dir.join("metrics.jsonl"), s).unwrap();
    }

    #[test]
    fn plot_run_draws_every_series() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path(), 60, true, true);
        let paths = plot_run(dir.path()).unwrap();
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap())
            .collect();
        assert_eq!(
            names,
            ["plots/loss.png", "plots/accuracy.png", "plots/lr.png"].map(Path::new)
        );
        let loss = Image::read(&paths[0]);
        assert_eq!((loss.w, loss.h), CURVE_SIZE);
        for (name, c) in [
            ("loss", C_LOSS),
            ("loss_hm", C_HM),
            ("loss_cls", C_CLS),
            ("loss_spatial", C_SPATIAL),
            ("epoch mean", C_TRAIN_EPOCH),
            ("val loss", C_VAL),
        ] {
            assert!(
                loss.count(c) > SERIES_PIXELS,
                "loss.png {name}: {}",
                loss.count(c)
            );
        }
        let acc = Image::read(&paths[1]);
        assert_eq!((acc.w, acc.h), CURVE_SIZE);
        for (name, c) in [
            ("raw", C_ACC_RAW),
            ("moving average", C_LOSS),
            ("epoch", C_TRAIN_EPOCH),
            ("val", C_VAL),
        ] {
            assert!(
                acc.count(c) > SERIES_PIXELS,
                "accuracy.png {name}: {}",
                acc.count(c)
            );
        }
        let lr = Image::read(&paths[2]);
        assert_eq!((lr.w, lr.h), CURVE_SIZE);
        assert!(lr.count(C_LR) > SERIES_PIXELS, "lr.png: {}", lr.count(C_LR));
        // The rising learning rate goes from the bottom left to the top right.
        let rows = lr.rows_of(C_LR);
        assert!(rows.iter().max().unwrap() - rows.iter().min().unwrap() > CURVE_SIZE.1 / 2);
        // Captions and tick labels are rendered (the font works): the title band is not blank.
        assert!(
            loss.non_white_in_rows(0..40) > 300,
            "{}",
            loss.non_white_in_rows(0..40)
        );
    }

    #[test]
    fn a_missing_series_leaves_no_trace() {
        let with = tempfile::tempdir().unwrap();
        let without = tempfile::tempdir().unwrap();
        write_run(with.path(), 30, true, true);
        write_run(without.path(), 30, false, false);
        let a = plot_run(with.path()).unwrap();
        let b = plot_run(without.path()).unwrap();
        let (loss_a, loss_b) = (Image::read(&a[0]), Image::read(&b[0]));
        assert!(loss_a.count(C_CLS) > SERIES_PIXELS);
        assert_eq!(
            loss_b.count(C_CLS),
            0,
            "no loss_cls values, no line, no legend entry"
        );
        let (acc_a, acc_b) = (Image::read(&a[1]), Image::read(&b[1]));
        assert!(acc_a.count(C_VAL) > SERIES_PIXELS);
        assert_eq!(acc_b.count(C_VAL), 0);
        let differing = acc_a
            .rgb
            .chunks(3)
            .zip(acc_b.rgb.chunks(3))
            .filter(|(x, y)| x != y)
            .count();
        assert!(differing > SERIES_PIXELS, "{differing}");
    }

    #[test]
    fn a_single_step_still_plots() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("metrics.jsonl"),
            "{\"kind\":\"step\",\"epoch\":0,\"step\":1,\"lr\":1e-7,\"loss\":0.93,\"acc\":0.5}\n",
        )
        .unwrap();
        let paths = plot_run(dir.path()).unwrap();
        let loss = Image::read(&paths[0]);
        // One point: drawn as a marker (a filled circle of radius 4) plus the legend sample.
        assert!(loss.count(C_LOSS) > 40 + 30, "{}", loss.count(C_LOSS));
        assert!(Image::read(&paths[2]).count(C_LR) > 40 + 30);
    }

    /// A diverged run: huge and non-finite (null) losses are left out instead of hanging the
    /// tick search.
    #[test]
    fn diverged_values_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("metrics.jsonl"),
            "{\"kind\":\"step\",\"step\":1,\"loss\":0.9,\"lr\":1e-300}\n\
             {\"kind\":\"step\",\"step\":2,\"loss\":1.7e308,\"lr\":1e-320}\n\
             {\"kind\":\"step\",\"step\":3,\"loss\":-1.7e308}\n\
             {\"kind\":\"step\",\"step\":4,\"loss\":null}\n",
        )
        .unwrap();
        let log = read_log(&dir.path().join("metrics.jsonl")).unwrap();
        let losses: Vec<_> = log.steps.values().map(|r| r.loss).collect();
        assert_eq!(losses, [Some(0.9), None, None, None]);
        let paths = plot_run(dir.path()).unwrap();
        assert!(Image::read(&paths[0]).count(C_LOSS) > 40);
    }

    #[test]
    fn a_chart_without_values_says_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("metrics.jsonl"),
            "{\"kind\":\"step\",\"step\":1,\"loss\":0.9}\n{\"kind\":\"step\",\"step\":2,\"loss\":0.8}\n",
        )
        .unwrap();
        let paths = plot_run(dir.path()).unwrap();
        let acc = Image::read(&paths[1]);
        assert_eq!((acc.w, acc.h), CURVE_SIZE);
        let mid = CURVE_SIZE.1 / 2;
        // "no data in metrics.jsonl" is written across the middle; nothing else is drawn there.
        assert!(acc.non_white_in_rows(mid - 20..mid + 20) > 100);
        assert_eq!(acc.non_white_in_rows(60..mid - 40), 0);
    }

    #[test]
    fn empty_or_malformed_logs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = plot_run(dir.path()).unwrap_err();
        assert!(
            format!("{missing:#}").contains("metrics.jsonl"),
            "{missing:#}"
        );

        std::fs::write(dir.path().join("metrics.jsonl"), "").unwrap();
        let empty = plot_run(dir.path()).unwrap_err().to_string();
        assert!(empty.contains("nothing to plot"), "{empty}");
        assert!(!dir.path().join("plots").exists());

        std::fs::write(
            dir.path().join("metrics.jsonl"),
            "{\"kind\":\"step\",\"step\":1,\"loss\":1}\n{\"kind\":\"step\",\"step\":2,\n{\"kind\":\"step\",\"step\":3}\n",
        )
        .unwrap();
        let bad = plot_run(dir.path()).unwrap_err().to_string();
        assert!(bad.contains("line 2 is not JSON"), "{bad}");

        std::fs::write(
            dir.path().join("metrics.jsonl"),
            "{\"kind\":\"step\",\"loss\":1}\n",
        )
        .unwrap();
        let no_step = format!("{:#}", plot_run(dir.path()).unwrap_err());
        assert!(no_step.contains("line 1: step record without"), "{no_step}");
    }

    #[test]
    fn an_unterminated_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(
            &path,
            "{\"kind\":\"step\",\"step\":1,\"loss\":1.0}\n{\"kind\":\"step\",\"step\":2,\"lo",
        )
        .unwrap();
        let log = read_log(&path).unwrap();
        assert_eq!(log.steps.keys().copied().collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn resumed_steps_replace_earlier_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut s = String::new();
        for step in 1..=5 {
            writeln!(s, r#"{{"kind":"step","step":{step},"loss":1.0}}"#).unwrap();
        }
        // Killed after step 5, resumed from the checkpoint at step 3.
        for step in 4..=6 {
            writeln!(s, r#"{{"kind":"step","step":{step},"loss":2.0,"lr":null}}"#).unwrap();
        }
        std::fs::write(&path, s).unwrap();
        let log = read_log(&path).unwrap();
        let losses: Vec<_> = log
            .steps
            .iter()
            .map(|(&k, r)| (k, r.loss.unwrap()))
            .collect();
        assert_eq!(
            losses,
            [(1, 1.0), (2, 1.0), (3, 1.0), (4, 2.0), (5, 2.0), (6, 2.0)]
        );
        assert_eq!(log.steps[&6].lr, None);
    }

    #[test]
    fn moving_average_is_trailing() {
        let pts = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 0.0)];
        assert_eq!(
            moving_average(&pts, 2),
            [(0.0, 1.0), (1.0, 2.0), (2.0, 4.0), (3.0, 2.5)]
        );
        assert_eq!(moving_average(&pts, 0), pts);
    }

    #[test]
    fn span_pads_degenerate_ranges() {
        assert_eq!(span([2.0].into_iter(), 0.05), Some((1.0, 3.0)));
        assert_eq!(span([0.0, 0.0].into_iter(), 0.05), Some((-1.0, 1.0)));
        assert_eq!(span(std::iter::empty(), 0.05), None);
        let (lo, hi) = span([1e-7, 1e-4].into_iter(), 0.0).unwrap();
        assert_eq!((lo, hi), (1e-7, 1e-4));
    }

    #[test]
    fn tick_labels() {
        assert_eq!(format_tick(1.69e-21, 9e-5), "0");
        assert_eq!(format_tick(9e-5, 9e-5), "9.00e-5");
        assert_eq!(format_tick(1.2, 1.3), "1.2");
        assert_eq!(format_tick(0.125, 1.0), "0.125");
        assert_eq!(format_tick(-3.0, 10.0), "-3");
    }

    #[test]
    fn a_missing_font_names_the_package() {
        let e = format!(
            "{:#}",
            font_bytes(Path::new("/nonexistent/DejaVuSans.ttf")).unwrap_err()
        );
        assert!(
            e.contains("fonts-dejavu-core") && e.contains(FONT_ENV),
            "{e}"
        );
    }

    fn curve(fpr: &[f64], tpr: &[f64]) -> RocCurve {
        RocCurve {
            fpr: fpr.to_vec(),
            tpr: tpr.to_vec(),
            thresholds: vec![0.5; fpr.len()],
        }
    }

    #[test]
    fn roc_png_draws_the_curve_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        // Perfect: up the left edge then along the top; inverted: along the bottom then up the right.
        let good = dir.path().join("good.png");
        let bad = dir.path().join("sub/bad.png");
        roc_png(
            &curve(&[0.0, 0.0, 1.0], &[0.0, 1.0, 1.0]),
            1.0,
            "perfect",
            &good,
        )
        .unwrap();
        roc_png(&curve(&[0.0, 1.0, 1.0], &[0.0, 0.0, 1.0]), 0.0, "", &bad).unwrap();
        let (g, b) = (Image::read(&good), Image::read(&bad));
        assert_eq!((g.w, g.h), ROC_SIZE);
        assert!(g.count(C_CLS) > 2 * SERIES_PIXELS, "{}", g.count(C_CLS));
        assert!(
            g.count(C_CHANCE) > SERIES_PIXELS / 2,
            "diagonal: {}",
            g.count(C_CHANCE)
        );
        // Rows of the curve's pixels: the perfect curve's top edge sits well above the
        // inverted curve's bottom edge (the legend sample is at the same place in both).
        let median = |mut v: Vec<u32>| {
            v.sort();
            v[v.len() / 2]
        };
        let (gm, bm) = (median(g.rows_of(C_CLS)), median(b.rows_of(C_CLS)));
        assert!(gm + ROC_SIZE.1 / 3 < bm, "median rows {gm} vs {bm}");
        // The title is rendered text.
        let title_rows = 0..35;
        assert!(
            g.non_white_in_rows(title_rows.clone()) > b.non_white_in_rows(title_rows.clone()) + 100,
            "{} vs {}",
            g.non_white_in_rows(title_rows.clone()),
            b.non_white_in_rows(title_rows)
        );
    }

    #[test]
    fn roc_png_rejects_bad_curves() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("roc.png");
        let e = roc_png(&curve(&[0.0, 1.0], &[0.0]), 0.5, "t", &out).unwrap_err();
        assert!(e.to_string().contains("2 FPR and 1 TPR"), "{e}");
        let e = roc_png(&curve(&[0.0, f64::NAN], &[0.0, 1.0]), 0.5, "t", &out).unwrap_err();
        assert!(e.to_string().contains("point 1"), "{e}");
        assert!(roc_png(&curve(&[], &[]), 0.5, "t", &out).is_err());
        assert!(!out.exists());
    }
}
