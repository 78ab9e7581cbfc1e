//! `selfheal-k8s follow`: a served simulation (`selfheal serve
//! --without-faults --controller static`) that follows a cluster whose
//! pods do no work of their own, such as a control plane with KWOK's fake
//! nodes, so that a replay against that cluster has traffic to observe.
//!
//! The cluster leads and the simulation follows: its Deployments are
//! copied from the simulation once, and from then on every change the
//! cluster's controllers make is carried into the simulation: a
//! Deployment's replicas and image, and the deletion of a pod (the
//! simulation deletes the pod paired with it, and its own ReplicaSet starts
//! a replacement, with the scenario's start-up time). Each live pod of the
//! cluster is paired with one of the simulation's pods of the same
//! Deployment, oldest with oldest, and the simulation's metrics are served
//! again with each paired pod under its cluster name, so that per-pod
//! usage joins the pods the adapter watches on the cluster.
//!
//! What does not follow: nodes (the simulation keeps its own), Services,
//! ConfigMaps and Istio or Chaos Mesh resources (a replay of a fault that
//! is injected through them has nothing on the cluster to act on).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::actuate::{ApiRequest, get};
use crate::api::{self, ApiError};

/// A pod as the pairing sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    /// The Deployment whose ReplicaSet owns it.
    pub deployment: String,
    /// `metadata.creationTimestamp` (RFC 3339, so it sorts as text).
    pub created: String,
    /// It has a `deletionTimestamp`: on its way out.
    pub deleting: bool,
}

/// The pods of `deployments` in a pod list (the API's JSON): each one's
/// Deployment from its ReplicaSet owner (`<deployment>-<hash>`).
pub fn pod_refs(list: &Value, deployments: &[String]) -> Vec<PodRef> {
    let items = list.get("items").and_then(Value::as_array);
    items
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let owner = p
                .pointer("/metadata/ownerReferences")?
                .as_array()?
                .iter()
                .find(|o| o.get("kind").and_then(Value::as_str) == Some("ReplicaSet"))?
                .get("name")?
                .as_str()?;
            let deployment = deployments
                .iter()
                .filter(|d| {
                    owner
                        .strip_prefix(d.as_str())
                        .is_some_and(|rest| rest.starts_with('-'))
                })
                .max_by_key(|d| d.len())?;
            Some(PodRef {
                name: p.pointer("/metadata/name")?.as_str()?.to_string(),
                deployment: deployment.clone(),
                created: p
                    .pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                deleting: p.pointer("/metadata/deletionTimestamp").is_some(),
            })
        })
        .collect()
}

/// Served pod name to cluster pod name.
pub type Pairs = BTreeMap<String, String>;

/// Brings `pairs` up to date with the pods now on the cluster (`real`)
/// and in the simulation (`served`); returns the served pods to delete
/// because their cluster pod is gone, each with the cluster pod it
/// followed. A pair whose served pod is gone is dropped (its cluster pod
/// pairs again with a new one); the unpaired pods of each Deployment pair
/// up oldest with oldest (then by name).
pub fn pair(pairs: &mut Pairs, real: &[PodRef], served: &[PodRef]) -> Vec<(String, String)> {
    let live = |pods: &[PodRef]| -> BTreeSet<String> {
        pods.iter()
            .filter(|p| !p.deleting)
            .map(|p| p.name.clone())
            .collect()
    };
    let (real_live, served_live) = (live(real), live(served));
    let mut delete = Vec::new();
    pairs.retain(|s, r| {
        if !served_live.contains(s) {
            return false;
        }
        if !real_live.contains(r) {
            delete.push((s.clone(), r.clone()));
            return false;
        }
        true
    });
    let paired_real: BTreeSet<String> = pairs.values().cloned().collect();
    let unpaired = |pods: &[PodRef], taken: &dyn Fn(&str) -> bool, d: &str| {
        let mut v: Vec<&PodRef> = pods
            .iter()
            .filter(|p| p.deployment == d && !p.deleting && !taken(&p.name))
            .collect();
        v.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
        v.into_iter().map(|p| p.name.clone()).collect::<Vec<_>>()
    };
    let deployments: BTreeSet<&str> = real.iter().map(|p| p.deployment.as_str()).collect();
    let mut new = Vec::new();
    for d in deployments {
        let r = unpaired(real, &|n| paired_real.contains(n), d);
        let s = unpaired(
            served,
            &|n| pairs.contains_key(n) || delete.iter().any(|x| x.0 == n),
            d,
        );
        new.extend(s.into_iter().zip(r));
    }
    pairs.extend(new);
    delete
}

