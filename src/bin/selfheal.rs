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
        } => {
            let mut sc = selfheal::scenario::load_file(&scenario)?;
            if let Some(seed) = seed {
                sc.spec.seed = seed;
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
