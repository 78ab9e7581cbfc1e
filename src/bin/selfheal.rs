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
    /// Parse and validate scenario files without running them.
    Check {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
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
