//! The subset of the Kubernetes API that `selfheal serve` answers: the
//! discovery documents, list / get / watch of every resource (JSON, or the
//! server-side `Table` that `kubectl get` asks for), and the writes the
//! simulation can carry out. A write to one of the simulation's objects is
//! translated into `ApiWrite`s, carried out on the simulation thread, and
//! answered with the object as the simulation then renders it; Leases and
//! client-made ConfigMaps live in the store alone.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::http::{Request, Response};
use super::patch::{json_patch, merge_patch, strategic_merge_patch};
use super::store::{ApiStatus, Resource, Store, user_metadata_of};
use super::{fields, openapi};
use crate::sim::api_objects::{ApiWrite, fault_of_image, revision_of_image};
use crate::time::parse_rfc3339;

/// What the simulation thread does with a batch of writes.
pub trait Writer {
    /// Carries `writes` out in order (stopping at the first that fails)
    /// and re-renders the objects before returning.
    fn write(&self, writes: Vec<ApiWrite>) -> Result<(), ApiStatus>;
}

/// A watch to stream: the changes of `resource` after `from` (all current
/// objects first when `from` is `None`) that pass the selectors.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchPlan {
    pub resource: Resource,
    pub from: Option<u64>,
    filter: Filter,
    /// Watching another namespace: nothing ever passes.
    elsewhere: bool,
    /// Wall seconds before the server ends the watch.
    pub timeout_s: f64,
    /// The client asked for Tables (`kubectl get -w`): each event carries
    /// its object as a one-row Table with the columns `get` prints.
    table: bool,
}

impl WatchPlan {
    pub fn passes(&self, obj: &Value) -> bool {
        !self.elsewhere && self.filter.pass(obj)
    }

    /// What an event about `obj` carries, at resource version `rv` and
    /// unix time `now` (for the age column).
    pub fn event_object<'a>(&self, obj: &'a Value, rv: u64, now: f64) -> Cow<'a, Value> {
        if self.table {
            Cow::Owned(table(self.resource, std::slice::from_ref(obj), rv, now))
        } else {
            Cow::Borrowed(obj)
        }
    }
}

pub enum Answer {
    Full(Response),
    Watch(WatchPlan),
}

fn ok(v: Value) -> Answer {
    Answer::Full(Response::json(200, &v))
}

fn fail(s: ApiStatus) -> Answer {
    Answer::Full(Response::json(s.code, &s.to_json()))
}

/// One requirement of a selector, as `k8s.io/apimachinery`'s
/// `labels.Parse` reads them.
#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    /// `k=v`, `k==v`
    Equals(String, String),
    /// `k!=v`: also true when the key is absent.
    NotEquals(String, String),
    /// `k in (a,b)`
    In(String, Vec<String>),
    /// `k notin (a,b)`: also true when the key is absent.
    NotIn(String, Vec<String>),
    /// `k`
    Exists(String),
    /// `!k`
    DoesNotExist(String),
}

/// A label selector (equality- and set-based: `a=b,c!=d,e,!f,g in (x,y),h
/// notin (z)`) or a field selector (equality only, as the API server
/// serves them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector(Vec<Requirement>);

/// Splits on the commas outside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut from) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[from..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

impl Selector {
    /// A label selector.
    pub fn parse(s: &str) -> Result<Selector, ApiStatus> {
        Self::parse_with(s, true)
    }

    /// A field selector: `=`, `==` and `!=` only.
    pub fn parse_fields(s: &str) -> Result<Selector, ApiStatus> {
        Self::parse_with(s, false)
    }

    fn parse_with(s: &str, set_based: bool) -> Result<Selector, ApiStatus> {
        let mut out = Vec::new();
        for term in terms(s) {
            let bad = |why: &str| {
                ApiStatus::new(
                    400,
                    "BadRequest",
                    format!("unable to parse requirement `{term}`: {why}"),
                )
            };
            let key = |k: &str| {
                let k = k.trim();
                if k.is_empty() || k.contains(char::is_whitespace) {
                    Err(bad("a key is required"))
                } else {
                    Ok(k.to_string())
                }
            };
            let set = |rest: &str| -> Result<Vec<String>, ApiStatus> {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| bad("a set is written (a,b)"))?;
                Ok(inner
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect())
            };
            let set_op = [" notin ", " in "]
                .into_iter()
                .find_map(|op| term.split_once(op).map(|(k, r)| (op, k, r)));
            let r = if let Some((op, k, rest)) = set_op.filter(|_| set_based) {
                match op {
                    " in " => Requirement::In(key(k)?, set(rest)?),
                    _ => Requirement::NotIn(key(k)?, set(rest)?),
                }
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(key(k)?, v.trim().to_string())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Equals(key(k)?, v.trim().to_string())
            } else if !set_based {
                return Err(bad("field selectors take =, == and != only"));
            } else if let Some(k) = term.strip_prefix('!') {
                Requirement::DoesNotExist(key(k)?)
            } else if term.contains(['(', ')', '<', '>']) {
                return Err(bad(
                    "the operators served are =, ==, !=, in, notin, ! and existence",
                ));
            } else {
                Requirement::Exists(key(term)?)
            };
            out.push(r);
        }
        Ok(Selector(out))
    }

    fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            Requirement::NotEquals(k, v) => lookup(k).as_deref() != Some(v.as_str()),
            Requirement::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
            Requirement::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.contains(&x)),
            Requirement::Exists(k) => lookup(k).is_some(),
            Requirement::DoesNotExist(k) => lookup(k).is_none(),
        })
    }
}

