//! A small client for the Prometheus HTTP API (`/api/v1/query` and
//! `/api/v1/query_range`). Every answer is checked: an unreachable server,
//! an HTTP error, a failed query or a body that is not what the API
//! documents is an error naming the query, never a default value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::config::PrometheusHttp;

#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("Prometheus at {url} is unreachable: {why}")]
    Unreachable { url: String, why: String },
    #[error("Prometheus answered HTTP {status} to `{query}`: {body}")]
    Status {
        query: String,
        status: u16,
        body: String,
    },
    #[error("Prometheus rejected `{query}`: {error}")]
    Failed { query: String, error: String },
    #[error("Prometheus's answer to `{query}` is malformed: {why}")]
    Malformed { query: String, why: String },
    #[error("`{query}` returned no series (check the query and the exporters)")]
    Empty { query: String },
    #[error("Prometheus client: {file}: {why}")]
    Credentials { file: String, why: String },
    #[error("Prometheus client: {0}")]
    Client(String),
}

/// One series of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One series of a range query: `(unix seconds, value)` points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// The credentials sent with every request.
#[derive(Clone, Debug)]
enum Auth {
    None,
    /// The token file, read for every request (tokens rotate).
    Bearer(PathBuf),
    Basic {
        username: String,
        password: PathBuf,
    },
}

#[derive(Clone, Debug)]
pub struct Prometheus {
    base: String,
    http: reqwest::Client,
    auth: Auth,
}

/// An error with its causes (`error sending request: ...: invalid peer
/// certificate: UnknownIssuer`): reqwest's own message alone hides why.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        cause = c.source();
    }
    text
}

/// A secret file's content without its trailing newline.
fn read_secret(file: &Path) -> Result<String, PromError> {
    let text = std::fs::read_to_string(file).map_err(|e| PromError::Credentials {
        file: file.display().to_string(),
        why: e.to_string(),
    })?;
    let secret = text.trim_end_matches(['\r', '\n']).to_string();
    if secret.is_empty() {
        return Err(PromError::Credentials {
            file: file.display().to_string(),
            why: "the file is empty".into(),
        });
    }
    Ok(secret)
}

impl Prometheus {
    /// `base` is the server's address, e.g. `http://127.0.0.1:9090`: no
    /// credentials, the bundled web PKI roots for https.
    pub fn new(base: &str, timeout: Duration) -> Self {
        Self::connect(base, &PrometheusHttp::default(), timeout)
            .expect("a client without files to read builds")
    }

    /// A client for a secured server: its CA file is read now (an error
    /// names it), token and password files at every request.
    pub fn connect(
        base: &str,
        http: &PrometheusHttp,
        timeout: Duration,
    ) -> Result<Self, PromError> {
        let mut builder = reqwest::Client::builder().use_rustls_tls().timeout(timeout);
        if let Some(file) = &http.ca_file {
            let named = |why: String| PromError::Credentials {
                file: file.display().to_string(),
                why,
            };
            let pem = std::fs::read(file).map_err(|e| named(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| named(format!("not PEM certificates ({e})")))?;
            if certs.is_empty() {
                return Err(named("holds no PEM certificate".into()));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let auth = match (&http.bearer_token_file, &http.basic_auth) {
            (Some(token), _) => {
                read_secret(token)?;
                Auth::Bearer(token.clone())
            }
            (None, Some(b)) => {
                read_secret(&b.password_file)?;
                Auth::Basic {
                    username: b.username.clone(),
                    password: b.password_file.clone(),
                }
            }
            (None, None) => Auth::None,
        };
        Ok(Prometheus {
            base: base.trim_end_matches('/').to_string(),
            http: builder
                .build()
                .map_err(|e| PromError::Client(e.to_string()))?,
            auth,
        })
    }

    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
        query: &str,
    ) -> Result<Value, PromError> {
        let url = format!("{}{path}", self.base);
        let request = self.http.get(&url).query(params);
        let request = match &self.auth {
            Auth::None => request,
            Auth::Bearer(file) => request.bearer_auth(read_secret(file)?),
            Auth::Basic { username, password } => {
                request.basic_auth(username, Some(read_secret(password)?))
            }
        };
        let resp = request.send().await.map_err(|e| PromError::Unreachable {
            url: url.clone(),
            why: with_causes(&e),
        })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| PromError::Unreachable {
            url: url.clone(),
            why: with_causes(&e),
        })?;
        // Prometheus answers 400/422 with a JSON error body: report it.
        let parsed: Result<Value, _> = serde_json::from_str(&body);
        match parsed {
            Ok(v) if v.get("status").and_then(Value::as_str) == Some("error") => {
                Err(PromError::Failed {
                    query: query.to_string(),
                    error: v
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("no error message")
                        .to_string(),
                })
            }
            _ if status != 200 => Err(PromError::Status {
                query: query.to_string(),
                status,
                body: body.chars().take(200).collect(),
            }),
            Ok(v) => Ok(v),
            Err(e) => Err(PromError::Malformed {
                query: query.to_string(),
                why: format!("not JSON ({e})"),
            }),
        }
    }

    /// An instant query evaluated at `at` (unix seconds).
    pub async fn query(&self, query: &str, at: f64) -> Result<Vec<Sample>, PromError> {
        let v = self
            .get(
                "/api/v1/query",
                &[("query", query.to_string()), ("time", format!("{at:.3}"))],
                query,
            )
            .await?;
        parse_vector(&v, query)
    }

    /// A range query from `start` to `end` (unix seconds) every `step` s.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, PromError> {
        let v = self
            .get(
                "/api/v1/query_range",
                &[
                    ("query", query.to_string()),
                    ("start", format!("{start:.3}")),
                    ("end", format!("{end:.3}")),
                    ("step", format!("{step}")),
                ],
                query,
            )
            .await?;
        parse_matrix(&v, query)
    }
}

