//! Sends planned requests to the Kubernetes API, or, in dry-run, only
//! logs them. A kill switch (a ConfigMap) stops every write at once.

use serde_json::Value;

use selfheal_core::control::Command;

use crate::actuate::{self, ApiRequest, PlanError};
use crate::config::ServiceConfig;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{method} {path}: {why}")]
    Request {
        method: &'static str,
        path: String,
        /// The API's status code, when it answered at all.
        code: Option<u16>,
        why: String,
    },
    #[error("{path}: the answer is not JSON: {why}")]
    NotJson { path: String, why: String },
}

/// Why this instance may not act now.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the Lease {lease} is held by {holder} until {until:.0}")]
    HeldBy {
        lease: String,
        holder: String,
        until: f64,
    },
}

/// What happened to one command.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Dry-run: the requests that would have been sent.
    WouldSend(Vec<ApiRequest>),
    Sent(Vec<ApiRequest>),
    /// The kill switch is on: nothing was sent.
    Stopped,
}

pub struct Executor {
    pub client: kube::Client,
    pub namespace: String,
    pub services: Vec<ServiceConfig>,
    pub apply: bool,
    /// A ConfigMap whose `data.stop == "true"` stops all writes.
    pub kill_switch: String,
}

/// Sends one request to the API behind `client`; the answer's body.
pub async fn send(client: &kube::Client, r: &ApiRequest) -> Result<String, ApiError> {
    let err = |code: Option<u16>, why: String| ApiError::Request {
        method: r.method,
        path: r.path.clone(),
        code,
        why,
    };
    let mut b = http::Request::builder().method(r.method).uri(&r.path);
    if let Some(ct) = r.content_type {
        b = b.header(http::header::CONTENT_TYPE, ct);
    }
    let body = r.body.as_ref().map_or_else(Vec::new, |v| {
        serde_json::to_vec(v).expect("JSON serialises")
    });
    let req = b.body(body).map_err(|e| err(None, e.to_string()))?;
    client.request_text(req).await.map_err(|e| match &e {
        kube::Error::Api(resp) => err(Some(resp.code), e.to_string()),
        _ => err(None, e.to_string()),
    })
}

/// Sends a request and parses its JSON answer.
pub async fn read(client: &kube::Client, r: &ApiRequest) -> Result<Value, ApiError> {
    let text = send(client, r).await?;
    serde_json::from_str(&text).map_err(|e| ApiError::NotJson {
        path: r.path.clone(),
        why: e.to_string(),
    })
}

impl Executor {
    async fn send(&self, r: &ApiRequest) -> Result<String, ApiError> {
        send(&self.client, r).await
    }

    /// Sends a read and parses its JSON answer (reads are sent in dry-run
    /// too).
    pub async fn read(&self, r: &ApiRequest) -> Result<Value, ApiError> {
        read(&self.client, r).await
    }

    /// Whether the kill switch is on. A missing ConfigMap means off; an
    /// API error counts as on (no writes when the state is unknown).
    pub async fn stopped(&self) -> bool {
        let r = actuate::get(format!(
            "/api/v1/namespaces/{}/configmaps/{}",
            self.namespace, self.kill_switch
        ));
        match self.read(&r).await {
            Ok(v) => v.pointer("/data/stop").and_then(Value::as_str) == Some("true"),
            Err(ApiError::Request {
                code: Some(404), ..
            }) => false,
            Err(_) => true,
        }
    }

    /// Carries out one command: reads what it needs, plans the writes,
    /// then sends them (or, in dry-run, returns them unsent).
    pub async fn execute(&self, cmd: &Command) -> Result<Outcome, ApiError> {
        if self.apply && self.stopped().await {
            return Ok(Outcome::Stopped);
        }
        let mut answers = Vec::new();
        for r in actuate::reads_for(cmd, &self.namespace, &self.services)? {
            answers.push(self.read(&r).await?);
        }
        let writes = actuate::writes_for(cmd, &self.namespace, &self.services, &answers)?;
        if !self.apply {
            return Ok(Outcome::WouldSend(writes));
        }
        for w in &writes {
            self.send(w).await?;
        }
        Ok(Outcome::Sent(writes))
    }

    /// Deployments that an HorizontalPodAutoscaler already scales.
    pub async fn hpa_owned(&self) -> Result<std::collections::BTreeSet<String>, ApiError> {
        let r = actuate::get(format!(
            "/apis/autoscaling/v2/namespaces/{}/horizontalpodautoscalers",
            self.namespace
        ));
        Ok(crate::safety::hpa_targets(&self.read(&r).await?))
    }

    /// The isolated Services of the namespace and when each isolation ends
    /// ([`actuate::isolated_services`]).
    pub async fn isolations(&self) -> Result<Vec<(String, Option<f64>)>, ApiError> {
        let r = actuate::get(actuate::services_path(&self.namespace));
        Ok(actuate::isolated_services(&self.read(&r).await?))
    }

    /// Holds the Lease `name` for `me`: whether this instance may act now.
    /// Any error reading or writing it means no.
    pub async fn hold_lease(
        &self,
        name: &str,
        me: &str,
        now: f64,
        duration_s: u32,
    ) -> Result<(), LeaseError> {
        let path = crate::lease::path(&self.namespace, name);
        let read = actuate::get(path.clone());
        let current = match self.read(&read).await {
            Ok(v) => Some(v),
            Err(ApiError::Request {
                code: Some(404), ..
            }) => None,
            Err(e) => return Err(e.into()),
        };
        match crate::lease::step(current.as_ref(), &self.namespace, name, me, now, duration_s) {
            crate::lease::LeaseStep::HeldBy { holder, until } => Err(LeaseError::HeldBy {
                lease: name.to_string(),
                holder,
                until,
            }),
            crate::lease::LeaseStep::Write(w) => Ok(self.send(&w).await.map(|_| ())?),
        }
    }

    /// Sends one planned write (an isolation's end) under the same rules.
    pub async fn send_write(&self, w: &ApiRequest) -> Result<Outcome, ApiError> {
        if !self.apply {
            return Ok(Outcome::WouldSend(vec![w.clone()]));
        }
        if self.stopped().await {
            return Ok(Outcome::Stopped);
        }
        self.send(w).await?;
        Ok(Outcome::Sent(vec![w.clone()]))
    }
}
