//! `selfheal eval ...`: the offline evaluations, written as reports.

use anyhow::Context;

pub fn eval_nab(dir: &std::path::Path, out: &std::path::Path, grid: bool) -> anyhow::Result<()> {
    let cfg = selfheal::control::anomaly::DetectorConfig::default();
    let evaluation = selfheal::eval::nab::evaluate(dir, &cfg)?;
    let (csv, md) = selfheal::eval::nab::render(dir, &cfg, &evaluation);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("nab.csv"), csv)?;
    std::fs::write(out.join("nab.md"), &md)?;
    out!("{md}");
    outln!("wrote {}", out.join("nab.md").display());
    if grid {
        let (rows, nested) = selfheal::eval::nab::settings_grid(
            dir,
            &cfg,
            &[0, 2, 3, 4, 5, 6, 8],
            &[300.0, 600.0, 900.0, 1_800.0],
        )?;
        let md = selfheal::eval::nab::render_grid(&rows, nested);
        std::fs::write(out.join("grid.md"), &md)?;
        out!("{md}");
        outln!("wrote {}", out.join("grid.md").display());
    }
    Ok(())
}

pub fn eval_incidents(
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
    out!("{md}");
    outln!("wrote {}", out.join("incidents.md").display());
    Ok(())
}

pub fn eval_forecast(
    data: &std::path::Path,
    out: &std::path::Path,
    horizons: &[usize],
) -> anyhow::Result<()> {
    use selfheal::eval::forecast;
    let series = forecast::benchmark_series(data)?;
    outln!(
        "evaluating {} series x {} horizons on {} threads",
        series.len(),
        horizons.len(),
        rayon::current_num_threads()
    );
    let scores = forecast::evaluate_all(&series, horizons, &Default::default());
    let (csv, md) = forecast::render(&scores);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("forecast.csv"), csv)?;
    std::fs::write(out.join("forecast.md"), &md)?;
    out!("{md}");
    outln!("wrote {}", out.join("forecast.md").display());
    Ok(())
}