/// The exposition `text` with every paired served pod's `pod` label set to
/// its cluster pod's name; unpaired pods keep their own names.
pub fn rename(text: &str, pairs: &Pairs) -> String {
    const KEY: &str = "pod=\"";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(KEY) {
        let (head, tail) = rest.split_at(i + KEY.len());
        out.push_str(head);
        let end = tail.find('"').unwrap_or(tail.len());
        let name = &tail[..end];
        out.push_str(pairs.get(name).map_or(name, String::as_str));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The cluster's copy of a served Deployment: its name, labels and spec
/// (replicas, selector, strategy, pod template), nothing the served API
/// server set.
pub fn cluster_copy(served: &Value, namespace: &str) -> Option<Value> {
    let name = served.pointer("/metadata/name")?.as_str()?;
    Some(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": served.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
        },
        "spec": served.get("spec")?.clone(),
    }))
}

const IMAGE: &str = "/spec/template/spec/containers/0/image";

/// What one [`Follower::sync`] carried into the simulation.
#[derive(Debug, Default, PartialEq)]
pub struct Synced {
    /// `(deployment, replicas)` scales.
    pub scaled: Vec<(String, u64)>,
    /// `(deployment, image)` template changes.
    pub images: Vec<(String, String)>,
    /// Served pods deleted, with the cluster pod each followed.
    pub deleted: Vec<(String, String)>,
}

impl Synced {
    pub fn is_empty(&self) -> bool {
        self == &Synced::default()
    }
}

/// Keeps a served simulation in step with a cluster.
pub struct Follower {
    pub cluster: kube::Client,
    pub served: kube::Client,
    pub namespace: String,
    pub deployments: Vec<String>,
    /// Shared with the metrics it serves again.
    pub pairs: Arc<Mutex<Pairs>>,
}

impl Follower {
    fn deployments_path(&self) -> String {
        format!("/apis/apps/v1/namespaces/{}/deployments", self.namespace)
    }

