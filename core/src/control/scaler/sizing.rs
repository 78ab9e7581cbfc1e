//! Sizing for the latency SLO: the fewest replicas per service whose
//! predicted end-to-end latency quantile meets the objective.
//!
//! Each service is a stage of identical pods behind a load balancer; a pod
//! is an M/G/c queue whose servers are its cores. The mean wait is the
//! Allen–Cunneen approximation (Erlang C scaled by `(ca² + cs²) / 2`;
//! A. O. Allen, *Probability, Statistics and Queueing Theory*, 2nd ed.,
//! 1990, §6.3), exact for M/M/c and for M/D/1's Pollaczek–Khinchine mean,
//! and the wait's tail is exponential at the same decay rate. A request's
//! latency is a sum of independent parts (its own CPU time, its wait, and
//! each call's latency weighted by how often the call is made); the sum's
//! quantile is taken as the sum of the means plus the root of the sum of
//! the squared excesses of each part's quantile over its mean. For M/M/1
//! that is at most 9 % above the exact sojourn quantile from 10 % to 90 %
//! load, never below (the tests pin it), where adding the parts' quantiles
//! would overshoot by up to 40 %.
//!
//! The model predicts only what queueing adds; what it does not know
//! (network hops, a dependency outside the observation, its own error) is a
//! per-service offset measured against the service's own p99 at the current
//! load and replica count, so the prediction at the current state matches
//! the measurement and the model decides only how latency moves with
//! replicas.

/// The latency objective the scaler sizes for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencySlo {
    /// This share of requests (`quantile`) within `latency_ms` at the entry.
    pub latency_ms: f64,
    pub quantile: f64,
    /// Scale up when the predicted latency exceeds this fraction of the
    /// objective's: room for the forecast's and the model's errors.
    pub headroom: f64,
    /// Scale down only to a count predicted within this (smaller) fraction:
    /// the band between the two keeps a count whose prediction moves a
    /// little with the state it was measured in from flapping.
    pub down_headroom: f64,
    /// Never plan a pod's CPU above this fraction of its limit, whatever the
    /// latency model says (the CPU target kept as a guard).
    pub cpu_guard: f64,
    /// Squared coefficient of variation of a request's CPU time (1:
    /// exponential), which the controller cannot measure from scrapes.
    pub service_cv2: f64,
    /// A replica must lower the entry's predicted latency by at least this
    /// share of the objective's latency: near the latency no replica count
    /// can beat, each one buys less, and chasing it would multiply the
    /// cost for nothing.
    pub min_gain: f64,
}

impl LatencySlo {
    /// The defaults for an objective of `quantile` within `latency_ms`.
    /// The band (up above 95 % of the objective, down to 85 %) was chosen
    /// on the decision-quality suite's training families only: the model
    /// is within a few milliseconds of the measured p99 in steady state,
    /// and at 85 % and 70 % the plan held latencies a fifth below the
    /// objective, at the cost of HPA's 35 % target.
    pub fn new(latency_ms: f64, quantile: f64) -> Self {
        LatencySlo {
            latency_ms,
            quantile,
            headroom: 0.95,
            down_headroom: 0.85,
            cpu_guard: 0.9,
            service_cv2: 1.0,
            min_gain: 0.01,
        }
    }
}

/// What is measured of one service's pods.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageModel {
    /// CPU-seconds per request, at one core.
    pub cpu_s: f64,
    /// Cores a pod may use (its CPU limit).
    pub cores: f64,
    /// Squared coefficient of variation of the CPU time.
    pub cs2: f64,
}

/// A latency as independent parts: their summed means and summed squared
/// excesses of quantile over mean.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub mean_s: f64,
    pub excess2: f64,
}

impl Latency {
    fn part(mean_s: f64, quantile_s: f64) -> Latency {
        let excess = (quantile_s - mean_s).max(0.0);
        Latency {
            mean_s,
            excess2: excess * excess,
        }
    }

    const INFINITE: Latency = Latency {
        mean_s: f64::INFINITY,
        excess2: 0.0,
    };

    fn add(self, other: Latency, weight: f64) -> Latency {
        Latency {
            mean_s: self.mean_s + weight * other.mean_s,
            excess2: self.excess2 + weight * weight * other.excess2,
        }
    }

    pub fn quantile_s(&self) -> f64 {
        self.mean_s + self.excess2.sqrt()
    }
}

