//! The Numenta Anomaly Benchmark scorer, reproduced exactly.
//!
//! Follows `nab/sweeper.py` of numenta/NAB (v1.1): rows in the probationary
//! period are not scored; a row inside an anomaly window is worth the scaled
//! sigmoid of its relative position (the window's left edge is worth `tp`,
//! its right edge about 0); a row outside every window costs `fp` (full cost
//! before the first window, decaying with the distance after one). A file's
//! score at a threshold is the sum, over windows, of the best (earliest)
//! detection's weight or `-fn` when the window has none, plus the weights of
//! all detections outside windows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::control::anomaly::{DetectorConfig, score_series};
use crate::time::{Time, parse_utc};

#[derive(Debug, Error)]
pub enum NabError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Json { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    Csv {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: anomaly window {start} .. {end} does not start and end on a row's timestamp")]
    Window {
        path: PathBuf,
        start: String,
        end: String,
    },
}

/// A cost profile: the weights of true positives, false positives and
/// false negatives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

/// NAB's three profiles (`config/profiles.json`).
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

/// One data file with its labelled windows as inclusive row ranges.
#[derive(Clone, Debug)]
pub struct LabelledFile {
    /// Relative name as the windows file spells it (`realAWSCloudwatch/x.csv`).
    pub name: String,
    pub timestamps: Vec<String>,
    /// The timestamps as times (unix seconds), for detectors defined in
    /// seconds.
    pub times: Vec<Time>,
    pub values: Vec<f64>,
    pub windows: Vec<(usize, usize)>,
}

/// NAB's scaled sigmoid.
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// `min(floor(0.15 N), 750)`.
pub fn probation_rows(n: usize) -> usize {
    ((0.15 * n as f64).floor() as usize).min(750)
}

/// A scorable row: its position weight and the window it lies in.
#[derive(Clone, Copy, Debug)]
pub struct WeightedRow {
    pub row: usize,
    pub weight: f64,
    pub window: Option<usize>,
}

/// The weight of every row after the probationary period (`calcSweepScore`).
pub fn weigh_rows(n_rows: usize, windows: &[(usize, usize)], p: &Profile) -> Vec<WeightedRow> {
    let max_tp = scaled_sigmoid(-1.0);
    let probation = probation_rows(n_rows);
    let mut out = Vec::with_capacity(n_rows.saturating_sub(probation));
    let mut next = 0;
    let mut current: Option<usize> = None;
    let mut previous: Option<(usize, f64)> = None;
    for i in 0..n_rows {
        if current.is_none() && next < windows.len() && windows[next].0 == i {
            current = Some(next);
            next += 1;
        }
        let (weight, window) = match current {
            Some(w) => {
                let (l, r) = windows[w];
                let width = (r - l + 1) as f64;
                let position = -((r as f64) - (i as f64) + 1.0) / width;
                (scaled_sigmoid(position) * p.tp / max_tp, Some(w))
            }
            None => {
                let unweighted = match previous {
                    None => -1.0,
                    Some((right, width)) => {
                        scaled_sigmoid((right as f64 - i as f64).abs() / (width - 1.0))
                    }
                };
                (unweighted * p.fp, None)
            }
        };
        if i >= probation {
            out.push(WeightedRow {
                row: i,
                weight,
                window,
            });
        }
        if let Some(w) = current
            && windows[w].1 == i
        {
            let (l, r) = windows[w];
            previous = Some((r, (r - l + 1) as f64));
            current = None;
        }
    }
    out
}

/// A file's score and confusion counts at one threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FileScore {
    pub score: f64,
    pub tp: u64,
    pub tn: u64,
    pub fp: u64,
    pub fn_: u64,
    /// Scored windows with at least one detection in them.
    pub windows_caught: u64,
}

