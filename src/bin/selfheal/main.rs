//! The `selfheal` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod predictor;
mod progress;

#[derive(Parser)]
#[command(
    name = "selfheal",
    version,
    about = "Self-healing control plane for microservices, and its simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario and print its summary.
    Run {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Write metrics.csv, edges.csv, series.csv, commands.csv, faults.csv
        /// and summary.toml into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Override the scenario's controller: static, hpa[:cpu%],
        /// kpa[:concurrency], selfheal or selfheal:slo (sizing for the
        /// scenario's SLO), each optionally with +argo and +heal.
        #[arg(long)]
        controller: Option<String>,
    },
    /// Run the demo sweep (`suites/demo.toml`) and write its report to
    /// `reports/demo/index.html`.
    Demo {
        #[arg(long, default_value = "suites/demo.toml")]
        suite: PathBuf,
        #[arg(long, default_value = "reports/demo")]
        out: PathBuf,
    },
    /// Run a suite file (scenarios x parameters x controllers x seeds) in
    /// parallel and write its report. Re-running on the same directory
    /// resumes: runs already logged are not run again.
    Sweep {
        suite: PathBuf,
        /// Output directory (default: reports/<suite name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run only share i of n (`--shard 0/3`); merge the parts with
        /// `selfheal merge`.
        #[arg(long)]
        shard: Option<String>,
    },
    /// Search the selfheal scaler's thresholds on a training suite, validate
    /// the best on a held-out suite, and write it as a `[controller]` table.
    Tune {
        /// Training suite (its scenarios and seeds; its controllers are
        /// replaced by each candidate).
        train: PathBuf,
        /// Held-out suite: the best candidate, the defaults and this suite's
        /// own controllers are scored on it with the same seeds.
        #[arg(long)]
        holdout: PathBuf,
        /// Objective: SLO-violation seconds + WEIGHT x replica-seconds.
        #[arg(long, default_value_t = 0.001)]
        cost_weight: f64,
        #[arg(long, default_value = "reports/tune")]
        out: PathBuf,
    },
    /// Judge a policy (a file with a `[controller]` table, such as `tune`
    /// writes) against a baseline over a chaos suite with paired seeds, and
    /// write an approval record. Exits with status 3 when not approved.
    Approve {
        policy: PathBuf,
        suite: PathBuf,
        /// The controller to beat (static, hpa[:cpu%], kpa[:c], selfheal).
        #[arg(long, default_value = "hpa:70")]
        baseline: String,
        /// Largest acceptable increase in SLO-violation seconds per run.
        #[arg(long, default_value_t = 0.0)]
        margin_violation_s: f64,
        /// Largest acceptable increase in failed requests per run.
        #[arg(long, default_value_t = 0.0)]
        margin_failed: f64,
        #[arg(long, default_value = "reports/approval")]
        out: PathBuf,
    },
    /// Rebuild the tables, charts and index of a sweep directory from its
    /// saved results.
    Report { dir: PathBuf },
    /// Merge the directories of a sharded sweep into one and report it.
    Merge {
        #[arg(long)]
        out: PathBuf,
        #[arg(required = true)]
        parts: Vec<PathBuf>,
    },
    /// The decision-quality suite: 22 generated scenarios of 9 load
    /// families (4 families choose the selfheal scaler's settings, the
    /// other 5, real traces among them, are held out) x controllers x seeds.
    /// Runs are journalled under OUT (`journal-tuning/`, `journal-scoring/`):
    /// an interrupted suite resumes; delete OUT to start afresh.
    Suite {
        /// Directory with the real traces the suite replays.
        #[arg(long, default_value = "datasets/traces")]
        data: PathBuf,
        #[arg(long, default_value_t = 5)]
        seeds: u64,
        #[arg(long, default_value = "reports/suite")]
        out: PathBuf,
        /// The pods' QoS class: what a CPU utilisation target means.
        /// (`guaranteed`: request = limit = 1 core; `burstable`: a 0.5-core
        /// request under a 1-core limit).
        #[arg(long, default_value = "guaranteed", value_parser = |s: &str| s.parse::<selfheal::eval::suite::Qos>())]
        qos: selfheal::eval::suite::Qos,
        /// Score the untuned controllers only: no training runs, no tuned
        /// `selfheal` row.
        #[arg(long)]
        no_tuning: bool,
    },
    /// Run a scenario against the wall clock (SPEED times faster) and serve
    /// it as a cluster: its metrics at http://ADDR/metrics in the Prometheus
    /// text format, with the names the live adapter's default queries read
    /// (counters divided by SPEED so PromQL rates read simulated rates), and
    /// its Deployments, ReplicaSets, Pods, Services and ConfigMaps through a
    /// subset of the Kubernetes API at http://ADDR for kubectl and the live
    /// adapter, every write acting on the simulation.
    Serve(ServeArgs),
    /// Learn the orchestrator's first-strategy selector from recorded
    /// outcomes: every run of a suite of chaos experiments under the rules
    /// and with each strategy taken first; a linfa random forest on the
    /// situations, labelled with the strategy that recovered best; rules
    /// against learned on held-out seeds.
    LearnSelector {
        /// A suite of chaos experiments under one `+heal` controller.
        #[arg(default_value = "suites/selector.toml")]
        suite: PathBuf,
        /// Seeds up to this one record the training outcomes; the
        /// suite's other seeds are held out.
        #[arg(long, default_value_t = 12)]
        train_seeds: u64,
        #[arg(long, default_value = selfheal::scenario::DEFAULT_SELECTOR)]
        out: PathBuf,
        #[arg(long, default_value = "reports/selector")]
        report: PathBuf,
    },
    /// Generate labelled training traces for the failure predictor: many
    /// simulated runs with random loads and faults, one row per scrape.
    Traces {
        /// Generator settings (TOML, fields of `TracesConfig`); defaults
        /// when omitted.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        runs: Option<usize>,
        #[arg(long)]
        seed: Option<u64>,
        /// Directory the trace-replay loads are read from.
        #[arg(long, default_value = "scenarios")]
        scenarios: PathBuf,
        #[arg(long, default_value = "data/traces.parquet")]
        out: PathBuf,
    },
    /// Train the LSTM failure predictor on a trace dataset and save it with
    /// its config and normalisation stats.
    Train {
        #[arg(long, default_value = "data/traces.parquet")]
        data: PathBuf,
        /// Train on `selfheal-k8s record` recordings in this directory
        /// instead (`<service>-metrics.csv` with `<service>-sli.csv`),
        /// labelled by the same health rules as generated traces.
        #[arg(long, conflicts_with = "data")]
        from_recorded: Option<PathBuf>,
        #[arg(long, default_value = "models/predictor")]
        out: PathBuf,
        #[arg(long, default_value_t = 20)]
        epochs: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// One window every STRIDE scrapes.
        #[arg(long, default_value_t = 6)]
        stride: usize,
        /// Training windows drawn per epoch (0 = all).
        #[arg(long, default_value_t = 12000)]
        samples_per_epoch: usize,
        /// Input features: 7 = the seed's metrics, 8 = plus ready replicas.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=8))]
        features: u8,
        /// What the network reads: `raw` scrapes, or `relative` inputs that
        /// transfer across clusters and scrape intervals (shares, growth,
        /// ratios to the window's own median and to the SLO latency;
        /// trained across 1, 3, 6 and 12 times the traces' interval; needs
        /// all 8 features).
        #[arg(long, default_value = "raw", value_parser = ["raw", "relative"])]
        inputs: String,
    },
    /// Re-derive a trained predictor's alarm threshold on its validation
    /// runs for a false-alarm budget (training does this for 6 per hour).
    Calibrate {
        #[arg(long, default_value = "models/predictor")]
        model: PathBuf,
        #[arg(long, default_value = "data/traces.parquet")]
        data: PathBuf,
        /// False alarms per service-hour (warned windows, one per 10 s).
        #[arg(long, default_value_t = 6.0)]
        false_alarms: f64,
    },
    /// Validate the failure predictor on held-out traces (other seeds, loads
    /// from a real trace, optionally each fault family left out of
    /// training) next to persistence, static thresholds, the pattern rules
    /// and a forest, at equal false-alarm rates.
    Validate {
        #[arg(long, default_value = "models/predictor")]
        model: PathBuf,
        /// The training traces (for the forest baseline).
        #[arg(long, default_value = "data/traces.parquet")]
        train_data: PathBuf,
        #[arg(long, default_value = "scenarios")]
        scenarios: PathBuf,
        #[arg(long, default_value = "reports/validate")]
        out: PathBuf,
        /// Held-out runs with synthetic loads (half as many with the trace).
        #[arg(long, default_value_t = 200)]
        runs: usize,
        /// Score every STRIDE-th window.
        #[arg(long, default_value_t = 2)]
        stride: usize,
        /// Train one model per left-out fault family for this many epochs
        /// (0: skip).
        #[arg(long, default_value_t = 0)]
        leave_one_out_epochs: usize,
        /// Also score `selfheal-k8s record` recordings in this directory
        /// (labelled by the same health rules) as a held-out set.
        #[arg(long)]
        recorded: Option<PathBuf>,
    },
    /// Backtest the failure predictor on a recording of any cluster
    /// (`<service>-metrics.csv`, optional `<service>-sli.csv`, any scrape
    /// interval; README, "Bring your own metrics"): per scrape and service
    /// the prediction, anomaly scores and static thresholds to OUT (CSV);
    /// with `--faults`, each detector's faults newly warned within 5
    /// minutes, false alarm episodes per service-hour and ROC-AUC.
    Predict {
        #[arg(long, default_value = "models/predictor")]
        model: PathBuf,
        #[arg(long)]
        recorded: PathBuf,
        #[arg(long, default_value = "reports/predict/backtest.csv")]
        out: PathBuf,
        /// A Nezha `<day>-fault_list.json`, or a CSV `t_s,service,kind[,end_s]`.
        #[arg(long)]
        faults: Option<PathBuf>,
        /// The false-alarm budget (episodes per service-hour) at which the
        /// detectors with a score are also compared, each at the threshold
        /// that meets it on this recording.
        #[arg(long, default_value_t = 0.1)]
        budget: f64,
        /// Every service's SLO latency; by default three times each
        /// service's median p99 over the recording.
        #[arg(long)]
        slo_latency_ms: Option<f64>,
    },
    /// Convert another layout into the recording format `selfheal predict`
    /// and `train --from-recorded` read.
    Import {
        #[command(subcommand)]
        what: ImportCmd,
    },
    /// Offline evaluations.
    Eval {
        #[command(subcommand)]
        what: EvalCmd,
    },
    /// Parse and validate scenario files without running them.
    Check {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    scenario: PathBuf,
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Where to listen. Beyond loopback, set --token-file too.
    #[arg(long, default_value = "127.0.0.1:9464")]
    addr: String,
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Override the scenario's controller (short form: hpa:70+heal ...);
    /// `static` leaves the replicas to whoever writes through the API.
    #[arg(long)]
    controller: Option<String>,
    /// Write a kubeconfig for the served API here (for KUBECONFIG=...).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Serve the scenario without its faults and experiment, for
    /// `selfheal-k8s replay` to inject them through the API.
    #[arg(long)]
    without_faults: bool,
    /// A file holding a bearer token that every request but a /metrics
    /// scrape must carry (the kubeconfig written carries it too).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ImportCmd {
    /// Nezha's per-pod CSVs (`metric/<pod>_metric.csv`, see
    /// `datasets/incidents/README.md`), one service per pod.
    Nezha {
        #[arg(default_value = "datasets/incidents/nezha-ob-2022-08-23")]
        dir: PathBuf,
        #[arg(long, default_value = "data/recorded/nezha-ob-2022-08-23")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum EvalCmd {
    /// Scores the online anomaly detector on NAB-format data exactly as NAB
    /// does (three profiles, threshold swept on the files), next to Numenta
    /// HTM's published per-row scores on the same files.
    Nab {
        /// Directory with combined_windows.json, the data folders and
        /// golden/ (Numenta's published results).
        #[arg(default_value = "datasets/nab")]
        dir: PathBuf,
        #[arg(long, default_value = "reports/nab")]
        out: PathBuf,
    },
    /// The anomaly detector on a real cluster's recorded metrics with
    /// labelled fault injections (the Nezha layout: `metric/<pod>_metric.csv`
    /// and `<day>-fault_list.json`): the share of faults caught within 5
    /// minutes on the faulty service and the false alarm episodes per
    /// service-hour in the fault-free hours.
    Incidents {
        #[arg(default_value = "datasets/incidents/nezha-ob-2022-08-23")]
        dir: PathBuf,
        #[arg(long, default_value = "reports/incidents")]
        out: PathBuf,
        /// The alarm threshold; by default the pattern detector's, which is
        /// fixed by the NAB sweep (README, "The anomaly detector").
        #[arg(long)]
        threshold: Option<f64>,
    },
    /// Rolling-origin evaluation of the load forecast (MASE and 80 %
    /// interval coverage) against naive and seasonal-naive forecasts, on the
    /// real traces in DATA and on synthetic curves.
    Forecast {
        /// Directory with the `t_seconds,value` traces (nasa_http_1995_per_min.csv,
        /// wikipedia_en_hourly_2010_2015.csv, azure_fn2019_*.csv).
        #[arg(long, default_value = "datasets/traces")]
        data: PathBuf,
        #[arg(long, default_value = "reports/forecast")]
        out: PathBuf,
        /// Horizons in samples.
        #[arg(long, value_delimiter = ',', default_value = "1,5")]
        horizons: Vec<usize>,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each once: typed errors often show their
/// source in their own message already.
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run {
            scenario,
            out,
            seed,
            controller,
        } => {
            let mut sc = selfheal::scenario::load_file(&scenario)?;
            if let Some(seed) = seed {
                sc.spec.seed = seed;
            }
            if let Some(c) = controller {
                sc.spec.use_controller(
                    selfheal::scenario::ControllerSpec::parse_short(&c)
                        .map_err(anyhow::Error::msg)?,
                );
            }
            let started = std::time::Instant::now();
            let output = selfheal::sim::run(&sc)?;
            let wall = started.elapsed();
            print!("{}", output.summary_text());
            println!(
                "wall time   {:.3} s ({:.1} M events/s)",
                wall.as_secs_f64(),
                output.summary.events as f64 / wall.as_secs_f64() / 1e6
            );
            if let Some(dir) = out {
                output
                    .write_dir(&dir)
                    .with_context(|| format!("writing results to {}", dir.display()))?;
                println!("wrote       {}", dir.display());
            }
        }
        Cmd::Demo { suite, out } => sweep(&suite, Some(out), None)?,
        Cmd::Suite {
            data,
            seeds,
            out,
            qos,
            no_tuning,
        } => suite(&data, seeds, &out, qos, !no_tuning)?,
        Cmd::Serve(args) => serve(args)?,
        Cmd::LearnSelector {
            suite,
            train_seeds,
            out,
            report,
        } => learn_selector(&suite, train_seeds, &out, &report)?,
        Cmd::Sweep { suite, out, shard } => sweep(&suite, out, shard.as_deref())?,
        Cmd::Report { dir } => report(&dir)?,
        Cmd::Tune {
            train,
            holdout,
            cost_weight,
            out,
        } => tune(&train, &holdout, cost_weight, &out)?,
        Cmd::Approve {
            policy,
            suite,
            baseline,
            margin_violation_s,
            margin_failed,
            out,
        } => {
            let criteria = selfheal::sweep::approve::Criteria {
                margin_violation_s,
                margin_failed,
            };
            if !approve(&policy, &suite, &baseline, criteria, &out)? {
                std::process::exit(3);
            }
        }
        Cmd::Merge { out, parts } => merge(&out, &parts)?,
        Cmd::Calibrate {
            model,
            data,
            false_alarms,
        } => predictor::calibrate(&model, &data, false_alarms)?,
        Cmd::Validate {
            model,
            train_data,
            scenarios,
            out,
            runs,
            stride,
            leave_one_out_epochs,
            recorded,
        } => predictor::validate(&predictor::ValidateArgs {
            model: &model,
            train_data: &train_data,
            scenarios: &scenarios,
            out: &out,
            runs,
            stride,
            leave_one_out_epochs,
            recorded: recorded.as_deref(),
        })?,
        Cmd::Traces {
            config,
            runs,
            seed,
            scenarios,
            out,
        } => {
            let mut cfg = predictor::traces_config(config.as_deref())?;
            if let Some(r) = runs {
                cfg.runs = r;
            }
            if let Some(s) = seed {
                cfg.seed = s;
            }
            predictor::generate_traces(&cfg, &scenarios, &out)?;
        }
        Cmd::Train {
            data,
            from_recorded,
            out,
            epochs,
            seed,
            stride,
            samples_per_epoch,
            features,
            inputs,
        } => {
            use selfheal::control::predictor::normalise::Inputs;
            let inputs = if inputs == "relative" {
                anyhow::ensure!(features == 8, "--inputs relative needs all 8 features");
                Inputs::Relative
            } else {
                Inputs::Raw
            };
            let cfg = selfheal::train::trainer::TrainConfig::new(
                selfheal::train::model::PredictorNetConfig::new().with_features(features as usize),
            )
            .with_max_epochs(epochs)
            .with_seed(seed)
            .with_stride(stride)
            .with_max_samples_per_epoch(samples_per_epoch);
            // The command as anyone would type it, whatever the binary's path.
            let command = std::iter::once("selfheal".to_string())
                .chain(std::env::args().skip(1))
                .collect::<Vec<_>>()
                .join(" ");
            predictor::train(
                predictor::training_data(&data, from_recorded.as_deref())?,
                (&cfg, inputs),
                &out,
                command,
            )?;
        }
        Cmd::Eval {
            what:
                EvalCmd::Forecast {
                    data,
                    out,
                    horizons,
                },
        } => eval_forecast(&data, &out, &horizons)?,
        Cmd::Predict {
            model,
            recorded,
            out,
            faults,
            budget,
            slo_latency_ms,
        } => predictor::backtest(
            &model,
            &recorded,
            &out,
            (faults.as_deref(), budget),
            slo_latency_ms,
        )?,
        Cmd::Import {
            what: ImportCmd::Nezha { dir, out },
        } => predictor::import_nezha(&dir, &out)?,
        Cmd::Eval {
            what: EvalCmd::Nab { dir, out },
        } => eval_nab(&dir, &out)?,
        Cmd::Eval {
            what:
                EvalCmd::Incidents {
                    dir,
                    out,
                    threshold,
                },
        } => eval_incidents(&dir, &out, threshold)?,
        Cmd::Check { scenarios } => {
            let mut failed = 0;
            for path in &scenarios {
                match selfheal::scenario::load_file(path) {
                    Ok(sc) => println!("ok      {} ({})", path.display(), sc.spec.name),
                    Err(e) => {
                        failed += 1;
                        eprintln!("invalid {e}");
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} scenario files are invalid", scenarios.len());
            }
        }
    }
    Ok(())
}

/// One series for the forecast evaluation: times, rates, season length.
struct Series {
    name: String,
    t: Vec<f64>,
    y: Vec<f64>,
    season: usize,
}

fn trace_series(
    dir: &std::path::Path,
    file: &str,
    name: &str,
    skip: usize,
    take: usize,
    season: usize,
) -> anyhow::Result<Series> {
    let path = dir.join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let tr = selfheal::sim::load::Trace::parse_csv(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let end = (skip + take).min(tr.t.len());
    Ok(Series {
        name: name.into(),
        t: tr.t[skip..end].to_vec(),
        y: tr.value[skip..end].to_vec(),
        season,
    })
}

/// A synthetic curve observed through Poisson counting noise every `step` s.
fn synthetic(
    name: &str,
    curve: selfheal::sim::load::Curve,
    step: f64,
    n: usize,
    season: usize,
    seed: u64,
) -> Series {
    let mut rng = selfheal::rng::Stream::new(seed, selfheal::rng::Subsystem::Curves);
    let mut t = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let ti = i as f64 * step;
        let mean = curve.rate(ti) * step;
        // Normal approximation of Poisson counts (means are large here).
        let count = (mean + mean.sqrt() * rng.normal()).max(0.0).round();
        t.push(ti);
        y.push(count / step);
    }
    Series {
        name: name.into(),
        t,
        y,
        season,
    }
}

fn eval_nab(dir: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    let cfg = selfheal::control::anomaly::DetectorConfig::default();
    let scores = selfheal::eval::nab::evaluate(dir, &cfg)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut csv = String::from("detector,profile,threshold,raw,normalised\n");
    let mut md = format!(
        "# NAB score on {}\n\nDetector settings (fixed before scoring): `{:?}`\n\n| detector | profile | threshold | raw | normalised |\n|---|---|---|---|---|\n",
        dir.display(),
        cfg
    );
    for s in &scores {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            s.detector, s.profile, s.threshold, s.raw, s.normalised
        ));
        md.push_str(&format!(
            "| {} | {} | {:.4} | {:.3} | {:.1} |\n",
            s.detector, s.profile, s.threshold, s.raw, s.normalised
        ));
    }
    std::fs::write(out.join("nab.csv"), csv)?;
    std::fs::write(out.join("nab.md"), &md)?;
    print!("{md}");
    println!("wrote {}", out.join("nab.md").display());
    Ok(())
}

