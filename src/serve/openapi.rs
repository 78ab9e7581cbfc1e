//! The OpenAPI v3 documents of the served API (`/openapi/v3` and one per
//! group-version), as `k8s.io/kube-openapi` publishes them: each path's
//! operations carry `x-kubernetes-group-version-kind` and their query
//! parameters. kubectl reads them before `apply`, `edit`, `create -f` and
//! `replace` (cli-runtime's `queryParamVerifierV3`): when a kind's PATCH
//! takes `fieldValidation`, it sends `fieldValidation=Strict` and leaves
//! the checking to the server; without a document it stops with "failed to
//! download openapi".
//!
//! Only what is served is described: the verbs of each resource
//! (`Resource::info`), the patch types `patch.rs` applies, and the one
//! query parameter writes honour. The component schemas are left empty, so
//! kubectl computes strategic merge patches from its compiled-in types (as
//! it does when a document lacks a kind's schema), and `kubectl explain`
//! has nothing to show.

use serde_json::{Value, json};

use super::store::Resource;
use crate::digest::Fnv1a64;

/// `r`'s group-version as `/openapi/v3` names it (`api/v1`,
/// `apis/apps/v1`): its API path without the leading slash.
fn group_version(r: Resource) -> String {
    let i = r.info();
    if i.group.is_empty() {
        format!("api/{}", i.version)
    } else {
        format!("apis/{}/{}", i.group, i.version)
    }
}

/// The group-versions served.
fn group_versions() -> Vec<String> {
    let mut out: Vec<String> = Resource::ALL.iter().map(|&r| group_version(r)).collect();
    out.sort();
    out.dedup();
    out
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn param(name: &str, place: &str, description: &str) -> Value {
    let mut p = json!({"name": name, "in": place, "description": description,
                       "schema": {"type": "string", "uniqueItems": true}});
    if place == "path" {
        p["required"] = json!(true);
    }
    p
}

fn field_validation() -> Value {
    param(
        "fieldValidation",
        "query",
        "Ignore, Warn (the default) or Strict: what the server does with fields the kind does not have.",
    )
}

fn operation(id: &str, action: &str, gvk: &Value, write: Option<&[&str]>) -> Value {
    let mut op = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}},
    });
    if let Some(types) = write {
        op["parameters"] = json!([field_validation()]);
        let content: serde_json::Map<String, Value> = types
            .iter()
            .map(|t| (t.to_string(), json!({"schema": {"type": "object"}})))
            .collect();
        op["requestBody"] = json!({"required": true, "content": content});
    }
    op
}

const OBJECT_BODY: &[&str] = &["application/json"];
/// The patch types `patch.rs` applies (no server-side apply).
const PATCH_BODY: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// The document of one group-version (`api/v1`, `apis/apps/v1`), or `None`
/// if it is not served.
pub fn group_version_document(gv: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for r in Resource::ALL {
        let i = r.info();
        let prefix = group_version(r);
        if prefix != gv {
            continue;
        }
        let kind = gvk(i.group, i.version, i.kind);
        let id = |verb: &str, suffix: &str| format!("{verb}{}{suffix}", i.kind);
        let can = |verb: &str| i.verbs.contains(&verb);
        let (collection, item, mut scope) = if i.namespaced {
            (
                format!("/{prefix}/namespaces/{{namespace}}/{}", i.plural),
                format!("/{prefix}/namespaces/{{namespace}}/{}/{{name}}", i.plural),
                vec![param("namespace", "path", "object name and auth scope")],
            )
        } else {
            (
                format!("/{prefix}/{}", i.plural),
                format!("/{prefix}/{}/{{name}}", i.plural),
                Vec::new(),
            )
        };
        let mut list = json!({"parameters": scope.clone()});
        list["get"] = operation(&id("list", ""), "list", &kind, None);
        if can("create") {
            list["post"] = operation(&id("create", ""), "post", &kind, Some(OBJECT_BODY));
        }
        paths.insert(collection, list);
        scope.insert(0, param("name", "path", "name of the object"));
        let mut one = json!({"parameters": scope.clone()});
        one["get"] = operation(&id("read", ""), "get", &kind, None);
        if can("update") {
            one["put"] = operation(&id("replace", ""), "put", &kind, Some(OBJECT_BODY));
        }
        if can("patch") {
            one["patch"] = operation(&id("patch", ""), "patch", &kind, Some(PATCH_BODY));
        }
        if can("delete") {
            one["delete"] = operation(&id("delete", ""), "delete", &kind, None);
        }
        paths.insert(item.clone(), one);
        if r == Resource::Deployments {
            let scale = gvk("autoscaling", "v1", "Scale");
            let mut sub = json!({"parameters": scope});
            sub["get"] = operation(&id("read", "Scale"), "get", &scale, None);
            sub["put"] = operation(&id("replace", "Scale"), "put", &scale, Some(OBJECT_BODY));
            sub["patch"] = operation(&id("patch", "Scale"), "patch", &scale, Some(PATCH_BODY));
            paths.insert(format!("{item}/scale"), sub);
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (selfheal serve)", "version": "v1.32.0"},
        "paths": paths,
        // Present and empty: kubectl looks for the kind's schema here and,
        // finding none, quietly uses its compiled-in one.
        "components": {"schemas": {}},
    }))
}

