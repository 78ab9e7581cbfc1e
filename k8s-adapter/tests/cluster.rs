//! Against a real cluster, only when `KUBECONFIG` is set:
//!
//! ```sh
//! KUBECONFIG=~/.kube/config SELFHEAL_TEST_NAMESPACE=default \
//!   SELFHEAL_TEST_DEPLOYMENT=my-app cargo test --release -p selfheal-k8s --test cluster
//! ```
//!
//! It reads the kill switch and plans a roll back of the named Deployment
//! in dry-run: the reads go to the cluster, no write is sent.

use selfheal::control::Command;
use selfheal_k8s::api::{ApiError, Executor, Outcome};
use selfheal_k8s::config::ServiceConfig;

#[tokio::test]
async fn dry_run_against_a_real_cluster() {
    if std::env::var("KUBECONFIG").is_err() {
        eprintln!("skipped: KUBECONFIG is not set");
        return;
    }
    let ns = std::env::var("SELFHEAL_TEST_NAMESPACE").unwrap_or_else(|_| "default".into());
    let deployment = std::env::var("SELFHEAL_TEST_DEPLOYMENT")
        .expect("set SELFHEAL_TEST_DEPLOYMENT to a Deployment in SELFHEAL_TEST_NAMESPACE");
    let ex = Executor {
        client: kube::Client::try_default().await.expect("credentials"),
        namespace: ns,
        services: vec![ServiceConfig {
            name: deployment.clone(),
            deployment: None,
            max_connections: 100,
            backup_selector: None,
            config_map: None,
            fallback_for: Vec::new(),
        }],
        apply: false,
        kill_switch: "selfheal-kill-switch".into(),
    };
    let _ = ex.stopped().await;
    let rollback = Command::Rollback {
        service: deployment,
        reason: "cluster test".into(),
    };
    match ex.execute(&rollback).await {
        Ok(Outcome::WouldSend(w)) => assert_eq!(w[0].method, "PATCH"),
        // A Deployment with one revision has nothing to roll back to.
        Err(ApiError::Plan(e)) => eprintln!("planned nothing: {e}"),
        other => panic!("{other:?}"),
    }
}
