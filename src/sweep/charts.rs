//! Report charts with plotters, each written as PNG and SVG. Text uses the
//! bundled DejaVu Sans, so charts render the same without system fonts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        // The font is compiled in, so registration cannot find it missing.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Why a chart could not be drawn: the file, and plotters' error (generic
/// over the backend, so kept as its text).
#[derive(Debug, thiserror::Error)]
#[error("chart {}: {reason}", path.display())]
pub struct ChartError {
    pub path: PathBuf,
    pub reason: String,
}

/// Plotters' error, before the file it was drawing is known.
struct DrawError(String);

type Drawn = Result<(), DrawError>;

fn err<E: std::fmt::Debug>(e: E) -> DrawError {
    DrawError(format!("{e:?}"))
}

/// Draws one chart twice, as `<name>.png` and `<name>.svg` (a macro: the
/// drawing function is generic over the backend).
macro_rules! png_and_svg {
    ($dir:expr, $name:expr, $size:expr, $draw:ident, $chart:expr) => {{
        register_font();
        let at = |path: &PathBuf| {
            let path = path.clone();
            move |DrawError(reason)| ChartError { path, reason }
        };
        let png = $dir.join(format!("{}.png", $name));
        $draw(BitMapBackend::new(&png, $size).into_drawing_area(), $chart).map_err(at(&png))?;
        let svg = $dir.join(format!("{}.svg", $name));
        $draw(SVGBackend::new(&svg, $size).into_drawing_area(), $chart).map_err(at(&svg))
    }};
}

/// The series legend every chart draws, in a framed, half-opaque box.
fn legend<'a, DB: DrawingBackend + 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    size: u32,
    position: SeriesLabelPosition,
) -> Drawn {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", size))
        .position(position)
        .draw()
        .map_err(err)
}

/// One point series per controller: (cost, violation) per scenario variant,
/// plus the controller's mean as a larger marker.
pub struct Pareto {
    pub controllers: Vec<String>,
    /// (controller index, replica-seconds, violation seconds)
    pub points: Vec<(usize, f64, f64)>,
    pub means: Vec<(usize, f64, f64)>,
}

fn draw_pareto<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, p: &Pareto) -> Drawn {
    root.fill(&WHITE).map_err(err)?;
    let xmax = p
        .points
        .iter()
        .chain(&p.means)
        .map(|x| x.1)
        .fold(1.0, f64::max)
        * 1.05;
    let ymax = p
        .points
        .iter()
        .chain(&p.means)
        .map(|x| x.2)
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("Cost against SLO violations", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("replica-seconds (mean over seeds)")
        .y_desc("SLO violation seconds")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    for (ci, name) in p.controllers.iter().enumerate() {
        let c = colour(ci);
        let pts: Vec<(f64, f64)> = p
            .points
            .iter()
            .filter(|x| x.0 == ci)
            .map(|x| (x.1, x.2))
            .collect();
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, c.mix(0.45).filled())),
            )
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Circle::new((x, y), 5, c.filled()));
        for &(_, x, y) in p.means.iter().filter(|m| m.0 == ci) {
            chart
                .draw_series(std::iter::once(TriangleMarker::new((x, y), 9, c.filled())))
                .map_err(err)?;
        }
    }
    legend(&mut chart, 13, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(err)
}

pub fn pareto(dir: &Path, name: &str, p: &Pareto) -> Result<(), ChartError> {
    png_and_svg!(dir, name, (900, 600), draw_pareto, p)
}

/// A run's per-second series for its timeline.
pub struct Timeline {
    pub title: String,
    pub t: Vec<f64>,
    pub requests: Vec<f64>,
    pub ready: Vec<f64>,
    pub desired: Vec<f64>,
    pub p99_ms: Vec<f64>,
    pub error_ratio: Vec<f64>,
    pub markers: Vec<(f64, Marker, String)>,
}

/// What a vertical line on a timeline marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// A scaler's own scale command.
    Scale,
    /// A remedial command (`Command::is_healing`).
    Healing,
    /// A fault starting or ending.
    Fault,
}

impl Marker {
    /// The kind of a `series_csv` marker label.
    pub fn of_label(label: &str) -> Marker {
        if label.starts_with("scale ") {
            Marker::Scale
        } else if label.starts_with("heal ") {
            Marker::Healing
        } else {
            Marker::Fault
        }
    }

