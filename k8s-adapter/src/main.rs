//! `selfheal-k8s`: run the control core against a live cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use selfheal_core::control::Command;
use selfheal_core::rng::{Stream, Subsystem};
use selfheal_k8s::api::{Executor, Outcome};
use selfheal_k8s::clock::Clock;
use selfheal_k8s::config::AdapterConfig;
use selfheal_k8s::{Adapter, Tick, actuate, safety};

#[derive(Parser)]
#[command(
    name = "selfheal-k8s",
    about = "selfheal's control core against a live Kubernetes cluster"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// How `run` and `replay` act.
#[derive(clap::Args)]
struct RunOpts {
    /// The adapter's configuration file.
    #[arg(long)]
    config: PathBuf,
    /// Send the commands. Without it every command is only logged.
    #[arg(long)]
    apply: bool,
    /// Stop after this many ticks (default: run until SIGTERM / Ctrl-C).
    #[arg(long)]
    ticks: Option<u64>,
    /// The ConfigMap whose `data.stop: "true"` stops all writes.
    #[arg(long, default_value = "selfheal-kill-switch")]
    kill_switch: String,
    /// The `selfheal approve` record of this configuration's
    /// [controller]; --apply refuses to start without a passing one.
    #[arg(long)]
    approval: Option<PathBuf>,
    /// Apply a policy that has no passing approval record.
    #[arg(long)]
    unapproved: bool,
    /// Scale Deployments that an HPA already scales.
    #[arg(long)]
    take_over_hpa: bool,
    /// At most this many commands sent per --write-window-s.
    #[arg(long, default_value_t = 6)]
    max_writes: usize,
    /// The window of --max-writes, in the cluster's seconds (a served
    /// simulation's seconds under --time-scale, as every other time).
    #[arg(long, default_value_t = 600.0)]
    write_window_s: f64,
    /// With --apply, act only while holding this Lease (one active
    /// instance at a time).
    #[arg(long, default_value = "selfheal-k8s")]
    lease: String,
    /// Core seconds per wall second, over the configuration's `time_scale`:
    /// the speed-up of a `selfheal serve --speed S` the adapter acts on.
    #[arg(long)]
    time_scale: Option<f64>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Observe from Prometheus, decide, and act through the Kubernetes API
    /// (dry-run unless --apply).
    Run {
        #[command(flatten)]
        opts: RunOpts,
    },
    /// Apply a scenario's fault schedule to the cluster while the control
    /// core heals (as `run` does), measure the scenario's steady-state
    /// hypothesis live from Prometheus, and write the verdict with the
    /// columns of a simulated run (verdict.toml, probes.csv, commands.csv).
    /// Pod kills go through the Kubernetes API; memory leaks, CPU stress
    /// and service latency through Chaos Mesh resources (Chaos Mesh, or
    /// `selfheal serve --without-faults`, must be there to act on them);
    /// other faults are reported as not replayed. Faults are written only
    /// with --apply.
    Replay {
        /// The scenario whose `[[fault]]` schedule and `[experiment]` to use.
        scenario: PathBuf,
        #[command(flatten)]
        opts: RunOpts,
        /// End after this many replay seconds (default: the scenario's
        /// duration).
        #[arg(long)]
        until_s: Option<f64>,
        #[arg(long, default_value = "replay")]
        out: PathBuf,
    },
    /// Keep a served simulation (`selfheal serve --without-faults
    /// --controller static`) in step with the cluster of KUBECONFIG, whose
    /// pods do no work of their own (a control plane with KWOK's fake
    /// nodes): copy the simulation's Deployments to the cluster, then carry
    /// each Deployment's replicas and image and each pod deletion into the
    /// simulation, and serve its metrics at --metrics-addr with every pod
    /// under the name of the cluster pod it follows. Point Prometheus at
    /// --metrics-addr and `replay` at the cluster. Runs until SIGTERM /
    /// Ctrl-C.
    Follow {
        /// A kubeconfig for the served simulation's API (`selfheal serve
        /// --kubeconfig F`).
        #[arg(long)]
        served_kubeconfig: PathBuf,
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Where to serve the renamed metrics.
        #[arg(long, default_value = "127.0.0.1:9465")]
        metrics_addr: String,
        /// Wall seconds between rounds.
        #[arg(long, default_value_t = 0.25)]
        interval_s: f64,
    },
    /// Read the last --duration-s of every service's metrics back from
    /// Prometheus and write them to --out: `<service>-load.csv` (a trace a
    /// scenario's `trace` curve replays) and `<service>-metrics.csv`.
    Record {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 3600.0)]
        duration_s: f64,
        #[arg(long, default_value = "recorded")]
        out: PathBuf,
    },
}