fn malformed(query: &str, why: impl Into<String>) -> PromError {
    PromError::Malformed {
        query: query.to_string(),
        why: why.into(),
    }
}

fn labels(metric: Option<&Value>, query: &str) -> Result<BTreeMap<String, String>, PromError> {
    let Some(m) = metric else {
        return Ok(BTreeMap::new());
    };
    let obj = m
        .as_object()
        .ok_or_else(|| malformed(query, "`metric` is not an object"))?;
    obj.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), s.to_string()))
                .ok_or_else(|| malformed(query, format!("label `{k}` is not a string")))
        })
        .collect()
}

/// `[<unix time>, "<value>"]`, the API's sample encoding.
fn point(v: &Value, query: &str) -> Result<(f64, f64), PromError> {
    let pair = v
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(|| malformed(query, "a sample is not [time, value]"))?;
    let t = pair[0]
        .as_f64()
        .ok_or_else(|| malformed(query, "a sample time is not a number"))?;
    let s = pair[1]
        .as_str()
        .ok_or_else(|| malformed(query, "a sample value is not a string"))?;
    // The API spells special values NaN, +Inf and -Inf.
    let x = match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .map_err(|_| malformed(query, format!("sample value `{other}` is not a number")))?,
    };
    Ok((t, x))
}

fn data<'a>(v: &'a Value, query: &str) -> Result<(&'a str, &'a Value), PromError> {
    if v.get("status").and_then(Value::as_str) != Some("success") {
        return Err(malformed(query, "no `status: success`"));
    }
    let d = v.get("data").ok_or_else(|| malformed(query, "no `data`"))?;
    let kind = d
        .get("resultType")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(query, "no `data.resultType`"))?;
    let result = d
        .get("result")
        .ok_or_else(|| malformed(query, "no `data.result`"))?;
    Ok((kind, result))
}

/// An instant query's answer: a vector, or a scalar as one unlabelled sample.
pub fn parse_vector(v: &Value, query: &str) -> Result<Vec<Sample>, PromError> {
    match data(v, query)? {
        ("vector", Value::Array(items)) => items
            .iter()
            .map(|it| {
                Ok(Sample {
                    labels: labels(it.get("metric"), query)?,
                    value: point(
                        it.get("value")
                            .ok_or_else(|| malformed(query, "a series has no `value`"))?,
                        query,
                    )?
                    .1,
                })
            })
            .collect(),
        ("scalar", p) => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value: point(p, query)?.1,
        }]),
        (kind, _) => Err(malformed(query, format!("expected a vector, got `{kind}`"))),
    }
}

/// A range query's answer.
pub fn parse_matrix(v: &Value, query: &str) -> Result<Vec<Series>, PromError> {
    match data(v, query)? {
        ("matrix", Value::Array(items)) => items
            .iter()
            .map(|it| {
                let values = it
                    .get("values")
                    .and_then(Value::as_array)
                    .ok_or_else(|| malformed(query, "a series has no `values`"))?;
                Ok(Series {
                    labels: labels(it.get("metric"), query)?,
                    points: values
                        .iter()
                        .map(|p| point(p, query))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect(),
        (kind, _) => Err(malformed(query, format!("expected a matrix, got `{kind}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_scalars_and_special_values_parse() {
        let v: Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"le":"0.1"},"value":[1.5,"3"]},
                {"metric":{"le":"+Inf"},"value":[1.5,"NaN"]}]}}"#,
        )
        .unwrap();
        let s = parse_vector(&v, "q").unwrap();
        assert_eq!(s[0].labels["le"], "0.1");
        assert_eq!(s[0].value, 3.0);
        assert!(s[1].value.is_nan());
        let v: Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#,
        )
        .unwrap();
        assert_eq!(parse_vector(&v, "q").unwrap()[0].value, f64::INFINITY);
    }

    #[test]
    fn garbage_is_an_error_naming_the_query() {
        for body in [
            r#"{"status":"success"}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"x"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":1},"value":[1,"2"]}]}}"#,
        ] {
            let v: Value = serde_json::from_str(body).unwrap();
            let e = parse_vector(&v, "up").unwrap_err();
            assert!(e.to_string().contains("`up`"), "{e}");
        }
    }
}
