//! `selfheal twin build` and `selfheal twin fidelity`.

use std::path::Path;

use anyhow::Context;
use selfheal::twin::{self, Recording, TwinOptions};

fn write(path: &Path, body: &str) -> anyhow::Result<()> {
    std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))
}

pub fn build(
    recording: &Path,
    from_s: Option<f64>,
    to_s: Option<f64>,
    rounds: u32,
    out: &Path,
) -> anyhow::Result<()> {
    let rec = Recording::read(recording)?;
    let name = recording
        .file_name()
        .and_then(|n| n.to_str())
        .map_or("twin".to_owned(), |n| format!("twin-{n}"));
    let t = twin::build(
        &rec,
        &TwinOptions {
            from_s,
            to_s,
            calibration_rounds: rounds,
            name,
            ..TwinOptions::default()
        },
    )?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (file, trace) in &t.traces {
        let mut csv = String::from("t_seconds,value\n");
        for (t, v) in trace.t.iter().zip(&trace.value) {
            csv.push_str(&format!("{t},{v}\n"));
        }
        write(&out.join(file), &csv)?;
    }
    let mut toml = format!(
        "# Built by `selfheal twin build` from {} ({}..{} s): see `selfheal::twin::build`\n# for where each number comes from.\n",
        recording.display(),
        t.window.0,
        t.window.1
    );
    toml.push_str(&toml::to_string(&t.scenario).context("writing the twin as TOML")?);
    let path = out.join("scenario.toml");
    write(&path, &toml)?;
    // The file must load back as it will be used.
    selfheal::scenario::load_file(&path)?;
    for (round, (p50, p99)) in t.calibration.iter().enumerate() {
        outln!(
            "calibration round {round}: median |p50 error| {:.1} %, |p99 error| {:.1} %",
            100.0 * p50,
            100.0 * p99
        );
    }
    outln!("wrote {}", path.display());
    Ok(())
}

pub fn fidelity(
    scenario: &Path,
    recording: &Path,
    from_s: Option<f64>,
    to_s: Option<f64>,
    seeds: u32,
    out: &Path,
) -> anyhow::Result<()> {
    let loaded = selfheal::scenario::load_file(scenario)?;
    let rec = Recording::read(recording)?;
    let (start, end) = rec.span();
    let from = from_s.unwrap_or(start + 0.5 * (end - start));
    let to = to_s.unwrap_or(end + 1e-6);
    let f = twin::check(&loaded.spec, &rec, from, to, seeds)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let md = twin::fidelity::render(&f, &format!("Fidelity of {}", scenario.display()));
    let path = out.join("fidelity.md");
    write(&path, &md)?;
    twin::fidelity::charts(out, &f)?;
    out!("{md}");
    outln!("wrote {} and a chart per service", path.display());
    Ok(())
}
