//! The report page renders in a real browser: headless Chromium loads a
//! sweep's `index.html` from disk (no server), takes a screenshot, and
//! every image the page links exists, the headline's charts among them.
//!
//! Needs Debian's `chromium` package (`apt-get install chromium`). Without
//! it the test says so and passes, unless `SELFHEAL_REQUIRE_CHROMIUM=1`
//! (`.ci/run` installs the package and sets it).

mod common;

use std::process::Command;

use selfheal::sweep::{plan, report, run};

#[test]
fn the_demo_report_renders_in_headless_chromium() {
    if Command::new("chromium").arg("--version").output().is_err() {
        assert!(
            std::env::var("SELFHEAL_REQUIRE_CHROMIUM").is_err(),
            "SELFHEAL_REQUIRE_CHROMIUM is set but `chromium` does not run"
        );
        eprintln!("skipped: no `chromium` binary (install the `chromium` package)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("selfheal-render-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let p = plan::load(&common::repo().join("tests/suites/headline.toml")).unwrap();
    let records = run::execute(&p, &dir, None, &|_, _| {}).unwrap();
    report::write(&dir, &p.name, &p.description, &records).unwrap();
    let index = dir.join("index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    assert!(html.contains("What this shows"), "no headline");
    let images = report::linked_images(&html);
    for chart in ["charts/healing.png", "charts/hpa_curve.png"] {
        assert!(images.iter().any(|i| i == chart), "{chart} not linked");
    }
    for img in images {
        assert!(dir.join(&img).exists(), "missing {img}");
    }
    let shot = dir.join("screenshot.png");
    let profile = dir.join("chromium-profile");
    let status = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--window-size=1200,2400")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", index.display()))
        .status()
        .expect("chromium is installed (apt-get install chromium)");
    assert!(status.success());
    let png = std::fs::read(&shot).expect("a screenshot");
    // A PNG, and not a blank page: a rendered table and charts compress to
    // far more than an empty white canvas.
    assert_eq!(&png[1..4], b"PNG");
    assert!(png.len() > 50_000, "screenshot is only {} bytes", png.len());
}
