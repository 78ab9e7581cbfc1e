//! The self-healing orchestrator, as the seed's `SelfHealingOrchestrator`:
//! from a prediction to a healing action, with verification, escalation,
//! outcome-based estimates and guardrails. Sans-IO: it is handed
//! predictions (or observations, through the predictor) and the current
//! time, and returns commands and events.
//!
//! Strategy selection starts from the seed's rules (memory leak -> restart,
//! resource exhaustion -> scale, cascading or dependency failure -> isolate,
//! critical -> fail over, error rate above 50 % -> roll back, else
//! reconfigure). A strategy the driver cannot carry out (one left out of
//! `OrchestratorConfig::supported`, or one with no target: isolate without
//! a route, fail over without a backup, roll back on the first revision)
//! escalates at once to the next one in its chain, so the orchestrator never
//! claims an action it did not take. A learned selector (`selector.rs`),
//! when one is set, may replace the rules' first strategy for an incident;
//! escalation always follows the chain.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::predictor::patterns::FailureType;
use super::predictor::{Health, Prediction};
use super::selector::{SelectorConfig, Situation, StrategyForest};
use super::{Command, HEALING_REASON, PodPhase, ServiceView};
use crate::time::{Span, Time};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Restart,
    Scale,
    Rollback,
    Reconfigure,
    Isolate,
    Failover,
}

impl Strategy {
    pub const ALL: [Strategy; 6] = [
        Strategy::Restart,
        Strategy::Scale,
        Strategy::Rollback,
        Strategy::Reconfigure,
        Strategy::Isolate,
        Strategy::Failover,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Restart => "restart",
            Strategy::Scale => "scale",
            Strategy::Rollback => "rollback",
            Strategy::Reconfigure => "reconfigure",
            Strategy::Isolate => "isolate",
            Strategy::Failover => "failover",
        }
    }
    /// What to try when this did not help.
    pub fn escalation(self) -> Option<Strategy> {
        match self {
            Strategy::Reconfigure | Strategy::Scale => Some(Strategy::Restart),
            Strategy::Restart => Some(Strategy::Rollback),
            Strategy::Isolate | Strategy::Rollback => Some(Strategy::Failover),
            Strategy::Failover => None,
        }
    }
    /// Recovery time assumed before any outcome is recorded (the prior).
    pub fn prior_recovery(self) -> Span {
        Span::from_secs(match self {
            Strategy::Restart => 90,
            Strategy::Scale => 60,
            Strategy::Rollback => 180,
            Strategy::Reconfigure => 60,
            Strategy::Isolate => 30,
            Strategy::Failover => 60,
        })
    }
}

/// The seed's rules, after one of ours: degradation soon after a rollout
/// (a revision this orchestrator did not make itself) is rolled back first,
/// as Argo Rollouts would.
///
/// A dependency whose calls show the symptom (`dependency_degraded`) is
/// treated like the dependency-failure pattern: isolate it where the caller
/// has a fallback, and otherwise escalate to failing it over.
pub fn rule_strategy(
    p: &Prediction,
    error_rate: f64,
    recent_deploy: bool,
    dependency_degraded: bool,
) -> Strategy {
    if recent_deploy {
        return Strategy::Rollback;
    }
    match p.failure_type {
        Some(FailureType::MemoryLeak) => Strategy::Restart,
        Some(FailureType::ResourceExhaustion) => Strategy::Scale,
        Some(FailureType::CascadingFailure) | Some(FailureType::DependencyFailure) => {
            Strategy::Isolate
        }
        _ if dependency_degraded => Strategy::Isolate,
        None if p.status == Health::Critical => Strategy::Failover,
        None if error_rate > 0.5 => Strategy::Rollback,
        None => Strategy::Reconfigure,
    }
}

