//! A scaler with the failure predictor and the healing orchestrator on
//! top: the controller the simulator runs for `[controller] healing = true`
//! and the live adapter will run the same way.
//!
//! It ticks every second (or at the scrape interval, if shorter) and
//! looks for new scrapes, so it acts within a second of one: scrapes come
//! at their own phase, and ticking only at the scrape interval would add
//! up to a whole interval to every detection. Every new scrape of a
//! service goes through that service's `ServiceWatch`; a prediction goes to
//! the orchestrator; the inner scaler (static, HPA, KPA or the autonomous
//! scaler) still runs at its own period, and a replica count it asks for is
//! raised to the orchestrator's floor while one holds, so the two never
//! fight over a Deployment.

use std::collections::VecDeque;

use super::orchestrator::{HealingEvent, Orchestrator, OrchestratorConfig};
use super::paced::Paced;
use super::predictor::{Model, PredictorConfig, ServiceWatch};
use super::{Command, Controller, Observation, PerService};
use crate::metrics::ServiceMetrics;
use crate::time::{Span, Time};

pub struct HealingController {
    name: String,
    inner: Paced,
    model: Model,
    predictor: PredictorConfig,
    watches: PerService<(ServiceWatch, Option<Time>)>,
    pub orchestrator: Orchestrator,
    commands: VecDeque<Command>,
    /// Healing events not yet polled, with the time they happened.
    events: VecDeque<(Time, HealingEvent)>,
}

impl HealingController {
    pub fn new(
        inner: Box<dyn Controller>,
        model: Model,
        predictor: PredictorConfig,
        orchestrator: OrchestratorConfig,
    ) -> Self {
        HealingController {
            name: format!("{}+heal", inner.name()),
            inner: Paced::new(inner),
            model,
            predictor,
            watches: PerService::default(),
            orchestrator: Orchestrator::new(orchestrator),
            commands: VecDeque::new(),
            events: VecDeque::new(),
        }
    }
}

impl Controller for HealingController {
    fn name(&self) -> &str {
        &self.name
    }

    fn period(&self) -> Span {
        Span::from_secs_f64(self.predictor.scrape_interval_s.min(1.0))
    }

    fn handle_start(&mut self, now: Time) {
        self.inner.handle_start(now);
    }

    fn handle_observation(&mut self, now: Time, obs: &Observation) {
        for view in &obs.services {
            let (window, cfg) = (self.model.window, &self.predictor);
            let (watch, last) = self
                .watches
                .get_or_insert_with(&view.name, |_| (ServiceWatch::new(window, cfg), None));
            if *last == Some(view.metrics.timestamp) {
                self.orchestrator.handle_view(now, view);
                continue;
            }
            *last = Some(view.metrics.timestamp);
            watch.handle_scrape(&view.metrics);
            match watch.predict(&self.model, &self.predictor) {
                Some(p) => self
                    .orchestrator
                    .handle_prediction(now, view, &p, &obs.services),
                // The window is not full yet: rollouts still count.
                None => self.orchestrator.handle_view(now, view),
            }
        }
        while let Some(c) = self.orchestrator.poll_command() {
            self.commands.push_back(c);
        }
        while let Some(e) = self.orchestrator.poll_event() {
            self.events.push_back((now, e));
        }
        if self.inner.handle_observation(now, obs) {
            while let Some(mut c) = self.inner.poll_command() {
                if let Command::Scale {
                    service, replicas, ..
                } = &mut c
                    && let Some(floor) = self.orchestrator.floor(service, now)
                {
                    *replicas = (*replicas).max(floor);
                }
                self.commands.push_back(c);
            }
        }
    }

    fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    fn poll_event(&mut self) -> Option<(Time, HealingEvent)> {
        self.events.pop_front()
    }

    fn handle_history(&mut self, service: &str, scrapes: &[ServiceMetrics]) {
        let (window, cfg) = (self.model.window, &self.predictor);
        let (watch, last) = self
            .watches
            .get_or_insert_with(service, |_| (ServiceWatch::new(window, cfg), None));
        for m in scrapes {
            if last.is_none_or(|t| m.timestamp > t) {
                *last = Some(m.timestamp);
                watch.handle_scrape(m);
            }
        }
        self.inner.handle_history(service, scrapes);
    }
}
