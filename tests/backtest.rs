//! `selfheal predict` on the real incident day: the importer, the backtest's
//! pinned figures per detector, and bad recordings.

use std::path::{Path, PathBuf};

use selfheal::eval::backtest::{self, BacktestConfig};
use selfheal::eval::incidents::{self, FaultList};
use selfheal::train::{recorded, store};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn day() -> PathBuf {
    repo().join("datasets/incidents/nezha-ob-2022-08-23")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("selfheal-backtest-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_recording(dir: &Path, services: &[(String, Vec<selfheal::metrics::ServiceMetrics>)]) {
    for (service, scrapes) in services {
        let csv = selfheal::metrics::metrics_csv(scrapes.iter().map(|m| (service.as_str(), m)));
        std::fs::write(dir.join(format!("{service}-metrics.csv")), csv).unwrap();
    }
}

/// `services` (and the calls between them, `edges.csv`, when given)
/// written as a recording in `dir`, read back, and replayed through the
/// shipped model's backtest.
fn shipped_backtest(
    dir: &Path,
    services: &[(String, Vec<selfheal::metrics::ServiceMetrics>)],
    edges_csv: Option<&str>,
) -> (
    BacktestConfig,
    Vec<recorded::ServiceRecording>,
    Vec<backtest::ServiceBacktest>,
) {
    write_recording(dir, services);
    if let Some(csv) = edges_csv {
        std::fs::write(dir.join("edges.csv"), csv).unwrap();
    }
    let recordings = recorded::read_dir(dir).unwrap();
    let edges = recorded::read_edges(dir).unwrap();
    let bundle = store::load(&repo().join("models/predictor")).unwrap();
    let cfg = BacktestConfig::of(&bundle, None);
    let results = backtest::run(&bundle.model(), &cfg, &recordings, &edges, None);
    (cfg, recordings, results)
}

#[test]
fn the_incident_day_through_the_backtest() {
    let services = incidents::import(&day()).unwrap();
    assert_eq!(services.len(), 10);
    for (service, scrapes) in &services {
        assert_eq!(scrapes.len(), 721, "{service}");
        // Only the frontend's success rate was exported (front_service.csv).
        let measured = scrapes.iter().filter(|m| m.error_rate.is_finite()).count();
        if service == "frontend" {
            assert!(
                measured > 700 && scrapes.iter().any(|m| m.error_rate > 0.1),
                "{service}"
            );
        } else {
            assert_eq!(measured, 0, "{service}");
        }
    }
    let dir = tmp("day");
    let edges = incidents::import_edges(&day()).unwrap();
    let (cfg, recordings, results) = shipped_backtest(&dir, &services, Some(&edges));
    assert_eq!(recordings.len(), 10);
    assert!(recordings.iter().all(|r| r.sli.is_none()));

    // 60 s scrapes against a 5 s model: predictions from the sixth scrape.
    for b in &results {
        let first = b
            .scrapes
            .iter()
            .position(|s| s.prediction.is_some())
            .unwrap();
        assert_eq!(first, 5, "{}", b.service);
    }
    let csv = backtest::csv(&results);
    assert_eq!(csv.lines().count(), 1 + 7210);
    assert!(csv.starts_with(backtest::CSV_HEADER));

    let faults = FaultList::read(&day().join("2022-08-23-fault_list.json")).unwrap();
    let scores = backtest::score(&results, &faults, &cfg.predictor, 0.1);
    type Row = (&'static str, usize, usize, Option<usize>);
    let table = |scores: &[backtest::DetectorScore]| -> Vec<Row> {
        scores
            .iter()
            .map(|s| {
                let at_budget = s.at_budget.map(|b| b.1);
                (
                    s.detector,
                    s.newly_warned(),
                    s.false_alarm_episodes,
                    at_budget,
                )
            })
            .collect()
    };
    // Pinned: the shipped LSTM does not transfer to this cluster (1.04
    // false alarm episodes per service-hour, reading the minutes on straight
    // lines between them; 1.46 holding each, as the issue measured); the
    // anomaly score and the pattern rules do far better per false alarm.
    // The departure score (no training; its defaults chosen on the first
    // half of this day) warns of the most faults with the fewest false
    // alarms: all 9 network delays through the calls into the delayed
    // service (1 of 9 from the services' own metrics alone: 16 faults at
    // 2 false alarm episodes), and two early frontend faults through the
    // hard limits on CPU and errors, which a baseline of the day's first
    // half hour and its first incidents hid (24 faults without them).
    // Last: faults newly warned at 0.1 false alarm episodes per
    // service-hour, own thresholds among the candidates.
    assert_eq!(
        table(&scores),
        vec![
            ("lstm", 6, 73, Some(5)),
            ("thresholds", 12, 93, Some(11)),
            ("anomaly", 16, 5, Some(16)),
            ("pattern", 9, 0, None),
            ("persistence", 14, 93, None),
            ("departure", 26, 3, Some(26)),
        ]
    );
    assert!(
        scores
            .iter()
            .all(|s| (s.fault_free_hours - 70.0).abs() < 0.1)
    );

    // The relative-input model (domain-randomised synthetic traces only,
    // never this day): the most faults at the budget, but its own
    // threshold, calibrated on synthetic runs, alarms far too often here.
    let relative = store::load(&repo().join("models/predictor-relative")).unwrap();
    let rcfg = BacktestConfig::of(&relative, None);
    let runs = backtest::run(&relative.model(), &rcfg, &recordings, &[], None);
    let r = backtest::score(&runs, &faults, &rcfg.predictor, 0.1);
    assert_eq!(table(&r)[0], ("lstm", 5, 481, Some(13)));

    // The same traces and this day (`train --with-recorded`), scored on
    // the day it saw: in sample, it ranks "not healthy" above the static
    // thresholds (ROC-AUC 0.774 against 0.718). Trained on half of the
    // services and scored on the other half, it does not (README).
    let mixed = store::load(&repo().join("models/predictor-relative-nezha")).unwrap();
    let mcfg = BacktestConfig::of(&mixed, None);
    let runs = backtest::run(&mixed.model(), &mcfg, &recordings, &[], None);
    let m = backtest::score(&runs, &faults, &mcfg.predictor, 0.1);
    assert_eq!(table(&m)[0], ("lstm", 14, 59, Some(13)));
    let (lstm, thresholds) = (m[0].roc_auc.unwrap(), m[1].roc_auc.unwrap());
    assert!(
        (lstm - 0.774).abs() < 5e-4 && (thresholds - 0.718).abs() < 5e-4,
        "{lstm} {thresholds}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_recordings_are_named_and_gaps_restart_the_window() {
    let services = incidents::import(&day()).unwrap();
    let (name, scrapes) = services.iter().find(|(s, _)| s == "cartservice").unwrap();

    // A missing column: the header is refused with the file named.
    let dir = tmp("columns");
    let mut text = selfheal::metrics::metrics_csv(scrapes.iter().map(|m| (name.as_str(), m)));
    text = text.replacen(",active_connections", "", 1);
    std::fs::write(dir.join("cartservice-metrics.csv"), &text).unwrap();
    let e = recorded::read_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains("cartservice-metrics.csv") && e.contains("line 1"),
        "{e}"
    );

    // Memory in percent rather than a share of the limit.
    let mut percent = scrapes.clone();
    percent[3].memory_usage *= 100.0;
    write_recording(&dir, &[(name.clone(), percent)]);
    let e = recorded::read_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains("line 5") && e.contains("memory_usage") && e.contains("divided by 100"),
        "{e}"
    );

    // Another service's rows (a whole-cluster file copied under one
    // service's name): the line and the field are named.
    let mixed = selfheal::metrics::metrics_csv(scrapes.iter().enumerate().map(|(i, m)| {
        let service = if i == 2 { "frontend" } else { name.as_str() };
        (service, m)
    }));
    std::fs::write(dir.join("cartservice-metrics.csv"), mixed).unwrap();
    let e = recorded::read_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains("line 4") && e.contains("`service`") && e.contains("`frontend`"),
        "{e}"
    );

    // A header and no scrapes.
    write_recording(&dir, &[(name.clone(), Vec::new())]);
    let e = recorded::read_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains("cartservice-metrics.csv") && e.contains("no scrapes"),
        "{e}"
    );

    // An hour without scrapes: no panic, the window fills again after it.
    let gap: Vec<_> = scrapes
        .iter()
        .enumerate()
        .filter(|(i, _)| !(100..160).contains(i))
        .map(|(_, m)| m.clone())
        .collect();
    let (_, _, results) = shipped_backtest(&dir, &[(name.clone(), gap)], None);
    let b = &results[0];
    let predicted: Vec<bool> = b.scrapes.iter().map(|s| s.prediction.is_some()).collect();
    assert!(predicted[99], "before the gap");
    assert!(
        !predicted[100..105].iter().any(|&p| p),
        "the window refills after the gap"
    );
    assert!(predicted[105], "five minutes after the gap");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn fault_lists_in_csv_name_the_line() {
    let dir = tmp("faults");
    let path = dir.join("faults.csv");
    std::fs::write(
        &path,
        "t_s,service,kind,end_s\n100,cart,latency,400\n900,cart,kill,\n",
    )
    .unwrap();
    let list = FaultList::read(&path).unwrap();
    assert_eq!(list.faults.len(), 2);
    let t = selfheal::time::Time::from_secs;
    // Fault window: start to ten minutes after its end (or after 300 s).
    assert!(list.fault_free(t(99)) && !list.fault_free(t(999)) && list.fault_free(t(1_800)));
    assert!(!list.fault_free(t(200)) && list.fault_free(t(1_801)));
    // Scored for the recorded services only; another service's fault
    // still keeps its window out of the fault-free time.
    let mut only_web = list.clone();
    assert_eq!(only_web.retain_services(|s| s == "web"), 2);
    assert!(only_web.faults.is_empty());
    assert!(!only_web.fault_free(t(200)) && only_web.fault_free(t(1_801)));
    std::fs::write(&path, "t_s,service,kind\n100,cart\n").unwrap();
    let e = FaultList::read(&path).unwrap_err().to_string();
    assert!(
        e.contains("faults.csv:2") && e.contains("2 fields, expected 3"),
        "{e}"
    );
    std::fs::write(&path, "t_s,service,kind\nsoon,cart,kill\n").unwrap();
    let e = FaultList::read(&path).unwrap_err().to_string();
    assert!(e.contains(":2") && e.contains("`t_s`"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// With a forest fitted on a few training traces, the backtest scores it on
/// the window the network reads: a `forest` column, a sixth detector, and
/// the other detectors' figures unchanged.
#[test]
fn a_forest_joins_the_backtest_when_given() {
    use selfheal::train::{traces, validate::Forest};
    let services: Vec<_> = incidents::import(&day())
        .unwrap()
        .into_iter()
        .filter(|(s, _)| s == "frontend" || s == "cartservice")
        .collect();
    let dir = tmp("forest");
    write_recording(&dir, &services);
    let recordings = recorded::read_dir(&dir).unwrap();
    let bundle = store::load(&repo().join("models/predictor")).unwrap();
    let cfg = BacktestConfig::of(&bundle, None);
    let small = traces::TracesConfig {
        seed: 5,
        runs: 6,
        duration_s: 900.0,
        ..Default::default()
    };
    let train = traces::generate(&small, &repo().join("scenarios"), &|| {}).unwrap();
    let forest = Forest::fit(&train, &bundle.normaliser, 6, 2_000, 1);
    let model = bundle.model();
    let with = backtest::run(&model, &cfg, &recordings, &[], Some(&forest));
    let without = backtest::run(&model, &cfg, &recordings, &[], None);
    for (w, o) in with.iter().zip(&without) {
        for (a, b) in w.scrapes.iter().zip(&o.scrapes) {
            assert_eq!(a.forest.is_some(), a.prediction.is_some());
            assert!(a.forest.is_none_or(|v| (0.0..=1.0).contains(&v)));
            assert_eq!(a.prediction, b.prediction);
            assert_eq!(b.forest, None);
        }
    }
    let csv = backtest::csv(&with);
    assert!(csv.lines().next().unwrap().ends_with(",forest"));
    let faults = FaultList::read(&day().join("2022-08-23-fault_list.json")).unwrap();
    let names =
        |s: &[backtest::DetectorScore]| -> Vec<&str> { s.iter().map(|d| d.detector).collect() };
    let scored_with = backtest::score(&with, &faults, &cfg.predictor, 0.1);
    let scored_without = backtest::score(&without, &faults, &cfg.predictor, 0.1);
    assert_eq!(names(&scored_with), backtest::DETECTORS);
    assert_eq!(names(&scored_without), backtest::DETECTORS[..6]);
    assert_eq!(scored_with[..6], scored_without[..]);
    std::fs::remove_dir_all(&dir).ok();
}

/// The departure score's defaults were chosen on the first half of the day
/// (its first 16 faults, the fault-free hours before 20:30); its figures on
/// the second half are the ones it never saw, beside the other detectors'
/// on the same half. (Which metrics have a hard limit was chosen on the
/// whole day: a memory limit would have cost two of the second half's
/// faults. The limits add two faults to the first half and none to the
/// second.)
#[test]
fn the_departure_score_on_the_half_of_the_day_it_was_not_tuned_on() {
    let services = incidents::import(&day()).unwrap();
    let dir = tmp("halves");
    let edges = incidents::import_edges(&day()).unwrap();
    let (cfg, _, results) = shipped_backtest(&dir, &services, Some(&edges));
    let all = FaultList::read(&day().join("2022-08-23-fault_list.json")).unwrap();
    assert_eq!(all.faults.len(), 32);
    let at = |clock: &str| selfheal::time::parse_utc(&format!("2022-08-23 {clock}")).unwrap();
    // The second half's faults are injected from 14:21 to 16:41.
    let (split, faults_from, faults_until) = (at("20:30:00"), at("14:15:00"), at("17:00:00"));
    let half = |first: bool| {
        let faults = FaultList {
            faults: if first {
                all.faults[..16].to_vec()
            } else {
                all.faults[16..].to_vec()
            },
            elsewhere: Vec::new(),
            busy_hours: all.busy_hours.clone(),
        };
        // The baseline was built on the whole day before; only the scoring
        // keeps to the half.
        let kept: Vec<backtest::ServiceBacktest> = results
            .iter()
            .map(|b| backtest::ServiceBacktest {
                scrapes: b
                    .scrapes
                    .iter()
                    .filter(|s| {
                        let t = s.at.as_secs_f64();
                        if first {
                            t < split
                        } else {
                            t >= split || (faults_from..faults_until).contains(&t)
                        }
                    })
                    .cloned()
                    .collect(),
                ..b.clone()
            })
            .collect();
        backtest::score(&kept, &faults, &cfg.predictor, 0.1)
            .into_iter()
            .map(|s| {
                (
                    s.detector,
                    s.newly_warned(),
                    s.false_alarm_episodes,
                    (s.fault_free_hours * 10.0).round() / 10.0,
                )
            })
            .collect::<Vec<_>>()
    };
    // Per detector: faults newly warned (of 16), false alarm episodes and
    // fault-free hours of the half.
    assert_eq!(
        half(true),
        vec![
            ("lstm", 4, 37, 35.0),
            ("thresholds", 8, 53, 35.0),
            ("anomaly", 8, 2, 35.0),
            ("pattern", 5, 0, 35.0),
            ("persistence", 8, 53, 35.0),
            ("departure", 13, 1, 35.0),
        ]
    );
    assert_eq!(
        half(false),
        vec![
            ("lstm", 2, 39, 34.8),
            ("thresholds", 4, 40, 34.8),
            ("anomaly", 8, 3, 34.8),
            ("pattern", 4, 0, 34.8),
            ("persistence", 6, 40, 34.8),
            ("departure", 13, 2, 34.8),
        ]
    );
    std::fs::remove_dir_all(&dir).ok();
}