/// 1 is the most urgent: critical, then unhealthy, degraded, and a warning
/// on a healthy argmax.
pub fn priority(status: Health) -> u8 {
    match status {
        Health::Critical => 1,
        Health::Unhealthy => 2,
        Health::Degraded => 3,
        Health::Healthy => 4,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    /// Record what would be done, command nothing.
    pub dry_run: bool,
    /// The kill switch: when false, nothing is decided at all.
    pub enabled: bool,
    /// Consecutive warnings on a service before acting (a flapping signal
    /// does not trigger).
    pub confirm: u32,
    /// Urgency from the predictor's time to failure: a warning whose
    /// breach is at most this many seconds away (0: already breached), with
    /// a symptom visible and a remedy the evidence names, is acted on at
    /// once, without waiting for `confirm` warnings.
    pub act_now_s: f64,
    /// A warning counts only with evidence beside the network's
    /// probability: a detected failure pattern, or a symptom that is
    /// already visible (error rate or p99 at these levels). The LSTM alone
    /// alarms about 6 times an hour on healthy services at its calibrated
    /// threshold; acting on that would be a false healing each time.
    pub require_evidence: bool,
    pub symptom_error_rate: f64,
    /// In ms; the builder sets it to the SLO latency.
    pub symptom_p99_ms: f64,
    /// A rollout younger than this is the first suspect.
    pub recent_deploy_s: f64,
    /// At most this many actions in any `rate_window_s`, cluster-wide.
    pub max_actions: usize,
    pub rate_window_s: f64,
    /// Quiet time per service after an action is verified.
    pub cooldown_s: f64,
    /// Never leave fewer ready pods than this.
    pub min_healthy_replicas: u32,
    /// A restart takes at most this fraction of the ready pods at once
    /// (the disruption budget), and at least one.
    pub max_unavailable_fraction: f64,
    /// Scale multiplies the desired replicas by this ...
    pub scale_factor: f64,
    /// ... up to this many.
    pub max_replicas: u32,
    /// How long a scale-up holds as a floor for the scaler.
    pub floor_ttl_s: f64,
    /// How long an isolation holds before traffic is let through again.
    pub isolate_hold_s: f64,
    /// Reconfigure multiplies the service's connection limit by this ...
    pub reconfigure_connections_factor: f64,
    /// ... and sets its callers' timeout to this, if given.
    pub reconfigure_timeout_ms: Option<f64>,
    /// A ready pod is stalled when its CPU over the last sample is below
    /// this fraction of its peers' median ...
    pub stall_cpu_fraction: f64,
    /// ... and hot at this multiple of their lower quartile or more ...
    pub hot_cpu_factor: f64,
    /// ... where that median (or quartile) is at least this many cores:
    /// the service has work to give. 0 turns both checks off.
    pub pod_min_cores: f64,
    /// A pod is judged only on a sample taken this long after it became
    /// ready (a sample that began before it served reads low).
    pub pod_settle_s: f64,
    /// Strategies the driver can carry out.
    pub supported: Vec<Strategy>,
    /// Beta prior of a strategy's success (successes, failures).
    pub prior_success: (f64, f64),
    /// Take this strategy first on every incident, whatever the rules or
    /// the selector say (escalation is unchanged): how the outcomes a
    /// selector learns from are recorded.
    pub first_strategy: Option<Strategy>,
    /// When a learned selector (`Orchestrator::set_selector`) may
    /// override the rules.
    pub selector: SelectorConfig,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        OrchestratorConfig {
            dry_run: false,
            enabled: true,
            confirm: 3,
            act_now_s: 30.0,
            require_evidence: true,
            symptom_error_rate: 0.01,
            symptom_p99_ms: 500.0,
            recent_deploy_s: 900.0,
            max_actions: 3,
            rate_window_s: 600.0,
            cooldown_s: 120.0,
            min_healthy_replicas: 1,
            max_unavailable_fraction: 0.25,
            scale_factor: 1.5,
            max_replicas: 20,
            floor_ttl_s: 600.0,
            isolate_hold_s: 120.0,
            reconfigure_connections_factor: 1.5,
            reconfigure_timeout_ms: None,
            stall_cpu_fraction: 0.1,
            hot_cpu_factor: 2.0,
            pod_min_cores: 0.05,
            pod_settle_s: 10.0,
            supported: Strategy::ALL.to_vec(),
            prior_success: (2.0, 1.0),
            first_strategy: None,
            selector: SelectorConfig::default(),
        }
    }
}

/// One healing action (the seed's `HealingAction`).
#[derive(Clone, Debug, PartialEq)]
pub struct HealingAction {
    pub strategy: Strategy,
    pub target: String,
    pub priority: u8,
    pub failure: Option<FailureType>,
    pub started: Time,
    pub estimated_recovery: Span,
    pub success_probability: f64,
    /// 0 for the first action on an incident, +1 per escalation.
    pub attempt: u32,
    pub reason: String,
    pub chosen_by: ChosenBy,
    /// The strategy first chosen for the incident (this one, or the one
    /// this escalated from), and the situation it was chosen in.
    pub first_choice: Strategy,
    pub situation: Situation,
}

/// Who picked a healing action's strategy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ChosenBy {
    Rules,
    /// The learned selector, overriding the rules' choice.
    Learned {
        vote: f64,
        rules: Strategy,
    },
    /// `OrchestratorConfig::first_strategy`.
    Forced,
    /// The previous strategy did not help, or could not act.
    Escalation,
}

/// A strategy about to be started, and why.
struct Decision {
    strategy: Strategy,
    attempt: u32,
    reason: String,
    by: ChosenBy,
    first_choice: Strategy,
    situation: Situation,
}

/// A recorded outcome, the data the estimates are made from.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub failure: Option<FailureType>,
    pub strategy: Strategy,
    pub success: bool,
    /// Seconds from the action to the verified recovery.
    pub recovery_s: Option<f64>,
}

