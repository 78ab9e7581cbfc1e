//! `selfheal serve`: a scenario run against the wall clock (`speed` times
//! faster) and exposed the way a live cluster's exporters are, at
//! `/metrics` in the Prometheus text format, so a real Prometheus and the
//! live adapter can watch a simulated cluster. This is an adapter at the
//! edge, like the live one: it owns a thread, a socket and the wall clock;
//! the simulation inside stays a pure function of scenario and seed (the
//! wall clock only decides how far it has run when a scrape arrives).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::scenario::LoadedScenario;
use crate::sim::Simulation;
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
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServeOptions {
    /// `host:port`; port 0 picks a free one.
    pub addr: String,
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    /// The `namespace` label of every series.
    pub namespace: String,
}

/// What a scrape reads: the latest exposition and how far the run is.
#[derive(Default)]
struct Shared {
    text: String,
    sim_time: Time,
    finished: bool,
    /// What the scenario's own controller was last shown.
    observation: Option<crate::control::Observation>,
}

/// A running served scenario; dropping it stops both threads.
pub struct Served {
    pub addr: SocketAddr,
    /// Unix time of simulated time zero.
    pub wall_origin: f64,
    pub speed: f64,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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
        let stop = Arc::new(AtomicBool::new(false));
        let (namespace, speed) = (opts.namespace.clone(), opts.speed);
        let end = Time::from_secs_f64(loaded.spec.duration_s);
        // The simulation lives on its own thread (controllers need not be
        // `Send`); a scenario that does not build fails this call.
        let (built, build) = std::sync::mpsc::sync_channel(1);
        let runner = {
            let (shared, stop) = (shared.clone(), stop.clone());
            let loaded = loaded.clone();
            std::thread::spawn(move || {
                let mut sim = match Simulation::new(&loaded).and_then(|mut sim| {
                    sim.attach(crate::sim::controllers::build_for(&loaded.spec)?);
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
                };
                shared.lock().expect("served state").text = sim.exposition(&ex);
                let _ = built.send(Ok(ex.wall_origin));
                while !stop.load(Ordering::Relaxed) {
                    let target = Time::from_secs_f64(started.elapsed().as_secs_f64() * ex.speed);
                    sim.run_until(target.min(end));
                    let text = sim.exposition(&ex);
                    let observation = sim.observe();
                    let mut s = shared.lock().expect("served state");
                    s.text = text;
                    s.observation = Some(observation);
                    s.sim_time = sim.now();
                    s.finished = target >= end;
                    drop(s);
                    std::thread::sleep(Duration::from_millis(50));
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
        let server = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => answer(stream, &shared),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10))
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
            shared,
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

    /// Simulated time reached, and whether the scenario has ended.
    pub fn progress(&self) -> (Time, bool) {
        let s = self.shared.lock().expect("served state");
        (s.sim_time, s.finished)
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

/// One HTTP/1.1 exchange: `GET /metrics` gets the exposition, anything
/// else a 404; the connection closes after the answer.
fn answer(stream: TcpStream, shared: &Mutex<Shared>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // Drain the headers.
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body) =
        if request.starts_with("GET ") && path.split('?').next() == Some("/metrics") {
            ("200 OK", shared.lock().expect("served state").text.clone())
        } else {
            ("404 Not Found", "only /metrics is served\n".to_string())
        };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}