fn log(line: &str) {
    eprintln!("{:.3} {line}", Clock::wall_now());
}

/// Seconds to wait after `failures` failures in a row: `base` doubled per
/// failure (at most 6 times), capped at `cap`, with jitter of up to half so
/// that several instances do not retry in step.
fn backoff(base: f64, cap: f64, failures: u32, jitter: &mut Stream) -> f64 {
    (base * 2f64.powi(failures.min(6) as i32)).min(cap) * (0.5 + 0.5 * jitter.uniform())
}

fn describe(c: &Command) -> String {
    format!("{c:?}")
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", selfheal_core::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Record {
            config,
            duration_s,
            out,
        } => record(&config, duration_s, &out).await,
        Cmd::Run { opts } => run_loop(opts, None).await,
        Cmd::Follow {
            served_kubeconfig,
            namespace,
            metrics_addr,
            interval_s,
        } => follow(&served_kubeconfig, &namespace, &metrics_addr, interval_s).await,
        Cmd::Replay {
            scenario,
            opts,
            until_s,
            out,
        } => {
            let loaded = selfheal_core::scenario::load_file(&scenario)?;
            run_loop(opts, Some((loaded.spec, until_s, out))).await
        }
    }
}

async fn follow(
    served_kubeconfig: &std::path::Path,
    namespace: &str,
    metrics_addr: &str,
    interval_s: f64,
) -> Result<()> {
    use selfheal_k8s::follow::{Follower, serve_metrics};
    let kubeconfig = kube::config::Kubeconfig::read_from(served_kubeconfig)
        .with_context(|| format!("reading {}", served_kubeconfig.display()))?;
    let served_cfg = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("{}", served_kubeconfig.display()))?;
    let source = format!(
        "{}/metrics",
        served_cfg.cluster_url.to_string().trim_end_matches('/')
    );
    let served = kube::Client::try_from(served_cfg)?;
    let cluster = kube::Client::try_default()
        .await
        .context("the cluster's credentials (KUBECONFIG or in-cluster)")?;
    let (follower, created) = Follower::copy_deployments(cluster, served, namespace).await?;
    log(&format!(
        "following Deployments {:?} (created on the cluster: {created:?})",
        follower.deployments
    ));
    let listener = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .with_context(|| format!("listening on {metrics_addr}"))?;
    log(&format!(
        "metrics of {source} at http://{}/metrics under the cluster's pod names",
        listener.local_addr()?
    ));
    tokio::spawn(serve_metrics(listener, source, follower.pairs.clone()));
    let period = Duration::from_secs_f64(interval_s.max(0.01));
    loop {
        match follower.sync().await {
            Ok(done) if done.is_empty() => {}
            Ok(done) => log(&format!("followed: {done:?}")),
            Err(e) => log(&format!("follow round failed: {e}")),
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn record(config: &std::path::Path, duration_s: f64, out: &std::path::Path) -> Result<()> {
    // The pods' CPU over the request rate's window: a twin divides one by
    // the other, and a shorter CPU window would lead the rate through every
    // change of load.
    let cfg = AdapterConfig {
        cpu_window_s: None,
        ..AdapterConfig::load(config)?
    };
    let prom = selfheal_k8s::prom::Prometheus::connect(
        &cfg.prometheus,
        &cfg.prometheus_http,
        Duration::from_secs(30),
    )?;
    let now = Clock::wall_now();
    let clock = Clock {
        origin: now - duration_s,
        time_scale: 1.0,
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut edges = Vec::new();
    for svc in &cfg.services {
        let scrapes =
            selfheal_k8s::observe::history(&prom, &cfg, svc, now - duration_s, now, &clock).await?;
        let write = |name: String, body: String| {
            let path = out.join(name);
            std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))
        };
        write(
            format!("{}-load.csv", svc.name),
            selfheal_k8s::record::load_trace_csv(&scrapes),
        )?;
        write(
            format!("{}-metrics.csv", svc.name),
            selfheal_core::metrics::metrics_csv(
                scrapes.iter().map(|s| (svc.name.as_str(), &s.metrics)),
            ),
        )?;
        write(
            format!("{}-sli.csv", svc.name),
            selfheal_k8s::record::sli_csv(&scrapes),
        )?;
        log(&format!(
            "{}: {} scrapes -> {}",
            svc.name,
            scrapes.len(),
            out.display()
        ));
        edges.extend(
            selfheal_k8s::observe::edge_history(&prom, &cfg, svc, now - duration_s, now, &clock)
                .await?,
        );
    }
    let path = out.join("edges.csv");
    let mut csv = format!("{}\n", selfheal_core::metrics::EDGES_CSV_HEADER);
    for row in &edges {
        csv.push_str(row);
        csv.push('\n');
    }
    std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    log(&format!(
        "{} call-edge scrapes -> {}",
        edges.len(),
        path.display()
    ));
    // The cluster's shape for `selfheal twin build`: the configured
    // services' Deployments as the API lists them.
    match kube::Client::try_default().await {
        Err(e) => log(&format!(
            "no Kubernetes credentials ({e}): deployments.json not written; the twin takes replicas from the metrics and the scenario defaults for resources"
        )),
        Ok(client) => {
            use k8s_openapi::api::apps::v1::Deployment;
            let api: kube::Api<Deployment> = kube::Api::namespaced(client, &cfg.namespace);
            let listed = api
                .list(&Default::default())
                .await
                .with_context(|| format!("listing Deployments in {}", cfg.namespace))?;
            let items: Vec<serde_json::Value> = listed
                .items
                .iter()
                .filter_map(|d| {
                    let name = d.metadata.name.as_deref()?;
                    let svc = cfg.services.iter().find(|s| s.deployment() == name)?;
                    let mut v = serde_json::to_value(d).ok()?;
                    // The twin names services as the configuration does.
                    v["metadata"]["name"] = svc.name.clone().into();
                    Some(v)
                })
                .collect();
            let path = out.join("deployments.json");
            let body = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            std::fs::write(&path, serde_json::to_string_pretty(&body)?)
                .with_context(|| format!("writing {}", path.display()))?;
            log(&format!(
                "{} Deployments -> {}",
                items.len(),
                path.display()
            ));
        }
    }
    Ok(())
}

/// A replay's scenario, its end (replay seconds) and its output folder.
type ReplayArgs = (selfheal_core::scenario::Scenario, Option<f64>, PathBuf);

async fn run_loop(opts: RunOpts, replay_args: Option<ReplayArgs>) -> Result<()> {
    let RunOpts {
        config,
        apply,
        ticks,
        kill_switch,
        approval,
        unapproved,
        take_over_hpa,
        max_writes,
        write_window_s,
        lease,
        time_scale,
    } = opts;
    let mut cfg = AdapterConfig::load(&config)?;
    if let Some(s) = time_scale {
        anyhow::ensure!(
            s.is_finite() && s > 0.0,
            "--time-scale must be positive, got {s}"
        );
        cfg.time_scale = s;
    }
    if apply {
        match (&approval, unapproved) {
            (Some(file), _) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let hash =
                    safety::check_approval(&text, &file.display().to_string(), &cfg.controller)?;
                log(&format!("policy {hash} approved by {}", file.display()));
            }
            (None, true) => {
                log("WARNING: applying a policy without an approval record (--unapproved)")
            }
            (None, false) => anyhow::bail!(
                "--apply needs --approval <record from `selfheal approve`> for this [controller] (or --unapproved)"
            ),
        }
    }
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes credentials (KUBECONFIG or in-cluster)")?;
    // Pods, Deployments and ReplicaSets through watches (one list, then
    // the change stream): the pod and replica state of every observation.
    let state = selfheal_k8s::watch::ClusterState::watch(client.clone(), &cfg.namespace, log);
    match tokio::time::timeout(Duration::from_secs(30), state.ready()).await {
        Ok(Ok(())) => log(&format!(
            "watching pods, deployments and replica sets in {}",
            cfg.namespace
        )),
        Ok(Err(e)) => anyhow::bail!("the watches stopped: {e}"),
        Err(_) => log("the watches have not listed yet (no action until they have)"),
    }
    let executor = Executor {
        client,
        namespace: cfg.namespace.clone(),
        services: cfg.services.clone(),
        apply,
        kill_switch,
    };
    // Started while the API is unreachable, keep trying (with back-off and
    // jitter, saying so) instead of exiting: a controller that starts with
    // its cluster's control plane must outlast it.
    let mut jitter = Stream::new(cfg.seed, Subsystem::Control);
    let owned = if take_over_hpa {
        Default::default()
    } else {
        let mut attempt = 0u32;
        loop {
            match executor.hpa_owned().await {
                Ok(owned) => {
                    if attempt > 0 {
                        log("Kubernetes API: back");
                    }
                    break owned;
                }
                Err(e) => {
                    attempt += 1;
                    let wait = backoff(1.0, 60.0, attempt, &mut jitter);
                    log(&format!(
                        "Kubernetes API: cannot list HorizontalPodAutoscalers ({e}); retrying in {wait:.1} s"
                    ));
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
                        _ = shutdown() => {
                            log("shutting down");
                            return Ok(());
                        }
                    }
                }
            }
        }
    };
    if !owned.is_empty() {
        log(&format!("left to their HPA (no scaling): {owned:?}"));
    }
    let mut writes = safety::RateLimit::new(max_writes, cfg.wall(write_window_s));
    let interval = cfg.wall(cfg.interval_s);
    let mut adapter = Adapter::new(cfg, Clock::wall_now())?.with_cluster_state(state);
    log(&format!(
        "controller {} every {:.1} s (its period, at least the scrape interval), {}",
        adapter.controller_name(),
        adapter.period_s(),
        if apply {
            "APPLYING commands"
        } else {
            "dry-run (pass --apply to act)"
        }
    ));
    match adapter.backfill(Clock::wall_now()).await {
        Ok(n) => log(&format!(
            "history read back from Prometheus (scrapes per service): {n:?}"
        )),
        Err(e) => log(&format!(
            "no history ({e}); the models fill their windows live"
        )),
    }
    let mut replay = match replay_args {
        Some((scenario, until_s, out)) => Some(
            selfheal_k8s::replay::Live::start(&scenario, until_s, out, &adapter, &executor, log)
                .await?,
        ),
        None => None,
    };
    let mut failures = 0u32;
    let mut isolations = actuate::IsolationHolds::default();
    // Whether this instance, since it last became the active one, has
    // taken over the isolations found on the Services (made by an earlier
    // run, or by the instance it replaces).
    let mut adopted = false;
    let me = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "selfheal-k8s".into()),
        std::process::id()
    );
    // The Lease lasts three ticks: a stopped holder is replaced within them.
    let lease_s = (3.0 * adapter.period_s()).ceil().max(1.0) as u32;
    let mut n = 0u64;
    // The loop ticks when the core asks to be woken (or after a backoff); a
    // replay's faults and probes keep their own schedule in between, so a
    // backoff after failed observations never skips the experiment's probes.
    let mut next_tick = Clock::wall_now();
    adapter.start(next_tick);
    loop {
        let now = Clock::wall_now();
        if let Some(r) = replay.as_mut() {
            r.inject_due(now, &adapter, &executor).await;
        }
        if now >= next_tick {
            let leader = match apply {
                true => executor.hold_lease(&lease, &me, now, lease_s).await,
                false => Ok(()),
            };
            // Isolations whose hold is over are lifted first (by the holder).
            let due = match leader {
                Ok(()) => {
                    if !adopted {
                        match executor.isolations().await {
                            Ok(found) => {
                                if !found.is_empty() {
                                    log(&format!("isolations found on the Services: {found:?}"));
                                }
                                isolations.adopt(found, now);
                                adopted = true;
                            }
                            Err(e) => log(&format!("could not read the Services' isolations: {e}")),
                        }
                    }
                    isolations.take_due(now)
                }
                Err(_) => {
                    adopted = false;
                    Vec::new()
                }
            };
            for service in due {
                let w = actuate::end_isolation(&adapter.cfg.namespace, &service);
                let unsent = match executor.send_write(&w).await {
                    Ok(Outcome::Stopped) => "the kill switch is on".to_string(),
                    Ok(o) => {
                        log(&format!("isolation ended: {o:?}"));
                        continue;
                    }
                    Err(e) => e.to_string(),
                };
                // Dropped, an unsent end would leave the Service without
                // endpoints: it is tried again a minute of the cluster's
                // time later.
                log(&format!(
                    "the isolation of {service} stays ({unsent}); trying again in a minute"
                ));
                isolations.isolate(&service, now + adapter.cfg.wall(60.0));
            }
            let tick = match leader {
                Ok(()) => adapter.tick(now).await,
                Err(why) => Tick::Skipped(format!("not the active instance: {why}")),
            };
            let wait = match tick {
                Tick::Skipped(why) => {
                    // No observation, no decision: back off with jitter,
                    // for at most a minute of the cluster's time (a served
                    // simulation's minute passes `time_scale` times faster).
                    failures += 1;
                    let wait = backoff(interval, adapter.cfg.wall(60.0), failures, &mut jitter);
                    log(&format!("no action: {why}; retrying in {wait:.1} s"));
                    wait
                }
                Tick::Decided(commands) => {
                    failures = 0;
                    for (_, e) in &adapter.events {
                        log(&format!("healing: {e:?}"));
                    }
                    for a in &adapter.alarms {
                        let how = if a.past_limit {
                            "at its hard limit".to_owned()
                        } else {
                            format!("at {:.1} spreads above its recent range", a.score)
                        };
                        log(&format!(
                            "departure: {} {} {how} (an alarm; no action)",
                            a.service, a.metric
                        ));
                    }
                    for c in &commands {
                        if let Some(r) = replay.as_mut() {
                            r.decided(now, &adapter, c);
                        }
                        if safety::fights_hpa(c, |s| adapter.cfg.deployment_of(s), &owned) {
                            log(&format!("left to the HPA: {}", describe(c)));
                            continue;
                        }
                        if apply && !writes.try_take(now) {
                            log(&format!(
                                "write rate limit ({max_writes} per {write_window_s} s): not sending {}",
                                describe(c)
                            ));
                            continue;
                        }
                        match executor.execute(c).await {
                            Ok(Outcome::WouldSend(w)) => {
                                log(&format!("dry-run: {} -> {w:?}", describe(c)))
                            }
                            Ok(Outcome::Sent(w)) => {
                                log(&format!("sent: {} -> {w:?}", describe(c)));
                                if let Command::Isolate { service, hold, .. } = c {
                                    let until = now + adapter.cfg.wall(hold.as_secs_f64());
                                    isolations.isolate(service, until);
                                    let keep = actuate::isolation_end_at(
                                        &adapter.cfg.namespace,
                                        service,
                                        until,
                                    );
                                    if let Err(e) = executor.send_write(&keep).await {
                                        log(&format!(
                                            "could not keep the isolation's end on the Service: {e}"
                                        ));
                                    }
                                }
                            }
                            Ok(Outcome::Stopped) => {
                                log(&format!("kill switch on: not sending {}", describe(c)))
                            }
                            Err(e) => log(&format!("{}: {e}", describe(c))),
                        }
                    }
                    // The next observation when the core asks for it, as the
                    // simulator schedules its control ticks.
                    adapter.wait_s(Clock::wall_now())
                }
            };
            next_tick = Clock::wall_now() + wait;
            n += 1;
        }
        if let Some(r) = replay.as_mut() {
            r.probe_if_due(Clock::wall_now(), &adapter).await;
            if r.done(Clock::wall_now(), &adapter) {
                return Ok(r.finish(Clock::wall_now(), &adapter).await?);
            }
        }
        if ticks.is_some_and(|t| n >= t) {
            return Ok(());
        }
        let now = Clock::wall_now();
        let wait = replay
            .as_ref()
            .map_or(next_tick - now, |r| {
                (next_tick - now).min(r.wall_until_next(now, &adapter))
            })
            .max(0.0);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
            _ = shutdown() => {
                log("shutting down");
                if let Some(r) = replay.as_mut() {
                    return Ok(r.finish(Clock::wall_now(), &adapter).await?);
                }
                return Ok(());
            }
        }
    }
}

/// SIGTERM (a pod being stopped) or Ctrl-C.
async fn shutdown() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler installs");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
