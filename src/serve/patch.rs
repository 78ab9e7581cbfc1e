//! The two patch formats the API's clients send: JSON merge patch
//! (RFC 7386; `kubectl scale`, and strategic merge patch for the fields
//! the simulation has, which hold no lists to merge by key) and JSON patch
//! (RFC 6902; `kubectl rollout undo`).

use serde_json::Value;

/// RFC 7386: objects merge key by key, `null` removes, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let t = target.as_object_mut().expect("made an object above");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// The parent of `path` and the last token.
fn split(path: &str) -> Result<(String, String), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` is not a JSON pointer"));
    }
    let (parent, last) = path.rsplit_once('/').expect("starts with /");
    Ok((parent.to_string(), unescape(last)))
}

/// RFC 6902 `add`, `remove`, `replace` and `test`, applied in order; the
/// target is left unchanged if any operation fails.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch is an array of operations")?;
    let mut out = target.clone();
    for (i, op) in ops.iter().enumerate() {
        let field = |f: &str| {
            op.get(f)
                .ok_or_else(|| format!("operation {i} has no `{f}`"))
        };
        let kind = field("op")?.as_str().unwrap_or_default();
        let path = field("path")?
            .as_str()
            .ok_or_else(|| format!("operation {i}: `path` is not a string"))?;
        if path.is_empty() {
            match kind {
                "add" | "replace" => out = field("value")?.clone(),
                _ => return Err(format!("operation {i}: `{kind}` of the whole document")),
            }
            continue;
        }
        let (parent, last) = split(path)?;
        let missing = || format!("operation {i}: `{path}` does not exist");
        let holder = out.pointer_mut(&parent).ok_or_else(missing)?;
        match kind {
            "test" => {
                let at = match holder {
                    Value::Object(m) => m.get(&last),
                    Value::Array(a) => last.parse::<usize>().ok().and_then(|k| a.get(k)),
                    _ => None,
                };
                if at != Some(field("value")?) {
                    return Err(format!("operation {i}: test of `{path}` failed"));
                }
            }
            "add" | "replace" => {
                let value = field("value")?.clone();
                match holder {
                    Value::Object(m) => {
                        if kind == "replace" && !m.contains_key(&last) {
                            return Err(missing());
                        }
                        m.insert(last, value);
                    }
                    Value::Array(a) => {
                        let k = if last == "-" {
                            a.len()
                        } else {
                            last.parse::<usize>().map_err(|_| missing())?
                        };
                        match (kind, k < a.len(), k == a.len()) {
                            ("replace", true, _) => a[k] = value,
                            ("add", _, true) | ("add", true, _) => a.insert(k, value),
                            _ => return Err(missing()),
                        }
                    }
                    _ => return Err(missing()),
                }
            }
            "remove" => match holder {
                Value::Object(m) => {
                    m.remove(&last).ok_or_else(missing)?;
                }
                Value::Array(a) => {
                    let k = last.parse::<usize>().map_err(|_| missing())?;
                    if k >= a.len() {
                        return Err(missing());
                    }
                    a.remove(k);
                }
                _ => return Err(missing()),
            },
            other => return Err(format!("operation {i}: `{other}` is not supported")),
        }
    }
    *target = out;
    Ok(())
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
        .unwrap_err();
        assert!(
            err.contains("operation 1") && err.contains("/nope/y"),
            "{err}"
        );
        assert_eq!(t, before);
    }
}