/// What the orchestrator did or declined, for the record.
#[derive(Clone, Debug, PartialEq)]
pub enum HealingEvent {
    Started(HealingAction),
    /// Would have started, but dry-run is on.
    DryRun(HealingAction),
    Verified {
        target: String,
        strategy: Strategy,
        recovered: bool,
        at: Time,
    },
    Escalated {
        target: String,
        from: Strategy,
        to: Strategy,
    },
    /// The strategy has nothing to act on here (no route to take away, no
    /// standby, no earlier revision): it never started, so the chain moves
    /// on to `next` without calling that an escalation.
    Inapplicable {
        target: String,
        strategy: Strategy,
        next: Option<Strategy>,
    },
    /// A guardrail held the action back.
    Suppressed {
        target: String,
        strategy: Strategy,
        why: &'static str,
    },
    /// Nothing left to escalate to.
    GaveUp {
        target: String,
    },
}

/// Recorded outcomes with Beta / pseudo-count priors.
#[derive(Clone, Debug, Default)]
pub struct OutcomeBook {
    pub outcomes: Vec<Outcome>,
}

impl OutcomeBook {
    fn matching(&self, f: Option<FailureType>, s: Strategy) -> impl Iterator<Item = &Outcome> {
        self.outcomes
            .iter()
            .filter(move |o| o.failure == f && o.strategy == s)
    }

    /// Posterior mean of the success probability under a Beta prior.
    pub fn success_probability(
        &self,
        f: Option<FailureType>,
        s: Strategy,
        prior: (f64, f64),
    ) -> f64 {
        let (mut ok, mut n) = (0.0, 0.0);
        for o in self.matching(f, s) {
            ok += o.success as u8 as f64;
            n += 1.0;
        }
        (prior.0 + ok) / (prior.0 + prior.1 + n)
    }

    /// Mean recovery time of successful outcomes, with the strategy's prior
    /// counted as one observation.
    pub fn recovery_estimate(&self, f: Option<FailureType>, s: Strategy) -> Span {
        let (mut sum, mut n) = (s.prior_recovery().as_secs_f64(), 1.0);
        for o in self.matching(f, s) {
            if let Some(r) = o.recovery_s {
                sum += r;
                n += 1.0;
            }
        }
        Span::from_secs_f64(sum / n)
    }
}

fn replaced_pod(c: &Command) -> Option<String> {
    match c {
        Command::ReplacePod { pod, .. } => Some(pod.clone()),
        _ => None,
    }
}

/// Pods that work unlike their peers (`Orchestrator::odd_pods`).
struct OddPods<'v> {
    pods: Vec<&'v str>,
    /// Stalled (they serve nothing), else hot (they serve slowly).
    stalled: bool,
    why: String,
}