fn eval_incidents(
    dir: &std::path::Path,
    out: &std::path::Path,
    threshold: Option<f64>,
) -> anyhow::Result<()> {
    use selfheal::eval::incidents;
    let cfg = selfheal::control::anomaly::DetectorConfig::default();
    let threshold = threshold.unwrap_or(
        selfheal::control::predictor::patterns::PatternConfig::default().anomaly_threshold,
    );
    let r = incidents::evaluate(dir, &cfg, threshold)?;
    let md = incidents::render(dir, &cfg, &r);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("incidents.md"), &md)?;
    print!("{md}");
    println!("wrote {}", out.join("incidents.md").display());
    Ok(())
}

fn eval_forecast(
    data: &std::path::Path,
    out: &std::path::Path,
    horizons: &[usize],
) -> anyhow::Result<()> {
    use rayon::prelude::*;
    use selfheal::sim::load::Curve;
    let mut series = vec![
        trace_series(
            data,
            "nasa_http_1995_per_min.csv",
            "nasa-1995 (1 min)",
            1440,
            4320,
            1440,
        )?,
        trace_series(
            data,
            "wikipedia_en_hourly_2010_2015.csv",
            "wikipedia (1 h)",
            0,
            2500,
            24,
        )?,
        trace_series(
            data,
            "azure_fn2019_http_021589_per_min.csv",
            "azure-http (1 min)",
            0,
            1440,
            0,
        )?,
        trace_series(
            data,
            "azure_fn2019_queue_8203ff_per_min.csv",
            "azure-queue (1 min)",
            0,
            1440,
            0,
        )?,
    ];
    let day = 3600.0; // compressed "days" keep synthetic series short
    series.push(synthetic(
        "synthetic diurnal (30 s)",
        Curve::Diurnal {
            mean: 300.0,
            amplitude: 0.6,
            period: day,
            peak: 0.0,
        },
        30.0,
        2400,
        120,
        1,
    ));
    series.push(synthetic(
        "synthetic flash crowds (30 s)",
        Curve::Sum(vec![
            Curve::Constant(150.0),
            Curve::FlashCrowd {
                base: 0.0,
                peak: 700.0,
                start: 20_000.0,
                rise: 60.0,
                decay: 900.0,
            },
            Curve::FlashCrowd {
                base: 0.0,
                peak: 500.0,
                start: 50_000.0,
                rise: 30.0,
                decay: 600.0,
            },
        ]),
        30.0,
        2400,
        0,
        2,
    ));
    let mut burst_rng = selfheal::rng::Stream::new(3, selfheal::rng::Subsystem::Curves);
    series.push(synthetic(
        "synthetic bursts (30 s)",
        Curve::bursts(200.0, 3.0, 1800.0, 300.0, 80_000.0, &mut burst_rng),
        30.0,
        2400,
        0,
        3,
    ));
    series.push(synthetic(
        "synthetic ramp + steps (30 s)",
        Curve::Sum(vec![
            Curve::Ramp {
                from: 50.0,
                to: 400.0,
                start: 0.0,
                end: 70_000.0,
            },
            Curve::Step {
                before: 0.0,
                after: 200.0,
                at: 30_000.0,
            },
            Curve::Step {
                before: 0.0,
                after: -150.0,
                at: 55_000.0,
            },
        ]),
        30.0,
        2400,
        0,
        4,
    ));
    let jobs: Vec<(usize, usize)> = (0..series.len())
        .flat_map(|s| horizons.iter().map(move |&h| (s, h)))
        .collect();
    println!(
        "evaluating {} series x {} horizons on {} threads",
        series.len(),
        horizons.len(),
        rayon::current_num_threads()
    );
    let cfg = selfheal::control::scaler::ForecastConfig::default();
    let scores: Vec<_> = jobs
        .par_iter()
        .map(|&(s, h)| {
            selfheal::eval::forecast::evaluate(
                &series[s].name,
                &series[s].t,
                &series[s].y,
                h,
                series[s].season,
                &cfg,
            )
        })
        .collect();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut csv = String::from(
        "series,step_s,horizon,points,selfheal_mase,selfheal_coverage,naive_mase,naive_coverage,seasonal_mase,seasonal_coverage\n",
    );
    let mut md = String::from(
        "| series | h | points | selfheal MASE | selfheal 80% cov. | naive MASE | naive cov. | seasonal MASE | seasonal cov. |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in &scores {
        let (sm, sc) =
            s.seasonal
                .as_ref()
                .map_or((String::from("n/a"), String::from("n/a")), |x| {
                    (
                        format!("{:.3}", x.mase),
                        format!("{:.1}%", 100.0 * x.coverage),
                    )
                });
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            s.series,
            s.step_s,
            s.horizon,
            s.points,
            s.forest.mase,
            s.forest.coverage,
            s.naive.mase,
            s.naive.coverage,
            s.seasonal
                .as_ref()
                .map_or(String::new(), |x| x.mase.to_string()),
            s.seasonal
                .as_ref()
                .map_or(String::new(), |x| x.coverage.to_string())
        ));
        md.push_str(&format!(
            "| {} | {} | {} | {:.3} | {:.1}% | {:.3} | {:.1}% | {} | {} |\n",
            s.series,
            s.horizon,
            s.points,
            s.forest.mase,
            100.0 * s.forest.coverage,
            s.naive.mase,
            100.0 * s.naive.coverage,
            sm,
            sc
        ));
    }
    std::fs::write(out.join("forecast.csv"), csv)?;
    std::fs::write(out.join("forecast.md"), &md)?;
    print!("{md}");
    println!("wrote {}", out.join("forecast.md").display());
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        scenario: path,
        speed,
        addr,
        namespace,
        controller,
        kubeconfig,
        without_faults,
        token_file,
    } = args;
    let token = match &token_file {
        Some(f) => {
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("reading the token file {}", f.display()))?;
            let t = t.trim().to_string();
            anyhow::ensure!(!t.is_empty(), "the token file {} is empty", f.display());
            Some(t)
        }
        None => None,
    };
    let mut loaded = selfheal::scenario::load_file(&path)?;
    if without_faults {
        loaded.spec.faults.clear();
        loaded.spec.experiment = None;
    }
    if let Some(c) = controller {
        loaded.spec.use_controller(
            selfheal::scenario::ControllerSpec::parse_short(&c).map_err(anyhow::Error::msg)?,
        );
    }
    let served = selfheal::serve::Served::start(
        &loaded,
        &selfheal::serve::ServeOptions {
            addr,
            speed,
            namespace,
            clock: selfheal::serve::ServeClock::Wall,
            token,
        },
    )?;
    if !served.addr.ip().is_loopback() {
        eprintln!(
            "warning: serving on {} beyond loopback{}",
            served.addr,
            if token_file.is_some() {
                ": every API request needs the token"
            } else {
                " WITHOUT a token: anyone who reaches it can change the simulation (set --token-file)"
            }
        );
    }
    println!(
        "serving {} ({} s simulated at {speed}x): metrics at http://{}/metrics, the Kubernetes API at http://{}; Ctrl-C stops",
        loaded.spec.name, loaded.spec.duration_s, served.addr, served.addr
    );
    if let Some(file) = kubeconfig {
        std::fs::write(&file, served.kubeconfig())
            .with_context(|| format!("writing {}", file.display()))?;
        println!(
            "kubeconfig: {} (KUBECONFIG={} kubectl get deployments,pods)",
            file.display(),
            file.display()
        );
    }
    let mut reported = false;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (t, finished) = served.progress();
        if finished && !reported {
            println!(
                "the scenario ended at {:.0} s; still serving its last state",
                t.as_secs_f64()
            );
            reported = true;
        }
    }
}

