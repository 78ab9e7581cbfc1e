//! Kubernetes' protobuf encoding, read for the one write kubectl sends in
//! it to the served API: `kubectl create configmap` (kubectl's typed
//! clients write protobuf and do not fall back to JSON on a 415).
//!
//! The envelope is k8s.io/apimachinery `runtime/serializer/protobuf`: the
//! magic `k8s\0`, then a `runtime.Unknown` (1: TypeMeta {1: apiVersion,
//! 2: kind}, 2: raw object, 3: contentEncoding, 4: contentType). The
//! object's field numbers are k8s.io/api `core/v1/generated.proto` and
//! apimachinery `meta/v1/generated.proto`. Fields the served API does not
//! read (uid, managed fields, timestamps ...) are skipped, as a server
//! ignores what a client may not set.

use serde_json::{Map, Value, json};

use super::BodyError;

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one message, in order.
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, BodyError> {
    fn varint(buf: &mut &[u8]) -> Result<u64, BodyError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().ok_or("a truncated varint")?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let wire = match key & 7 {
            0 => Wire::Varint(varint(&mut buf)?),
            2 => {
                let n = usize::try_from(varint(&mut buf)?).map_err(|_| "a field too long")?;
                if n > buf.len() {
                    return Err(format!(
                        "field {} claims {n} bytes, {} remain",
                        key >> 3,
                        buf.len()
                    )
                    .into());
                }
                let (b, rest) = buf.split_at(n);
                buf = rest;
                Wire::Bytes(b)
            }
            w @ (1 | 5) => {
                let n = if w == 1 { 8 } else { 4 };
                buf = buf.get(n..).ok_or("a truncated fixed-width field")?;
                Wire::Fixed
            }
            w => {
                return Err(
                    format!("wire type {w} of field {} is not protobuf 3", key >> 3).into(),
                );
            }
        };
        out.push((key >> 3, wire));
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, BodyError> {
    String::from_utf8(b.to_vec()).map_err(|_| "a string that is not UTF-8".into())
}

/// A map entry: 1 key, 2 value.
fn entry(b: &[u8]) -> Result<(String, &[u8]), BodyError> {
    let (mut k, mut v) = (String::new(), &b[..0]);
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Wire::Bytes(x)) => k = text(x)?,
            (2, Wire::Bytes(x)) => v = x,
            _ => {}
        }
    }
    Ok((k, v))
}

fn base64(b: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = c.iter().fold(0u32, |a, &x| a << 8 | u32::from(x)) << (8 * (3 - c.len()));
        for i in 0..4 {
            s.push(if i <= c.len() {
                ABC[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    s
}

/// meta/v1 ObjectMeta: the fields a client sets.
fn object_meta(b: &[u8]) -> Result<Value, BodyError> {
    let mut m = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Map::new(), Map::new(), Vec::new());
    for (n, f) in fields(b)? {
        let Wire::Bytes(x) = f else { continue };
        match n {
            1 => {
                m.insert("name".into(), json!(text(x)?));
            }
            2 => {
                m.insert("generateName".into(), json!(text(x)?));
            }
            3 => {
                m.insert("namespace".into(), json!(text(x)?));
            }
            6 => {
                m.insert("resourceVersion".into(), json!(text(x)?));
            }
            11 | 12 => {
                let (k, v) = entry(x)?;
                let into = if n == 11 {
                    &mut labels
                } else {
                    &mut annotations
                };
                into.insert(k, json!(text(v)?));
            }
            14 => finalizers.push(json!(text(x)?)),
            _ => {}
        }
    }
    for (k, v) in [("labels", labels), ("annotations", annotations)] {
        if !v.is_empty() {
            m.insert(k.into(), Value::Object(v));
        }
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

/// core/v1 ConfigMap: 1 metadata, 2 data, 3 binaryData, 4 immutable.
fn config_map(b: &[u8]) -> Result<Value, BodyError> {
    let mut out = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}});
    let (mut data, mut binary) = (Map::new(), Map::new());
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Wire::Bytes(x)) => out["metadata"] = object_meta(x)?,
            (2, Wire::Bytes(x)) => {
                let (k, v) = entry(x)?;
                data.insert(k, json!(text(v)?));
            }
            (3, Wire::Bytes(x)) => {
                let (k, v) = entry(x)?;
                binary.insert(k, json!(base64(v)));
            }
            (4, Wire::Varint(v)) => out["immutable"] = json!(v != 0),
            _ => {}
        }
    }
    if !data.is_empty() {
        out["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        out["binaryData"] = Value::Object(binary);
    }
    Ok(out)
}

