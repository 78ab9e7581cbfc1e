//! `selfheal serve`: a scenario run against the wall clock (`speed` times
//! faster) and exposed the way a live cluster is seen: its exporters at
//! `/metrics` in the Prometheus text format, and its objects through a
//! subset of the Kubernetes API (`kube_api`) on the same port, so a real
//! Prometheus, `kubectl` and the live adapter can watch and change a
//! simulated cluster. This is an adapter at the edge, like the live one: it
//! owns threads, a socket and the wall clock; the simulation inside stays a
//! pure function of scenario, seed and the writes it is handed (the wall
//! clock decides how far it has run when a scrape or a write arrives).

pub mod fields;
pub mod guard;
pub mod http;
pub mod kube_api;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod store;

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// A request body the served API cannot decode or apply (a protobuf
/// envelope, a patch), in the words it answers with: the status message is
/// all a client sees of it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(String);

impl From<String> for BodyError {
    fn from(message: String) -> Self {
        BodyError(message)
    }
}

impl From<&str> for BodyError {
    fn from(message: &str) -> Self {
        BodyError(message.to_string())
    }
}

use self::http::{Chunked, Response};
use self::kube_api::{Answer, WatchPlan, Writer};
use self::store::{ApiStatus, Resource, Store};
use crate::scenario::LoadedScenario;
use crate::sim::Simulation;
use crate::sim::api_objects::{ApiWrite, WriteError};
use crate::sim::exposition::Exposition;
use crate::time::Time;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Build(#[from] crate::sim::BuildError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("speed must be positive, got {0}")]
    Speed(f64),
    #[error("the served simulation follows the wall clock; only a driven one is advanced")]
    NotDriven,
    #[error("the served simulation has stopped")]
    Stopped,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServeOptions {
    /// `host:port`; port 0 picks a free one.
    pub addr: String,
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    /// The `namespace` label of every series.
    pub namespace: String,
    /// What moves simulated time.
    pub clock: ServeClock,
    /// A bearer token every request but a `/metrics` scrape must carry
    /// (`guard`); `None` serves loopback names only.
    pub token: Option<String>,
    /// Whether the scenario's faults start on their own.
    pub faults: ServedFaults,
}

/// What becomes of the scenario's faults in the served simulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServedFaults {
    /// Each starts on its schedule, and the experiment is judged.
    #[default]
    Scheduled,
    /// None starts on its own and there is no experiment: a replay
    /// (`selfheal-k8s replay`) injects them through the API, with the
    /// resources that inject them on a cluster (Chaos Mesh's, Istio's
    /// VirtualServices, a Node's cordon, pod deletions), which are served
    /// either way; only a bad deploy needs its fault held, and starts when
    /// its Deployment's image is set to `api_objects::fault_image`, the
    /// revision the simulation knows as bad (`serve --without-faults`).
    Held,
}

/// What moves the served simulation's time: the simulation is handed a
/// clock, as NeXosim hands its simulations one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServeClock {
    /// The wall clock, `speed` times faster (`selfheal serve`).
    #[default]
    Wall,
    /// The caller: simulated time moves only through [`Served::advance_to`],
    /// never ahead of the wall clock's `speed` times, and every sample
    /// carries its simulated instant as its timestamp
    /// ([`Exposition::stamp_samples`]). Whatever the machine's load, a
    /// scraper then stores the same values at the same instants: what a
    /// test compares against.
    Driven,
}

/// What a scrape reads: the latest exposition and how far the run is.
#[derive(Default)]
struct Shared {
    text: String,
    sim_time: Time,
    finished: bool,
    /// What the scenario's own controller was last shown.
    observation: Option<crate::control::Observation>,
    /// The simulated instant of the latest exposition a scrape was
    /// answered with, and how many scrapes were answered with it.
    scraped: (Time, u32),
    /// Client requests that failed in each whole second already over.
    client_failures: Vec<u64>,
    /// When each write through the API took effect (simulated seconds).
    writes_applied: Vec<(f64, crate::sim::api_objects::ApiWrite)>,
}

