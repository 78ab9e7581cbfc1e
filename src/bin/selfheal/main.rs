//! The `selfheal` command line.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

/// `println!` for the command's results: where the reader of stdout has
/// gone (`selfheal run ... | head`), the rest of the output is dropped
/// and the command goes on to write its files and exit as it would,
/// instead of panicking with a backtrace halfway.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args)
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        panic!("failed printing to stdout: {e}");
    }
}

/// `print!` as [`outln!`] is `println!`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

mod cli;
mod evals;
mod lab;
mod predictor;
mod progress;
mod twin;

use cli::{Cli, Cmd, EvalCmd, ImportCmd, ServeArgs, TwinCmd};

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", selfheal::error_chain(e.as_ref()));
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
                sc.spec
                    .use_controller(selfheal::scenario::ControllerSpec::parse_short(&c)?);
            }
            let started = std::time::Instant::now();
            let output = selfheal::sim::run(&sc)?;
            let wall = started.elapsed();
            out!("{}", output.summary_text());
            outln!(
                "wall time   {:.3} s ({:.1} M events/s)",
                wall.as_secs_f64(),
                output.summary.events as f64 / wall.as_secs_f64() / 1e6
            );
            if let Some(dir) = out {
                output
                    .write_dir(&dir)
                    .with_context(|| format!("writing results to {}", dir.display()))?;
                outln!("wrote       {}", dir.display());
            }
        }
        Cmd::Demo { suite, out } => lab::sweep(&suite, Some(out), None)?,
        Cmd::Suite {
            data,
            seeds,
            out,
            qos,
            no_tuning,
            score_training,
        } => lab::suite(&data, seeds, &out, qos, !no_tuning, score_training)?,
        Cmd::Serve(args) => serve(args)?,
        Cmd::LearnSelector {
            suite,
            train_seeds,
            out,
            report,
        } => lab::learn_selector(&suite, train_seeds, &out, &report)?,
        Cmd::Sweep { suite, out, shard } => lab::sweep(&suite, out, shard.as_deref())?,
        Cmd::Report { dir } => lab::report(&dir)?,
        Cmd::Tune {
            train,
            holdout,
            cost_weight,
            kind,
            candidates,
            seed,
            out,
        } => {
            let halving = selfheal::sweep::tune::Halving {
                candidates,
                seed,
                ..Default::default()
            };
            lab::tune(&train, &holdout, cost_weight, kind, &halving, &out)?
        }
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
            if !lab::approve(&policy, &suite, &baseline, criteria, &out)? {
                std::process::exit(3);
            }
        }
        Cmd::Merge { out, parts } => lab::merge(&out, &parts)?,
        Cmd::Calibrate {
            model,
            data,
            false_alarms,
        } => predictor::calibrate(&model, &data, false_alarms)?,
        Cmd::ExportFused { model } => {
            let path = selfheal::train::store::export_fused(&model)?;
            outln!("wrote {}", path.display());
        }
        Cmd::Validate {
            model,
            train_data,
            scenarios,
            out,
            runs,
            stride,
            leave_one_out_epochs,
            recorded,
            slo_latency_ms,
            intervals,
            episodes_per_day,
        } => predictor::validate(&predictor::ValidateArgs {
            model: &model,
            train_data: &train_data,
            scenarios: &scenarios,
            out: &out,
            runs,
            stride,
            leave_one_out_epochs,
            recorded: recorded.as_deref(),
            slo_latency_ms,
            intervals: &intervals,
            episodes_per_day,
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
            with_recorded,
            out,
            epochs,
            seed,
            stride,
            samples_per_epoch,
            features,
            inputs,
            slo_latency_ms,
        } => {
            use selfheal::control::predictor::normalise::Inputs;
            anyhow::ensure!(
                slo_latency_ms.is_none() || from_recorded.is_some() || !with_recorded.is_empty(),
                "--slo-latency-ms is the recordings' objective: give --from-recorded or --with-recorded"
            );
            let inputs = if inputs == "relative" {
                anyhow::ensure!(features == 8, "--inputs relative needs all 8 features");
                Inputs::Relative
            } else {
                anyhow::ensure!(
                    with_recorded.is_empty(),
                    "--with-recorded needs --inputs relative (raw inputs are in one cluster's units)"
                );
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
                predictor::training_data(
                    &data,
                    (from_recorded.as_deref(), &with_recorded, slo_latency_ms),
                    inputs,
                )?,
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
        } => evals::eval_forecast(&data, &out, &horizons)?,
        Cmd::Predict {
            model,
            recorded,
            out,
            faults,
            budget,
            slo_latency_ms,
            forest_data,
        } => predictor::backtest(
            &model,
            &recorded,
            &out,
            (faults.as_deref(), budget),
            (slo_latency_ms, forest_data.as_deref()),
        )?,
        Cmd::Import {
            what: ImportCmd::Nezha { dir, out },
        } => predictor::import_nezha(&dir, &out)?,
        Cmd::Twin {
            what:
                TwinCmd::Build {
                    recording,
                    from_s,
                    to_s,
                    rounds,
                    out,
                },
        } => twin::build(&recording, from_s, to_s, rounds, &out)?,
        Cmd::Twin {
            what:
                TwinCmd::Fidelity {
                    scenario,
                    recording,
                    from_s,
                    to_s,
                    seeds,
                    out,
                },
        } => twin::fidelity(&scenario, &recording, from_s, to_s, seeds, &out)?,
        Cmd::Eval {
            what: EvalCmd::Nab { dir, out, grid },
        } => evals::eval_nab(&dir, &out, grid)?,
        Cmd::Eval {
            what:
                EvalCmd::Incidents {
                    dir,
                    out,
                    threshold,
                },
        } => evals::eval_incidents(&dir, &out, threshold)?,
        Cmd::Check { scenarios } => {
            let mut failed = 0;
            for path in &scenarios {
                match selfheal::scenario::load_file(path) {
                    Ok(sc) => outln!("ok      {} ({})", path.display(), sc.spec.name),
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
    if let Some(c) = controller {
        loaded
            .spec
            .use_controller(selfheal::scenario::ControllerSpec::parse_short(&c)?);
    }
    let served = selfheal::serve::Served::start(
        &loaded,
        &selfheal::serve::ServeOptions {
            addr,
            speed,
            namespace,
            clock: selfheal::serve::ServeClock::Wall,
            token,
            faults: if without_faults {
                selfheal::serve::ServedFaults::Held
            } else {
                selfheal::serve::ServedFaults::Scheduled
            },
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
    outln!(
        "serving {} ({} s simulated at {speed}x): metrics at http://{}/metrics, the Kubernetes API at http://{}; Ctrl-C stops",
        loaded.spec.name,
        loaded.spec.duration_s,
        served.addr,
        served.addr
    );
    if let Some(file) = kubeconfig {
        std::fs::write(&file, served.kubeconfig())
            .with_context(|| format!("writing {}", file.display()))?;
        outln!(
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
            outln!(
                "the scenario ended at {:.0} s; still serving its last state",
                t.as_secs_f64()
            );
            reported = true;
        }
    }
}