/// The JSON form of a protobuf-encoded object, or why it cannot be read.
pub fn decode(body: &[u8]) -> Result<Value, BodyError> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or("not Kubernetes' protobuf envelope (no `k8s\\0` prefix)")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Wire::Bytes(tm)) => {
                for (m, g) in fields(tm)? {
                    match (m, g) {
                        (1, Wire::Bytes(x)) => api_version = text(x)?,
                        (2, Wire::Bytes(x)) => kind = text(x)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(x)) => raw = Some(x),
            (3, Wire::Bytes(e)) if !e.is_empty() => {
                return Err(format!("content encoding `{}` is not served", text(e)?).into());
            }
            _ => {}
        }
    }
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "ConfigMap") => config_map(raw.unwrap_or_default()),
        (v, k) => Err(format!(
            "`{v}` `{k}` in protobuf is not served; send it as application/json"
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes(field: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn map_entry(field: u64, k: &str, v: &[u8], out: &mut Vec<u8>) {
        let mut e = Vec::new();
        bytes(1, k.as_bytes(), &mut e);
        bytes(2, v, &mut e);
        bytes(field, &e, out);
    }

    /// What `kubectl create configmap foo --from-literal=a=b` sends, built
    /// from the .proto field numbers (with a uid and a timestamp a server
    /// ignores, and a fixed-width field to skip).
    fn kubectl_body() -> Vec<u8> {
        let mut meta = Vec::new();
        bytes(1, b"foo", &mut meta);
        bytes(3, b"shop", &mut meta);
        bytes(5, b"ignored-uid", &mut meta);
        map_entry(11, "team", b"checkout", &mut meta);
        bytes(14, b"x/y", &mut meta);
        let mut cm = Vec::new();
        bytes(1, &meta, &mut cm);
        map_entry(2, "a", b"b", &mut cm);
        map_entry(3, "bin", &[0, 1, 2, 255], &mut cm);
        varint(4 << 3, &mut cm);
        varint(1, &mut cm);
        varint(9 << 3 | 1, &mut cm);
        cm.extend_from_slice(&[0; 8]);
        let mut tm = Vec::new();
        bytes(1, b"v1", &mut tm);
        bytes(2, b"ConfigMap", &mut tm);
        let mut body = b"k8s\0".to_vec();
        bytes(1, &tm, &mut body);
        bytes(2, &cm, &mut body);
        bytes(4, b"application/vnd.kubernetes.protobuf", &mut body);
        body
    }

    #[test]
    fn a_config_map_reads_as_its_json() {
        assert_eq!(
            decode(&kubectl_body()).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "foo", "namespace": "shop", "labels": {"team": "checkout"},
                                "finalizers": ["x/y"]},
                   "data": {"a": "b"}, "binaryData": {"bin": "AAEC/w=="}, "immutable": true})
        );
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        let body = kubectl_body();
        for cut in [5, 9, body.len() - 3] {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        // Every cut and every byte overwritten: an answer, never a panic.
        for cut in 0..body.len() {
            let _ = decode(&body[..cut]);
            for x in [0x00, 0x07, 0x7f, 0x80, 0xff] {
                let mut m = body.clone();
                m[cut] = x;
                let _ = decode(&m);
            }
        }
        assert!(
            decode(b"{\"kind\":\"ConfigMap\"}")
                .unwrap_err()
                .to_string()
                .contains("k8s")
        );
        let mut pod = b"k8s\0".to_vec();
        let mut tm = Vec::new();
        bytes(1, b"v1", &mut tm);
        bytes(2, b"Pod", &mut tm);
        bytes(1, &tm, &mut pod);
        let err = decode(&pod).unwrap_err().to_string();
        assert!(
            err.contains("Pod") && err.contains("application/json"),
            "{err}"
        );
    }
}