/// Why a strategy produced no command.
enum Refusal {
    /// A guardrail held it back.
    Guardrail(&'static str),
    /// The driver cannot carry it out, or it has nothing to act on here
    /// (no fallback route, no standby, the first revision); the next
    /// strategy may.
    NoTarget,
}

/// The service to isolate for a warning on `view`: its worst dependency
/// that it has a fallback for (highest error rate, then p99), or, for a
/// service without dependencies, itself when a caller has a fallback for
/// it. `None` when there is no such route: isolating a call without a
/// fallback only turns slow failures into fast ones.
fn isolation_target(view: &ServiceView, peers: &[ServiceView]) -> Option<String> {
    let worst = view
        .dependencies
        .iter()
        .filter(|d| d.fallback)
        .filter_map(|d| peers.iter().find(|p| p.name == d.service))
        .max_by(|a, b| {
            a.metrics
                .error_rate
                .total_cmp(&b.metrics.error_rate)
                .then(a.metrics.latency_p99.total_cmp(&b.metrics.latency_p99))
                .then(b.name.cmp(&a.name))
        });
    match worst {
        Some(d) => Some(d.name.clone()),
        None if view.dependencies.is_empty()
            && peers.iter().any(|p| {
                p.dependencies
                    .iter()
                    .any(|d| d.fallback && d.service == view.name)
            }) =>
        {
            Some(view.name.clone())
        }
        None => None,
    }
}

#[derive(Clone, Debug, Default)]
struct Target {
    name: String,
    /// The revision last seen, when it was first seen, and whether this
    /// orchestrator's own rollback made it.
    revision: Option<(u32, Time, bool)>,
    /// The connection limit before any reconfigure (reconfigure sets it
    /// once, to this times the factor).
    base_connections: u32,
    warnings: u32,
    active: Option<HealingAction>,
    /// The pods the active action replaced.
    replaced: Vec<String>,
    /// The pods found hot at the last scrape.
    hot: Vec<String>,
    cooldown_until: Time,
    /// Until when this orchestrator's isolation keeps the service's
    /// callers off it.
    isolated_until: Time,
    floor: Option<(u32, Time)>,
    /// The events of the last incident that started nothing (inapplicable
    /// strategies, then giving up): the same futile chain on the next tick
    /// is not reported again.
    futile: Vec<HealingEvent>,
}

/// The orchestrator's state machine.
#[derive(Clone, Debug)]
pub struct Orchestrator {
    cfg: OrchestratorConfig,
    selector: Option<Arc<StrategyForest>>,
    targets: Vec<Target>,
    recent: VecDeque<Time>,
    pub book: OutcomeBook,
    commands: VecDeque<Command>,
    events: VecDeque<HealingEvent>,
}

impl Orchestrator {
    pub fn new(cfg: OrchestratorConfig) -> Self {
        Orchestrator {
            cfg,
            selector: None,
            targets: Vec::new(),
            recent: VecDeque::new(),
            book: OutcomeBook::default(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Lets a learned selector pick first strategies, within
    /// `OrchestratorConfig::selector`.
    pub fn set_selector(&mut self, selector: Arc<StrategyForest>) {
        self.selector = Some(selector);
    }

    /// The first strategy for an incident: forced, learned or the rules'.
    fn first_choice(&self, rules: Strategy, s: &Situation, ask: bool) -> (Strategy, ChosenBy) {
        if let Some(f) = self.cfg.first_strategy {
            return (f, ChosenBy::Forced);
        }
        let learned = self
            .selector
            .as_ref()
            .filter(|_| ask)
            .filter(|f| f.rows >= self.cfg.selector.min_rows)
            .and_then(|f| f.choose(s))
            .filter(|c| c.vote >= self.cfg.selector.min_vote && c.strategy != rules);
        match learned {
            Some(c) => (
                c.strategy,
                ChosenBy::Learned {
                    vote: c.vote,
                    rules,
                },
            ),
            None => (rules, ChosenBy::Rules),
        }
    }

    fn target(&mut self, name: &str) -> usize {
        match self.targets.iter().position(|t| t.name == name) {
            Some(i) => i,
            None => {
                self.targets.push(Target {
                    name: name.to_string(),
                    ..Target::default()
                });
                self.targets.len() - 1
            }
        }
    }

    /// A call that shows the symptom on the caller's side: errors, or a p99
    /// of half the symptom level (the caller adds its own time on top).
    fn degraded(&self, d: &super::Dependency) -> bool {
        d.error_rate >= self.cfg.symptom_error_rate
            || d.latency_p99 >= 0.5 * self.cfg.symptom_p99_ms
    }

    /// Keeps track of a service's rollouts and settings; call it with every
    /// observation, before any prediction exists (the predictor needs a
    /// full window first, and a rollout in that time must still count).
    pub fn handle_view(&mut self, now: Time, view: &ServiceView) {
        self.track(now, view);
    }

    /// `handle_view`, returning the service's target index.
    fn track(&mut self, now: Time, view: &ServiceView) -> usize {
        let ti = self.target(&view.name);
        let t = &mut self.targets[ti];
        match t.revision {
            Some((r, _, _)) if r == view.revision => {}
            Some(_) => {
                let ours = t
                    .active
                    .as_ref()
                    .is_some_and(|a| a.strategy == Strategy::Rollback);
                t.revision = Some((view.revision, now, ours));
            }
            // First sight: the running revision counts as old.
            None => t.revision = Some((view.revision, Time::ZERO, true)),
        }
        if t.base_connections == 0 {
            t.base_connections = view.max_connections;
        }
        ti
    }

    /// A rollout younger than `recent_deploy_s` that this orchestrator did
    /// not make itself.
    fn recent_deploy(&self, now: Time, ti: usize) -> bool {
        self.targets[ti].revision.is_some_and(|(r, at, ours)| {
            r > 0 && !ours && now.saturating_sub(at).as_secs_f64() <= self.cfg.recent_deploy_s
        })
    }

    /// The replica floor a scale action set on `service`, while it holds:
    /// the scaler respects it, so the two never fight.
    pub fn floor(&self, service: &str, now: Time) -> Option<u32> {
        self.targets
            .iter()
            .find(|t| t.name == service)
            .and_then(|t| t.floor)
            .filter(|&(_, until)| now < until)
            .map(|(r, _)| r)
    }

    /// One service's prediction at `now`, with the view it was made from
    /// and the other services' views (where an isolation looks for the
    /// failing dependency). The view goes through `handle_view` here; a
    /// driver calls `handle_view` itself only for views without a
    /// prediction.
    pub fn handle_prediction(
        &mut self,
        now: Time,
        view: &ServiceView,
        p: &Prediction,
        peers: &[ServiceView],
    ) {
        let ti = self.track(now, view);
        if !self.cfg.enabled {
            return;
        }
        let (odd, confirmed) = self.confirmed_odd_pods(ti, view);
        if let Some(action) = self.targets[ti].active.clone() {
            self.verify(now, ti, (view, peers), p, (odd, confirmed), action);
            return;
        }
        // A pod-level finding names its own remedy; the learned selector
        // was trained on the predictor's incidents and is not asked.
        if now >= self.targets[ti].cooldown_until
            && let Some(odd) = odd.filter(|_| confirmed)
        {
            let why = odd.why;
            return self.start_incident(now, ti, (view, peers), p, (Strategy::Restart, false), why);
        }
        // Isolated, a service gets no calls, and its request metrics are
        // the windows' remains of the calls before: no evidence of its
        // health now. It is judged on them again once traffic is back.
        if now < self.targets[ti].isolated_until {
            self.targets[ti].warnings = 0;
            return;
        }
        let m = &view.metrics;
        let symptom =
            m.error_rate >= self.cfg.symptom_error_rate || m.latency_p99 >= self.cfg.symptom_p99_ms;
        let evidence = !self.cfg.require_evidence || p.failure_type.is_some() || symptom;
        if !p.warning || !evidence {
            self.targets[ti].warnings = 0;
            self.targets[ti].futile.clear();
            return;
        }
        self.targets[ti].warnings += 1;
        let recent_deploy = self.recent_deploy(now, ti);
        let degraded = view.dependencies.iter().any(|d| self.degraded(d));
        let rules = rule_strategy(p, view.metrics.error_rate, recent_deploy, degraded);
        // Urgency from the time to failure: a breach that is close and
        // already showing is acted on at once, when the evidence names a
        // remedy; the fallback (reconfigure) waits for confirmation like
        // any warning, as the pattern often shows a scrape or two later.
        let urgent = p.time_to_failure_s.is_some_and(|t| t <= self.cfg.act_now_s)
            && symptom
            && rules != Strategy::Reconfigure;
        let needed = if urgent { 1 } else { self.cfg.confirm };
        if self.targets[ti].warnings < needed || now < self.targets[ti].cooldown_until {
            return;
        }
        let why = format!(
            "{} predicted ({:.0} % not healthy){}",
            p.status.as_str(),
            100.0 * p.not_healthy,
            p.failure_type
                .map_or(String::new(), |f| format!(", pattern {}", f.as_str()))
        );
        self.start_incident(now, ti, (view, peers), p, (rules, true), why);
    }

    /// The pods of the current revision that work unlike their peers, and
    /// why, judged on CPU over their last sample (pods of one revision
    /// behind one load balancer get the same share of the same work):
    /// - *stalled*: Running and still ready, but next to no CPU while their
    ///   peers are busy. A hung process looks like this from its first
    ///   sample on, long before the kubelet's probes (3 failures, 10 s
    ///   apart) take it out of the endpoints or restart it. Most pods idle
    ///   is a service without work (or a blocked dependency), not a stall.
    /// - *hot*: several times the CPU of the service's lower quartile: the
    ///   pod burns CPU on something other than its share of the work (a
    ///   runaway thread, a stressor, a leak's garbage collector).
    ///
    /// A restart replaces either kind.
    fn odd_pods<'v>(&self, view: &'v ServiceView) -> Option<OddPods<'v>> {
        let settle = Span::from_secs_f64(self.cfg.pod_settle_s);
        let judged: Vec<_> = view
            .pods
            .iter()
            .filter(|p| p.ready && p.phase == PodPhase::Running && p.revision == view.revision)
            .filter(|p| {
                p.cpu_sampled_at
                    .is_some_and(|at| at >= p.last_transition + settle)
            })
            .collect();
        if judged.len() < 3 || self.cfg.pod_min_cores <= 0.0 {
            return None;
        }
        let mut cpu: Vec<f64> = judged.iter().map(|p| p.cpu_cores).collect();
        let busy = super::anomaly::median(&mut cpu);
        let names = |keep: &dyn Fn(f64) -> bool| -> Vec<&'v str> {
            judged
                .iter()
                .filter(|p| keep(p.cpu_cores))
                .map(|p| p.name.as_str())
                .collect()
        };
        let stalled = names(&|c| c < self.cfg.stall_cpu_fraction * busy);
        if busy >= self.cfg.pod_min_cores && !stalled.is_empty() && 2 * stalled.len() < judged.len()
        {
            let why = format!(
                "pod {} stalled (under {:.0} % of its peers' median CPU of {:.3} cores)",
                stalled.join(", "),
                100.0 * self.cfg.stall_cpu_fraction,
                busy
            );
            return Some(OddPods {
                pods: stalled,
                stalled: true,
                why,
            });
        }
        let quartile = cpu.len() / 4;
        let low = *cpu.select_nth_unstable_by(quartile, f64::total_cmp).1;
        let hot = names(&|c| c >= self.cfg.hot_cpu_factor * low);
        if low >= self.cfg.pod_min_cores && !hot.is_empty() {
            let why = format!(
                "pod {} hot (at least {:.1}x the lower quartile of its peers' CPU, {:.3} cores)",
                hot.join(", "),
                self.cfg.hot_cpu_factor,
                low
            );
            return Some(OddPods {
                pods: hot,
                stalled: false,
                why,
            });
        }
        None
    }

