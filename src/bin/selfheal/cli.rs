//! The `selfheal` command line's arguments (clap): what each subcommand
//! takes, with its help text and defaults.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "selfheal",
    version,
    about = "Self-healing control plane for microservices, and its simulator"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
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
        /// kpa[:concurrency], kpa:rps[:per-second], selfheal (sizing for
        /// the scenario's SLO) or selfheal:cpu (for the CPU target), each
        /// optionally with +argo and +heal.
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
        /// What to tune: the selfheal scaler's settings, or the
        /// Kubernetes HPA's CPU target and behavior (also writes hpa.yaml,
        /// an autoscaling/v2 HorizontalPodAutoscaler per Deployment).
        #[arg(long, value_enum, default_value_t = Tunable::Selfheal)]
        kind: Tunable,
        /// Points of the search space to start successive halving from
        /// (the defaults are scored beside them).
        #[arg(long, default_value_t = 26)]
        candidates: usize,
        /// Seeds the points and the order training runs are spent in.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "reports/tune")]
        out: PathBuf,
    },
    /// Judge a policy (a file with a `[controller]` table, such as `tune`
    /// writes) against a baseline over a chaos suite with paired seeds, and
    /// write an approval record. Exits with status 3 when not approved.
    Approve {
        policy: PathBuf,
        suite: PathBuf,
        /// The controller to beat (static, hpa[:cpu%], kpa[:c], kpa:rps, selfheal).
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
        /// Score the untuned controllers on the training families instead
        /// of the held-out ones: for working on a controller without
        /// looking at the families that judge it (implies --no-tuning).
        #[arg(long)]
        score_training: bool,
    },
    /// Run a scenario against the wall clock (SPEED times faster) and serve
    /// it as a cluster: its metrics at http://ADDR/metrics in the Prometheus
    /// text format, with the names the live adapter's default queries read
    /// (counters divided by SPEED so PromQL rates read simulated rates), and
    /// its Deployments, ReplicaSets, Pods, Services, ConfigMaps, Nodes,
    /// Namespace and Events through a subset of the Kubernetes API at
    /// http://ADDR for kubectl and the live adapter, every write acting on
    /// the simulation.
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
        /// Directory the generated scenarios' paths are relative to (the
        /// trace-replay loads read `../datasets/traces/` from it).
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
        /// Also train on the recordings in this directory (any scrape
        /// interval), beside the traces of --data: each held onto the
        /// traces' time base, its latencies against its own SLO latency
        /// (needs `--inputs relative`). Repeat for several directories.
        #[arg(long, conflicts_with = "from_recorded")]
        with_recorded: Vec<PathBuf>,
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
        /// The recordings' SLO latency (ms) for every service, which their
        /// health labels and relative inputs read; by default three times
        /// each service's median p99.
        #[arg(long, value_parser = positive_ms)]
        slo_latency_ms: Option<f64>,
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
    /// Write a trained predictor's `fused.json` (the weights the control
    /// core and the live adapter run, read without burn) from its
    /// `model.bpk`. Training writes it; a model saved before needs this once.
    ExportFused {
        #[arg(long, default_value = "models/predictor")]
        model: PathBuf,
    },
    /// Validate the failure predictor on held-out traces (other seeds, loads
    /// from a real trace, optionally each fault family left out of
    /// training) next to persistence, static thresholds, the pattern rules,
    /// a forest and the departure score, at equal false-alarm rates.
    Validate {
        #[arg(long, default_value = "models/predictor")]
        model: PathBuf,
        /// The training traces (for the forest baseline).
        #[arg(long, default_value = "data/traces.parquet")]
        train_data: PathBuf,
        /// Directory the generated scenarios' paths are relative to.
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
        /// Those recordings' SLO latency (ms) for every service; by default
        /// three times each service's median p99.
        #[arg(long, requires = "recorded", value_parser = positive_ms)]
        slo_latency_ms: Option<f64>,
        /// Scrape intervals (s) of the same held-out runs compared at one
        /// false-alarm episode budget per service-day.
        #[arg(long, value_delimiter = ',', default_value = "5,15,30,60")]
        intervals: Vec<f64>,
        /// That budget: false alarm episodes per service per day.
        #[arg(long, default_value_t = 1.0)]
        episodes_per_day: f64,
    },
    /// Backtest the failure predictor on a recording of any cluster
    /// (`<service>-metrics.csv`, optional `<service>-sli.csv`, any scrape
    /// interval; README, "Bring your own metrics"): per scrape and service
    /// the prediction, anomaly, departure and static thresholds' scores to OUT (CSV);
    /// with `--faults`, each detector's faults newly warned within 5
    /// minutes, false alarm episodes per service-hour and ROC-AUC.
    Predict {
        /// The predictor. The default reads inputs that transfer across
        /// clusters and was trained on a real cluster's day besides
        /// synthetic traces; `models/predictor` is the simulator's.
        #[arg(long, default_value = "models/predictor-relative-nezha")]
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
        #[arg(long, value_parser = positive_ms)]
        slo_latency_ms: Option<f64>,
        /// Also score a random forest fitted on these training traces (as
        /// `validate` fits its baseline) on the window the network reads.
        #[arg(long)]
        forest_data: Option<PathBuf>,
    },
    /// Convert another layout into the recording format `selfheal predict`
    /// and `train --from-recorded` read.
    Import {
        #[command(subcommand)]
        what: ImportCmd,
    },
    /// A twin of a cluster from its recorded metrics, and its fidelity.
    Twin {
        #[command(subcommand)]
        what: TwinCmd,
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
pub struct ServeArgs {
    pub scenario: PathBuf,
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Where to listen. Beyond loopback, set --token-file too.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub addr: String,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Override the scenario's controller (short form: hpa:70+heal ...);
    /// `static` leaves the replicas to whoever writes through the API.
    #[arg(long)]
    pub controller: Option<String>,
    /// Write a kubeconfig for the served API here (for KUBECONFIG=...).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Serve the scenario without its experiment and hold its faults for
    /// `selfheal-k8s replay` to inject through the API (Chaos Mesh
    /// resources; a bad deploy by setting its Deployment's image to
    /// selfheal.local/<service>:fault-<index>).
    #[arg(long)]
    pub without_faults: bool,
    /// A file holding a bearer token that every request but a /metrics
    /// scrape must carry (the kubeconfig written carries it too).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum TwinCmd {
    /// Builds a scenario from a recording (`<service>-metrics.csv`, and
    /// `edges.csv`, `deployments.json` where the source has them) and
    /// writes it with its load traces into OUT.
    Build {
        /// The recording's directory.
        recording: PathBuf,
        /// The stretch to build from, in the recording's seconds (default:
        /// the first half of the recording).
        #[arg(long)]
        from_s: Option<f64>,
        #[arg(long)]
        to_s: Option<f64>,
        /// Simulate-and-adjust rounds for the latency fit.
        #[arg(long, default_value_t = 4)]
        rounds: u32,
        #[arg(long, default_value = "twin")]
        out: PathBuf,
    },
    /// Replays a stretch of the recording through a twin and reports per
    /// service the error of CPU, request rate, p50, p99 and error rate,
    /// with a chart per service.
    Fidelity {
        /// The twin's scenario (from `selfheal twin build`).
        scenario: PathBuf,
        /// The recording's directory.
        recording: PathBuf,
        /// The held-out stretch (default: the second half of the recording).
        #[arg(long)]
        from_s: Option<f64>,
        #[arg(long)]
        to_s: Option<f64>,
        /// Runs of the twin (the scenario's seed and the next ones) whose
        /// mean per scrape is compared; 1 compares a single run.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
        seeds: u32,
        #[arg(long, default_value = "reports/twin")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ImportCmd {
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
pub enum EvalCmd {
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
        /// Also score the transition model's settings (levels 0, 2-8, lags
        /// 5-30 min) and the nested leave-one-file-out estimate of
        /// choosing among them (`grid.md`; about 30 s).
        #[arg(long)]
        grid: bool,
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

/// What `selfheal tune` searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Tunable {
    Selfheal,
    Hpa,
}

/// A latency in milliseconds: finite and above zero.
fn positive_ms(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms > 0.0 => Ok(ms),
        _ => Err(format!("`{s}` is not a latency in milliseconds above zero")),
    }
}