/// The score of `scores` (one per row) at `threshold`: a row is a detection
/// when its score is at least the threshold (`scoreDataSet`).
pub fn score_file(
    scores: &[f64],
    windows: &[(usize, usize)],
    p: &Profile,
    threshold: f64,
) -> FileScore {
    let rows = weigh_rows(scores.len(), windows, p);
    let mut best: BTreeMap<usize, f64> = BTreeMap::new();
    let mut out = FileScore::default();
    let mut fp_sum = 0.0;
    for r in &rows {
        if let Some(w) = r.window {
            best.entry(w).or_insert(-p.fn_);
        }
        let detected = scores[r.row] >= threshold;
        match (r.window, detected) {
            (Some(w), true) => {
                out.tp += 1;
                let b = best.get_mut(&w).expect("inserted above");
                *b = b.max(r.weight);
            }
            (Some(_), false) => out.fn_ += 1,
            (None, true) => {
                out.fp += 1;
                fp_sum += r.weight;
            }
            (None, false) => out.tn += 1,
        }
    }
    // A window's weights are positive, so a detection lifts its best off
    // the miss's `-fn`.
    out.windows_caught = best.values().filter(|&&b| b > -p.fn_).count() as u64;
    out.score = best.values().sum::<f64>() + fp_sum;
    out
}

/// Windows that have at least one scorable row: the ones a file's score
/// counts (a window wholly inside the probationary period is not scored).
pub fn scored_windows(n_rows: usize, windows: &[(usize, usize)]) -> usize {
    let probation = probation_rows(n_rows);
    windows.iter().filter(|w| w.1 >= probation).count()
}

/// The scored windows of all `files`: what a corpus score is normalised by.
pub fn corpus_windows(files: &[(&LabelledFile, &[f64])]) -> usize {
    files
        .iter()
        .map(|(f, s)| scored_windows(s.len(), &f.windows))
        .sum()
}

/// Raw corpus score of each candidate threshold, highest first: every
/// distinct detector score is tried, as NAB's sweep does.
pub fn sweep_thresholds(files: &[(&LabelledFile, &[f64])], p: &Profile) -> Vec<(f64, f64)> {
    let mut thresholds: Vec<f64> = files
        .iter()
        .flat_map(|(f, s)| s[probation_rows(f.values.len())..].iter().copied())
        .collect();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    // Above every score nothing is detected.
    thresholds.insert(0, f64::INFINITY);
    let weighted: Vec<Vec<WeightedRow>> = files
        .iter()
        .map(|(f, s)| weigh_rows(s.len(), &f.windows, p))
        .collect();
    // Incremental sweep: rows sorted by score, descending; lowering the
    // threshold past a row's score adds it as a detection.
    let mut events: Vec<(f64, usize, usize)> = Vec::new();
    for (fi, rows) in weighted.iter().enumerate() {
        for (ri, r) in rows.iter().enumerate() {
            events.push((files[fi].1[r.row], fi, ri));
        }
    }
    events.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best: Vec<BTreeMap<usize, f64>> = vec![BTreeMap::new(); files.len()];
    let mut window_sum = -p.fn_ * corpus_windows(files) as f64;
    let mut fp_sum = 0.0;
    let mut out = Vec::with_capacity(thresholds.len());
    let mut e = 0;
    for &t in &thresholds {
        while e < events.len() && events[e].0 >= t {
            let (_, fi, ri) = events[e];
            let r = weighted[fi][ri];
            match r.window {
                Some(w) => {
                    let b = best[fi].entry(w).or_insert(-p.fn_);
                    if r.weight > *b {
                        window_sum += r.weight - *b;
                        *b = r.weight;
                    }
                }
                None => fp_sum += r.weight,
            }
            e += 1;
        }
        out.push((t, window_sum + fp_sum));
    }
    out
}

/// `100 (raw - null) / (perfect - null)`, with the null detector scoring
/// `-fn` and the perfect one `tp` per scored window.
pub fn normalised(raw: f64, windows: usize, p: &Profile) -> f64 {
    let null = -p.fn_ * windows as f64;
    let perfect = p.tp * windows as f64;
    100.0 * (raw - null) / (perfect - null)
}

