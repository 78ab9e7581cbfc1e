//! The patch formats the API's clients send: JSON merge patch (RFC 7386;
//! `kubectl scale`), Kubernetes' strategic merge patch (`kubectl set
//! image`, `label`, `annotate`, `apply`: lists of containers, ports,
//! volumes ... merged by key) and JSON patch (RFC 6902; `kubectl rollout
//! undo`).

use serde_json::Value;

use super::BodyError;

/// RFC 7386 (the `json-patch` crate): objects merge key by key, `null`
/// removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// The merge key of a list field, as Kubernetes' Go types tag it
/// (`patchStrategy:"merge"` with `patchMergeKey`, k8s.io/api core/v1 and
/// meta/v1); `None`: the list is replaced whole. `ports` is a container's
/// (keyed by `containerPort`) or a Service's (keyed by `port`), told apart
/// by the elements.
fn merge_key(field: &str, elements: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => "name",
        "ports" if elements.iter().any(|e| e.get("containerPort").is_some()) => "containerPort",
        "ports" => "port",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Lists of plain values that merge as sets (`patchStrategy:"merge"`
/// without a key).
const SET_LISTS: [&str; 1] = ["finalizers"];

/// Kubernetes' strategic merge patch (k8s.io/apimachinery
/// `pkg/util/strategicpatch`): a merge patch whose keyed lists merge
/// element by element, with the directives `$patch` (`merge`, `replace`,
/// `delete`, on a map or a list element), `$retainKeys`,
/// `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`.
/// Upstream interleaves elements the patch does not name with the ordered
/// ones by their old positions; here they follow the ordered ones, in
/// their old order. The target is left unchanged on an error.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), BodyError> {
    let Value::Object(p) = patch else {
        return Err("a strategic merge patch is a JSON object".into());
    };
    let mut out = target.clone();
    merge_map(&mut out, p)?;
    *target = out;
    Ok(())
}

/// Merges `patch` into `target` (made a map if it is not one); a
/// `$patch: delete` leaves `Null` for the parent to remove.
fn merge_map(target: &mut Value, patch: &serde_json::Map<String, Value>) -> Result<(), BodyError> {
    match patch.get("$patch").map(|d| d.as_str().unwrap_or("?")) {
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some("replace") => *target = Value::Object(Default::default()),
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown directive `$patch: {other}`").into()),
    }
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let t = target.as_object_mut().expect("made an object above");
    let mut orders = Vec::new();
    for (k, v) in patch {
        if k == "$patch" || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field, v));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let gone = v.as_array().ok_or_else(|| format!("`{k}` is not a list"))?;
            if let Some(Value::Array(a)) = t.get_mut(field) {
                a.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(format!("unknown directive `{k}`").into());
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(pm) => {
                let e = t.entry(k.clone()).or_insert(Value::Null);
                merge_map(e, pm)?;
                if e.is_null() {
                    t.remove(k);
                }
            }
            Value::Array(pa) => {
                let merged = merge_list(k, t.remove(k), pa)?;
                t.insert(k.clone(), merged);
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    for (field, order) in orders {
        let order = order
            .as_array()
            .ok_or_else(|| format!("`$setElementOrder/{field}` is not a list"))?;
        if let Some(Value::Array(a)) = t.get_mut(field) {
            reorder(field, a, order);
        }
    }
    if let Some(keep) = patch.get("$retainKeys") {
        let keep = keep.as_array().ok_or("`$retainKeys` is not a list")?;
        t.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    Ok(())
}

/// A patch value with its directives resolved against nothing.
fn fresh(v: &Value) -> Result<Value, BodyError> {
    match v {
        Value::Object(m) => {
            let mut out = Value::Null;
            merge_map(&mut out, m)?;
            Ok(out)
        }
        other => Ok(other.clone()),
    }
}

fn merge_list(field: &str, current: Option<Value>, patch: &[Value]) -> Result<Value, BodyError> {
    let mut cur = match current {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let is_replace = |e: &Value| e.get("$patch").and_then(Value::as_str) == Some("replace");
    if patch.iter().any(is_replace) {
        let kept: Result<Vec<Value>, BodyError> =
            patch.iter().filter(|e| !is_replace(e)).map(fresh).collect();
        return Ok(Value::Array(kept?));
    }
    if SET_LISTS.contains(&field) {
        for v in patch {
            if !cur.contains(v) {
                cur.push(v.clone());
            }
        }
        return Ok(Value::Array(cur));
    }
    let key = match merge_key(field, patch) {
        Some(k) if patch.iter().all(Value::is_object) => k,
        _ => {
            return patch
                .iter()
                .map(fresh)
                .collect::<Result<_, _>>()
                .map(Value::Array);
        }
    };
    for e in patch {
        let id = e
            .get(key)
            .ok_or_else(|| format!("an element of `{field}` has no `{key}`, its merge key"))?;
        let at = cur.iter().position(|c| c.get(key) == Some(id));
        let m = e.as_object().expect("checked above");
        match (at, m.get("$patch").and_then(Value::as_str)) {
            (Some(i), Some("delete")) => {
                cur.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => merge_map(&mut cur[i], m)?,
            (None, _) => cur.push(fresh(e)?),
        }
    }
    Ok(Value::Array(cur))
}

/// Puts the elements `order` names first, in its order, then the rest in
/// their old order.
fn reorder(field: &str, list: &mut Vec<Value>, order: &[Value]) {
    let key = merge_key(field, order);
    let same = |a: &Value, b: &Value| match key {
        Some(k) if a.is_object() => a.get(k).is_some() && a.get(k) == b.get(k),
        _ => a == b,
    };
    let mut rest = std::mem::take(list);
    for o in order {
        if let Some(i) = rest.iter().position(|x| same(o, x)) {
            list.push(rest.remove(i));
        }
    }
    list.extend(rest);
}

/// RFC 6902 (the `json-patch` crate: `add`, `remove`, `replace`, `move`,
/// `copy`, `test`), applied in order; the target is left unchanged if any
/// operation fails.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), BodyError> {
    let ops: json_patch::Patch = serde_json::from_value(ops.clone())
        .map_err(|e| format!("not a JSON patch (an array of operations): {e}"))?;
    json_patch::patch(target, &ops)
        .map_err(|e| format!("operation {}: `{}`: {}", e.operation, e.path, e.kind).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // The RFC's own example (section 3).
        let mut t = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
                           "tags": ["example", "sample"], "content": "This will be unchanged"});
        merge_patch(
            &mut t,
            &json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890",
                    "author": {"familyName": null}, "tags": ["example"]}),
        );
        assert_eq!(
            t,
            json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
                   "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"})
        );
    }

    #[test]
    fn json_patch_applies_all_or_nothing() {
        let mut t = json!({"spec": {"template": {"a": 1}, "list": [1, 2]}, "metadata": {"annotations": {"x/y": "1"}}});
        json_patch(
            &mut t,
            &json!([
                {"op": "replace", "path": "/spec/template", "value": {"b": 2}},
                {"op": "add", "path": "/spec/list/-", "value": 3},
                {"op": "remove", "path": "/metadata/annotations/x~1y"},
                {"op": "test", "path": "/spec/list/0", "value": 1},
            ]),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"spec": {"template": {"b": 2}, "list": [1, 2, 3]}, "metadata": {"annotations": {}}})
        );
        let before = t.clone();
        let err = json_patch(
            &mut t,
            &json!([{"op": "add", "path": "/spec/x", "value": 1}, {"op": "replace", "path": "/nope/y", "value": 1}]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("operation 1") && err.contains("/nope/y"),
            "{err}"
        );
        assert_eq!(t, before);
    }

    /// Cases in the spirit of apimachinery's `strategicpatch/patch_test.go`
    /// ("merge lists of maps by key", "delete an element with $patch",
    /// "replace a map with $patch", "$deleteFromPrimitiveList",
    /// "$setElementOrder", "$retainKeys").
    #[test]
    fn strategic_merge_patch_merges_keyed_lists() {
        let deployment = json!({"spec": {"template": {"spec": {
            "containers": [
                {"name": "app", "image": "a:1", "resources": {"limits": {"cpu": "1"}},
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "name": "http"}]},
                {"name": "sidecar", "image": "s:1"}],
            "tolerations": [{"key": "x"}]}}},
            "metadata": {"finalizers": ["a", "b"], "labels": {"app": "api", "team": "x"}}});
        // `kubectl set image deployment/api app=a:2`, as kubectl sends it.
        let mut t = deployment.clone();
        strategic_merge_patch(
            &mut t,
            &json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [{"image": "a:2", "name": "app"}]}}}}),
        )
        .unwrap();
        let c = &t["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["image"], "a:2");
        assert_eq!(c[0]["resources"], json!({"limits": {"cpu": "1"}}));
        assert_eq!(c[1], json!({"name": "sidecar", "image": "s:1"}));
        // A plain merge patch would have dropped both.
        let mut m = deployment.clone();
        merge_patch(
            &mut m,
            &json!({"spec": {"template": {"spec": {"containers": [{"image": "a:2", "name": "app"}]}}}}),
        );
        assert!(
            m["spec"]["template"]["spec"]["containers"][0]
                .get("resources")
                .is_none()
        );

        // Deletes by key, a new element appended, nested keyed lists, a
        // replaced unkeyed list, set lists, removed keys.
        let mut t = deployment.clone();
        strategic_merge_patch(
            &mut t,
            &json!({"spec": {"template": {"spec": {
                "containers": [
                    {"name": "sidecar", "$patch": "delete"},
                    {"name": "app", "env": [{"name": "A", "$patch": "delete"}, {"name": "C", "value": "3"}],
                     "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                    {"name": "new", "image": "n:1"}],
                "tolerations": [{"key": "y"}]}}},
                "metadata": {"finalizers": ["c", "a"], "$deleteFromPrimitiveList/finalizers": ["b"],
                             "labels": {"team": null}}}),
        )
        .unwrap();
        let spec = &t["spec"]["template"]["spec"];
        let names: Vec<&str> = spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["app", "new"]);
        assert_eq!(
            spec["containers"][0]["env"],
            json!([{"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(
            spec["containers"][0]["ports"],
            json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}])
        );
        assert_eq!(spec["tolerations"], json!([{"key": "y"}]));
        assert_eq!(t["metadata"]["finalizers"], json!(["a", "c"]));
        assert_eq!(t["metadata"]["labels"], json!({"app": "api"}));

        // Replace a map, replace a keyed list, retain keys, reorder.
        let mut t = deployment.clone();
        strategic_merge_patch(
            &mut t,
            &json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}},
                    "spec": {"template": {"spec": {
                        "$retainKeys": ["containers"],
                        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                        "containers": [{"name": "sidecar", "image": "s:2"}]}}}}),
        )
        .unwrap();
        assert_eq!(t["metadata"]["labels"], json!({"only": "this"}));
        let spec = &t["spec"]["template"]["spec"];
        assert!(spec.get("tolerations").is_none(), "{spec}");
        assert_eq!(
            spec["containers"][0],
            json!({"name": "sidecar", "image": "s:2"})
        );
        assert_eq!(spec["containers"][1]["name"], "app");
        let mut t = deployment.clone();
        strategic_merge_patch(
            &mut t,
            &json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "o:1"}]}}}}),
        )
        .unwrap();
        assert_eq!(
            t["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "o:1"}])
        );
        // Errors leave the target as it was.
        let mut t = deployment.clone();
        for bad in [
            json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            json!({"metadata": {"$patch": "explode"}}),
            json!({"metadata": {"$unknown": 1}}),
            json!([1]),
        ] {
            let err = strategic_merge_patch(&mut t, &bad).unwrap_err();
            assert!(!err.to_string().is_empty());
            assert_eq!(t, deployment, "{bad}");
        }
    }
}