/// `/openapi/v3`: each group-version's document by a URL that names its
/// content, so clients may cache it.
pub fn index() -> Value {
    let paths: serde_json::Map<String, Value> = group_versions()
        .into_iter()
        .filter_map(|gv| {
            let doc = group_version_document(&gv)?;
            let hash = Fnv1a64::hex_of(&serde_json::to_vec(&doc).expect("JSON serialises"));
            let url = format!("/openapi/v3/{gv}?hash={hash}");
            Some((gv, json!({"serverRelativeURL": url})))
        })
        .collect();
    json!({"paths": paths})
}

/// The document at `path` (`/openapi/v3` or `/openapi/v3/{group-version}`).
pub fn document(path: &str) -> Option<Value> {
    let rest = path.strip_prefix("/openapi/v3")?;
    if rest.is_empty() {
        return Some(index());
    }
    group_version_document(rest.strip_prefix('/')?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What cli-runtime's `supportsQueryParamV3` looks for: the PATCH of
    /// the kind's path, found by its group-version-kind, lists the
    /// parameter.
    fn patch_takes(doc: &Value, kind: &Value, param: &str) -> Option<bool> {
        doc["paths"].as_object()?.values().find_map(|p| {
            let op = p.get("patch")?;
            (&op["x-kubernetes-group-version-kind"] == kind).then(|| {
                op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|q| q["name"] == param))
            })
        })
    }

    #[test]
    fn every_patchable_kind_says_its_patches_take_field_validation() {
        let index = document("/openapi/v3").unwrap();
        for r in Resource::ALL {
            let i = r.info();
            let gv = group_version(r);
            let url = index["paths"][&gv]["serverRelativeURL"].as_str().unwrap();
            let doc = document(url.split('?').next().unwrap()).unwrap();
            let kind = gvk(i.group, i.version, i.kind);
            let takes = patch_takes(&doc, &kind, "fieldValidation");
            assert_eq!(
                takes.is_some(),
                i.verbs.contains(&"patch"),
                "{gv} {}",
                i.kind
            );
            assert_ne!(takes, Some(false));
        }
        let apps = document("/openapi/v3/apis/apps/v1").unwrap();
        let scale = gvk("autoscaling", "v1", "Scale");
        assert_eq!(patch_takes(&apps, &scale, "fieldValidation"), Some(true));
        let patch_types = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
            ["patch"]["requestBody"]["content"];
        assert!(
            patch_types
                .get("application/strategic-merge-patch+json")
                .is_some()
        );
        assert!(patch_types.get("application/apply-patch+yaml").is_none());
    }

    #[test]
    fn the_index_names_each_document_by_its_content() {
        let a = index();
        assert_eq!(a, index());
        let urls: Vec<&str> = a["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v["serverRelativeURL"].as_str().unwrap())
            .collect();
        let hashes: std::collections::BTreeSet<&str> = urls
            .iter()
            .filter_map(|u| u.split("?hash=").nth(1))
            .collect();
        assert_eq!(hashes.len(), urls.len(), "{urls:?}");
        assert!(document("/openapi/v3/apis/nothing/v9").is_none());
        assert!(document("/openapi/v3x").is_none());
    }
}