/// Whether `obj` passes the label and field selectors.
fn selected(obj: &Value, labels: &Selector, fields: &Selector) -> bool {
    labels.matches(|k| {
        obj.pointer("/metadata/labels")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .map(String::from)
    }) && fields.matches(|k| {
        let path = format!("/{}", k.replace('.', "/"));
        obj.pointer(&path).and_then(Value::as_str).map(String::from)
    })
}

/// The selectors a watch and a list share.
#[derive(Clone, Debug, Default, PartialEq)]
struct Filter {
    labels: Selector,
    fields: Selector,
}

impl Filter {
    fn of(req: &Request) -> Result<Filter, ApiStatus> {
        Ok(Filter {
            labels: Selector::parse(req.param("labelSelector").unwrap_or(""))?,
            fields: Selector::parse_fields(req.param("fieldSelector").unwrap_or(""))?,
        })
    }

    fn pass(&self, obj: &Value) -> bool {
        selected(obj, &self.labels, &self.fields)
    }
}

/// The target of an API path.
#[derive(Debug, PartialEq)]
enum Target<'a> {
    /// `namespace: None` lists across namespaces.
    Collection {
        r: Resource,
        namespace: Option<&'a str>,
    },
    Object {
        r: Resource,
        namespace: &'a str,
        name: &'a str,
        sub: Option<&'a str>,
    },
}

fn parse_target(path: &str) -> Option<Target<'_>> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let find = |plural: &str| Resource::find(group, version, plural);
    match rest {
        [plural] => Some(Target::Collection {
            r: find(plural)?,
            namespace: None,
        }),
        // A cluster-scoped object (a node, a namespace).
        [plural, name] => Some(Target::Object {
            r: find(plural).filter(|r| !r.info().namespaced)?,
            namespace: "",
            name,
            sub: None,
        }),
        ["namespaces", ns, plural] => Some(Target::Collection {
            r: find(plural).filter(|r| r.info().namespaced)?,
            namespace: Some(ns),
        }),
        ["namespaces", ns, plural, name] => Some(Target::Object {
            r: find(plural).filter(|r| r.info().namespaced)?,
            namespace: ns,
            name,
            sub: None,
        }),
        ["namespaces", ns, plural, name, sub] => Some(Target::Object {
            r: find(plural)?,
            namespace: ns,
            name,
            sub: Some(sub),
        }),
        _ => None,
    }
}