/// Loads every file named in `DIR/combined_windows.json` from `DIR`.
pub fn load_corpus(dir: &Path) -> Result<Vec<LabelledFile>, NabError> {
    let windows_path = dir.join("combined_windows.json");
    let text = read(&windows_path)?;
    let windows: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(&text).map_err(|e| NabError::Json {
            path: windows_path.clone(),
            message: e.to_string(),
        })?;
    windows
        .into_iter()
        .map(|(name, spans)| {
            let path = dir.join(&name);
            let (timestamps, values) = read_series(&path)?;
            let rows = spans
                .iter()
                .map(|(start, end)| {
                    let find = |stamp: &str| {
                        let stamp = stamp.strip_suffix(".000000").unwrap_or(stamp);
                        timestamps.iter().position(|t| t == stamp)
                    };
                    match (find(start), find(end)) {
                        (Some(l), Some(r)) if l <= r => Ok((l, r)),
                        _ => Err(NabError::Window {
                            path: windows_path.clone(),
                            start: start.to_string(),
                            end: end.to_string(),
                        }),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            let times = timestamps
                .iter()
                .enumerate()
                .map(|(i, stamp)| {
                    parse_utc(stamp)
                        .map(Time::from_secs_f64)
                        .ok_or_else(|| NabError::Csv {
                            path: path.clone(),
                            line: i + 2,
                            message: format!("timestamp {stamp:?} is not `YYYY-MM-DD HH:MM:SS`"),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(LabelledFile {
                name,
                timestamps,
                times,
                values,
                windows: rows,
            })
        })
        .collect()
}

fn read(path: &Path) -> Result<String, NabError> {
    std::fs::read_to_string(path).map_err(|source| NabError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads a two-column CSV with a header (`timestamp,value` or
/// `timestamp,anomaly_score`).
pub fn read_series(path: &Path) -> Result<(Vec<String>, Vec<f64>), NabError> {
    let text = read(path)?;
    let mut stamps = Vec::new();
    let mut values = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| NabError::Csv {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        let mut cols = line.split(',');
        let (Some(stamp), Some(value)) = (cols.next(), cols.next()) else {
            return Err(bad("expected `timestamp,value`".into()));
        };
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|e| bad(format!("value {value:?}: {e}")))?;
        stamps.push(stamp.trim().to_owned());
        values.push(value);
    }
    Ok((stamps, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_weights_fall_from_tp_at_the_left_edge() {
        let p = PROFILES[0];
        let rows = weigh_rows(100, &[(50, 59)], &p);
        let at = |i: usize| rows.iter().find(|r| r.row == i).unwrap().weight;
        assert!((at(50) - 1.0).abs() < 1e-12);
        // The right edge is worth S(-1/W) / S(-1): near 0 only for wide
        // windows (0.248 for this one of 10 rows).
        let right = scaled_sigmoid(-0.1) / scaled_sigmoid(-1.0);
        assert!((at(59) - right).abs() < 1e-12, "{}", at(59));
        assert!(at(59) < at(55) && at(55) < at(50));
        // Before the first window a false positive costs the full fp weight.
        assert!((at(20) + 0.11).abs() < 1e-12);
        // Just after the window it costs almost nothing, far after about fp.
        assert!(at(60) > -0.03 && at(99) < -0.10);
    }

    #[test]
    fn null_and_perfect_detectors_bracket_the_score() {
        let p = PROFILES[0];
        let windows = [(200, 219), (500, 529)];
        let none = score_file(&[0.0; 1000], &windows, &p, 0.5);
        assert_eq!(none.score, -2.0);
        let mut perfect = vec![0.0; 1000];
        perfect[200] = 1.0;
        perfect[500] = 1.0;
        let s = score_file(&perfect, &windows, &p, 0.5);
        assert!((s.score - 2.0).abs() < 1e-12);
        assert!((normalised(s.score, 2, &p) - 100.0).abs() < 1e-9);
    }
}

/// One detector's corpus result under one profile.
#[derive(Clone, Debug, PartialEq)]
pub struct CorpusScore {
    pub detector: String,
    pub profile: &'static str,
    pub threshold: f64,
    pub raw: f64,
    pub normalised: f64,
}

/// Sweeps the threshold over the corpus and returns the best one's score.
pub fn best_threshold(
    detector: &str,
    files: &[(&LabelledFile, &[f64])],
    p: &Profile,
) -> CorpusScore {
    let windows = corpus_windows(files);
    let (threshold, raw) = sweep_thresholds(files, p)
        .into_iter()
        // Ties go to the higher threshold (fewer detections), as NAB's
        // descending sweep keeps the first maximum.
        .fold((f64::INFINITY, f64::NEG_INFINITY), |best, cur| {
            if cur.1 > best.1 { cur } else { best }
        });
    CorpusScore {
        detector: detector.to_owned(),
        profile: p.name,
        threshold,
        raw,
        normalised: normalised(raw, windows, p),
    }
}

/// Reads Numenta's published per-row scores for `file` from
/// `DIR/golden/numenta_rows/numenta_<basename>`.
pub fn numenta_rows(dir: &Path, file: &LabelledFile) -> Result<Vec<f64>, NabError> {
    let base = file.name.rsplit('/').next().unwrap_or(&file.name);
    let path = dir
        .join("golden")
        .join("numenta_rows")
        .join(format!("numenta_{base}"));
    let (stamps, scores) = read_series(&path)?;
    if stamps.len() != file.values.len() {
        return Err(NabError::Csv {
            path,
            line: stamps.len() + 1,
            message: format!(
                "{} score rows for {} data rows of {}",
                stamps.len(),
                file.values.len(),
                file.name
            ),
        });
    }
    Ok(scores)
}

/// Each file with its per-row scores.
pub fn pair<'a>(
    corpus: &'a [LabelledFile],
    scores: &'a [Vec<f64>],
) -> Vec<(&'a LabelledFile, &'a [f64])> {
    corpus
        .iter()
        .zip(scores.iter().map(|s| s.as_slice()))
        .collect()
}

/// The threshold Numenta's results used for `profile` (swept on the full
/// corpus), from `DIR/golden/numenta_<profile>_scores.csv`.
pub fn numenta_published_threshold(dir: &Path, p: &Profile) -> Result<f64, NabError> {
    let path = dir
        .join("golden")
        .join(format!("numenta_{}_scores.csv", p.name));
    let text = read(&path)?;
    let line = text.lines().nth(1).ok_or_else(|| NabError::Csv {
        path: path.clone(),
        line: 2,
        message: "no result rows".into(),
    })?;
    let field = line.split(',').nth(3).unwrap_or("");
    field.parse().map_err(|e| NabError::Csv {
        path: path.clone(),
        line: 2,
        message: format!("threshold {field:?}: {e}"),
    })
}

/// Every file but the `i`th.
fn all_but<'a>(
    files: &[(&'a LabelledFile, &'a [f64])],
    i: usize,
) -> Vec<(&'a LabelledFile, &'a [f64])> {
    files
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .map(|(_, file)| *file)
        .collect()
}

/// The score of `files` when each one's threshold is swept on all the
/// others (leave one file out): an estimate of the score on files the
/// threshold was not chosen on. Returns the result and the thresholds
/// chosen, one per file.
pub fn leave_one_file_out(
    detector: &str,
    files: &[(&LabelledFile, &[f64])],
    p: &Profile,
) -> (CorpusScore, Vec<f64>) {
    let mut raw = 0.0;
    let mut thresholds = Vec::with_capacity(files.len());
    for (i, (f, s)) in files.iter().enumerate() {
        let t = best_threshold(detector, &all_but(files, i), p).threshold;
        raw += score_file(s, &f.windows, p, t).score;
        thresholds.push(t);
    }
    let windows = corpus_windows(files);
    let mut sorted = thresholds.clone();
    sorted.sort_by(f64::total_cmp);
    let score = CorpusScore {
        detector: detector.to_owned(),
        profile: p.name,
        threshold: sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN),
        raw,
        normalised: normalised(raw, windows, p),
    };
    (score, thresholds)
}

/// One file under the standard profile: the detector's and Numenta HTM's
/// scores, each at the threshold swept on the whole corpus. Where the two
/// corpus scores differ, these say which files make the difference.
#[derive(Clone, Debug, PartialEq)]
pub struct FileComparison {
    pub name: String,
    /// Windows the file's score counts.
    pub windows: usize,
    pub ours: FileScore,
    pub numenta: FileScore,
}

/// What [`evaluate`] measured: the corpus scores, and the standard
/// profile's per file.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub scores: Vec<CorpusScore>,
    pub files: Vec<FileComparison>,
}

/// Scores the online detector with `cfg` on the corpus in `dir`, next to
/// Numenta HTM's published per-row scores, both with the threshold swept on
/// these files (and, for both, the leave-one-file-out estimate, whose
/// threshold column is the median of the per-file thresholds), and HTM at
/// its published full-corpus threshold; then each file under the standard
/// profile at the two swept thresholds.
pub fn evaluate(dir: &Path, cfg: &DetectorConfig) -> Result<Evaluation, NabError> {
    let corpus = load_corpus(dir)?;
    let ours: Vec<Vec<f64>> = corpus
        .iter()
        .map(|f| score_series(cfg, &f.times, &f.values))
        .collect();
    let htm: Vec<Vec<f64>> = corpus
        .iter()
        .map(|f| numenta_rows(dir, f))
        .collect::<Result<_, _>>()?;
    let (ours, htm) = (pair(&corpus, &ours), pair(&corpus, &htm));
    let windows = corpus_windows(&htm);
    let mut out = Vec::new();
    let standard = &PROFILES[0];
    // The standard profile's swept thresholds, for the per-file table.
    let (mut t_ours, mut t_htm) = (f64::INFINITY, f64::INFINITY);
    for p in &PROFILES {
        let (ours_best, htm_best) = (
            best_threshold("selfheal", &ours, p),
            best_threshold("numenta (re-swept)", &htm, p),
        );
        if p == standard {
            (t_ours, t_htm) = (ours_best.threshold, htm_best.threshold);
        }
        out.push(ours_best);
        out.push(leave_one_file_out("selfheal (leave one file out)", &ours, p).0);
        out.push(htm_best);
        out.push(leave_one_file_out("numenta (leave one file out)", &htm, p).0);
        let t = numenta_published_threshold(dir, p)?;
        let raw: f64 = htm
            .iter()
            .map(|(f, s)| score_file(s, &f.windows, p, t).score)
            .sum();
        out.push(CorpusScore {
            detector: "numenta (published threshold)".into(),
            profile: p.name,
            threshold: t,
            raw,
            normalised: normalised(raw, windows, p),
        });
    }
    let files = ours
        .iter()
        .zip(&htm)
        .map(|((f, s), (_, h))| FileComparison {
            name: f.name.clone(),
            windows: scored_windows(s.len(), &f.windows),
            ours: score_file(s, &f.windows, standard, t_ours),
            numenta: score_file(h, &f.windows, standard, t_htm),
        })
        .collect();
    Ok(Evaluation { scores: out, files })
}

/// The scores as CSV and as a markdown table headed by the corpus and the
/// detector's settings, then the per-file table (`nab.csv`, `nab.md`).
pub fn render(dir: &Path, cfg: &DetectorConfig, e: &Evaluation) -> (String, String) {
    let scores = &e.scores;
    let mut csv = String::from("detector,profile,threshold,raw,normalised\n");
    let mut md = format!(
        "# NAB score on {}\n\nDetector settings (fixed before scoring): `{:?}`\n\n| detector | profile | threshold | raw | normalised |\n|---|---|---|---|---|\n",
        dir.display(),
        cfg
    );
    for s in scores {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            s.detector, s.profile, s.threshold, s.raw, s.normalised
        ));
        md.push_str(&format!(
            "| {} | {} | {:.4} | {:.3} | {:.1} |\n",
            s.detector, s.profile, s.threshold, s.raw, s.normalised
        ));
    }
    md.push_str(
        "\n## Per file (standard profile, each detector at its threshold swept on all files)\n\n\
         Windows caught have a detection in them; false positives are detected rows outside every window.\n\n\
         | file | windows | selfheal: caught | false positives | raw | numenta: caught | false positives | raw | difference |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for f in &e.files {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {} | {} | {:.3} | {:+.3} |\n",
            f.name,
            f.windows,
            f.ours.windows_caught,
            f.ours.fp,
            f.ours.score,
            f.numenta.windows_caught,
            f.numenta.fp,
            f.numenta.score,
            f.ours.score - f.numenta.score
        ));
    }
    (csv, md)
}

/// One setting of the transition model on the corpus (standard profile).
#[derive(Clone, Debug, PartialEq)]
pub struct GridRow {
    pub levels: usize,
    pub lag_s: f64,
    /// Threshold swept on all files.
    pub in_sample: f64,
    /// Each file at the threshold swept on the others.
    pub leave_one_file_out: f64,
}

/// The transition model's settings tried on the corpus, and the nested
/// leave-one-file-out score of choosing among them: for each file, the
/// setting *and* threshold that score best on the other files, applied to
/// it. `levels` 0 is the distance alone (its lag is irrelevant and only
/// the first lag is tried).
pub fn settings_grid(
    dir: &Path,
    base: &DetectorConfig,
    levels: &[usize],
    lags_s: &[f64],
) -> Result<(Vec<GridRow>, f64), NabError> {
    let corpus = load_corpus(dir)?;
    let p = &PROFILES[0];
    let mut rows = Vec::new();
    let mut scores: Vec<Vec<Vec<f64>>> = Vec::new();
    for &l in levels {
        for &lag in lags_s.iter().take(if l == 0 { 1 } else { lags_s.len() }) {
            let cfg = DetectorConfig {
                transition_levels: l,
                transition_lag_s: lag,
                ..base.clone()
            };
            let s: Vec<Vec<f64>> = corpus
                .iter()
                .map(|f| score_series(&cfg, &f.times, &f.values))
                .collect();
            let files = pair(&corpus, &s);
            rows.push(GridRow {
                levels: l,
                lag_s: lag,
                in_sample: best_threshold("", &files, p).normalised,
                leave_one_file_out: leave_one_file_out("", &files, p).0.normalised,
            });
            scores.push(s);
        }
    }
    let paired: Vec<_> = scores.iter().map(|s| pair(&corpus, s)).collect();
    let mut raw = 0.0;
    for (i, f) in corpus.iter().enumerate() {
        let mut best = (f64::NEG_INFINITY, 0, f64::INFINITY);
        for (g, files) in paired.iter().enumerate() {
            let b = best_threshold("", &all_but(files, i), p);
            if b.raw > best.0 {
                best = (b.raw, g, b.threshold);
            }
        }
        raw += score_file(&scores[best.1][i], &f.windows, p, best.2).score;
    }
    let windows = paired.first().map_or(0, |files| corpus_windows(files));
    Ok((rows, normalised(raw, windows, p)))
}

/// The settings grid as a markdown table (`grid.md`).
pub fn render_grid(rows: &[GridRow], nested: f64) -> String {
    let mut md = String::from(
        "# The transition model's settings on NAB (standard profile)\n\n| levels | lag (s) | threshold swept on all files | leave one file out |\n|---|---|---|---|\n",
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} |\n",
            r.levels, r.lag_s, r.in_sample, r.leave_one_file_out
        ));
    }
    md.push_str(&format!(
        "\nNested leave one file out (setting and threshold chosen on the other files): {nested:.1}\n"
    ));
    md
}
