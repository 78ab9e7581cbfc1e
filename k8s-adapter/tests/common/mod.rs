//! Test servers: a tiny HTTP/1.1 server on loopback that answers from a
//! handler and records every request it saw.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub body: String,
}

pub type Handler = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

pub struct Server {
    pub addr: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

fn handle(mut stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, path) = (method.to_string(), path.to_string());
        let (mut length, mut content_type, mut authorization) = (0usize, None, None);
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "content-type" => content_type = Some(v.trim().to_string()),
                    "authorization" => authorization = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let req = Seen {
            method,
            path,
            content_type,
            authorization,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let (status, answer) = handler(&req);
        seen.lock().unwrap().push(req);
        let reason = if status < 400 { "OK" } else { "Error" };
        let _ = write!(
            stream,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        let _ = stream.flush();
    }
}

pub fn serve(handler: Box<Handler>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (h, s) = (Arc::new(handler), seen.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (h, s) = (h.clone(), s.clone());
            std::thread::spawn(move || handle(stream, &*h, &s));
        }
    });
    Server { addr, seen }
}

/// A loopback port nobody listens on, for a server a test starts later.
///
/// Taken below Linux's ephemeral range (32768-60999): a port the kernel
/// hands out (`bind` to port 0) may meanwhile become the source port of an
/// outgoing connection (a Prometheus of another test scrapes several times
/// a second, each failed scrape a new connection), and the server's bind
/// then fails with "address in use". Each call in a process gets another
/// port; the process id spreads concurrent test binaries apart.
pub fn closed_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(997);
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + offset.wrapping_add(n) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT);
}

/// A namespace as the reflectors list it: one Deployment at `revision`
/// (a ReplicaSet per revision, `<deployment>-<revision>`) and pods of the
/// current ReplicaSet, each ready or not, on `node-1`.
pub struct Namespace {
    pub deployment: &'static str,
    pub revision: u32,
    pub replicas: u32,
    pub ready: u32,
    pub pods: Vec<(&'static str, bool)>,
}

impl Namespace {
    fn list(&self, resource: &str) -> serde_json::Value {
        use serde_json::json;
        let d = self.deployment;
        let owner = |kind: &str, name: &str| json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": name}]);
        let rev = |r: u32| json!({"deployment.kubernetes.io/revision": r.to_string()});
        let items = match resource {
            "deployments" => json!([{
                "metadata": {"name": d, "namespace": "shop", "annotations": rev(self.revision)},
                "spec": {"replicas": self.replicas, "selector": {"matchLabels": {"app": d}}, "template": {}},
                "status": {"readyReplicas": self.ready}
            }]),
            "replicasets" => serde_json::Value::Array(
                (1..=self.revision)
                    .map(|r| json!({
                        "metadata": {"name": format!("{d}-{r}"), "namespace": "shop", "annotations": rev(r), "ownerReferences": owner("Deployment", d)},
                        "spec": {"selector": {}}
                    }))
                    .collect(),
            ),
            _ => serde_json::Value::Array(
                self.pods
                    .iter()
                    .map(|(name, ready)| json!({
                        "metadata": {"name": name, "namespace": "shop", "ownerReferences": owner("ReplicaSet", &format!("{d}-{}", self.revision))},
                        "spec": {"nodeName": "node-1", "containers": []},
                        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if *ready { "True" } else { "False" }}]}
                    }))
                    .collect(),
            ),
        };
        json!({"metadata": {"resourceVersion": "10"}, "items": items})
    }
}

/// The answer to a reflector's list or watch of pods, Deployments or
/// ReplicaSets in namespace `shop`; `None` for any other request. Nothing
/// changes, so a watch ends quietly (after a pause) and is renewed.
pub fn reflected(r: &Seen, ns: &Namespace) -> Option<(u16, String)> {
    let (path, query) = r.path.split_once('?')?;
    let resource = ["pods", "deployments", "replicasets"]
        .into_iter()
        .find(|w| path.ends_with(&format!("/namespaces/shop/{w}")))?;
    if r.method != "GET" {
        return None;
    }
    if query.split('&').any(|kv| kv == "watch=true") {
        std::thread::sleep(std::time::Duration::from_millis(200));
        return Some((200, String::new()));
    }
    Some((200, ns.list(resource).to_string()))
}