    /// `odd_pods`, and whether they are reason enough to act: stalled pods
    /// are at once, hot pods only when the same pods were hot at the scrape
    /// before too (a sample that began before a hang reads low on the hung
    /// pods and makes their peers look hot once).
    fn confirmed_odd_pods<'v>(
        &mut self,
        ti: usize,
        view: &'v ServiceView,
    ) -> (Option<OddPods<'v>>, bool) {
        let odd = self.odd_pods(view);
        let seen = &mut self.targets[ti].hot;
        let confirmed = match &odd {
            Some(o) if !o.stalled => {
                let again = *seen == o.pods;
                *seen = o.pods.iter().map(|p| p.to_string()).collect();
                again
            }
            other => {
                seen.clear();
                other.is_some()
            }
        };
        (odd, confirmed)
    }

    /// A restart of odd pods goes in batches within the disruption budget,
    /// the next once the last one's replacements are ready; it is one
    /// action (the rate limit counts it once) and is verified after its
    /// last batch. True while the restart still has odd pods to replace.
    fn next_batch(
        &mut self,
        now: Time,
        ti: usize,
        (view, peers): (&ServiceView, &[ServiceView]),
        action: &HealingAction,
        odd: &OddPods,
    ) -> bool {
        let t = &self.targets[ti];
        if odd.pods.iter().all(|n| t.replaced.iter().any(|r| r == n)) {
            return false;
        }
        let settling = view.pods.iter().any(|p| {
            t.replaced.contains(&p.name)
                || (p.created >= action.started && !(p.ready && p.phase == PodPhase::Running))
        });
        if settling {
            return true;
        }
        let reason = format!("{}; the restart's next batch", odd.why);
        let Ok(commands) = self.commands_for(ti, (view, peers), Strategy::Restart, &reason) else {
            return false;
        };
        let estimate = self
            .book
            .recovery_estimate(action.failure, Strategy::Restart);
        let t = &mut self.targets[ti];
        t.replaced.extend(commands.iter().filter_map(replaced_pod));
        if let Some(a) = &mut t.active {
            a.estimated_recovery = now.saturating_sub(a.started) + estimate;
        }
        self.commands.extend(commands);
        true
    }

