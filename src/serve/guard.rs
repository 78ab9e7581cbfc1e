//! Who may use the served API: the checks every request passes before it
//! is answered (pure; `Connection` applies them).
//!
//! - **A bearer token**, when one is configured: every request but a scrape
//!   of `/metrics` must carry it (`Authorization: Bearer ...`), as a
//!   cluster's API server asks for its service-account tokens.
//! - **No cross-site writes.** A web page can make a browser send a POST
//!   without asking first only with a form's content types (`text/plain`,
//!   `application/x-www-form-urlencoded`, `multipart/form-data`); writes
//!   must be JSON or a patch type, and a request whose `Origin` is not the
//!   server itself is refused.
//! - **No DNS rebinding.** Without a token, the `Host` must be an IP
//!   address or `localhost`, so that a page whose name resolves to this
//!   machine cannot read the API as its own origin.

use std::net::IpAddr;

use super::http::Request;
use super::store::ApiStatus;

/// Content types a write may carry: JSON, the API's patch types and
/// Kubernetes' protobuf (what kubectl's typed clients send). None of them
/// is one a cross-origin page may send without a preflight.
const WRITE_TYPES: [&str; 5] = [
    "application/json",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    super::protobuf::CONTENT_TYPE,
];

fn is_write(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// `host[:port]` without the port; IPv6 literals keep their brackets off.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn is_local_name(host: &str) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

/// `None` when the request may be answered, else the refusal.
pub fn refuse(req: &Request, token: Option<&str>) -> Option<ApiStatus> {
    let scrape = req.method == "GET" && req.path == "/metrics";
    if let Some(token) = token
        && !scrape
    {
        let presented = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim);
        if presented != Some(token) {
            return Some(ApiStatus::new(
                401,
                "Unauthorized",
                "a bearer token is required (the one in the server's --token-file)",
            ));
        }
    }
    let host = req.header("host").unwrap_or("");
    if token.is_none() && !host.is_empty() && !is_local_name(host) {
        return Some(ApiStatus::new(
            403,
            "Forbidden",
            format!(
                "Host `{host}` is not an address of this server (start it with --token-file to serve other names)"
            ),
        ));
    }
    if let Some(origin) = req.header("origin") {
        let same = origin
            .strip_prefix("http://")
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Some(ApiStatus::new(
                403,
                "Forbidden",
                format!("requests from origin `{origin}` are refused"),
            ));
        }
    }
    if is_write(&req.method) && !req.body.is_empty() {
        let content_type = req
            .header("content-type")
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if !WRITE_TYPES
            .iter()
            .any(|t| t.eq_ignore_ascii_case(content_type))
        {
            return Some(ApiStatus::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "a write must be {} (got `{content_type}`)",
                    WRITE_TYPES.join(", ")
                ),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            ..Request::default()
        }
    }

    fn code(r: Option<ApiStatus>) -> u16 {
        r.map_or(200, |s| s.code)
    }

    #[test]
    fn hosts_are_ip_literals_or_localhost() {
        for h in [
            "127.0.0.1:9464",
            "localhost",
            "LOCALHOST:1",
            "[::1]:80",
            "10.0.0.7",
        ] {
            assert!(is_local_name(h), "{h}");
        }
        for h in ["evil.example", "evil.example:9464", "127.0.0.1.nip.io:80"] {
            assert!(!is_local_name(h), "{h}");
        }
    }

    #[test]
    fn cross_site_writes_and_rebound_names_are_refused() {
        let json = [
            ("host", "127.0.0.1:9464"),
            ("content-type", "application/json"),
        ];
        assert_eq!(
            code(refuse(&request("POST", "/api", &json, "{}"), None)),
            200
        );
        let form = [("host", "127.0.0.1:9464"), ("content-type", "text/plain")];
        assert_eq!(
            code(refuse(&request("POST", "/api", &form, "{}"), None)),
            415
        );
        let cross = [
            ("host", "127.0.0.1:9464"),
            ("content-type", "application/json"),
            ("origin", "http://evil.example"),
        ];
        assert_eq!(
            code(refuse(&request("POST", "/api", &cross, "{}"), None)),
            403
        );
        let same = [
            ("host", "127.0.0.1:9464"),
            ("origin", "http://127.0.0.1:9464"),
        ];
        assert_eq!(code(refuse(&request("GET", "/api", &same, ""), None)), 200);
        let rebound = [("host", "evil.example:9464")];
        assert_eq!(
            code(refuse(&request("GET", "/api", &rebound, ""), None)),
            403
        );
        // A body-less delete (kubectl's grace-period 0 one has a body, and
        // a JSON type) passes.
        let host = [("host", "localhost:9464")];
        assert_eq!(
            code(refuse(&request("DELETE", "/api/x", &host, ""), None)),
            200
        );
    }

    #[test]
    fn a_token_guards_everything_but_the_scrape() {
        let t = Some("s3cret");
        let none = [("host", "selfheal.default.svc:9464")];
        assert_eq!(code(refuse(&request("GET", "/metrics", &none, ""), t)), 200);
        assert_eq!(code(refuse(&request("GET", "/api", &none, ""), t)), 401);
        let wrong = [("authorization", "Bearer nope")];
        assert_eq!(code(refuse(&request("GET", "/api", &wrong, ""), t)), 401);
        // With the token, any name may be served.
        let good = [
            ("authorization", "Bearer s3cret"),
            ("host", "selfheal.default.svc:9464"),
        ];
        assert_eq!(code(refuse(&request("GET", "/api", &good, ""), t)), 200);
    }
}
