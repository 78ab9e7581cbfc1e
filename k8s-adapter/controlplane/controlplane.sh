#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for the adapter's tests:
# etcd, kube-apiserver (RBAC, client certificates, an audit log),
# kube-controller-manager, kube-scheduler and KWOK running fake nodes and
# their pods. Built from the Go module proxy only (versions pinned by the
# go.mod and go.sum files beside this script); see README.md here.
#
#   controlplane.sh build   build the binaries once into target/controlplane/bin
#   controlplane.sh up      build if needed, start everything, wait until ready
#   controlplane.sh down    stop everything and remove its state
#   controlplane.sh env     print the exports the tests read
#   controlplane.sh test    up, the workspace's control-plane tests, down
#   controlplane.sh restart-apiserver [--compact]
#                           stop the API server (compact etcd), start it again
#
# Ports (loopback only) can be moved with SELFHEAL_CP_PORT_BASE (default
# 26000): etcd base+379/base+380, the API server base+443, KWOK base+247,
# the metrics API base+444 and its control port base+445.
# SELFHEAL_CP_DIR moves the binaries and state (default target/controlplane);
# SELFHEAL_CP_HPA_SYNC sets the HPA controller's sync period (default 2s).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
top="${SELFHEAL_CP_DIR:-$root/target/controlplane}"
bin="$top/bin"
run="$top/run"
# A running control plane keeps the base it was started with.
base="${SELFHEAL_CP_PORT_BASE:-$(cat "$run/port-base" 2>/dev/null || echo 26000)}"
etcd_port=$((base + 379))
etcd_peer=$((base + 380))
api_port=$((base + 443))
kwok_port=$((base + 247))
metrics_port=$((base + 444))
metrics_control=$((base + 445))
# Go's default install location, for shells that do not have it on PATH.
export PATH="$PATH:/usr/local/go/bin"