    /// Starts a new incident on a target with the rules' strategy (or the
    /// forced one, or the learned one where `ask_selector`), `why` saying
    /// what was seen.
    fn start_incident(
        &mut self,
        now: Time,
        ti: usize,
        (view, peers): (&ServiceView, &[ServiceView]),
        p: &Prediction,
        (rules, ask_selector): (Strategy, bool),
        why: String,
    ) {
        let recent_deploy = self.recent_deploy(now, ti);
        let degraded = view.dependencies.iter().any(|d| self.degraded(d));
        let situation = Situation::of(
            p,
            view,
            self.cfg.symptom_p99_ms,
            recent_deploy,
            degraded,
            isolation_target(view, peers).is_some(),
        );
        let (strategy, by) = self.first_choice(rules, &situation, ask_selector);
        let chooser = match by {
            ChosenBy::Learned { vote, rules } => format!(
                "; learned selector: {} over the rules' {} ({:.0} % of the vote)",
                strategy.as_str(),
                rules.as_str(),
                100.0 * vote
            ),
            ChosenBy::Forced => format!("; {} forced", strategy.as_str()),
            ChosenBy::Rules | ChosenBy::Escalation => String::new(),
        };
        let reason = format!("{why}{chooser}");
        let mark = self.events.len();
        self.start(
            now,
            ti,
            (view, peers),
            p,
            Decision {
                strategy,
                attempt: 0,
                reason,
                by,
                first_choice: strategy,
                situation,
            },
        );
        let added: Vec<HealingEvent> = self.events.range(mark..).cloned().collect();
        let futile = added.iter().all(|e| {
            matches!(
                e,
                HealingEvent::Inapplicable { .. } | HealingEvent::GaveUp { .. }
            )
        });
        let t = &mut self.targets[ti];
        if !futile {
            t.futile.clear();
        } else if added == t.futile {
            // The same chain that started nothing last time: already said.
            self.events.truncate(mark);
        } else {
            t.futile = added;
        }
    }