/// P(wait > 0) in an M/M/c queue with offered load `a` = λ/μ < c (Erlang
/// C), through the Erlang B recursion, which stays stable for large `c`.
pub fn erlang_c(c: u32, a: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (k as f64 + a * b);
    }
    let rho = a / c as f64;
    b / (1.0 - rho * (1.0 - b))
}

impl StageModel {
    /// Servers per pod and one request's service time on one of them: a
    /// request runs on at most one core, so a pod of 2 cores is 2 servers
    /// and a pod of half a core is one server at half speed.
    fn servers(&self) -> (u32, f64) {
        let c = self.cores.round().max(1.0);
        let speed = (self.cores / c).min(1.0);
        (c as u32, self.cpu_s / speed)
    }

    /// The fewest pods that keep CPU at or below `guard` of the limit.
    pub fn guard_replicas(&self, rate: f64, guard: f64) -> u32 {
        let n = (rate * self.cpu_s / (self.cores * guard)).ceil();
        if n.is_finite() { n.max(1.0) as u32 } else { 1 }
    }

    /// A request's time in one pod (its CPU time and its wait) at `rate`
    /// spread over `n` pods, for the latency quantile `q`; infinite when
    /// the pods cannot keep up. Arrivals are taken as Poisson (`ca² = 1`).
    pub fn sojourn(&self, rate: f64, n: u32, q: f64) -> Latency {
        let (c, s) = self.servers();
        let lambda = rate / n.max(1) as f64;
        let a = lambda * s;
        if a >= c as f64 || !a.is_finite() {
            return Latency::INFINITE;
        }
        let z = -(1.0 - q).ln();
        let service = Latency::part(s, s * (1.0 + self.cs2.sqrt() * (z - 1.0)));
        if lambda <= 0.0 {
            return service;
        }
        let p_wait = erlang_c(c, a);
        // The wait's tail P(W > t) = C e^(-theta t).
        let theta = (c as f64 / s - lambda) * 2.0 / (1.0 + self.cs2);
        let wait_q = if p_wait > 1.0 - q {
            (p_wait / (1.0 - q)).ln() / theta
        } else {
            0.0
        };
        service.add(Latency::part(p_wait / theta, wait_q), 1.0)
    }
}

/// One service as the sizing sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub name: String,
    /// `None` until its CPU per request has been measured: then it is not
    /// sized and counts with its measured latency only (its offset).
    pub model: Option<StageModel>,
    /// Requests per second to plan for.
    pub rate: f64,
    /// The stages it calls (indices) and the share of its requests that
    /// make each call.
    pub calls: Vec<(usize, f64)>,
    /// Measured p99 minus the predicted p99 at the current state, seconds.
    pub offset_s: f64,
    /// Replicas now, and the bounds.
    pub current: u32,
    pub min: u32,
    pub max: u32,
}

/// A request's latency at stage `i`, its calls included, with `rates` and
/// `replicas` per stage. Call graphs are acyclic (scenario validation);
/// depth is bounded by the number of stages all the same.
pub fn latency(stages: &[Stage], rates: &[f64], replicas: &[u32], i: usize, q: f64) -> Latency {
    fn go(
        stages: &[Stage],
        rates: &[f64],
        replicas: &[u32],
        i: usize,
        q: f64,
        depth: usize,
    ) -> Latency {
        let st = &stages[i];
        let own = st
            .model
            .map_or(Latency::default(), |m| m.sojourn(rates[i], replicas[i], q));
        let mut total = own.add(
            Latency {
                mean_s: st.offset_s,
                excess2: 0.0,
            },
            1.0,
        );
        if depth < stages.len() {
            for &(j, share) in &st.calls {
                let callee = go(stages, rates, replicas, j, q, depth + 1);
                total = total.add(callee, share);
            }
        }
        total
    }
    go(stages, rates, replicas, i, q, 0)
}

/// The plan for one stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StagePlan {
    /// The request rate planned for, per second.
    pub rate: f64,
    pub replicas: u32,
    /// The predicted latency quantile at the stage, calls included, ms.
    pub predicted_ms: f64,
    /// False when more replicas would not bring the entry it serves within
    /// the objective (its latency is elsewhere).
    pub met: bool,
}