    fn style(self) -> (ShapeStyle, &'static str) {
        match self {
            Marker::Scale => (BLACK.mix(0.25).stroke_width(1), "scale"),
            Marker::Healing => (RGBColor(0, 150, 60).mix(0.9).stroke_width(2), "healing"),
            Marker::Fault => (RED.mix(0.8).stroke_width(2), "fault"),
        }
    }
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (t, markers): (&[f64], &[(f64, Marker, String)]),
    series: &[(&[f64], RGBColor, &str)],
    y_desc: &str,
    caption: Option<&str>,
) -> Drawn {
    let tmax = t.last().copied().unwrap_or(1.0).max(1.0);
    let ymax = series
        .iter()
        .flat_map(|s| s.0.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-6)
        * 1.1;
    let mut b = ChartBuilder::on(area);
    b.margin(8).x_label_area_size(28).y_label_area_size(65);
    if let Some(c) = caption {
        b.caption(c, ("sans-serif", 18));
    }
    let mut chart = b.build_cartesian_2d(0.0..tmax, 0.0..ymax).map_err(err)?;
    chart
        .configure_mesh()
        .y_desc(y_desc)
        .label_style(("sans-serif", 12))
        .x_labels(10)
        .draw()
        .map_err(err)?;
    // Each marker kind enters the top panel's legend once.
    let mut labelled = Vec::new();
    for (at, kind, _) in markers {
        let (style, name) = kind.style();
        let drawn = chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(*at, 0.0), (*at, ymax)],
                style,
            )))
            .map_err(err)?;
        if caption.is_some() && *kind != Marker::Scale && !labelled.contains(kind) {
            labelled.push(*kind);
            drawn
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
    }
    for (values, c, label) in series {
        let pts: Vec<(f64, f64)> = t
            .iter()
            .zip(values.iter())
            .filter(|(_, v)| v.is_finite())
            .map(|(&t, &v)| (t, v))
            .collect();
        let c = *c;
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    legend(&mut chart, 12, SeriesLabelPosition::UpperLeft)
}

fn draw_timeline<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, tl: &Timeline) -> Drawn {
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((4, 1));
    let axis = (tl.t.as_slice(), tl.markers.as_slice());
    panel(
        &areas[0],
        axis,
        &[(&tl.requests, colour(0), "requests/s")],
        "req/s",
        Some(&tl.title),
    )?;
    panel(
        &areas[1],
        axis,
        &[
            (&tl.ready, colour(2), "ready pods"),
            (&tl.desired, colour(1), "desired pods"),
        ],
        "pods",
        None,
    )?;
    panel(
        &areas[2],
        axis,
        &[(&tl.p99_ms, colour(4), "p99 (entry service)")],
        "ms",
        None,
    )?;
    panel(
        &areas[3],
        axis,
        &[(&tl.error_ratio, colour(3), "failed / finished")],
        "error ratio",
        None,
    )?;
    root.present().map_err(err)
}

pub fn timeline(dir: &Path, name: &str, tl: &Timeline) -> Result<(), ChartError> {
    png_and_svg!(dir, name, (1000, 900), draw_timeline, tl)
}

/// Stacked panels over one time axis, each with its named series.
pub struct Panels {
    pub title: String,
    pub t: Vec<f64>,
    pub panels: Vec<Panel>,
}

/// (y axis, [(series name, values at the chart's times)]).
pub type Panel = (String, Vec<(String, Vec<f64>)>);

fn draw_panels<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, p: &Panels) -> Drawn {
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((p.panels.len().max(1), 1));
    for (k, ((y_desc, series), area)) in p.panels.iter().zip(&areas).enumerate() {
        let lines: Vec<(&[f64], RGBColor, &str)> = series
            .iter()
            .enumerate()
            .map(|(i, (name, v))| (v.as_slice(), colour(i), name.as_str()))
            .collect();
        let caption = (k == 0).then_some(p.title.as_str());
        panel(area, (&p.t, &[]), &lines, y_desc, caption)?;
    }
    root.present().map_err(err)
}

pub fn panels(dir: &Path, name: &str, p: &Panels) -> Result<(), ChartError> {
    png_and_svg!(
        dir,
        name,
        (1000, 250 * p.panels.len().max(1) as u32),
        draw_panels,
        p
    )
}

/// A confusion matrix as a heat map, counts written in the cells; rows are
/// the truth.
pub struct Confusion {
    pub title: String,
    pub classes: Vec<String>,
    pub counts: Vec<Vec<usize>>,
}