    /// Creates on the cluster each of the simulation's Deployments that it
    /// does not have yet, and follows them all; the names created.
    pub async fn copy_deployments(
        cluster: kube::Client,
        served: kube::Client,
        namespace: &str,
    ) -> Result<(Follower, Vec<String>), ApiError> {
        let mut f = Follower {
            cluster,
            served,
            namespace: namespace.to_string(),
            deployments: Vec::new(),
            pairs: Arc::default(),
        };
        let list = api::read(&f.served, &get(f.deployments_path())).await?;
        let mut created = Vec::new();
        for d in list
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(copy) = cluster_copy(d, namespace) else {
                continue;
            };
            let name = copy["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let post = ApiRequest {
                method: "POST",
                path: f.deployments_path(),
                content_type: Some("application/json"),
                body: Some(copy),
            };
            match api::send(&f.cluster, &post).await {
                Ok(_) => created.push(name.clone()),
                Err(ApiError::Request {
                    code: Some(409), ..
                }) => {}
                Err(e) => return Err(e),
            }
            f.deployments.push(name);
        }
        Ok((f, created))
    }

    /// One round: first the pods (a served pod whose cluster pod is gone
    /// is deleted, and the simulation's ReplicaSet starts a replacement),
    /// then each Deployment's image and replicas. A scale-down is carried
    /// over only once the cluster has removed its pods, so that the
    /// simulation's ReplicaSet, which removes pods that are not ready
    /// first, takes away the replacements of the pods deleted here and not
    /// a pod the cluster still runs.
    pub async fn sync(&self) -> Result<Synced, ApiError> {
        let mut done = Synced::default();
        let pods = get(format!("/api/v1/namespaces/{}/pods", self.namespace));
        let real = pod_refs(&api::read(&self.cluster, &pods).await?, &self.deployments);
        let served = pod_refs(&api::read(&self.served, &pods).await?, &self.deployments);
        let delete = pair(&mut self.pairs.lock().expect("pairs lock"), &real, &served);
        for (s, r) in delete {
            let gone = ApiRequest {
                method: "DELETE",
                path: format!(
                    "/api/v1/namespaces/{}/pods/{s}?gracePeriodSeconds=0",
                    self.namespace
                ),
                content_type: None,
                body: None,
            };
            match api::send(&self.served, &gone).await {
                Ok(_)
                | Err(ApiError::Request {
                    code: Some(404), ..
                }) => done.deleted.push((s, r)),
                Err(e) => return Err(e),
            }
        }
        for d in &self.deployments {
            let path = format!("{}/{d}", self.deployments_path());
            let real_d = api::read(&self.cluster, &get(path.clone())).await?;
            let served_d = api::read(&self.served, &get(path.clone())).await?;
            let image = real_d.pointer(IMAGE).and_then(Value::as_str);
            if let Some(image) =
                image.filter(|&i| Some(i) != served_d.pointer(IMAGE).and_then(Value::as_str))
            {
                let patch = ApiRequest {
                    method: "PATCH",
                    path: path.clone(),
                    content_type: Some("application/json-patch+json"),
                    body: Some(json!([{"op": "replace", "path": IMAGE, "value": image}])),
                };
                api::send(&self.served, &patch).await?;
                done.images.push((d.clone(), image.to_string()));
            }
            let replicas = |v: &Value| v.pointer("/spec/replicas").and_then(Value::as_u64);
            let live = real
                .iter()
                .filter(|p| &p.deployment == d && !p.deleting)
                .count() as u64;
            if let (Some(want), Some(has)) = (replicas(&real_d), replicas(&served_d))
                && (want > has || (want < has && live <= want))
            {
                let scale = ApiRequest {
                    method: "PATCH",
                    path: format!("{path}/scale"),
                    content_type: Some("application/merge-patch+json"),
                    body: Some(json!({"spec": {"replicas": want}})),
                };
                api::send(&self.served, &scale).await?;
                done.scaled.push((d.clone(), want));
            }
        }
        Ok(done)
    }
}