fn learn_selector(
    suite: &std::path::Path,
    train_seeds: u64,
    out: &std::path::Path,
    report: &std::path::Path,
) -> anyhow::Result<()> {
    use selfheal::control::selector::SelectorConfig;
    use selfheal::train::selector as sel;
    let plan = selfheal::sweep::plan::load(suite)?;
    let held_out = plan.runs.iter().filter(|r| r.seed > train_seeds).count();
    anyhow::ensure!(
        held_out > 0 && held_out < plan.runs.len(),
        "{}: --train-seeds {train_seeds} leaves {} of {} runs held out; it must leave some on each side",
        suite.display(),
        held_out,
        plan.runs.len()
    );
    println!(
        "recording outcomes: {} runs of {} x 7 arms (rules, then each strategy first) on {} threads",
        plan.runs.len(),
        plan.name,
        rayon::current_num_threads()
    );
    let started = std::time::Instant::now();
    let trials =
        sel::run_trials(&plan.runs, &progress::runs("runs")).map_err(anyhow::Error::msg)?;
    let rows = sel::rows(&trials);
    let (train, test): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.seed <= train_seeds);
    let cfg = sel::ForestConfig::default();
    let forest = sel::fit(&train, &cfg).map_err(anyhow::Error::msg)?;
    let selector = SelectorConfig::default();
    let evals = sel::evaluate(&forest, &selector, &test);
    let train_evals = sel::evaluate(&forest, &selector, &train);
    sel::save(out, &forest).map_err(anyhow::Error::msg)?;
    let meta = serde_json::json!({
        "format": "selfheal strategy selector 1",
        "command": format!(
            "selfheal learn-selector {} --train-seeds {train_seeds}",
            suite.display()
        ),
        "suite": plan.name,
        "train_seeds": train_seeds,
        "train_rows": train.len(),
        "test_rows": test.len(),
        "forest": cfg,
        "selector": selector,
        "mttr_margin_s": sel::MTTR_MARGIN_S,
        "failed_margin": sel::FAILED_MARGIN,
        "failed_margin_abs": sel::FAILED_MARGIN_ABS,
    });
    let meta_path = out.with_file_name("training.json");
    std::fs::write(&meta_path, serde_json::to_string_pretty(&meta)?)
        .with_context(|| format!("writing {}", meta_path.display()))?;
    std::fs::create_dir_all(report).with_context(|| format!("creating {}", report.display()))?;
    std::fs::write(report.join("trials.csv"), sel::trials_csv(&trials))?;
    let mut labels = String::from(
        "| fault | rules' choice | label (best measured) | rows |
|---|---|---|---|
",
    );
    let mut counts: std::collections::BTreeMap<(String, &str, &str), usize> = Default::default();
    for r in train.iter().chain(&test) {
        *counts
            .entry((r.fault.clone(), r.rules.as_str(), r.best.as_str()))
            .or_default() += 1;
    }
    for ((f, r, b), n) in &counts {
        labels.push_str(&format!("| {f} | {r} | {b} | {n} |\n"));
    }
    let md = format!(
        "# Strategy selector: rules against learned\n\n\
         Made by `{}` in {:.0} s ({} runs).\n\n\
         Every run of the suite `{}` ({}) ran under the rules and with each of the six strategies taken first; \
         the runs agree up to the first healing decision, so each (experiment, parameters, seed) is one situation with the measured outcome of every strategy. \
         A strategy is the label when it beats the rules' choice: it recovers where that does not, or fails {:.0} % (and at least {}) fewer requests from the fault's start, or, at a failed count within that margin, recovers more than {} s sooner; otherwise the rules' choice is. \
         The forest ({} trees, depth {}) was fitted on seeds up to {} ({} rows); the later seeds ({} rows) are held out. \
         The selector overrides the rules only with a vote of at least {:.0} % and at least {} training rows.\n\n\
         ## Held out\n\n\
         Each choice is scored by the run that actually took it first from that situation.\n\n{}\n\
         ## Training rows (fit)\n\n{}\n\
         ## Labels\n\n{}",
        meta["command"].as_str().unwrap_or_default(),
        started.elapsed().as_secs_f64(),
        trials.len(),
        plan.name,
        plan.description,
        100.0 * sel::FAILED_MARGIN,
        sel::FAILED_MARGIN_ABS,
        sel::MTTR_MARGIN_S,
        cfg.trees,
        cfg.max_depth,
        train_seeds,
        train.len(),
        test.len(),
        100.0 * selector.min_vote,
        selector.min_rows,
        sel::evaluation_md(&evals),
        sel::evaluation_md(&train_evals),
        labels
    );
    std::fs::write(report.join("selector.md"), &md)?;
    println!("{}", sel::evaluation_md(&evals));
    println!(
        "wrote {} and {}",
        out.display(),
        report.join("selector.md").display()
    );
    Ok(())
}