fn discovery(path: &str, server: &str) -> Option<Value> {
    let groups: Vec<(&str, &str)> = {
        let mut g: Vec<(&str, &str)> = Resource::ALL
            .iter()
            .map(|r| (r.info().group, r.info().version))
            .filter(|(g, _)| !g.is_empty())
            .collect();
        g.dedup();
        g
    };
    let group = |name: &str, version: &str| {
        let gv = json!({"groupVersion": format!("{name}/{version}"), "version": version});
        json!({"name": name, "versions": [gv], "preferredVersion": gv})
    };
    let resources = |g: &str, v: &str| {
        let mut list: Vec<Value> = Vec::new();
        for r in Resource::ALL {
            let i = r.info();
            if (i.group, i.version) != (g, v) {
                continue;
            }
            list.push(
                json!({"name": i.plural, "singularName": i.kind.to_lowercase(), "namespaced": i.namespaced,
                             "kind": i.kind, "verbs": i.verbs, "shortNames": i.short_names}),
            );
            if r == Resource::Deployments {
                list.push(
                    json!({"name": "deployments/scale", "singularName": "", "namespaced": true,
                                 "group": "autoscaling", "version": "v1", "kind": "Scale",
                                 "verbs": ["get", "patch", "update"]}),
                );
            }
        }
        let gv = if g.is_empty() {
            v.to_string()
        } else {
            format!("{g}/{v}")
        };
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    Some(match parts.as_slice() {
        ["version"] => json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-selfheal-serve",
                              "gitCommit": "", "gitTreeState": "clean", "buildDate": "",
                              "goVersion": "", "compiler": "", "platform": "linux/amd64"}),
        ["api"] => json!({"kind": "APIVersions", "versions": ["v1"],
                          "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]}),
        ["apis"] => json!({"kind": "APIGroupList", "apiVersion": "v1",
                           "groups": groups.iter().map(|(g, v)| group(g, v)).collect::<Vec<_>>()}),
        ["api", "v1"] => resources("", "v1"),
        ["apis", g] => {
            let (g, v) = groups.iter().find(|(name, _)| name == g)?;
            let mut doc = group(g, v);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            doc
        }
        ["apis", g, v] if groups.contains(&(*g, *v)) => resources(g, v),
        _ => return None,
    })
}

fn wants_table(req: &Request) -> bool {
    req.header("accept").is_some_and(|a| a.contains("as=Table"))
}

/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration`, as kubectl's
/// AGE column shows it.
fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 && !s.is_multiple_of(60) => format!("{m}m{}s", s % 60),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 && !m.is_multiple_of(60) => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if h < 192 && !h.is_multiple_of(24) => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

fn columns(r: Resource) -> &'static [&'static str] {
    match r {
        Resource::Deployments => &["Name", "Ready", "Up-to-date", "Available", "Age"],
        Resource::ReplicaSets => &["Name", "Desired", "Current", "Ready", "Age"],
        Resource::Pods => &["Name", "Ready", "Status", "Restarts", "Age"],
        Resource::Services => &["Name", "Type", "Selector", "Age"],
        Resource::ConfigMaps => &["Name", "Data", "Age"],
        Resource::Leases => &["Name", "Holder", "Age"],
        Resource::Nodes => &["Name", "Status", "Roles", "Age", "Version"],
        Resource::Namespaces => &["Name", "Status", "Age"],
        Resource::Events => &["Last Seen", "Type", "Reason", "Object", "Message"],
        Resource::HorizontalPodAutoscalers
        | Resource::StressChaos
        | Resource::NetworkChaos
        | Resource::VirtualServices => &["Name", "Age"],
    }
}

/// The columns `kubectl get -o wide` adds (priority 1), after the age, as
/// the API server's own printers order them.
fn wide_columns(r: Resource) -> &'static [&'static str] {
    match r {
        Resource::Pods => &["IP", "Node", "Nominated Node", "Readiness Gates"],
        Resource::Deployments | Resource::ReplicaSets => &["Containers", "Images", "Selector"],
        _ => &[],
    }
}

/// `key=value,...` of a label map.
fn label_list(v: Option<&Value>) -> String {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn wide_cells(r: Resource, o: &Value) -> Vec<Value> {
    let text = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or("<none>");
    let containers = |field: &str| {
        o.pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| c[field].as_str().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    match r {
        Resource::Pods => vec![
            json!(text("/status/podIP")),
            json!(text("/spec/nodeName")),
            json!("<none>"),
            json!("<none>"),
        ],
        Resource::Deployments | Resource::ReplicaSets => vec![
            json!(containers("name")),
            json!(containers("image")),
            json!(label_list(o.pointer("/spec/selector/matchLabels"))),
        ],
        _ => Vec::new(),
    }
}

fn cells(r: Resource, o: &Value, now: f64) -> Vec<Value> {
    let num = |p: &str| o.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let text = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let age = o
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
        .map_or("<unknown>".to_string(), |t| human_duration(now - t));
    let mut c: Vec<Value> = vec![json!(text("/metadata/name"))];
    match r {
        Resource::Deployments => c.extend([
            json!(format!(
                "{}/{}",
                num("/status/readyReplicas"),
                num("/spec/replicas")
            )),
            json!(num("/status/updatedReplicas")),
            json!(num("/status/availableReplicas")),
        ]),
        Resource::ReplicaSets => c.extend([
            json!(num("/spec/replicas")),
            json!(num("/status/replicas")),
            json!(num("/status/readyReplicas")),
        ]),
        Resource::Pods => {
            let ready = o
                .pointer("/status/containerStatuses/0/ready")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let waiting = text("/status/containerStatuses/0/state/waiting/reason");
            let status = if o.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating".to_string()
            } else if !waiting.is_empty() {
                waiting
            } else {
                text("/status/phase")
            };
            c.extend([
                json!(format!("{}/1", u8::from(ready))),
                json!(status),
                json!(num("/status/containerStatuses/0/restartCount")),
            ])
        }
        Resource::Services => c.extend([
            json!(text("/spec/type")),
            json!(label_list(o.pointer("/spec/selector"))),
        ]),
        Resource::ConfigMaps => c.push(json!(
            o.get("data")
                .and_then(Value::as_object)
                .map_or(0, |d| d.len())
        )),
        Resource::Leases => c.push(json!(text("/spec/holderIdentity"))),
        Resource::Nodes => {
            let ready = match text("/status/conditions/0/status").as_str() {
                "True" => "Ready",
                _ => "NotReady",
            };
            c.extend([json!(ready), json!("<none>"), json!(age)]);
            c.push(json!(text("/status/nodeInfo/kubeletVersion")));
            return c;
        }
        Resource::Namespaces => c.push(json!(text("/status/phase"))),
        Resource::Events => {
            let seen = o
                .get("lastTimestamp")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339)
                .map_or("<unknown>".to_string(), |t| human_duration(now - t));
            return vec![
                json!(seen),
                json!(text("/type")),
                json!(text("/reason")),
                json!(format!(
                    "{}/{}",
                    text("/involvedObject/kind").to_lowercase(),
                    text("/involvedObject/name")
                )),
                json!(text("/message")),
            ];
        }
        Resource::HorizontalPodAutoscalers
        | Resource::StressChaos
        | Resource::NetworkChaos
        | Resource::VirtualServices => {}
    }
    c.push(json!(age));
    c.extend(wide_cells(r, o));
    c
}

/// The server-side table `kubectl get` prints.
fn table(r: Resource, items: &[Value], rv: u64, now: f64) -> Value {
    let defs: Vec<Value> = columns(r)
        .iter()
        .map(|name| (name, 0))
        .chain(wide_columns(r).iter().map(|name| (name, 1)))
        .enumerate()
        .map(|(i, (name, priority))| {
            json!({"name": name, "type": "string",
                   "format": if i == 0 { "name" } else { "" }, "description": "", "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({"cells": cells(r, o, now), "object": {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
           "metadata": {"resourceVersion": rv.to_string()}, "columnDefinitions": defs, "rows": rows})
}

fn body_json(req: &Request) -> Result<Value, ApiStatus> {
    let content_type = req.header("content-type").unwrap_or("");
    if content_type.starts_with(super::protobuf::CONTENT_TYPE) {
        return super::protobuf::decode(&req.body).map_err(|e| {
            ApiStatus::new(
                415,
                "UnsupportedMediaType",
                format!("the protobuf body: {e}"),
            )
        });
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiStatus::new(400, "BadRequest", format!("the body is not JSON: {e}")))
}

fn patched(req: &Request, current: &Value) -> Result<Value, ApiStatus> {
    let patch = body_json(req)?;
    let mut out = current.clone();
    match req.header("content-type").unwrap_or("") {
        t if t.starts_with("application/json-patch+json") => {
            json_patch(&mut out, &patch).map_err(|e| {
                ApiStatus::new(
                    422,
                    "Invalid",
                    format!("the JSON patch does not apply: {e}"),
                )
            })?
        }
        t if t.starts_with("application/merge-patch+json") => merge_patch(&mut out, &patch),
        t if t.starts_with("application/strategic-merge-patch+json") => {
            strategic_merge_patch(&mut out, &patch).map_err(|e| {
                ApiStatus::new(
                    422,
                    "Invalid",
                    format!("the strategic merge patch does not apply: {e}"),
                )
            })?
        }
        t => {
            return Err(ApiStatus::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the patch type `{t}` is not served (JSON patch, merge patch and strategic merge patch are)"
                ),
            ));
        }
    }
    Ok(out)
}

/// `v` without its `null` members: Go clients write unset fields of a
/// struct (`creationTimestamp: null`) that the server never sent.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), without_nulls(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn invalid(msg: String) -> ApiStatus {
    ApiStatus::new(422, "Invalid", msg)
}

/// The most replicas a served Deployment is scaled to: far beyond any
/// scenario, and far below what would exhaust the simulation's memory.
pub const MAX_REPLICAS: u64 = 10_000;

/// `spec.replicas` of a Deployment or Scale as written: a whole number from
/// 0 to `MAX_REPLICAS` (the API's own type is int32; nothing wraps).
fn replicas_of(after: &Value) -> Result<u32, ApiStatus> {
    after
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .filter(|&n| n <= MAX_REPLICAS)
        .map(|n| n as u32)
        .ok_or_else(|| {
            invalid(format!(
                "spec.replicas: a whole number from 0 to {MAX_REPLICAS} is required"
            ))
        })
}

/// What a client's new version of one of the simulation's objects asks
/// the simulation to do.
fn writes_for(
    r: Resource,
    name: &str,
    before: &Value,
    after: &Value,
    store: &Store,
) -> Result<Vec<ApiWrite>, ApiStatus> {
    let spec_keys_differ = |allowed: &[&str]| {
        let empty = serde_json::Map::new();
        let b = before
            .get("spec")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let a = after
            .get("spec")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        b.keys()
            .chain(a.keys())
            .find(|k| !allowed.contains(&k.as_str()) && b.get(*k) != a.get(*k))
            .cloned()
    };
    let mut out = Vec::new();
    match r {
        Resource::Deployments => {
            if let Some(k) = spec_keys_differ(&["replicas", "template"]) {
                return Err(invalid(format!(
                    "spec.{k}: the simulation's Deployments change only spec.replicas and spec.template"
                )));
            }
            if before.pointer("/spec/replicas") != after.pointer("/spec/replicas") {
                out.push(ApiWrite::Scale {
                    deployment: name.to_string(),
                    replicas: replicas_of(after)?,
                });
            }
            let template = after.pointer("/spec/template");
            if before.pointer("/spec/template") != template {
                let image = template
                    .and_then(|t| t.pointer("/spec/containers/0/image"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if let Some(fault) = fault_of_image(name, image) {
                    // Only the image may change: the rest of the template
                    // is the running one's.
                    let mut current = before.pointer("/spec/template").cloned();
                    if let Some(c) = current
                        .as_mut()
                        .and_then(|t| t.pointer_mut("/spec/containers/0/image"))
                    {
                        *c = Value::from(image);
                    }
                    if current.as_ref().map(without_nulls) != template.map(without_nulls) {
                        return Err(invalid(format!(
                            "spec.template: `{image}` starts a bad deploy; change only the first container's image"
                        )));
                    }
                    out.push(ApiWrite::StartFault {
                        deployment: name.to_string(),
                        fault,
                    });
                    return Ok(out);
                }
                let known = revision_of_image(name, image).and_then(|k| {
                    let rs = store.get(Resource::ReplicaSets, &format!("{name}-r{k}"))?;
                    let mut t = rs.pointer("/spec/template")?.clone();
                    t["metadata"]["labels"]
                        .as_object_mut()?
                        .remove("pod-template-hash");
                    (template.map(without_nulls) == Some(without_nulls(&t))).then_some(k)
                });
                let Some(revision) = known else {
                    return Err(invalid(format!(
                        "spec.template: the simulation runs only its revisions' templates (images selfheal.local/{name}:r<k>, unchanged otherwise) and the bad deploys it holds (selfheal.local/{name}:fault-<i>); `{image}` is not one"
                    )));
                };
                out.push(ApiWrite::RollTo {
                    deployment: name.to_string(),
                    revision,
                });
            }
        }
        Resource::Services => {
            if let Some(k) = spec_keys_differ(&["selector"]) {
                return Err(invalid(format!(
                    "spec.{k}: the simulation's Services change only spec.selector"
                )));
            }
            if before.pointer("/spec/selector") != after.pointer("/spec/selector") {
                let selector: BTreeMap<String, String> = after
                    .pointer("/spec/selector")
                    .cloned()
                    .map(serde_json::from_value)
                    .unwrap_or(Ok(BTreeMap::new()))
                    .map_err(|e| invalid(format!("spec.selector: {e}")))?;
                out.push(ApiWrite::Select {
                    service: name.to_string(),
                    selector,
                });
            }
        }
        Resource::ConfigMaps => {
            let service = name.strip_suffix("-selfheal").unwrap_or(name).to_string();
            let data = |v: &Value, k: &str| v.pointer(&format!("/data/{k}")).cloned();
            let keys: Vec<String> = [before, after]
                .iter()
                .filter_map(|v| v.get("data").and_then(Value::as_object))
                .flat_map(|m| m.keys().cloned())
                .collect();
            let (mut max_connections, mut timeout_ms) = (None, None);
            for k in keys {
                let (b, a) = (data(before, &k), data(after, &k));
                if b == a {
                    continue;
                }
                let value = a.as_ref().and_then(Value::as_str).ok_or_else(|| {
                    invalid(format!(
                        "data.{k}: the simulation's settings cannot be removed"
                    ))
                })?;
                match k.as_str() {
                    "max_connections" => {
                        max_connections = Some(value.parse::<u32>().map_err(|_| {
                            invalid(format!(
                                "data.max_connections: `{value}` is not a whole number"
                            ))
                        })?)
                    }
                    "timeout_ms" => {
                        timeout_ms =
                            Some(value.parse::<f64>().ok().filter(|t| *t > 0.0).ok_or_else(
                                || {
                                    invalid(format!(
                                        "data.timeout_ms: `{value}` is not a positive number"
                                    ))
                                },
                            )?)
                    }
                    other => {
                        return Err(invalid(format!(
                            "data.{other}: the simulation reads only max_connections and timeout_ms"
                        )));
                    }
                }
            }
            if max_connections.is_some() || timeout_ms.is_some() {
                out.push(ApiWrite::Configure {
                    service,
                    max_connections,
                    timeout_ms,
                });
            }
        }
        Resource::Nodes => {
            // `kubectl cordon`/`uncordon`; the taint that goes with it is
            // the simulation's to add, as the node controller adds it.
            if let Some(k) = spec_keys_differ(&["unschedulable"]) {
                return Err(invalid(format!(
                    "spec.{k}: the simulation's Nodes change only spec.unschedulable"
                )));
            }
            let cordoned = |v: &Value| {
                v.pointer("/spec/unschedulable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            };
            if cordoned(before) != cordoned(after) {
                out.push(ApiWrite::Cordon {
                    node: name.to_string(),
                    unschedulable: cordoned(after),
                });
            }
        }
        other => {
            return Err(ApiStatus::new(
                405,
                "MethodNotAllowed",
                format!(
                    "{} of the simulation are changed only through their owners",
                    other.info().plural
                ),
            ));
        }
    }
    Ok(out)
}

fn scale_of(dep: &Value) -> Value {
    let name = dep["metadata"]["name"].as_str().unwrap_or("");
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
           "metadata": {"name": name, "namespace": dep["metadata"]["namespace"],
                        "uid": dep["metadata"]["uid"], "resourceVersion": dep["metadata"]["resourceVersion"],
                        "creationTimestamp": dep["metadata"]["creationTimestamp"]},
           "spec": {"replicas": dep["spec"]["replicas"]},
           "status": {"replicas": dep["status"]["replicas"], "selector": format!("app={name}")}})
}

/// What a write does with fields its kind does not have (KEP-2885).
#[derive(Clone, Copy, Debug, PartialEq)]
enum FieldValidation {
    Ignore,
    /// The API server's default since 1.27.
    Warn,
    Strict,
}

fn field_validation(req: &Request) -> Result<FieldValidation, ApiStatus> {
    match req.param("fieldValidation") {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => Err(ApiStatus::new(
            400,
            "BadRequest",
            format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ),
        )),
    }
}

/// The fields a write's body names that its kind does not have; none for
/// reads, and none for a body that does not parse (the write itself
/// reports that).
fn unknown_fields_of_write(req: &Request, target: &Target) -> Vec<String> {
    let (r, sub) = match (req.method.as_str(), target) {
        ("POST", Target::Collection { r, .. }) => (*r, None),
        ("PUT" | "PATCH", Target::Object { r, sub, .. }) => (*r, *sub),
        _ => return Vec::new(),
    };
    let shape = match sub {
        Some("scale") => &fields::SCALE,
        Some(_) => return Vec::new(),
        None => fields::shape(r),
    };
    let Ok(body) = body_json(req) else {
        return Vec::new();
    };
    let json_patch = req.method == "PATCH"
        && req
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json-patch+json"));
    if json_patch {
        fields::unknown_in_json_patch(shape, &body)
    } else {
        fields::unknown_fields(shape, &body)
    }
}

/// The whole API: `store` is locked only while it is read or written, never
/// while the simulation carries a write out. Writes are checked for fields
/// their kind does not have first, as `?fieldValidation=` asks.
pub fn answer(
    req: &Request,
    store: &std::sync::Mutex<Store>,
    writer: &dyn Writer,
    server: &str,
    now: f64,
) -> Answer {
    let path = req.path.trim_end_matches('/');
    let Some(target) = parse_target(path) else {
        return answer_unchecked(req, store, writer, server, now);
    };
    let validation = match field_validation(req) {
        Ok(v) => v,
        Err(e) if req.method != "GET" => return fail(e),
        Err(_) => FieldValidation::Ignore,
    };
    // `Ignore` never looks at the body twice.
    let named: Vec<String> = if validation == FieldValidation::Ignore {
        Vec::new()
    } else {
        unknown_fields_of_write(req, &target)
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect()
    };
    if validation == FieldValidation::Strict && !named.is_empty() {
        return fail(ApiStatus::new(
            400,
            "BadRequest",
            format!("strict decoding error: {}", named.join(", ")),
        ));
    }
    let mut answer = answer_unchecked(req, store, writer, server, now);
    if let Answer::Full(response) = &mut answer {
        response.warnings = named;
    }
    answer
}

fn answer_unchecked(
    req: &Request,
    store: &std::sync::Mutex<Store>,
    writer: &dyn Writer,
    server: &str,
    now: f64,
) -> Answer {
    let path = req.path.trim_end_matches('/');
    if req.method == "GET" {
        if let Some(doc) = discovery(path, server).or_else(|| openapi::document(path)) {
            return ok(doc);
        }
        if matches!(path, "/healthz" | "/livez" | "/readyz") {
            return Answer::Full(Response::text(200, "text/plain", "ok".into()));
        }
    }
    let Some(target) = parse_target(path) else {
        return fail(ApiStatus::new(
            404,
            "NotFound",
            format!(
                "the server could not find the requested resource ({} {path})",
                req.method
            ),
        ));
    };
    let lock = || store.lock().expect("served store");
    let served_ns = lock().namespace().to_string();
    match (req.method.as_str(), target) {
        ("GET", Target::Collection { r, namespace }) => {
            let filter = match Filter::of(req) {
                Ok(f) => f,
                Err(e) => return fail(e),
            };
            let ours = namespace.is_none_or(|ns| ns == served_ns);
            if matches!(req.param("watch"), Some("true" | "1")) {
                let from = req
                    .param("resourceVersion")
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|v| *v > 0);
                // Whole seconds, as the API server reads them; anything
                // else (`nan`, `-1`, `1e400`) is refused, not clamped.
                let timeout_s = match req.param("timeoutSeconds") {
                    None => 1800.0,
                    Some(t) => match t.parse::<u32>() {
                        Ok(t) => f64::from(t),
                        Err(_) => {
                            return fail(ApiStatus::new(
                                400,
                                "BadRequest",
                                format!("timeoutSeconds: `{t}` is not a whole number of seconds"),
                            ));
                        }
                    },
                };
                return Answer::Watch(WatchPlan {
                    resource: r,
                    from,
                    filter,
                    elsewhere: !ours,
                    timeout_s,
                    table: wants_table(req),
                });
            }
            let s = lock();
            let items: Vec<Value> = if ours {
                s.list(r).filter(|o| filter.pass(o)).cloned().collect()
            } else {
                Vec::new()
            };
            let rv = s.resource_version();
            drop(s);
            if wants_table(req) {
                return ok(table(r, &items, rv, now));
            }
            ok(
                json!({"kind": format!("{}List", r.info().kind), "apiVersion": r.api_version(),
                      "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            )
        }
        ("POST", Target::Collection { r, namespace }) => {
            if namespace != Some(served_ns.as_str()) {
                return fail(ApiStatus::new(
                    404,
                    "NotFound",
                    format!("namespaces \"{}\" not found", namespace.unwrap_or("")),
                ));
            }
            if !r.info().verbs.contains(&"create") {
                return fail(ApiStatus::new(
                    405,
                    "MethodNotAllowed",
                    format!("{} are created by the simulation", r.info().plural),
                ));
            }
            let body = match body_json(req) {
                Ok(b) => b,
                Err(e) => return fail(e),
            };
            let fault = match r {
                Resource::StressChaos | Resource::NetworkChaos => {
                    Some(crate::chaos_mesh::fault(r.info().plural, &body))
                }
                Resource::VirtualServices => Some(crate::istio::fault(&body)),
                _ => None,
            };
            if let Some(fault) = fault {
                // The fault starts before the object exists, as Chaos Mesh's
                // controller (or the mesh's sidecars) inject it right after
                // the create.
                let name = body
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let object = format!("{}/{name}", r.info().plural);
                let injected = fault
                    .map_err(|e| invalid(e.to_string()))
                    .and_then(|fault| writer.write(vec![ApiWrite::Inject { fault, object }]));
                if let Err(e) = injected {
                    return fail(e);
                }
            }
            match lock().create(r, body, now) {
                Ok(o) => Answer::Full(Response::json(201, &o)),
                Err(e) => fail(e),
            }
        }
        (
            method,
            Target::Object {
                r,
                namespace,
                name,
                sub,
            },
        ) => {
            if r.info().namespaced && namespace != served_ns {
                return fail(ApiStatus::not_found(r, name));
            }
            let current = match lock().get(r, name).cloned() {
                Some(o) => o,
                None => return fail(ApiStatus::not_found(r, name)),
            };
            let simulated = lock().is_simulated(r, name);
            let scale = match sub {
                None => false,
                Some("scale") if r == Resource::Deployments => true,
                Some(other) => {
                    return fail(ApiStatus::new(
                        404,
                        "NotFound",
                        format!("no subresource `{other}` is served"),
                    ));
                }
            };
            let reread = |r: Resource| match lock().get(r, name).cloned() {
                Some(o) if scale => ok(scale_of(&o)),
                Some(o) => ok(o),
                None => fail(ApiStatus::not_found(r, name)),
            };
            match method {
                "GET" if scale => ok(scale_of(&current)),
                "GET" if wants_table(req) => {
                    ok(table(r, &[current], lock().resource_version(), now))
                }
                "GET" => ok(current),
                "PATCH" | "PUT" => {
                    let base = if scale {
                        scale_of(&current)
                    } else {
                        current.clone()
                    };
                    let after = match method {
                        "PATCH" => patched(req, &base),
                        _ => body_json(req),
                    };
                    let after = match after {
                        Ok(a) => a,
                        Err(e) => return fail(e),
                    };
                    if !simulated {
                        let mut s = lock();
                        let after = if method == "PATCH" {
                            // A patch never conflicts on the version it was made from.
                            let mut a = after;
                            a["metadata"]["resourceVersion"] =
                                current["metadata"]["resourceVersion"].clone();
                            a
                        } else {
                            after
                        };
                        return match s.update(r, name, after) {
                            Ok(o) => ok(o),
                            Err(e) => fail(e),
                        };
                    }
                    // Labels and annotations of a simulated object are the
                    // client's to change; the rest goes to the simulation.
                    let metadata_only = !scale && {
                        let (mut a, mut b) = (after.clone(), current.clone());
                        for v in [&mut a, &mut b] {
                            if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                                for k in
                                    ["labels", "annotations", "resourceVersion", "managedFields"]
                                {
                                    m.remove(k);
                                }
                            }
                        }
                        a == b
                    };
                    let relabel = !scale && user_metadata_of(&after) != user_metadata_of(&current);
                    if metadata_only {
                        if relabel {
                            lock().set_user_metadata(r, name, &after);
                        }
                        return reread(r);
                    }
                    let writes = if scale {
                        replicas_of(&after).map(|replicas| {
                            vec![ApiWrite::Scale {
                                deployment: name.to_string(),
                                replicas,
                            }]
                        })
                    } else {
                        writes_for(r, name, &current, &after, &lock())
                    };
                    match writes.and_then(|w| writer.write(w)) {
                        Ok(()) => {
                            // All or nothing: the labels only once the
                            // simulation took the rest.
                            if relabel {
                                lock().set_user_metadata(r, name, &after);
                            }
                            reread(r)
                        }
                        Err(e) => fail(e),
                    }
                }
                "DELETE" if r == Resource::Pods => {
                    let grace_zero = req.param("gracePeriodSeconds") == Some("0");
                    match writer.write(vec![ApiWrite::DeletePod {
                        pod: name.to_string(),
                        grace_zero,
                    }]) {
                        // The pod as it is now: terminating, or already gone.
                        Ok(()) => Answer::Full(Response::json(
                            200,
                            lock().get(r, name).unwrap_or(&current),
                        )),
                        Err(e) => fail(e),
                    }
                }
                "DELETE" if !simulated => {
                    if r.injects_faults() {
                        // The fault ends with its resource.
                        let object = format!("{}/{name}", r.info().plural);
                        if let Err(e) = writer.write(vec![ApiWrite::Withdraw { object }]) {
                            return fail(e);
                        }
                    }
                    match lock().delete(r, name) {
                        Ok(o) => ok(o),
                        Err(e) => fail(e),
                    }
                }
                _ => fail(ApiStatus::new(
                    405,
                    "MethodNotAllowed",
                    format!("{method} of {} \"{name}\" is not served", r.info().plural),
                )),
            }
        }
        (method, Target::Collection { r, .. }) => fail(ApiStatus::new(
            405,
            "MethodNotAllowed",
            format!(
                "{method} of the {} collection is not served",
                r.info().plural
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_as_the_api_server_does() {
        let o = json!({"metadata": {"name": "api-r0-1", "labels": {"app": "api", "pod-template-hash": "r0"}}});
        let m = |l: &str, f: &str| {
            selected(
                &o,
                &Selector::parse(l).unwrap(),
                &Selector::parse(f).unwrap(),
            )
        };
        assert!(m("app=api", ""));
        assert!(m("app==api,pod-template-hash", ""));
        assert!(!m("app!=api", ""));
        assert!(m("tier!=web", "metadata.name=api-r0-1"));
        assert!(!m("", "metadata.name=other"));
        // Set-based requirements, as labels.Parse reads them.
        assert!(m("app in (orders,api)", ""));
        assert!(m("app in (api)", ""));
        assert!(!m("app in (orders)", ""));
        assert!(m("app notin (orders),tier notin (web)", ""));
        assert!(!m("app notin (api, web)", ""));
        assert!(m("!tier,app", ""));
        assert!(!m("!app", ""));
        assert!(m("app in (api),pod-template-hash=r0", ""));
        // Field selectors stay equality-based; broken sets are refused.
        assert!(Selector::parse_fields("metadata.name in (a)").is_err());
        assert!(Selector::parse("app in a,b").is_err());
        assert!(Selector::parse("app > 3").is_err());
        assert!(Selector::parse("=x").is_err());
    }

    #[test]
    fn paths_name_their_resource() {
        assert_eq!(
            parse_target("/apis/apps/v1/namespaces/shop/deployments/api/scale"),
            Some(Target::Object {
                r: Resource::Deployments,
                namespace: "shop",
                name: "api",
                sub: Some("scale")
            })
        );
        assert_eq!(
            parse_target("/api/v1/pods"),
            Some(Target::Collection {
                r: Resource::Pods,
                namespace: None
            })
        );
        assert_eq!(
            parse_target("/apis/apps/v2/namespaces/shop/deployments"),
            None
        );
    }

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        for (s, want) in [
            (5.0, "5s"),
            (119.0, "119s"),
            (150.0, "2m30s"),
            (600.0, "10m"),
            (7200.0, "120m"),
            (4.0 * 3600.0 + 60.0, "4h1m"),
            (30.0 * 3600.0, "30h"),
            (50.0 * 3600.0, "2d2h"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }
}