    fn verify(
        &mut self,
        now: Time,
        ti: usize,
        (view, peers): (&ServiceView, &[ServiceView]),
        p: &Prediction,
        (odd, confirmed): (Option<OddPods>, bool),
        action: HealingAction,
    ) {
        // A restart goes on through its batches on any sample's odd pods;
        // switching to one takes confirmed ones.
        if let Some(o) = &odd
            && action.strategy == Strategy::Restart
            && self.next_batch(now, ti, (view, peers), &action, o)
        {
            return;
        }
        // Odd pods while a strategy that escalates to a restart is active:
        // it did not touch them, so the restart comes now, not at `due`.
        let restart_now = confirmed && action.strategy.escalation() == Some(Strategy::Restart);
        let due = action.started + action.estimated_recovery;
        let recovered = !restart_now && !p.warning && view.metrics.error_rate < 0.01;
        if recovered {
            let t = &mut self.targets[ti];
            t.active = None;
            t.warnings = 0;
            t.cooldown_until = now + Span::from_secs_f64(self.cfg.cooldown_s);
            self.book.outcomes.push(Outcome {
                failure: action.failure,
                strategy: action.strategy,
                success: true,
                recovery_s: Some(now.saturating_sub(action.started).as_secs_f64()),
            });
            self.events.push_back(HealingEvent::Verified {
                target: view.name.clone(),
                strategy: action.strategy,
                recovered: true,
                at: now,
            });
            return;
        }
        if now < due && !restart_now {
            return;
        }
        self.book.outcomes.push(Outcome {
            failure: action.failure,
            strategy: action.strategy,
            success: false,
            recovery_s: None,
        });
        self.events.push_back(HealingEvent::Verified {
            target: view.name.clone(),
            strategy: action.strategy,
            recovered: false,
            at: now,
        });
        self.targets[ti].active = None;
        match action.strategy.escalation() {
            Some(next) => {
                self.events.push_back(HealingEvent::Escalated {
                    target: view.name.clone(),
                    from: action.strategy,
                    to: next,
                });
                let reason = format!(
                    "{} did not recover {} within {:.0} s",
                    action.strategy.as_str(),
                    view.name,
                    action.estimated_recovery.as_secs_f64()
                );
                self.start(
                    now,
                    ti,
                    (view, peers),
                    p,
                    Decision {
                        strategy: next,
                        attempt: action.attempt + 1,
                        reason,
                        by: ChosenBy::Escalation,
                        first_choice: action.first_choice,
                        situation: action.situation,
                    },
                );
            }
            None => self.events.push_back(HealingEvent::GaveUp {
                target: view.name.clone(),
            }),
        }
    }

    fn start(
        &mut self,
        now: Time,
        ti: usize,
        (view, peers): (&ServiceView, &[ServiceView]),
        p: &Prediction,
        d: Decision,
    ) {
        let Decision {
            strategy,
            attempt,
            reason,
            by,
            first_choice,
            situation,
        } = d;
        let commands = match self.commands_for(ti, (view, peers), strategy, &reason) {
            Ok(c) => c,
            Err(Refusal::Guardrail(why)) => {
                self.events.push_back(HealingEvent::Suppressed {
                    target: view.name.clone(),
                    strategy,
                    why,
                });
                return;
            }
            Err(Refusal::NoTarget) => {
                // Not supported here, or nothing to act on: the next strategy.
                self.events.push_back(HealingEvent::Inapplicable {
                    target: view.name.clone(),
                    strategy,
                    next: strategy.escalation(),
                });
                return match strategy.escalation() {
                    Some(next) => {
                        let d = Decision {
                            strategy: next,
                            attempt: attempt + 1,
                            reason,
                            by: ChosenBy::Escalation,
                            first_choice,
                            situation,
                        };
                        self.start(now, ti, (view, peers), p, d)
                    }
                    None => self.events.push_back(HealingEvent::GaveUp {
                        target: view.name.clone(),
                    }),
                };
            }
        };
        let window = Span::from_secs_f64(self.cfg.rate_window_s);
        while self
            .recent
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.cfg.max_actions {
            self.events.push_back(HealingEvent::Suppressed {
                target: view.name.clone(),
                strategy,
                why: "rate limit",
            });
            return;
        }
        let action = HealingAction {
            strategy,
            target: view.name.clone(),
            priority: priority(p.status),
            failure: p.failure_type,
            started: now,
            estimated_recovery: self.book.recovery_estimate(p.failure_type, strategy),
            success_probability: self.book.success_probability(
                p.failure_type,
                strategy,
                self.cfg.prior_success,
            ),
            attempt,
            reason,
            chosen_by: by,
            first_choice,
            situation,
        };
        self.recent.push_back(now);
        if self.cfg.dry_run {
            self.events.push_back(HealingEvent::DryRun(action));
            self.targets[ti].cooldown_until = now + Span::from_secs_f64(self.cfg.cooldown_s);
            return;
        }
        for c in &commands {
            match c {
                Command::Scale { replicas, .. } => {
                    self.targets[ti].floor =
                        Some((*replicas, now + Span::from_secs_f64(self.cfg.floor_ttl_s)));
                }
                Command::Isolate { service, hold, .. } => {
                    let isolated = self.target(service);
                    self.targets[isolated].isolated_until = now + *hold;
                }
                _ => {}
            }
        }
        self.targets[ti].replaced = commands.iter().filter_map(replaced_pod).collect();
        self.commands.extend(commands);
        self.targets[ti].active = Some(action.clone());
        self.events.push_back(HealingEvent::Started(action));
    }