log() { echo "controlplane: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# The stamp names the go.sum files the binaries were built from, so a
# version change rebuilds and nothing else does.
# Bump `recipe` when the build commands below change.
stamp() { { cat "$here"/*/go.sum "$here"/metrics/*.go; echo "recipe 5"; } | sha256sum | cut -c1-16; }

# The version the API server reports (`kubectl version`, /version), as
# Kubernetes' own build stamps it; go.mod in kube/ pins the same release.
kube_version() { awk '$1 == "k8s.io/kubernetes" { print $2 }' "$here/kube/go.mod"; }

build() {
  command -v go >/dev/null || die "needs Go 1.26 (the go command) and its module proxy"
  if [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$(stamp)" ]; then
    return 0
  fi
  mkdir -p "$bin"
  local t0
  t0=$(date +%s)
  log "building kube-apiserver, kube-controller-manager, kube-scheduler (first time: several minutes)"
  # Without symbol tables or DWARF (-s -w): smaller, and faster to link.
  local v cb=k8s.io/component-base/version
  v=$(kube_version)
  local major=${v#v}
  major=${major%%.*}
  local minor=${v#v*.}
  minor=${minor%%.*}
  (cd "$here/kube" && go build -trimpath -o "$bin/" \
    -ldflags "-s -w -X $cb.gitVersion=$v -X $cb.gitMajor=$major -X $cb.gitMinor=$minor -X $cb.gitTreeState=clean" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler)
  log "building etcd"
  (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
  log "building kwok"
  (cd "$here/kwok" && go build -trimpath -ldflags "-s -w" -o "$bin/kwok" sigs.k8s.io/kwok/cmd/kwok)
  log "building fake-metrics"
  (cd "$here/metrics" && go build -trimpath -ldflags "-s -w" -o "$bin/fake-metrics" .)
  stamp >"$bin/.stamp"
  log "built in $(($(date +%s) - t0)) s"
}

pki() {
  local d="$run/pki"
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=selfheal-test-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  # leaf NAME SUBJECT [SAN]: a key and a certificate signed by the CA.
  leaf() {
    local ext="$d/$1.ext"
    echo "basicConstraints=CA:FALSE" >"$ext"
    if [ -n "${3:-}" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth" >>"$ext"
      echo "subjectAltName=$3" >>"$ext"
    else
      echo "extendedKeyUsage=clientAuth" >>"$ext"
    fi
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$d/$1.key" -out "$d/$1.csr" 2>/dev/null
    openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -days 2 -extfile "$ext" -out "$d/$1.crt" 2>/dev/null
  }
  leaf apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc"
  leaf admin "/O=system:masters/CN=selfheal-test-admin"
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  cat >"$run/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: selfheal-test
    cluster:
      server: https://127.0.0.1:$api_port
      certificate-authority: $d/ca.crt
users:
  - name: admin
    user:
      client-certificate: $d/admin.crt
      client-key: $d/admin.key
contexts:
  - name: selfheal-test
    context: {cluster: selfheal-test, user: admin, namespace: default}
current-context: selfheal-test
EOF
}

# start NAME ARGS...: runs a binary of $bin in the background, logging to
# $run/NAME.log, its pid in $run/NAME.pid.
start() {
  local name=$1
  shift
  setsid "$bin/$name" "$@" >"$run/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
}

# wait_for WHAT SECONDS COMMAND...: polls until COMMAND succeeds.
wait_for() {
  local what=$1 limit=$2
  shift 2
  local t0
  t0=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    [ $(($(date +%s) - t0)) -lt "$limit" ] || {
      log "$what not ready after $limit s; last lines of the logs:"
      tail -n 5 "$run"/*.log >&2 || true
      down
      exit 1
    }
    sleep 0.5
  done
}

start_apiserver() {
  local d="$run/pki"
  start kube-apiserver \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --authorization-mode Node,RBAC \
    --client-ca-file "$d/ca.crt" \
    --tls-cert-file "$d/apiserver.crt" --tls-private-key-file "$d/apiserver.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$d/sa.pub" --service-account-signing-key-file "$d/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --audit-policy-file "$here/audit-policy.yaml" --audit-log-path "$run/audit.log" \
    --cert-dir "$d" --etcd-compaction-interval 0
  wait_for kube-apiserver 90 kc get --raw /readyz
}

# stop NAME: ends a process started by `start` (its whole process group).
stop() {
  local f="$run/$1.pid"
  [ -f "$f" ] || return 0
  local pid
  pid=$(cat "$f")
  kill -TERM -- "-$pid" 2>/dev/null || true
  # Running means neither gone nor a zombie of this shell (when `up` ran
  # in the same shell).
  running() { grep -qs '^State:[[:space:]]*[^Z]' "/proc/$pid/status"; }
  for _ in $(seq 50); do
    running || break
    sleep 0.2
  done
  if running; then
    log "$1 did not stop within 10 s of SIGTERM: killing it"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# restart_apiserver [--compact]: the API server goes away and comes back,
# as in an upgrade; with --compact, etcd is compacted to its current
# revision in between, so that every watch resumes from a revision that no
# longer exists (410 Gone) and must list again.
restart_apiserver() {
  stop kube-apiserver
  if [ "${1:-}" = --compact ]; then
    local rev
    rev=$(curl -sf -X POST "http://127.0.0.1:$etcd_port/v3/kv/range" -d '{"key":"AA=="}' |
      grep -o '"revision":"[0-9]*"' | head -n 1 | grep -o '[0-9]\+')
    [ -n "$rev" ] || die "could not read etcd's revision"
    curl -sf -X POST "http://127.0.0.1:$etcd_port/v3/kv/compaction" \
      -d "{\"revision\":\"$rev\",\"physical\":true}" >/dev/null
    log "etcd compacted at revision $rev"
  fi
  start_apiserver
}

kc() { kubectl --kubeconfig "$run/kubeconfig" "$@"; }

up() {
  command -v kubectl >/dev/null || die "needs kubectl (Debian: kubernetes-client)"
  command -v openssl >/dev/null || die "needs openssl"
  build
  [ ! -d "$run" ] || down
  mkdir -p "$run"
  local t0 d="$run/pki"
  t0=$(date +%s)
  pki
  echo "$base" >"$run/port-base"
  start etcd --name selfheal-test --data-dir "$run/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "selfheal-test=http://127.0.0.1:$etcd_peer" \
    --listen-metrics-urls "" --log-level warn
  wait_for etcd 30 curl -sf "http://127.0.0.1:$etcd_port/health"
  start_apiserver
  # The node grace period is long because KWOK's heartbeats back off for up
  # to a minute after an API server restart, and once a node is marked
  # NotReady its pods stay unready: a kubelet would mark them ready again,
  # KWOK's default pod stages do not.
  start kube-controller-manager --kubeconfig "$run/kubeconfig" \
    --authentication-kubeconfig "$run/kubeconfig" --authorization-kubeconfig "$run/kubeconfig" \
    --leader-elect=false --secure-port 0 \
    --service-account-private-key-file "$d/sa.key" --root-ca-file "$d/ca.crt" \
    --controllers '*' --horizontal-pod-autoscaler-sync-period "${SELFHEAL_CP_HPA_SYNC:-2s}" \
    --node-monitor-grace-period 3m
  start kube-scheduler --kubeconfig "$run/kubeconfig" \
    --authentication-kubeconfig "$run/kubeconfig" --authorization-kubeconfig "$run/kubeconfig" \
    --leader-elect=false --secure-port 0
  start kwok --kubeconfig "$run/kubeconfig" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --server-address "127.0.0.1:$kwok_port"
  kc apply -f "$here/nodes.yaml" >/dev/null
  wait_for "the KWOK nodes" 60 kc wait --for=condition=Ready node --all --timeout=1s
  # The resource metrics API, served by fake-metrics behind the
  # aggregation layer (an ExternalName Service: there is no kube-proxy).
  start fake-metrics --listen "127.0.0.1:$metrics_port" --control "127.0.0.1:$metrics_control" \
    --cert "$d/apiserver.crt" --key "$d/apiserver.key" \
    --api "https://127.0.0.1:$api_port" --ca "$d/ca.crt" \
    --client-cert "$d/admin.crt" --client-key "$d/admin.key"
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: fake-metrics, namespace: kube-system}
spec:
  type: ExternalName
  externalName: localhost
  ports: [{port: $metrics_port}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {name: fake-metrics, namespace: kube-system, port: $metrics_port}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
EOF
  wait_for "the metrics API" 60 kc get --raw /apis/metrics.k8s.io/v1beta1
  # Pods need the namespace's default ServiceAccount, which the
  # controller-manager creates.
  wait_for "the default ServiceAccount" 60 kc get serviceaccount default -n default
  log "up in $(($(date +%s) - t0)) s: export KUBECONFIG=$run/kubeconfig"
}

# down: stops everything; the logs and the audit log are kept in
# $top/last-run for a look after a failed test.
down() {
  [ -d "$run" ] || return 0
  local name
  for name in fake-metrics kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop "$name"
  done
  rm -rf "$top/last-run"
  mkdir -p "$top/last-run"
  mv "$run"/*.log "$top/last-run/" 2>/dev/null || true
  rm -rf "$run"
}

# test: up, the control-plane tests (extra arguments go to cargo test),
# down, even when they fail.
test_against() {
  up
  trap down EXIT
  (cd "$root" && SELFHEAL_CONTROLPLANE_KUBECONFIG="$run/kubeconfig" SELFHEAL_REQUIRE_CONTROLPLANE=1 \
    SELFHEAL_CONTROLPLANE_METRICS="http://127.0.0.1:$metrics_control" \
    cargo test --release --locked --workspace --test controlplane "$@")
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  restart-apiserver)
    shift
    restart_apiserver "$@"
    ;;
  test)
    shift
    test_against "$@"
    ;;
  env) echo "export KUBECONFIG=$run/kubeconfig SELFHEAL_CONTROLPLANE_KUBECONFIG=$run/kubeconfig SELFHEAL_CONTROLPLANE_METRICS=http://127.0.0.1:$metrics_control" ;;
  *) die "usage: $0 build|up|down|env|test|restart-apiserver [--compact]" ;;
esac
