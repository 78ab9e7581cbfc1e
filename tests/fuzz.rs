//! Mutation fuzzing that stays in the test suite: thousands of mutants of
//! the bundled scenarios and suites through the parsers (and, when valid,
//! through building the simulation), and malformed HTTP requests against
//! the served API. Nothing may panic, abort or hang: a panic anywhere in
//! the process (a connection thread included) fails the test.
//!
//! The counts scale with `SELFHEAL_FUZZ_SCALE` (default 1: 5,000 scenario
//! mutants, 300 suite mutants, 1,000 requests); the mutants are seeded, so
//! a failure reproduces.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use selfheal::rng::{Stream, Subsystem};
use selfheal::scenario;
use selfheal::serve::{ServeClock, ServeOptions, Served, ServedFaults};

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn scale() -> usize {
    std::env::var("SELFHEAL_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Values that have broken parsers and simulators before.
const NASTY: &[&str] = &[
    "0",
    "-1",
    "-3",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "-inf",
    "4294967296",
    "9223372036854775807",
    "1e-9",
    "0.0",
    "\"\"",
    "\"x\"",
    "[]",
    "{}",
    "true",
    "2147483648",
    "1e10",
    "3.5e11",
];

/// One mutant of `text`: a number or value replaced by a nasty one, a line
/// deleted, duplicated or swapped, a byte flipped, or the text truncated.
fn mutate(text: &str, rng: &mut Stream) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return text.to_string();
    }
    let i = rng.index(lines.len());
    match rng.index(7) {
        0 | 1 => {
            // Replace the value after an `=` (or inside an inline table).
            let line = &lines[i];
            let eqs: Vec<usize> = line.match_indices('=').map(|(k, _)| k).collect();
            if let Some(&at) = eqs.get(rng.index(eqs.len().max(1))) {
                let rest = &line[at + 1..];
                let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
                let nasty = NASTY[rng.index(NASTY.len())];
                lines[i] = format!("{}= {nasty}{}", &line[..at], &rest[end..]);
            }
        }
        2 => {
            lines.remove(i);
        }
        3 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        4 => {
            let j = rng.index(lines.len());
            lines.swap(i, j);
        }
        5 => {
            let mut bytes = lines[i].clone().into_bytes();
            if !bytes.is_empty() {
                let k = rng.index(bytes.len());
                bytes[k] = (rng.next_u64() % 128) as u8;
            }
            lines[i] = String::from_utf8_lossy(&bytes).into_owned();
        }
        _ => lines.truncate(i),
    }
    lines.join("\n")
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn scenario_and_suite_mutants_never_panic() {
    count_panics();
    let repo = common::repo();
    let mut scenarios = toml_files(&repo.join("scenarios"));
    scenarios.extend(toml_files(&repo.join("scenarios/chaos")));
    let mut rng = Stream::new(20261202, Subsystem::Control);
    let (mut valid, mut invalid) = (0, 0);
    let n = 5_000 * scale();
    for k in 0..n {
        let path = &scenarios[k % scenarios.len()];
        let text = std::fs::read_to_string(path).unwrap();
        let mut mutant = mutate(&text, &mut rng);
        if rng.index(3) == 0 {
            mutant = mutate(&mutant, &mut rng);
        }
        let base = path.parent().unwrap();
        let result = std::panic::catch_unwind(|| {
            scenario::parse(&mutant, "mutant.toml", base)
                .map(|sc| selfheal::sim::Simulation::new(&sc).map(|_| ()))
        });
        match result {
            Ok(Ok(_)) => valid += 1,
            Ok(Err(e)) => {
                invalid += 1;
                // Every refusal names where it is.
                let msg = e.to_string();
                assert!(msg.starts_with("mutant.toml:"), "{msg}");
            }
            Err(_) => panic!(
                "scenario mutant {k} of {} panicked:\n{mutant}",
                path.display()
            ),
        }
    }
    eprintln!("{n} scenario mutants: {valid} valid, {invalid} refused with an error");

    let dir = std::env::temp_dir().join(format!("selfheal-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let suites = toml_files(&repo.join("tests/suites"));
    let m = 300 * scale();
    let mut loaded = 0;
    for k in 0..m {
        let path = &suites[k % suites.len()];
        // Absolute scenario paths, so the mutant can live elsewhere.
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace("../../", &format!("{}/", repo.display()));
        let mutant = mutate(&text, &mut rng);
        let file = dir.join(format!("suite-{k}.toml"));
        std::fs::write(&file, &mutant).unwrap();
        match std::panic::catch_unwind(|| selfheal::sweep::plan::load(&file).map(|p| p.runs.len()))
        {
            Ok(Ok(_)) => loaded += 1,
            Ok(Err(_)) => {}
            Err(_) => panic!("suite mutant {k} panicked:\n{mutant}"),
        }
        let _ = std::fs::remove_file(&file);
    }
    eprintln!("{m} suite mutants: {loaded} expanded, the rest refused");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}

fn send(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn malformed_requests_never_panic_the_served_api() {
    count_panics();
    let mut leak = common::bundled("chaos/memory-leak.toml");
    leak.spec
        .use_controller(selfheal::scenario::ControllerSpec::parse_short("static").unwrap());
    let served = Served::start(
        &leak,
        &ServeOptions {
            addr: "127.0.0.1:0".into(),
            speed: 1.0,
            namespace: "shop".into(),
            clock: ServeClock::Wall,
            token: None,
            faults: ServedFaults::Scheduled,
        },
    )
    .unwrap();
    let addr = served.addr;
    let valid: Vec<String> = [
        ("GET", "/metrics", ""),
        ("GET", "/api/v1/namespaces/shop/pods", ""),
        ("GET", "/api/v1/namespaces/shop/pods?watch=true&timeoutSeconds=1", ""),
        ("GET", "/apis/apps/v1/namespaces/shop/deployments/api", ""),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/api/scale",
            r#"{"spec":{"replicas":4}}"#,
        ),
        (
            "POST",
            "/api/v1/namespaces/shop/configmaps",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"b"}}"#,
        ),
        (
            "POST",
            "/apis/chaos-mesh.org/v1alpha1/namespaces/shop/stresschaos",
            r#"{"apiVersion":"chaos-mesh.org/v1alpha1","kind":"StressChaos","metadata":{"name":"s"},"spec":{"mode":"fixed","value":"1","selector":{"labelSelectors":{"app":"api"}},"stressors":{"cpu":{"workers":1,"load":50}},"duration":"2s"}}"#,
        ),
        (
            "PUT",
            "/api/v1/namespaces/shop/configmaps/x?fieldValidation=Strict",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"dat":{"a":"b"},"data":{"$x":[1]}}"#,
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/api?fieldValidation=Warn",
            r#"[{"op":"add","path":"/spec/template/spec/containers/0/env","value":[{"name":"A","valu":"1"}]},{"op":"move","from":"/spec/x~1y","path":"/spec/paused"}]"#,
        ),
        (
            "POST",
            "/apis/networking.istio.io/v1/namespaces/shop/virtualservices",
            r#"{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"v"},"spec":{"hosts":["api"],"http":[{"fault":{"abort":{"httpStatus":503,"percentage":{"value":10}}},"route":[{"destination":{"host":"api"}}]}]}}"#,
        ),
        (
            "DELETE",
            "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/v",
            "",
        ),
        (
            "PATCH",
            "/api/v1/nodes/node-1",
            r#"{"spec":{"unschedulable":true}}"#,
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/api",
            r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"selfheal.local/api:fault-0"}]"#,
        ),
        ("GET", "/openapi/v3", ""),
        ("GET", "/openapi/v3/apis/apps/v1?hash=0", ""),
        ("DELETE", "/api/v1/namespaces/shop/pods/api-0", ""),
    ]
    .iter()
    .map(|(m, p, b)| {
        let ct = if *m == "PATCH" && b.starts_with('[') {
            "application/json-patch+json"
        } else if *m == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        format!(
            "{m} {p} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
            b.len()
        )
    })
    .collect();
    let mut rng = Stream::new(7, Subsystem::Control);
    let n = 1_000 * scale();
    let mut answered = 0;
    for k in 0..n {
        let base = &valid[k % valid.len()];
        let req = match rng.index(4) {
            // Line-level mutations of the head and body.
            0 | 1 => mutate(&base.replace("\r\n", "\n"), &mut rng).replace('\n', "\r\n"),
            // A lying or absurd Content-Length.
            2 => {
                let cl = [
                    "-1",
                    "99999999999",
                    "nan",
                    "1e3",
                    "18446744073709551616",
                    "3",
                ][rng.index(6)];
                base.replacen(
                    &format!(
                        "Content-Length: {}",
                        base.split("\r\n\r\n").nth(1).unwrap_or("").len()
                    ),
                    &format!("Content-Length: {cl}"),
                    1,
                )
            }
            // Random bytes after a valid request line.
            _ => {
                let mut b = base.lines().next().unwrap_or("").to_string();
                b.push_str("\r\n");
                for _ in 0..rng.index(200) {
                    b.push((rng.next_u64() % 128) as u8 as char);
                }
                b
            }
        };
        if !send(addr, req.as_bytes()).is_empty() {
            answered += 1;
        }
    }
    // Still serving, and nothing panicked anywhere in the process.
    let ok = send(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert!(
        ok.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&ok)
    );
    eprintln!("{n} malformed requests: {answered} answered, the rest closed");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}