/// Replicas per stage: more than now when the entries need them at the
/// scale-up headroom, fewer when the scale-down headroom allows, else as
/// now. `None` for stages without a model.
pub fn plan(stages: &[Stage], slo: &LatencySlo) -> Vec<Option<StagePlan>> {
    let ms = |h: f64| h * slo.latency_ms / 1000.0;
    let (up, up_unmet) = allocate(stages, slo, ms(slo.headroom));
    let (down, down_unmet) = allocate(stages, slo, ms(slo.down_headroom));
    let rates: Vec<f64> = stages.iter().map(|s| s.rate).collect();
    // A stage is unmet when an entry whose paths reach it is.
    let reaches = |from: usize, to: usize| -> bool {
        let mut stack = vec![(from, 0)];
        while let Some((i, d)) = stack.pop() {
            if i == to {
                return true;
            }
            if d < stages.len() {
                stack.extend(stages[i].calls.iter().map(|c| (c.0, d + 1)));
            }
        }
        false
    };
    let within = |unmet: &[bool], i: usize| !(0..stages.len()).any(|r| unmet[r] && reaches(r, i));
    let met: Vec<bool> = (0..stages.len()).map(|i| within(&up_unmet, i)).collect();
    // Scale down only to a count that meets the scale-down target: where
    // that is out of reach the model has nothing to say about fewer.
    let n: Vec<u32> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if up[i] > s.current || s.model.is_none() {
                up[i]
            } else if within(&down_unmet, i) {
                down[i].min(s.current)
            } else {
                s.current
            }
        })
        .collect();
    (0..stages.len())
        .map(|i| {
            stages[i].model.map(|_| StagePlan {
                rate: rates[i],
                replicas: n[i],
                predicted_ms: 1000.0 * latency(stages, &rates, &n, i, slo.quantile).quantile_s(),
                met: met[i],
            })
        })
        .collect()
}