fn draw_confusion<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &Confusion) -> Drawn {
    root.fill(&WHITE).map_err(err)?;
    let n = c.classes.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(&c.title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(
            (0..n.saturating_sub(1)).into_segmented(),
            (0..n.saturating_sub(1)).into_segmented(),
        )
        .map_err(err)?;
    // Truth row r is drawn at y = n - 1 - r, so the first class is on top.
    let label = |v: &SegmentValue<usize>, flip: bool| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) if *i < n => {
            c.classes[if flip { n - 1 - i } else { *i }].clone()
        }
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted")
        .y_desc("truth")
        .x_label_formatter(&|v| label(v, false))
        .y_label_formatter(&|v| label(v, true))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    for (r, row) in c.counts.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        for (p, &v) in row.iter().enumerate() {
            // Shade by the share of the true class, so rare classes show.
            let share = v as f64 / total;
            let y = n - 1 - r;
            let shade = RGBColor(
                (255.0 - 200.0 * share) as u8,
                (255.0 - 140.0 * share) as u8,
                255,
            );
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(p), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(p + 1), SegmentValue::Exact(y + 1)),
                    ],
                    shade.filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{v} ({:.0} %)", 100.0 * share),
                    (SegmentValue::CenterOf(p), SegmentValue::CenterOf(y)),
                    TextStyle::from(("sans-serif", 14).into_font())
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                )))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)
}

pub fn confusion(dir: &Path, name: &str, c: &Confusion) -> Result<(), ChartError> {
    png_and_svg!(dir, name, (700, 600), draw_confusion, c)
}

/// A histogram of values in seconds, one series per group.
pub struct Histogram {
    pub title: String,
    pub x_desc: String,
    pub bin: f64,
    pub groups: Vec<(String, Vec<f64>)>,
}

fn draw_histogram<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, h: &Histogram) -> Drawn {
    root.fill(&WHITE).map_err(err)?;
    let xmax = h
        .groups
        .iter()
        .flat_map(|g| g.1.iter().copied())
        .fold(h.bin, f64::max)
        + h.bin;
    let bins = (xmax / h.bin).ceil() as usize;
    let counts: Vec<Vec<usize>> = h
        .groups
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0usize; bins];
            for &x in v {
                c[((x / h.bin) as usize).min(bins - 1)] += 1;
            }
            c
        })
        .collect();
    // Stacked: the bar heights are cumulative over groups.
    let ymax = (0..bins)
        .map(|b| counts.iter().map(|c| c[b]).sum::<usize>())
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(&h.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(h.x_desc.as_str())
        .y_desc("runs")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let mut base = vec![0usize; bins];
    for (gi, (name, _)) in h.groups.iter().enumerate() {
        let col = colour(gi);
        let bars: Vec<Rectangle<(f64, f64)>> = (0..bins)
            .filter(|&b| counts[gi][b] > 0)
            .map(|b| {
                let (x0, x1) = (b as f64 * h.bin, (b + 1) as f64 * h.bin);
                let (y0, y1) = (base[b] as f64, (base[b] + counts[gi][b]) as f64);
                Rectangle::new([(x0, y0), (x1, y1)], col.filled())
            })
            .collect();
        for b in 0..bins {
            base[b] += counts[gi][b];
        }
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], col.filled()));
    }
    legend(&mut chart, 13, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(err)
}

pub fn histogram(dir: &Path, name: &str, h: &Histogram) -> Result<(), ChartError> {
    png_and_svg!(dir, name, (900, 550), draw_histogram, h)
}

/// A ratio's mean and its 95 % interval `(mean, lo, hi)`.
pub type Interval = (f64, f64, f64);

/// Ratios arm / baseline per category (a fault), one bar per measure with
/// its 95 % interval as a whisker, and a line at 1 (no difference).
pub struct Ratios {
    pub title: String,
    pub categories: Vec<String>,
    /// (measure, per category its ratio; `None`: no ratio there).
    pub measures: Vec<(String, Vec<Option<Interval>>)>,
}

