//! The `selfheal` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

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
        /// kpa[:concurrency] or selfheal.
        #[arg(long)]
        controller: Option<String>,
    },
    /// Run every scenario in a directory in parallel and write a report:
    /// one folder of tables per scenario, `summary.csv` and `index.md`.
    Demo {
        #[arg(long, default_value = "scenarios")]
        scenarios: PathBuf,
        #[arg(long, default_value = "reports/demo")]
        out: PathBuf,
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

#[derive(Subcommand)]
enum EvalCmd {
    /// Rolling-origin evaluation of the load forecast (MASE and 80 %
    /// interval coverage) against naive and seasonal-naive forecasts, on the
    /// real traces in DATA and on synthetic curves.
    Forecast {
        /// Directory with the `t_seconds,value` traces (nasa_http_1995_per_min.csv,
        /// wikipedia_en_hourly_2010_2015.csv, azure_fn2019_*.csv).
        #[arg(long, default_value = "../shared/data/traces")]
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
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
                let keep = (
                    sc.spec.controller.min_replicas,
                    sc.spec.controller.max_replicas,
                );
                sc.spec.controller = selfheal::scenario::ControllerSpec::parse_short(&c)
                    .map_err(anyhow::Error::msg)?;
                (
                    sc.spec.controller.min_replicas,
                    sc.spec.controller.max_replicas,
                ) = keep;
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
        Cmd::Demo { scenarios, out } => demo(&scenarios, &out)?,
        Cmd::Eval {
            what:
                EvalCmd::Forecast {
                    data,
                    out,
                    horizons,
                },
        } => eval_forecast(&data, &out, &horizons)?,
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

fn demo(dir: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    use rayon::prelude::*;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading scenario directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no scenario files (*.toml) in {}",
        dir.display()
    );
    let scenarios = files
        .iter()
        .map(|f| selfheal::scenario::load_file(f))
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "running {} scenarios from {} on {} threads",
        scenarios.len(),
        dir.display(),
        rayon::current_num_threads()
    );
    let started = std::time::Instant::now();
    let outputs = scenarios
        .par_iter()
        .map(selfheal::sim::run)
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut csv = String::from(
        "scenario,seed,requests,served,failed,slo_violation_s,latency_p50_ms,latency_p99_ms,replica_seconds,restarts,oom_kills,timeouts,rejections\n",
    );
    let mut index = format!(
        "# selfheal demo report\n\n{} scenarios from `{}`, static replica counts (no controller).\n\n",
        outputs.len(),
        dir.display()
    );
    index.push_str("| scenario | requests | failed | SLO violation (s) | p50 (ms) | p99 (ms) | replica-seconds | restarts | tables |\n|---|---|---|---|---|---|---|---|---|\n");
    for o in &outputs {
        let s = &o.summary;
        o.write_dir(&out.join(&s.scenario))
            .with_context(|| format!("writing {}", out.join(&s.scenario).display()))?;
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            s.scenario,
            s.seed,
            s.requests,
            s.served,
            s.failed,
            s.slo_violation_s,
            s.latency_p50_ms,
            s.latency_p99_ms,
            s.replica_seconds,
            s.restarts,
            s.oom_kills,
            s.timeouts,
            s.rejections
        ));
        index.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {} | [{}/]({}/) |\n",
            s.scenario,
            s.requests,
            s.failed,
            s.slo_violation_s,
            s.latency_p50_ms,
            s.latency_p99_ms,
            s.replica_seconds,
            s.restarts,
            s.scenario,
            s.scenario
        ));
    }
    std::fs::write(out.join("summary.csv"), csv)?;
    std::fs::write(out.join("index.md"), index)?;
    println!(
        "{:<20} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "scenario", "requests", "failed", "SLO-viol", "p99 ms", "restarts"
    );
    for o in &outputs {
        let s = &o.summary;
        println!(
            "{:<20} {:>10} {:>9} {:>9} {:>9.1} {:>9}",
            s.scenario, s.requests, s.failed, s.slo_violation_s, s.latency_p99_ms, s.restarts
        );
    }
    println!(
        "wrote {} in {:.1} s",
        out.join("index.md").display(),
        started.elapsed().as_secs_f64()
    );
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