/// The fewest replicas per stage for `target` seconds at every entry (a
/// stage nobody calls): every sized stage starts at the CPU guard, then,
/// while an entry predicts above the target, the stage on its paths whose
/// extra replica lowers that entry's latency most gets one. Greedy
/// marginal allocation is optimal here because each stage's latency is
/// convex and decreasing in its replicas. Also: which entries cannot meet
/// the target.
fn allocate(stages: &[Stage], slo: &LatencySlo, target: f64) -> (Vec<u32>, Vec<bool>) {
    let rates: Vec<f64> = stages.iter().map(|s| s.rate).collect();
    let mut n: Vec<u32> = stages
        .iter()
        .map(|s| match s.model {
            Some(m) => m
                .guard_replicas(s.rate, slo.cpu_guard)
                .clamp(s.min.max(1), s.max.max(1)),
            None => s.current,
        })
        .collect();
    let called: Vec<bool> = (0..stages.len())
        .map(|j| stages.iter().any(|s| s.calls.iter().any(|c| c.0 == j)))
        .collect();
    let q = slo.quantile;
    let min_gain = slo.min_gain * slo.latency_ms / 1000.0;
    // An entry that misses the target even at every stage's maximum has
    // its latency outside the queues: replicas would not buy it back.
    let most: Vec<u32> = stages
        .iter()
        .zip(&n)
        .map(|(s, &k)| if s.model.is_some() { s.max.max(k) } else { k })
        .collect();
    let mut unmet: Vec<bool> = (0..stages.len())
        .map(|r| !called[r] && latency(stages, &rates, &most, r, q).quantile_s() > target)
        .collect();
    let mut steps: u32 = stages.iter().map(|s| s.max).sum();
    while steps > 0 {
        steps -= 1;
        let worst = (0..stages.len())
            .filter(|&r| !called[r] && !unmet[r])
            .map(|r| (r, latency(stages, &rates, &n, r, q).quantile_s()))
            .filter(|&(_, l)| l > target)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((root, now)) = worst else { break };
        let mut best: Option<(usize, f64)> = None;
        for i in 0..stages.len() {
            if stages[i].model.is_none() || n[i] >= stages[i].max {
                continue;
            }
            n[i] += 1;
            let gain = now - latency(stages, &rates, &n, root, q).quantile_s();
            n[i] -= 1;
            if gain >= min_gain && best.is_none_or(|b| gain > b.1) {
                best = Some((i, gain));
            }
        }
        match best {
            Some((i, _)) => n[i] += 1,
            None => unmet[root] = true,
        }
    }
    (n, unmet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_c_matches_known_values() {
        // M/M/1: P(wait) = rho; M/M/2 at a = 1: 1/3.
        assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12);
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        // Tabulated: c = 10, a = 8 gives 0.4092.
        assert!((erlang_c(10, 8.0) - 0.4092).abs() < 1e-4);
    }

    #[test]
    fn mm1_quantile_is_close_to_the_exact_sojourn_quantile() {
        // M/M/1 FCFS: the sojourn is exponential with rate mu - lambda.
        let m = StageModel {
            cpu_s: 0.01,
            cores: 1.0,
            cs2: 1.0,
        };
        for rho in [0.1, 0.3, 0.5, 0.7, 0.9] {
            let lambda = rho / 0.01;
            let exact = (100.0f64).ln() / (100.0 - lambda);
            let got = m.sojourn(lambda, 1, 0.99).quantile_s();
            // Never below, at most 9 % above.
            assert!(
                got >= exact && got / exact < 1.09,
                "rho {rho}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn md1_mean_wait_is_pollaczek_khinchine() {
        let m = StageModel {
            cpu_s: 0.02,
            cores: 1.0,
            cs2: 0.0,
        };
        let (lambda, rho) = (40.0, 0.8);
        let wait = m.sojourn(lambda, 1, 0.99).mean_s - 0.02;
        let pk = rho * 0.02 / (2.0 * (1.0 - rho));
        assert!((wait - pk).abs() < 1e-12, "{wait} vs {pk}");
    }

    #[test]
    fn overload_is_infinite_and_more_pods_are_faster() {
        let m = StageModel {
            cpu_s: 0.008,
            cores: 1.0,
            cs2: 1.0,
        };
        assert!(m.sojourn(250.0, 2, 0.99).quantile_s().is_infinite());
        let l: Vec<f64> = (3..8)
            .map(|n| m.sojourn(250.0, n, 0.99).quantile_s())
            .collect();
        assert!(l.windows(2).all(|w| w[1] < w[0]), "{l:?}");
    }

    fn two_tier(rate: f64) -> Vec<Stage> {
        let stage = |name: &str, cpu_s: f64, calls| Stage {
            name: name.into(),
            model: Some(StageModel {
                cpu_s,
                cores: 1.0,
                cs2: 1.0,
            }),
            rate,
            calls,
            offset_s: 0.0,
            current: 1,
            min: 1,
            max: 100,
        };
        vec![
            stage("frontend", 0.005, vec![(1, 1.0)]),
            stage("backend", 0.008, vec![]),
        ]
    }

    #[test]
    fn a_quiet_service_keeps_a_second_pod_for_the_slo() {
        // 70 req/s at 8 ms is 56 % of one core: the CPU guard keeps one
        // backend pod, with which the two tiers' p99 breaks 99 % within
        // 100 ms (the 85 ms planning target); the plan adds one.
        let slo = LatencySlo::new(100.0, 0.99);
        let p = plan(&two_tier(70.0), &slo);
        let (fe, be) = (p[0].unwrap(), p[1].unwrap());
        assert_eq!(be.replicas, 2, "{p:?}");
        assert!(fe.met && be.met);
        assert!(fe.predicted_ms <= slo.headroom * slo.latency_ms, "{p:?}");
    }

    #[test]
    fn the_slower_stage_gets_more_and_the_target_holds() {
        let slo = LatencySlo::new(100.0, 0.99);
        let st = two_tier(600.0);
        let p = plan(&st, &slo);
        let (fe, be) = (p[0].unwrap(), p[1].unwrap());
        assert!(be.replicas > fe.replicas, "{p:?}");
        let target = slo.headroom * slo.latency_ms;
        assert!(fe.predicted_ms <= target);
        // One fewer replica anywhere breaks the target: the fewest.
        let n = [fe.replicas, be.replicas];
        let rates = [600.0, 600.0];
        for i in 0..2 {
            let mut fewer = n;
            fewer[i] -= 1;
            let l = latency(&st, &rates, &fewer, 0, 0.99).quantile_s();
            assert!(
                l > target / 1000.0 || fewer[i] < 4,
                "{i}: {l} at {fewer:?} still meets"
            );
        }
    }

    #[test]
    fn latency_outside_the_queues_is_not_chased_with_replicas() {
        // A dependency 150 ms away (the offset): no replica count meets
        // 100 ms, so the plan stays at the CPU guard and says so.
        let slo = LatencySlo::new(100.0, 0.99);
        let mut st = two_tier(300.0);
        st[1].offset_s = 0.150;
        let p = plan(&st, &slo);
        let guard = StageModel {
            cpu_s: 0.008,
            cores: 1.0,
            cs2: 1.0,
        }
        .guard_replicas(300.0, 0.9);
        assert!(!p[0].unwrap().met && !p[1].unwrap().met);
        assert_eq!(p[1].unwrap().replicas, guard, "{p:?}");
    }
}