/// A Prometheus server (the Debian package `prometheus`, or
/// `PROMETHEUS_BIN`) scraping `target` every `scrape_interval` (`1s`,
/// `250ms`); `None` skips the test unless `SELFHEAL_REQUIRE_PROMETHEUS` is
/// set. Dropping it stops the server and removes its data.
pub struct Prom(Child, std::path::PathBuf);

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

pub fn start_prometheus(target: &str, scrape_interval: &str) -> Option<(Prom, String)> {
    start_prometheus_with(target, scrape_interval, None)
}

/// The same, serving its API as `web_config` (Prometheus's
/// `--web.config.file`: TLS, basic auth) says; the address is then
/// `https://`.
pub fn start_prometheus_with(
    target: &str,
    scrape_interval: &str,
    web_config: Option<&str>,
) -> Option<(Prom, String)> {
    let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
    if Command::new(&bin).arg("--version").output().is_err() {
        assert!(
            std::env::var("SELFHEAL_REQUIRE_PROMETHEUS").is_err(),
            "SELFHEAL_REQUIRE_PROMETHEUS is set but `{bin}` does not run"
        );
        eprintln!("skipped: no `{bin}` binary (install the `prometheus` package)");
        return None;
    }
    let host = target.trim_start_matches("http://");
    let dir = std::env::temp_dir().join(format!(
        "selfheal-prom-{}-{}",
        std::process::id(),
        host.replace([':', '.'], "_")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: [\"{host}\"]\n"
        ),
    )
    .unwrap();
    let port = closed_port();
    let mut command = Command::new(&bin);
    command
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let scheme = match web_config {
        Some(yaml) => {
            std::fs::write(dir.join("web.yml"), yaml).unwrap();
            command.arg(format!(
                "--web.config.file={}",
                dir.join("web.yml").display()
            ));
            "https"
        }
        None => "http",
    };
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    Some((Prom(child, dir), format!("{scheme}://127.0.0.1:{port}")))
}

/// Whether the Prometheus at `url` has scraped (or tried to scrape) its
/// target: `up` has a sample.
pub fn has_tried_its_target(url: &str) -> bool {
    let host = url.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let asked = write!(
        s,
        "GET /api/v1/query?query=up HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    asked.is_ok() && s.read_to_string(&mut text).is_ok() && text.contains(r#""__name__":"up""#)
}

/// What an adapter loop reads back and over which windows.
pub struct LoopTiming {
    /// History read back at the start.
    pub backfill_s: f64,
    /// The window of the rates and latency percentiles.
    pub rate_window_s: f64,
    /// The pods' CPU window (the rate's window when `None`).
    pub cpu_window_s: Option<f64>,
    /// How long after a pod turns Ready it is judged on its CPU (the CPU
    /// window and a scrape when `None`).
    pub pod_settle_s: Option<f64>,
}

/// The adapter's configuration for a loop against a served simulation at a
/// speed-up: 5 s scrapes, `timing`, the scenario's
/// SLO, `controller` (the lines of its `[controller]` table) and
/// `services` (its `[[service]]` tables).
pub fn adapter_toml(
    prometheus: &str,
    namespace: &str,
    timing: LoopTiming,
    slo: &selfheal::scenario::SloSpec,
    controller: &str,
    services: &str,
) -> String {
    let optional =
        |name: &str, v: Option<f64>| v.map_or(String::new(), |v| format!("{name} = {v}\n"));
    format!(
        "prometheus = \"{prometheus}\"\nnamespace = \"{namespace}\"\ninterval_s = 5\nrate_window_s = {}\n{}{}backfill_s = {}\nslo_latency_ms = {}\nslo_objective = {}\n[controller]\n{controller}\n{services}",
        timing.rate_window_s,
        optional("cpu_window_s", timing.cpu_window_s),
        optional("pod_settle_s", timing.pod_settle_s),
        timing.backfill_s,
        slo.latency_ms,
        slo.objective
    )
}

/// The path of a scenario bundled under `scenarios/`.
pub fn bundled_path(scenario: &str) -> String {
    format!("{}/../scenarios/{scenario}", env!("CARGO_MANIFEST_DIR"))
}

/// A scenario bundled under `scenarios/`, its replicas left to whoever
/// writes through the served API (the static controller).
pub fn bundled_static(scenario: &str) -> selfheal::scenario::LoadedScenario {
    let path = bundled_path(scenario);
    let mut loaded = selfheal::scenario::load_file(std::path::Path::new(&path)).unwrap();
    loaded
        .spec
        .use_controller(selfheal::scenario::ControllerSpec::parse_short("static").unwrap());
    loaded
}