/// Serves `source` (the simulation's `/metrics`) again on `listener`,
/// each paired pod under its cluster name, until the task is dropped.
/// Every request is answered with the exposition, whatever its path: a
/// scraper is the only client.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    source: String,
    pairs: Arc<Mutex<Pairs>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let http = reqwest::Client::new();
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let (http, source, pairs) = (http.clone(), source.clone(), pairs.clone());
        tokio::spawn(async move {
            // The request itself does not matter; read up to its blank line.
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let fetched = match http.get(&source).send().await {
                Ok(r) if r.status().is_success() => r.text().await.map_err(|e| e.to_string()),
                Ok(r) => Err(format!("{source} answered {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            let (status, body) = match fetched {
                Ok(text) => ("200 OK", rename(&text, &pairs.lock().expect("pairs lock"))),
                Err(why) => ("502 Bad Gateway", why),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, deployment: &str, created: &str) -> PodRef {
        PodRef {
            name: name.into(),
            deployment: deployment.into(),
            created: created.into(),
            deleting: false,
        }
    }

    #[test]
    fn pods_pair_oldest_with_oldest_per_deployment() {
        let real = [
            pod("api-7d9-b", "api", "2026-01-01T00:00:02Z"),
            pod("api-7d9-a", "api", "2026-01-01T00:00:01Z"),
            pod("web-5c-x", "web", "2026-01-01T00:00:01Z"),
        ];
        let served = [
            pod("api-r0-1", "api", "2026-06-01T00:00:00Z"),
            pod("api-r0-0", "api", "2026-06-01T00:00:00Z"),
            pod("web-r0-0", "web", "2026-06-01T00:00:00Z"),
            pod("web-r0-1", "web", "2026-06-01T00:00:00Z"),
        ];
        let mut pairs = Pairs::new();
        assert!(pair(&mut pairs, &real, &served).is_empty());
        assert_eq!(
            pairs,
            Pairs::from([
                ("api-r0-0".into(), "api-7d9-a".into()),
                ("api-r0-1".into(), "api-7d9-b".into()),
                ("web-r0-0".into(), "web-5c-x".into()),
            ])
        );
    }

    #[test]
    fn a_deleted_cluster_pod_deletes_its_pair_and_the_replacements_pair_up() {
        let mut pairs = Pairs::from([
            ("api-r0-0".to_string(), "api-7d9-a".to_string()),
            ("api-r0-1".to_string(), "api-7d9-b".to_string()),
        ]);
        let mut gone = pod("api-7d9-a", "api", "1");
        gone.deleting = true;
        let real = [
            gone,
            pod("api-7d9-b", "api", "2"),
            pod("api-7d9-c", "api", "3"),
        ];
        let served = [pod("api-r0-0", "api", "1"), pod("api-r0-1", "api", "1")];
        // The cluster's replacement waits for the simulation's.
        assert_eq!(
            pair(&mut pairs, &real, &served),
            [("api-r0-0".to_string(), "api-7d9-a".to_string())]
        );
        assert_eq!(pairs.len(), 1);
        let served = [pod("api-r0-1", "api", "1"), pod("api-r0-2", "api", "5")];
        assert!(pair(&mut pairs, &real[1..], &served).is_empty());
        assert_eq!(pairs.get("api-r0-2").map(String::as_str), Some("api-7d9-c"));
        // A served pod that went on its own frees its cluster pod.
        assert!(pair(&mut pairs, &real[1..], &served[1..]).is_empty());
        assert_eq!(pairs.len(), 1);
    }

    #[test]
    fn metrics_carry_the_cluster_names_of_paired_pods() {
        let pairs = Pairs::from([("api-r0-0".to_string(), "api-7d9-a".to_string())]);
        let text = "cpu{namespace=\"shop\",pod=\"api-r0-0\",container=\"app\"} 1\ncpu{pod=\"api-r0-1\"} 2\nrate{service=\"api\"} 3\n";
        assert_eq!(
            rename(text, &pairs),
            "cpu{namespace=\"shop\",pod=\"api-7d9-a\",container=\"app\"} 1\ncpu{pod=\"api-r0-1\"} 2\nrate{service=\"api\"} 3\n"
        );
    }

    #[test]
    fn pods_belong_to_the_longest_deployment_name_their_replicaset_starts_with() {
        let list = json!({"items": [
            {"metadata": {"name": "api-v2-r0-0", "creationTimestamp": "t",
                "ownerReferences": [{"kind": "ReplicaSet", "name": "api-v2-r0"}]}},
            {"metadata": {"name": "api-abc-x", "deletionTimestamp": "t",
                "ownerReferences": [{"kind": "ReplicaSet", "name": "api-abc"}]}},
            {"metadata": {"name": "lonely"}},
        ]});
        let refs = pod_refs(&list, &["api".into(), "api-v2".into()]);
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].deployment, "api-v2");
        assert!(refs[1].deleting && refs[1].deployment == "api");
    }

    #[test]
    fn the_clusters_copy_keeps_the_spec_and_drops_what_the_server_set() {
        let served = json!({"metadata": {"name": "api", "uid": "u", "resourceVersion": "6",
            "labels": {"app": "api"}}, "spec": {"replicas": 5}, "status": {"replicas": 5}});
        assert_eq!(
            cluster_copy(&served, "shop").unwrap(),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "api", "namespace": "shop", "labels": {"app": "api"}},
                "spec": {"replicas": 5}})
        );
    }
}