/// The seeds the suite's tuning runs on.
const TUNE_SEEDS: [u64; 3] = [1, 2, 3];

fn suite(
    data: &std::path::Path,
    seeds: u64,
    out: &std::path::Path,
    qos: selfheal::eval::suite::Qos,
    tune: bool,
) -> anyhow::Result<()> {
    use selfheal::eval::suite::{self, Split};
    use selfheal::scenario::{ControllerKind, ControllerSpec};
    let mut traces = suite::Traces::new();
    for f in suite::TRACE_FILES {
        let p = data.join(f);
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("reading trace {}", p.display()))?;
        let t = selfheal::sim::load::Trace::parse_csv(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        traces.insert(f.to_string(), std::sync::Arc::new(t));
    }
    let all = suite::standard(&traces, qos).map_err(anyhow::Error::msg)?;
    let train: Vec<_> = all.iter().filter(|s| s.split == Split::Train).collect();
    let test: Vec<_> = all.iter().filter(|s| s.split == Split::Test).collect();
    let hpa = |t: u32| {
        (
            format!("hpa-{t}"),
            ControllerSpec {
                target_cpu_percent: Some(t),
                ..ControllerSpec::parse_short("hpa").unwrap()
            },
        )
    };
    // Every 5 %: the curve is convex (violations fall steeply with cost),
    // and a straight line between points 10 % apart lies above it, which
    // would flatter whatever is compared with it. Down to 30 %: a
    // controller that spends more than HPA at 50 % is compared with HPA at
    // its own cost, not with HPA's cheapest-but-one point.
    let hpas: Vec<_> = (30..=80).step_by(5).map(hpa).collect();
    let started = std::time::Instant::now();

    // 1. Choose the selfheal settings on the training scenarios: the
    //    candidate furthest below HPA's cost/violation curve.
    let tuned = if tune {
        let mut candidates = Vec::new();
        for cpu in [0.6, 0.7] {
            for upper in [true, false] {
                for down in [300.0, 600.0] {
                    let spec = ControllerSpec {
                        kind: ControllerKind::Selfheal,
                        cpu_target: Some(cpu),
                        plan_on_upper: Some(upper),
                        scale_down_cooldown_s: Some(down),
                        ..ControllerSpec::default()
                    };
                    candidates.push((
                        format!("selfheal cpu={cpu} upper={upper} down={down}"),
                        spec,
                    ));
                }
            }
        }
        let tune_seeds: Vec<u64> = TUNE_SEEDS.to_vec();
        let mut tune_controllers = hpas.clone();
        tune_controllers.extend(candidates.iter().cloned());
        println!(
            "tuning: {} training scenarios x {} controllers x {} seeds on {} threads",
            train.len(),
            tune_controllers.len(),
            tune_seeds.len(),
            rayon::current_num_threads()
        );
        let tuning = suite::means(
            &suite::run_matrix(
                &train,
                &tune_controllers,
                &tune_seeds,
                &out.join("journal-tuning"),
                &progress::runs("runs"),
            )
            .map_err(anyhow::Error::msg)?,
        );
        let below_hpa = |label: &str| -> f64 {
            train
                .iter()
                .map(|s| {
                    let pts: Vec<(f64, f64)> = hpas
                        .iter()
                        .map(|(h, _)| {
                            let m = &tuning[&(s.name.clone(), h.clone())];
                            (m.replica_seconds, m.slo_violation_s)
                        })
                        .collect();
                    let m = &tuning[&(s.name.clone(), label.to_string())];
                    m.slo_violation_s
                        - selfheal::sweep::headline::curve_at(&pts, m.replica_seconds).0
                })
                .sum()
        };
        let mut tune_table = String::from(
            "| candidate | violation s minus HPA curve at equal cost (sum over training) |\n|---|---|\n",
        );
        let mut best = (f64::INFINITY, candidates[0].clone());
        for c in &candidates {
            let score = below_hpa(&c.0);
            tune_table.push_str(&format!("| {} | {:.1} |\n", c.0, score));
            if score < best.0 {
                best = (score, c.clone());
            }
        }
        println!(
            "chose {} ({:.1} s below HPA's curve on training)",
            best.1.0, -best.0
        );
        Some((best.1, tune_table))
    } else {
        None
    };

    // 2. Score everything on the held-out scenarios.
    let mut controllers = Vec::new();
    if let Some(((_, spec), _)) = &tuned {
        controllers.push(("selfheal".to_string(), spec.clone()));
    }
    controllers.extend([
        (
            "selfheal-defaults".to_string(),
            ControllerSpec::parse_short("selfheal").unwrap(),
        ),
        (
            "selfheal-slo".to_string(),
            ControllerSpec::parse_short("selfheal:slo").unwrap(),
        ),
        (
            "selfheal-cpu".to_string(),
            ControllerSpec::parse_short("selfheal:cpu").unwrap(),
        ),
    ]);
    // What the per-scenario verdicts are about.
    let subject = if tuned.is_some() {
        "selfheal"
    } else {
        "selfheal-defaults"
    };
    controllers.extend(hpas.iter().cloned());
    controllers.push(("kpa".into(), ControllerSpec::parse_short("kpa").unwrap()));
    controllers.push((
        "kpa-2".into(),
        ControllerSpec::parse_short("kpa:2").unwrap(),
    ));
    controllers.push((
        "static".into(),
        ControllerSpec::parse_short("static").unwrap(),
    ));
    let score_seeds: Vec<u64> = (1..=seeds).collect();
    println!(
        "scoring: {} held-out scenarios x {} controllers x {} seeds",
        test.len(),
        controllers.len(),
        score_seeds.len()
    );
    let results = suite::run_matrix(
        &test,
        &controllers,
        &score_seeds,
        &out.join("journal-scoring"),
        &progress::runs("runs"),
    )
    .map_err(anyhow::Error::msg)?;
    let m = suite::means(&results);

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut runs = String::from(
        "scenario,controller,seed,requests,failed,slo_violation_s,replica_seconds,scaling_actions\n",
    );
    for r in &results {
        runs.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            r.scenario,
            r.controller,
            r.seed,
            r.requests,
            r.failed,
            r.slo_violation_s,
            r.replica_seconds,
            r.scaling_actions
        ));
    }
    std::fs::write(out.join("runs.csv"), runs)?;

    let families = |set: &[&suite::SuiteScenario]| {
        let f: std::collections::BTreeSet<&str> = set.iter().map(|s| s.family).collect();
        f.into_iter().collect::<Vec<_>>().join(", ")
    };
    let mut md = format!(
        "# Decision quality on {} held-out scenarios x {} seeds\n\n{}; HPA at 30-80 % in steps of 5 traces the curve.\n\nHeld-out families: {}. {}`selfheal-defaults` (`{}` sizing), `selfheal-slo` and `selfheal-cpu` are untuned.\n\n",
        test.len(),
        seeds,
        qos.describe(),
        families(&test),
        match &tuned {
            Some(((label, _), _)) => format!(
                "selfheal settings chosen on {} scenarios of the other families ({}): `{label}`; ",
                train.len(),
                families(&train)
            ),
            None => String::new(),
        },
        selfheal::scenario::DEFAULT_SIZING.as_str()
    );
    md.push_str("## Totals (sum over scenarios of the per-seed means)\n\n| controller | SLO violation s | failed requests | replica-seconds | scaling actions |\n|---|---|---|---|---|\n");
    let mut totals: Vec<(String, f64, f64, f64, f64)> = Vec::new();
    for (c, _) in &controllers {
        let (v, f, r, a) = test.iter().fold((0.0, 0.0, 0.0, 0.0), |acc, s| {
            let x = &m[&(s.name.clone(), c.clone())];
            (
                acc.0 + x.slo_violation_s,
                acc.1 + x.failed,
                acc.2 + x.replica_seconds,
                acc.3 + x.scaling_actions,
            )
        });
        md.push_str(&format!("| {c} | {v:.0} | {f:.0} | {r:.0} | {a:.0} |\n"));
        totals.push((c.clone(), v, f, r, a));
    }
    let hpa_labels: Vec<String> = hpas.iter().map(|h| h.0.clone()).collect();
    md.push_str("\n## Against HPA's curves at equal replica-seconds (held-out families)\n\n| controller | violation s / HPA's | failed requests / HPA's | below HPA's violation curve |\n|---|---|---|---|\n");
    for (c, _) in controllers.iter().filter(|c| !c.0.starts_with("hpa-")) {
        let a = suite::against_hpa(&m, &test, &hpa_labels, c);
        md.push_str(&format!(
            "| {c} | {:.2}x ({:.0} / {:.0}) | {:.2}x ({:.0} / {:.0}) | {} of {} |\n",
            a.violation_s / a.hpa_violation_s.max(1e-9),
            a.violation_s,
            a.hpa_violation_s,
            a.failed / a.hpa_failed.max(1e-9),
            a.failed,
            a.hpa_failed,
            a.below,
            a.scenarios
        ));
    }
    let hpa_pts: Vec<(f64, f64)> = totals
        .iter()
        .filter(|t| t.0.starts_with("hpa-"))
        .map(|t| (t.3, t.1))
        .collect();
    let sh = totals
        .iter()
        .find(|t| t.0 == subject)
        .expect("selfheal row");
    let (hv, inside) = selfheal::sweep::headline::curve_at(&hpa_pts, sh.3);
    md.push_str(&format!(
        "\nAggregate: {subject} {:.0} violation s at {:.0} replica-seconds; HPA's curve at that cost: {:.0} s{}.\n\n",
        sh.1, sh.3, hv, if inside { "" } else { " (outside HPA's cost range: nearest HPA point)" }
    ));
    md.push_str(&format!("## Per scenario ({subject} against HPA's curve at equal cost)\n\n| scenario | family | {subject} viol. s | {subject} replica-s | HPA curve viol. s at that cost | verdict | hpa-50 | hpa-60 | hpa-70 | hpa-80 | kpa | kpa-2 | static |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"));
    let mut wins = 0;
    for s in &test {
        let get = |c: &str| &m[&(s.name.clone(), c.to_string())];
        let pts: Vec<(f64, f64)> = hpas
            .iter()
            .map(|(h, _)| (get(h).replica_seconds, get(h).slo_violation_s))
            .collect();
        let x = get(subject);
        let (cv, inside) = selfheal::sweep::headline::curve_at(&pts, x.replica_seconds);
        let verdict = if x.slo_violation_s < cv - 1e-9 {
            wins += 1;
            "wins"
        } else if (x.slo_violation_s - cv).abs() <= 1e-9 {
            "ties"
        } else {
            "loses"
        };
        let cell = |c: &str| {
            let y = get(c);
            format!("{:.0} s / {:.0}", y.slo_violation_s, y.replica_seconds)
        };
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0}{} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.name,
            s.family,
            x.slo_violation_s,
            x.replica_seconds,
            cv,
            if inside { "" } else { "*" },
            verdict,
            cell("hpa-50"),
            cell("hpa-60"),
            cell("hpa-70"),
            cell("hpa-80"),
            cell("kpa"),
            cell("kpa-2"),
            cell("static")
        ));
    }
    md.push_str(&format!(
        "\n{subject} is below HPA's curve on {wins} of {} held-out scenarios. Cells: violation s / replica-seconds. * = outside HPA's cost range (nearest HPA point).\n",
        test.len()
    ));
    if let Some((_, table)) = &tuned {
        md.push_str(&format!(
            "\n## Tuning (training scenarios, {} seeds)\n\n{table}",
            TUNE_SEEDS.len()
        ));
    }
    std::fs::write(out.join("summary.md"), &md)?;
    println!("{md}");
    println!(
        "wrote {} in {:.0} s",
        out.join("summary.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `i/n` -> (i, n).
fn parse_shard(s: &str) -> anyhow::Result<(usize, usize)> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("--shard `{s}`: expected i/n, such as 0/3"))?;
    let (i, n): (usize, usize) = (i.parse()?, n.parse()?);
    anyhow::ensure!(n > 0 && i < n, "--shard `{s}`: need 0 <= i < n");
    Ok((i, n))
}