fn draw_ratios<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, r: &Ratios) -> Drawn {
    root.fill(&WHITE).map_err(err)?;
    let n = r.categories.len().max(1);
    let finite = |x: f64| x.is_finite().then_some(x);
    let xmax = r
        .measures
        .iter()
        .flat_map(|(_, v)| {
            v.iter()
                .flatten()
                .filter_map(|&(m, _, hi)| finite(hi.max(m)))
        })
        .fold(1.2, f64::max)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(&r.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(150)
        .build_cartesian_2d(0.0..xmax, -0.5..(n as f64 - 0.5))
        .map_err(err)?;
    let label = |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 1e-6 && i >= 0.0 {
            r.categories.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&label)
        .x_desc("arm / baseline (below 1: better than the baseline)")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let k = r.measures.len().max(1) as f64;
    let band = 0.8 / k;
    for (mi, (name, values)) in r.measures.iter().enumerate() {
        let c = colour(mi);
        let centre = |i: usize| i as f64 - 0.4 + band * (mi as f64 + 0.5);
        let bars: Vec<Rectangle<(f64, f64)>> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let (m, _, _) = (*v)?;
                let y = centre(i);
                Some(Rectangle::new(
                    [(0.0, y - band * 0.4), (m.min(xmax), y + band * 0.4)],
                    c.mix(0.8).filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        let whiskers = values.iter().enumerate().filter_map(|(i, v)| {
            let (_, lo, hi) = (*v)?;
            let y = centre(i);
            Some(PathElement::new(
                vec![(lo.min(xmax), y), (hi.min(xmax), y)],
                BLACK.stroke_width(2),
            ))
        });
        chart.draw_series(whiskers).map_err(err)?;
        let values_at_ends = values.iter().enumerate().filter_map(|(i, v)| {
            let (m, _, hi) = (*v)?;
            Some(Text::new(
                format!("{m:.2}x"),
                (hi.max(m).min(xmax) + xmax * 0.01, centre(i) + band * 0.15),
                ("sans-serif", 11),
            ))
        });
        chart.draw_series(values_at_ends).map_err(err)?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(1.0, -0.5), (1.0, n as f64 - 0.5)],
            BLACK.mix(0.6).stroke_width(1),
        )))
        .map_err(err)?;
    legend(&mut chart, 13, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(err)
}

pub fn ratios(dir: &Path, name: &str, r: &Ratios) -> Result<(), ChartError> {
    let height = 140 + 60 * r.categories.len().max(1) as u32;
    png_and_svg!(dir, name, (900, height), draw_ratios, r)
}

/// HPA's cost/violation curve (its targets' means joined by a line) and
/// other controllers' means as markers.
pub struct CurveChart {
    pub title: String,
    /// (target %, replica-seconds, violation seconds), by target.
    pub hpa: Vec<(f64, f64, f64)>,
    /// (controller, replica-seconds, violation seconds).
    pub others: Vec<(String, f64, f64)>,
}

fn draw_curve<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &CurveChart) -> Drawn {
    root.fill(&WHITE).map_err(err)?;
    let xs = c
        .hpa
        .iter()
        .map(|p| p.1)
        .chain(c.others.iter().map(|p| p.1));
    let ys = c
        .hpa
        .iter()
        .map(|p| p.2)
        .chain(c.others.iter().map(|p| p.2));
    let (xmin, xmax) = xs.fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
    let ymax = ys.fold(1.0, f64::max) * 1.15;
    let pad = ((xmax - xmin) * 0.1).max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(&c.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((xmin - pad).max(0.0)..(xmax + pad), 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("replica-seconds (mean per scenario)")
        .y_desc("SLO violation seconds (mean per scenario)")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let grey = RGBColor(90, 90, 90);
    chart
        .draw_series(LineSeries::new(
            c.hpa.iter().map(|p| (p.1, p.2)),
            grey.stroke_width(2),
        ))
        .map_err(err)?
        .label("HPA's curve (CPU targets)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], grey.stroke_width(2)));
    chart
        .draw_series(c.hpa.iter().map(|&(t, x, y)| {
            EmptyElement::at((x, y))
                + Circle::new((0, 0), 4, grey.filled())
                + Text::new(format!("{t} %"), (6, -16), ("sans-serif", 12))
        }))
        .map_err(err)?;
    for (i, (name, x, y)) in c.others.iter().enumerate() {
        let col = colour(i);
        chart
            .draw_series(std::iter::once(TriangleMarker::new(
                (*x, *y),
                10,
                col.filled(),
            )))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| TriangleMarker::new((x + 6, y), 6, col.filled()));
    }
    legend(&mut chart, 13, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(err)
}

pub fn curve(dir: &Path, name: &str, c: &CurveChart) -> Result<(), ChartError> {
    png_and_svg!(dir, name, (900, 550), draw_curve, c)
}