/// Writes on their way to the simulation thread, each with its answer.
type Job = (Vec<ApiWrite>, mpsc::SyncSender<Result<(), ApiStatus>>);

/// Hands writes to the simulation thread and waits for them to be done.
struct SimWriter(mpsc::Sender<Job>);

impl Writer for SimWriter {
    fn write(&self, writes: Vec<ApiWrite>) -> Result<(), ApiStatus> {
        let (tx, rx) = mpsc::sync_channel(1);
        let gone = || ApiStatus::new(503, "ServiceUnavailable", "the simulation has stopped");
        self.0.send((writes, tx)).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

/// A running served scenario; dropping it stops its threads.
pub struct Served {
    pub addr: SocketAddr,
    /// Unix time of simulated time zero.
    pub wall_origin: f64,
    pub speed: f64,
    pub namespace: String,
    pub clock: ServeClock,
    token: Option<Arc<str>>,
    shared: Arc<Mutex<Shared>>,
    /// Signalled (with `shared`) whenever a scrape is answered.
    scraped: Arc<Condvar>,
    /// Where a driven clock's caller sets the simulated time to reach.
    driven_target: Arc<Mutex<Time>>,
    writer: Arc<SimWriter>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn write_error(e: WriteError) -> ApiStatus {
    match e {
        WriteError::Unknown { .. } => ApiStatus::new(404, "NotFound", e.to_string()),
        WriteError::Unsupported(m) => ApiStatus::new(422, "Invalid", m),
    }
}

/// The simulation thread's state besides the simulation: how its objects
/// are shown, and the Services' selectors as last written.
struct Runner {
    sim: Simulation,
    ex: Exposition,
    selectors: BTreeMap<String, BTreeMap<String, String>>,
    shared: Arc<Mutex<Shared>>,
    store: Arc<Mutex<Store>>,
    /// `Simulation::event_count` when the events were last rendered.
    events_rendered: Option<usize>,
}

impl Runner {
    /// Publishes the simulation as it is now: scrape text, observation, and
    /// the API's objects.
    fn publish(&mut self, finished: bool) {
        let text = self.sim.exposition(&self.ex);
        let observation = self.sim.observe();
        let objects = self.sim.api_objects(&self.ex, &self.selectors);
        // Events are rendered again only when there are new ones (a publish
        // runs 20 times a second; the newest 200 rarely change that often).
        let count = self.sim.event_count();
        let events = (self.events_rendered != Some(count)).then(|| self.sim.events(&self.ex));
        self.events_rendered = Some(count);
        let mut store = self.store.lock().expect("served store");
        store.sync(objects, |r| r != Resource::Events);
        if let Some(events) = events {
            store.sync(events, |r| r == Resource::Events);
        }
        drop(store);
        let mut s = self.shared.lock().expect("served state");
        let over = self.sim.now().whole_secs();
        let seen = s.client_failures.len() as u64;
        s.client_failures.extend(
            self.sim
                .recorder
                .roots_between(seen, over)
                .iter()
                .map(|r| r.failed),
        );
        let logged = s.writes_applied.len();
        s.writes_applied.extend(
            self.sim.api_write_log[logged..]
                .iter()
                .map(|(t, w)| (t.as_secs_f64(), w.clone())),
        );
        s.text = text;
        s.observation = Some(observation);
        s.sim_time = self.sim.now();
        s.finished = finished;
    }

    fn apply(&mut self, writes: Vec<ApiWrite>) -> Result<(), ApiStatus> {
        for w in writes {
            self.sim.apply_api_write(&w).map_err(write_error)?;
            if let ApiWrite::Select { service, selector } = w {
                self.selectors.insert(service, selector);
            }
        }
        Ok(())
    }
}

impl Served {
    /// Builds the scenario (under its own controller) and starts serving.
    pub fn start(loaded: &LoadedScenario, opts: &ServeOptions) -> Result<Served, ServeError> {
        if !(opts.speed.is_finite() && opts.speed > 0.0) {
            return Err(ServeError::Speed(opts.speed));
        }
        let listener = TcpListener::bind(&opts.addr).map_err(|source| ServeError::Listen {
            addr: opts.addr.clone(),
            source,
        })?;
        let listen_err = |source| ServeError::Listen {
            addr: opts.addr.clone(),
            source,
        };
        let addr = listener.local_addr().map_err(listen_err)?;
        listener.set_nonblocking(true).map_err(listen_err)?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let scraped = Arc::new(Condvar::new());
        let store = Arc::new(Mutex::new(Store::new(&opts.namespace)));
        let stop = Arc::new(AtomicBool::new(false));
        let (namespace, speed, clock) = (opts.namespace.clone(), opts.speed, opts.clock);
        let driven_target = Arc::new(Mutex::new(Time::ZERO));
        let end = Time::from_secs_f64(loaded.spec.duration_s);
        let (jobs_tx, jobs) = mpsc::channel::<Job>();
        // The simulation lives on its own thread (controllers need not be
        // `Send`); a scenario that does not build fails this call.
        let (built, build) = mpsc::sync_channel(1);
        let runner = {
            let (shared, store, stop) = (shared.clone(), store.clone(), stop.clone());
            let driven_target = driven_target.clone();
            let mut loaded = loaded.clone();
            let held = opts.faults == ServedFaults::Held;
            if held {
                loaded.spec.experiment = None;
            }
            std::thread::spawn(move || {
                let sim = match Simulation::new(&loaded).and_then(|mut sim| {
                    sim.attach(crate::sim::controllers::build_for(&loaded.spec)?);
                    if held {
                        sim.hold_faults();
                    }
                    Ok(sim)
                }) {
                    Ok(sim) => sim,
                    Err(e) => {
                        let _ = built.send(Err(e));
                        return;
                    }
                };
                // Simulated time zero is now.
                let started = Instant::now();
                let ex = Exposition {
                    namespace,
                    wall_origin: wall_now(),
                    speed,
                    stamp_samples: clock == ServeClock::Driven,
                };
                let origin = ex.wall_origin;
                let mut r = Runner {
                    sim,
                    ex,
                    selectors: BTreeMap::new(),
                    shared,
                    store,
                    events_rendered: None,
                };
                r.publish(false);
                let _ = built.send(Ok(origin));
                while !stop.load(Ordering::Relaxed) {
                    // A write waits at most until the next step; it takes
                    // effect at the simulated time the wall clock has reached.
                    let job = jobs.recv_timeout(Duration::from_millis(50)).ok();
                    let target = match clock {
                        ServeClock::Wall => {
                            Time::from_secs_f64(started.elapsed().as_secs_f64() * speed)
                        }
                        ServeClock::Driven => *driven_target.lock().expect("driven clock"),
                    };
                    r.sim.run_until(target.min(end));
                    let answer = job.map(|(writes, reply)| (r.apply(writes), reply));
                    r.publish(target >= end);
                    if let Some((result, reply)) = answer {
                        let _ = reply.send(result);
                    }
                }
            })
        };
        let wall_origin = match build.recv().expect("the simulation thread answers") {
            Ok(origin) => origin,
            Err(e) => {
                let _ = runner.join();
                return Err(e.into());
            }
        };
        let writer = Arc::new(SimWriter(jobs_tx));
        let token: Option<Arc<str>> = opts.token.as_deref().map(Arc::from);
        let server = {
            let (shared, stop, writer) = (shared.clone(), stop.clone(), writer.clone());
            let (scraped, token) = (scraped.clone(), token.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let c = Connection {
                                shared: shared.clone(),
                                scraped: scraped.clone(),
                                store: store.clone(),
                                writer: writer.clone(),
                                stop: stop.clone(),
                                server: addr.to_string(),
                                token: token.clone(),
                            };
                            std::thread::spawn(move || c.serve(stream));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Ok(Served {
            addr,
            wall_origin,
            speed: opts.speed,
            namespace: opts.namespace.clone(),
            clock,
            token,
            shared,
            scraped,
            driven_target,
            writer,
            stop,
            threads: vec![runner, server],
        })
    }

    /// The simulation's own view now (its latest scrapes and pods): what a
    /// live observation of the served metrics should match.
    pub fn observation(&self) -> Option<crate::control::Observation> {
        self.shared
            .lock()
            .expect("served state")
            .observation
            .clone()
    }

    /// Client requests that failed from simulated second `from` to second
    /// `to` (whole seconds, `to` excluded, those already over): the
    /// simulation's own count, for checking what a replay measures
    /// through Prometheus.
    pub fn client_failures(&self, from: u64, to: u64) -> u64 {
        let s = self.shared.lock().expect("served state");
        let n = s.client_failures.len();
        s.client_failures[(from as usize).min(n)..(to as usize).min(n)]
            .iter()
            .sum()
    }

    /// Every write through the API so far and the simulated time it took
    /// effect: how long after a controller's decision its write landed.
    pub fn writes_applied(&self) -> Vec<(f64, crate::sim::api_objects::ApiWrite)> {
        self.shared
            .lock()
            .expect("served state")
            .writes_applied
            .clone()
    }

    /// Simulated time reached, and whether the scenario has ended.
    pub fn progress(&self) -> (Time, bool) {
        let s = self.shared.lock().expect("served state");
        (s.sim_time, s.finished)
    }

    /// Under [`ServeClock::Driven`]: runs the simulation to `t` (at most its
    /// end) and publishes it, first waiting until the wall clock has
    /// reached `t`'s instant, so that no sample is stamped in the future.
    /// Returns the simulated time reached.
    pub fn advance_to(&self, t: Time) -> Result<Time, ServeError> {
        if self.clock != ServeClock::Driven {
            return Err(ServeError::NotDriven);
        }
        let due = self.wall_origin + t.as_secs_f64() / self.speed;
        let ahead = due - wall_now();
        if ahead > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(ahead));
        }
        *self.driven_target.lock().expect("driven clock") = t;
        // An empty write is answered once the simulation has run to the
        // target and published.
        self.writer
            .write(Vec::new())
            .map_err(|_| ServeError::Stopped)?;
        Ok(self.progress().0)
    }

    /// Waits until `n` scrapes of `/metrics` were answered with the
    /// exposition of simulated time `t` (or a later one), or `timeout`
    /// passes; says whether they were. A scraper such as Prometheus stores
    /// one scrape before it starts the next, so after two scrapes of the
    /// same instant the first is queryable.
    pub fn wait_scraped(&self, t: Time, n: u32, timeout: Duration) -> bool {
        let reached = |s: &Shared| s.scraped.0 > t || (s.scraped.0 == t && s.scraped.1 >= n);
        let state = self.shared.lock().expect("served state");
        let (state, _) = self
            .scraped
            .wait_timeout_while(state, timeout, |s| !reached(s))
            .expect("served state");
        reached(&state)
    }

    /// A kubeconfig for `kubectl` and kube-rs: plain HTTP, the token if the
    /// server has one, the served namespace as the default.
    pub fn kubeconfig(&self) -> String {
        let user = match &self.token {
            Some(t) => format!("\n    token: {t}"),
            None => " {}".into(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: selfheal-serve\n  cluster:\n    server: http://{}\ncontexts:\n- name: selfheal-serve\n  context:\n    cluster: selfheal-serve\n    namespace: {}\n    user: selfheal-serve\ncurrent-context: selfheal-serve\nusers:\n- name: selfheal-serve\n  user:{user}\n",
            self.addr, self.namespace
        )
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One client connection: requests answered in turn (keep-alive) until the
/// client closes it, asks to, or starts a watch.
struct Connection {
    shared: Arc<Mutex<Shared>>,
    scraped: Arc<Condvar>,
    store: Arc<Mutex<Store>>,
    writer: Arc<SimWriter>,
    stop: Arc<AtomicBool>,
    /// `host:port`, for the discovery document.
    server: String,
    token: Option<Arc<str>>,
}

/// How long an idle keep-alive connection stays open.
const IDLE: Duration = Duration::from_secs(90);

impl Connection {
    fn serve(self, stream: TcpStream) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(IDLE));
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(read_half);
        let mut stream = stream;
        while !self.stop.load(Ordering::Relaxed) {
            let req = match http::read_request(&mut reader) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    if let Some((code, reason)) = e.status() {
                        let status = ApiStatus::new(code, reason, e.to_string());
                        let _ = http::write_response(
                            &mut stream,
                            &Response::json(code, &status.to_json()),
                            true,
                        );
                    }
                    return;
                }
            };
            let close = req
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"));
            let answer = if let Some(refused) = guard::refuse(&req, self.token.as_deref()) {
                Answer::Full(Response::json(refused.code, &refused.to_json()))
            } else if req.method == "GET" && req.path == "/metrics" {
                let text = {
                    let mut s = self.shared.lock().expect("served state");
                    s.scraped = match s.scraped {
                        (at, n) if at == s.sim_time => (at, n + 1),
                        _ => (s.sim_time, 1),
                    };
                    self.scraped.notify_all();
                    s.text.clone()
                };
                Answer::Full(Response::text(200, "text/plain; version=0.0.4", text))
            } else {
                kube_api::answer(&req, &self.store, &*self.writer, &self.server, wall_now())
            };
            match answer {
                Answer::Full(r) => {
                    if http::write_response(&mut stream, &r, close).is_err() || close {
                        return;
                    }
                }
                Answer::Watch(plan) => {
                    let _ = self.watch(&mut stream, &plan);
                    return;
                }
            }
        }
    }

    /// Streams a watch: the current objects first when it starts from no
    /// version, then every change, until its timeout or the server stops.
    fn watch(&self, stream: &mut TcpStream, plan: &WatchPlan) -> std::io::Result<()> {
        let mut out = Chunked::start(stream)?;
        let deadline = Instant::now() + Duration::from_secs_f64(plan.timeout_s.clamp(1.0, 3600.0));
        let line = |kind: &str, object: &Value| {
            let mut l = serde_json::to_vec(&json!({"type": kind, "object": object}))
                .expect("JSON serialises");
            l.push(b'\n');
            l
        };
        let event = |kind: &str, object: &Value, rv: u64| {
            line(kind, &plan.event_object(object, rv, wall_now()))
        };
        let mut last = match plan.from {
            Some(v) => v,
            None => {
                let s = self.store.lock().expect("served store");
                let rv = s.resource_version();
                let buf: Vec<u8> = s
                    .list(plan.resource)
                    .filter(|o| plan.passes(o))
                    .flat_map(|o| event("ADDED", o, rv))
                    .collect();
                drop(s);
                out.send(&buf)?;
                rv
            }
        };
        loop {
            let mut buf = Vec::new();
            {
                let s = self.store.lock().expect("served store");
                match s.changes_after(last, plan.resource) {
                    Ok(changes) => {
                        last = s.resource_version();
                        for c in changes.iter().filter(|c| plan.passes(&c.object)) {
                            buf.extend(event(c.kind.as_str(), &c.object, last));
                        }
                    }
                    Err(oldest) => {
                        let gone = ApiStatus::new(
                            410,
                            "Expired",
                            format!("too old resource version: {last} ({oldest})"),
                        );
                        drop(s);
                        out.send(&line("ERROR", &gone.to_json()))?;
                        return out.finish();
                    }
                }
            }
            out.send(&buf)?;
            if self.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                return out.finish();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
