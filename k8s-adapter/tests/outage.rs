//! Started while the Kubernetes API is unreachable, the adapter says so
//! and keeps retrying with back-off (formerly it exited after 30 s), and
//! each watch that cannot list says it is down.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn an_unreachable_api_at_start_is_logged_and_retried_not_fatal() {
    let dir = std::env::temp_dir().join(format!("selfheal-outage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (api, prom) = (closed_port(), closed_port());
    std::fs::write(
        dir.join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{api}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("adapter.toml"),
        format!(
            "prometheus = \"http://127.0.0.1:{prom}\"\nnamespace = \"shop\"\n[controller]\nkind = \"hpa\"\n[[service]]\nname = \"api\"\n"
        ),
    )
    .unwrap();
    let log = dir.join("adapter.log");
    let mut adapter = Command::new(env!("CARGO_BIN_EXE_selfheal-k8s"))
        .arg("run")
        .arg("--config")
        .arg(dir.join("adapter.toml"))
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("the adapter starts");
    let read = || {
        let mut s = String::new();
        std::fs::File::open(&log)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    // The watches wait up to 30 s for a first list, then the HPA listing
    // retries (1-2 s, then 2-4 s, ...): two retries are well within 90 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    let text = loop {
        let text = read();
        if text.matches("Kubernetes API: cannot list").count() >= 2 {
            break text;
        }
        if let Some(status) = adapter.try_wait().unwrap() {
            panic!("the adapter exited ({status}) instead of retrying:\n{text}");
        }
        assert!(Instant::now() < deadline, "no retries logged:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        adapter.try_wait().unwrap().is_none(),
        "still running:\n{text}"
    );
    adapter.kill().unwrap();
    let _ = adapter.wait();
    assert!(text.contains("retrying in"), "{text}");
    for kind in ["pods", "deployments", "replicasets"] {
        assert!(
            text.contains(&format!("watch {kind}: down")),
            "no down line for {kind}:\n{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