/// The suite's name and description, kept beside the results so `report`
/// and `merge` can rebuild without the suite file.
fn write_meta(dir: &std::path::Path, name: &str, description: &str) -> anyhow::Result<()> {
    let mut t = toml::Table::new();
    t.insert("name".into(), name.into());
    t.insert("description".into(), description.into());
    std::fs::write(dir.join("sweep.toml"), toml::to_string(&t)?)?;
    Ok(())
}

fn read_meta(dir: &std::path::Path) -> anyhow::Result<(String, String)> {
    let p = dir.join("sweep.toml");
    let t: toml::Table = toml::from_str(
        &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
    )?;
    let get = |k: &str| {
        t.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Ok((get("name"), get("description")))
}

fn sweep(suite: &std::path::Path, out: Option<PathBuf>, shard: Option<&str>) -> anyhow::Result<()> {
    let plan = selfheal::sweep::plan::load(suite)?;
    let dir = out.unwrap_or_else(|| PathBuf::from("reports").join(&plan.name));
    let shard = shard.map(parse_shard).transpose()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_meta(&dir, &plan.name, &plan.description)?;
    let selected = plan
        .runs
        .iter()
        .filter(|r| shard.is_none_or(|(i, n)| r.index % n == i))
        .count();
    println!(
        "sweep {}: {} runs{} on {} threads -> {}",
        plan.name,
        selected,
        shard
            .map(|(i, n)| format!(" (shard {i}/{n} of {})", plan.runs.len()))
            .unwrap_or_default(),
        rayon::current_num_threads(),
        dir.display()
    );
    let started = std::time::Instant::now();
    let records = selfheal::sweep::run::execute(&plan, &dir, shard, &progress::runs("runs"))
        .map_err(anyhow::Error::msg)?;
    if shard.is_none() {
        selfheal::sweep::report::write(&dir, &plan.name, &plan.description, &records)
            .map_err(anyhow::Error::msg)?;
        println!(
            "wrote {} in {:.1} s",
            dir.join("index.html").display(),
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "shard done in {:.1} s; combine the shards with `selfheal merge --out DIR PARTS...`",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn report(dir: &std::path::Path) -> anyhow::Result<()> {
    let (name, description) = read_meta(dir)?;
    let mut records = selfheal::sweep::run::read_journal(&dir.join(selfheal::sweep::run::JOURNAL))
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        !records.is_empty(),
        "{}: no finished runs to report",
        dir.display()
    );
    records.sort_by_key(|r| r.index);
    selfheal::sweep::report::write(dir, &name, &description, &records)
        .map_err(anyhow::Error::msg)?;
    println!("wrote {}", dir.join("index.html").display());
    Ok(())
}

fn merge(out: &std::path::Path, parts: &[PathBuf]) -> anyhow::Result<()> {
    use selfheal::sweep::run::{JOURNAL, RunRecord, read_journal};
    let (name, description) = read_meta(&parts[0])?;
    std::fs::create_dir_all(out.join("series"))
        .with_context(|| format!("creating {}", out.display()))?;
    let mut all: std::collections::BTreeMap<usize, RunRecord> = Default::default();
    for p in parts {
        for r in read_journal(&p.join(JOURNAL)).map_err(anyhow::Error::msg)? {
            let series = p.join("series").join(format!("{}.csv", r.index));
            if series.exists() {
                std::fs::copy(&series, out.join("series").join(format!("{}.csv", r.index)))?;
            }
            if let Some(prev) = all.get(&r.index) {
                anyhow::ensure!(
                    prev.id == r.id,
                    "run {} differs between parts ({} vs {}): not shards of one suite",
                    r.index,
                    prev.id,
                    r.id
                );
            }
            all.insert(r.index, r);
        }
    }
    let records: Vec<RunRecord> = all.into_values().collect();
    let mut journal = RunRecord::header() + "\n";
    for r in &records {
        journal.push_str(&r.to_line());
        journal.push('\n');
    }
    std::fs::write(out.join(JOURNAL), journal)?;
    write_meta(out, &name, &description)?;
    selfheal::sweep::report::write(out, &name, &description, &records)
        .map_err(anyhow::Error::msg)?;
    println!(
        "merged {} runs from {} parts into {}",
        records.len(),
        parts.len(),
        out.join("index.html").display()
    );
    Ok(())
}

fn tune(
    train: &std::path::Path,
    holdout: &std::path::Path,
    weight: f64,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use selfheal::sweep::{plan, tune};
    let train_plan = plan::load(train)?;
    let holdout_plan = plan::load(holdout)?;
    let candidates = tune::grid();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        println!("candidate {}/{}: {}", i + 1, candidates.len(), c.label);
        let records = run_under(
            &train_plan,
            &format!("candidate-{i}"),
            &c.spec,
            &out.join("train").join(format!("candidate-{i}")),
        )?;
        let (v, cost) = mean_violation_and_cost(&records);
        rows.push((i, tune::objective(&records, weight), v, cost));
    }
    let best = rows
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("a candidate")
        .0;
    println!("best on training: {}", candidates[best].label);

    // Held out: the best, the defaults, and the holdout suite's own controllers.
    let mut contenders: Vec<(String, selfheal::scenario::ControllerSpec)> = vec![
        ("tuned".into(), candidates[best].spec.clone()),
        (
            "selfheal-defaults".into(),
            selfheal::scenario::ControllerSpec::parse_short("selfheal").unwrap(),
        ),
    ];
    let mut own: Vec<String> = Vec::new();
    for r in &holdout_plan.runs {
        if !own.contains(&r.controller) {
            own.push(r.controller.clone());
        }
    }
    for c in own {
        contenders.push((
            c.clone(),
            selfheal::scenario::ControllerSpec::parse_short(&c).map_err(anyhow::Error::msg)?,
        ));
    }
    let mut held = Vec::new();
    for (label, spec) in &contenders {
        println!("held out: {label}");
        let records = run_under(
            &holdout_plan,
            label,
            spec,
            &out.join("holdout").join(label.replace(':', "-")),
        )?;
        let (v, cost) = mean_violation_and_cost(&records);
        held.push((label.clone(), tune::objective(&records, weight), v, cost));
    }
    let config = tune::controller_toml(&candidates[best].spec);
    std::fs::write(
        out.join("best-controller.toml"),
        format!(
            "# Chosen by `selfheal tune` on {} (cost weight {weight}); paste into a scenario file.\n{config}",
            train.display()
        ),
    )?;
    let mut md = format!(
        "# Tuning the selfheal scaler\n\nObjective: mean over runs of SLO-violation seconds + {weight} x replica-seconds (lower is better). Training suite `{}` ({} runs per candidate), held-out suite `{}` ({} runs per controller), same seeds for every contender.\n\n## Held out\n\n| controller | objective | SLO violation s | replica-seconds |\n|---|---|---|---|\n",
        train.display(),
        tune::with_controller(&train_plan, "x", &candidates[0].spec)
            .runs
            .len(),
        holdout.display(),
        tune::with_controller(&holdout_plan, "x", &candidates[0].spec)
            .runs
            .len()
    );
    for (l, o, v, c) in &held {
        md.push_str(&format!("| {l} | {o:.1} | {v:.1} | {c:.0} |\n"));
    }
    let (tuned, default) = (held[0].1, held[1].1);
    md.push_str(&format!(
        "\nThe tuned settings {} the defaults on the held-out suite: objective {tuned:.1} against {default:.1} ({:+.1} %).\n\nChosen: `{}`\n\n```toml\n{config}```\n\n## Search (training)\n\n| candidate | objective | SLO violation s | replica-seconds |\n|---|---|---|---|\n",
        if tuned < default { "beat" } else { "do not beat" },
        100.0 * (tuned - default) / default.abs().max(1e-9),
        candidates[best].label
    ));
    for (i, o, v, c) in &rows {
        md.push_str(&format!(
            "| {}{} | {o:.1} | {v:.1} | {c:.0} |\n",
            candidates[*i].label,
            if *i == best { " (best)" } else { "" }
        ));
    }
    std::fs::write(out.join("tune.md"), &md)?;
    print!("{md}");
    println!(
        "wrote {} and {} in {:.0} s",
        out.join("tune.md").display(),
        out.join("best-controller.toml").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn approve(
    policy: &std::path::Path,
    suite: &std::path::Path,
    baseline: &str,
    criteria: selfheal::sweep::approve::Criteria,
    out: &std::path::Path,
) -> anyhow::Result<bool> {
    use selfheal::sweep::{approve, plan};
    #[derive(serde::Deserialize)]
    struct PolicyFile {
        controller: selfheal::scenario::ControllerSpec,
    }
    let text = std::fs::read_to_string(policy)
        .with_context(|| format!("reading policy {}", policy.display()))?;
    let p: PolicyFile = toml::from_str(&text)
        .map_err(|e| selfheal::scenario::toml_error(&text, &policy.display().to_string(), &e))?;
    selfheal::scenario::check_controller(&p.controller)
        .map_err(|e| anyhow::anyhow!("{}: {e}", policy.display()))?;
    let base_spec =
        selfheal::scenario::ControllerSpec::parse_short(baseline).map_err(anyhow::Error::msg)?;
    let chaos = plan::load(suite)?;
    let (hash, canonical) = approve::policy_hash(&p.controller);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    println!(
        "approving policy {hash} against {baseline} on {}",
        suite.display()
    );
    let started = std::time::Instant::now();
    let pr = run_under(&chaos, "policy", &p.controller, &out.join("policy"))?;
    let br = run_under(&chaos, baseline, &base_spec, &out.join("baseline"))?;
    let (effects, pairs) = approve::judge(&pr, &br, criteria);
    let approved = effects.iter().all(|e| e.pass);
    let record = approve::Approval {
        policy_hash: hash,
        policy: canonical,
        baseline: baseline.to_string(),
        suite: suite.display().to_string(),
        pairs,
        criteria,
        effects,
        approved,
    };
    std::fs::write(out.join("approval.toml"), record.to_toml())?;
    let mut md = format!(
        "# Approval of `{}` against `{baseline}`\n\n{} paired runs of `{}`; verdict: **{}** (every fault type's 95 % interval of policy - baseline within its margin).\n\n| fault | metric | mean difference [95 % CI] | margin | pass |\n|---|---|---|---|---|\n",
        record.policy_hash,
        pairs,
        suite.display(),
        if approved { "approved" } else { "not approved" }
    );
    for e in &record.effects {
        md.push_str(&format!(
            "| {} | {} | {:+.1} [{:+.1}, {:+.1}] | {} | {} |\n",
            e.fault,
            e.metric,
            e.difference.mean,
            e.difference.lo,
            e.difference.hi,
            e.margin,
            if e.pass { "yes" } else { "no" }
        ));
    }
    std::fs::write(out.join("approval.md"), &md)?;
    print!("{md}");
    println!(
        "wrote {} in {:.0} s",
        out.join("approval.toml").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(approved)
}

/// Runs a suite's distinct runs under one controller as a resumable sweep
/// in `dir`.
fn run_under(
    plan: &selfheal::sweep::plan::Plan,
    label: &str,
    spec: &selfheal::scenario::ControllerSpec,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<selfheal::sweep::run::RunRecord>> {
    let p = selfheal::sweep::tune::with_controller(plan, label, spec);
    selfheal::sweep::run::execute(&p, dir, None, &progress::runs("runs"))
        .map_err(anyhow::Error::msg)
}

/// Mean SLO-violation seconds and replica-seconds of some runs.
fn mean_violation_and_cost(records: &[selfheal::sweep::run::RunRecord]) -> (f64, f64) {
    let n = records.len().max(1) as f64;
    let (v, c) = records.iter().fold((0.0, 0.0), |a, r| {
        (a.0 + r.slo_violation_s, a.1 + r.replica_seconds)
    });
    (v / n, c / n)
}