    /// The commands a strategy takes on `view` now; nothing changes until
    /// `start` commits them.
    fn commands_for(
        &self,
        ti: usize,
        (view, peers): (&ServiceView, &[ServiceView]),
        strategy: Strategy,
        reason: &str,
    ) -> Result<Vec<Command>, Refusal> {
        if !self.cfg.supported.contains(&strategy) {
            return Err(Refusal::NoTarget);
        }
        let reason = format!("{HEALING_REASON} {reason}");
        let ready = view
            .pods
            .iter()
            .filter(|p| p.ready && p.phase == PodPhase::Running)
            .count() as u32;
        match strategy {
            Strategy::Restart => {
                // The odd pods alone if there are any; otherwise the
                // pods closest to their memory limit (the leak's victims),
                // then the most restarted. Each is deleted gracefully and
                // replaced, as `kubectl delete pod` does, so its in-flight
                // requests finish.
                let odd = self.odd_pods(view);
                let (odd, stalled) = odd.map_or((Vec::new(), false), |o| (o.pods, o.stalled));
                let n = odd.len() as u32;
                // Ready pods go down to the minimum of healthy replicas and
                // no further. The disruption budget (serving pods taken out
                // at once) does not hold back stalled pods: they serve
                // nothing.
                let budget = if stalled {
                    n
                } else {
                    ((ready as f64 * self.cfg.max_unavailable_fraction).floor() as u32).max(1)
                };
                let budget = budget.min(ready.saturating_sub(self.cfg.min_healthy_replicas));
                if budget == 0 {
                    return Err(Refusal::Guardrail("minimum healthy replicas"));
                }
                let budget = if n > 0 { budget.min(n) } else { budget };
                let mut pods: Vec<_> = view
                    .pods
                    .iter()
                    .filter(|p| p.phase == PodPhase::Running)
                    .collect();
                pods.sort_by(|a, b| {
                    let fa = a.memory_mib / a.memory_limit_mib.max(1.0);
                    let fb = b.memory_mib / b.memory_limit_mib.max(1.0);
                    let sa = odd.contains(&a.name.as_str());
                    let sb = odd.contains(&b.name.as_str());
                    sb.cmp(&sa)
                        .then(fb.total_cmp(&fa))
                        .then(b.restarts.cmp(&a.restarts))
                        .then(a.name.cmp(&b.name))
                });
                Ok(pods
                    .into_iter()
                    .take(budget as usize)
                    .map(|p| Command::ReplacePod {
                        service: view.name.clone(),
                        pod: p.name.clone(),
                        reason: reason.clone(),
                    })
                    .collect())
            }
            Strategy::Scale => {
                let to = ((view.desired_replicas.max(1) as f64 * self.cfg.scale_factor).ceil()
                    as u32)
                    .min(self.cfg.max_replicas);
                // At the most replicas already (the scaler may have got
                // there first): nothing to scale, so the next strategy.
                if to <= view.desired_replicas {
                    return Err(Refusal::NoTarget);
                }
                Ok(vec![Command::Scale {
                    service: view.name.clone(),
                    replicas: to,
                    reason: reason.clone(),
                }])
            }
            // The first revision (index 0) has nothing to roll back to.
            Strategy::Rollback if view.revision == 0 => Err(Refusal::NoTarget),
            Strategy::Rollback => Ok(vec![Command::Rollback {
                service: view.name.clone(),
                reason: reason.clone(),
            }]),
            Strategy::Isolate => {
                let target = isolation_target(view, peers).ok_or(Refusal::NoTarget)?;
                Ok(vec![Command::Isolate {
                    service: target,
                    hold: Span::from_secs_f64(self.cfg.isolate_hold_s),
                    reason,
                }])
            }
            Strategy::Failover => {
                // The service itself if it has a standby, else a degraded
                // dependency that has one.
                let target = if view.backup.is_some() {
                    Some(view.name.clone())
                } else {
                    view.dependencies
                        .iter()
                        .filter(|d| self.degraded(d))
                        .find(|d| {
                            peers
                                .iter()
                                .any(|p| p.name == d.service && p.backup.is_some())
                        })
                        .map(|d| d.service.clone())
                };
                Ok(vec![Command::Failover {
                    service: target.ok_or(Refusal::NoTarget)?,
                    reason,
                }])
            }
            Strategy::Reconfigure => {
                let to = (self.targets[ti].base_connections as f64
                    * self.cfg.reconfigure_connections_factor)
                    .ceil() as u32;
                if view.max_connections >= to {
                    // Already reconfigured: the next strategy.
                    return Err(Refusal::NoTarget);
                }
                Ok(vec![Command::Reconfigure {
                    service: view.name.clone(),
                    max_connections: Some(to),
                    timeout_ms: self.cfg.reconfigure_timeout_ms,
                    reason,
                }])
            }
        }
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<HealingEvent> {
        self.events.pop_front()
    }

    /// The action in progress on `service`.
    pub fn active(&self, service: &str) -> Option<&HealingAction> {
        self.targets
            .iter()
            .find(|t| t.name == service)
            .and_then(|t| t.active.as_ref())
    }
}
