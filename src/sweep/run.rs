//! Executing a plan: in parallel, resumable, shardable.
//!
//! Each finished run is appended to `runs.log.csv` as one complete line and
//! flushed, so a sweep killed at any point loses at most the runs in flight:
//! restarted on the same directory it skips every run already logged. Runs
//! that keep a per-second series write it to `series/<index>.csv` first
//! (atomically, via a rename), so a logged run always has its series.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;

use super::plan::{Plan, RunSpec};
use super::{SweepError, io_at};
use crate::CsvError;
use crate::control::Command;
use crate::sim::RunOutput;
use crate::time::Time;

pub const JOURNAL: &str = "runs.log.csv";

/// A cell of a run record as the report's table takes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    Text(&'a str),
    Int(u64),
    Num(f64),
}

/// What a run record's column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    Text,
    Int,
    Num,
}

/// How a field reads and writes itself in the journal's CSV line.
trait Field: Sized {
    const KIND: CellKind;
    fn write(&self) -> String;
    /// The value a cell holds, if it is one of this type's.
    fn read(s: &str) -> Option<Self>;
    fn cell(&self) -> Cell<'_>;
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl Field for String {
    const KIND: CellKind = CellKind::Text;
    fn write(&self) -> String {
        quote(self)
    }
    fn read(s: &str) -> Option<Self> {
        Some(s.to_string())
    }
    fn cell(&self) -> Cell<'_> {
        Cell::Text(self)
    }
}

/// Counts: written and read as decimal integers.
macro_rules! count_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            const KIND: CellKind = CellKind::Int;
            fn write(&self) -> String {
                self.to_string()
            }
            fn read(s: &str) -> Option<Self> {
                s.parse().ok()
            }
            fn cell(&self) -> Cell<'_> {
                Cell::Int(*self as u64)
            }
        }
    )*};
}

count_field!(u64, usize);

impl Field for f64 {
    const KIND: CellKind = CellKind::Num;
    fn write(&self) -> String {
        self.to_string()
    }
    fn read(s: &str) -> Option<Self> {
        s.parse().ok()
    }
    fn cell(&self) -> Cell<'_> {
        Cell::Num(*self)
    }
}

/// The run record, its journal columns (in field order), the journal's CSV
/// line both ways and the cells the report reads: one list of fields, so
/// a new figure is one line here plus where it is computed (`of`).
macro_rules! run_record {
    ($( $(#[$doc:meta])* $field:ident : $ty:ty, )*) => {
        /// One run's figures: a row of the report.
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct RunRecord {
            $( $(#[$doc])* pub $field: $ty, )*
        }

        impl RunRecord {
            /// The journal's (and the runs table's) column names.
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];
            /// What each column holds.
            pub const KINDS: &'static [CellKind] = &[$(<$ty as Field>::KIND),*];

            pub fn to_line(&self) -> String {
                [$(self.$field.write()),*].join(",")
            }

            /// Reads a journal line; an error names the field and gives
            /// `line_no` as its line.
            pub fn from_line(line: &str, line_no: usize) -> Result<Self, CsvError> {
                let f = split_csv(line);
                if f.len() != Self::COLUMNS.len() {
                    return Err(CsvError::new(
                        line_no,
                        format!("expected {} fields, found {}", Self::COLUMNS.len(), f.len()),
                    ));
                }
                let mut cells = f.iter().zip(Self::COLUMNS);
                Ok(RunRecord {
                    $( $field: {
                        let (text, name) = cells.next().expect("counted above");
                        <$ty as Field>::read(text).ok_or_else(|| {
                            let what = match <$ty as Field>::KIND {
                                CellKind::Int => "an integer",
                                CellKind::Num => "a number",
                                CellKind::Text => "text",
                            };
                            CsvError::field(line_no, name, format!("`{text}` is not {what}"))
                        })?
                    }, )*
                })
            }

            /// Column `k`'s cell.
            pub fn cell(&self, k: usize) -> Cell<'_> {
                let cells = [$(self.$field.cell()),*];
                cells[k]
            }
        }
    };
}

run_record! {
    index: usize,
    id: String,
    scenario: String,
    params: String,
    controller: String,
    seed: u64,
    /// Fault kinds the scenario injects, `;`-joined (empty: none).
    faults: String,
    requests: u64,
    served: u64,
    failed: u64,
    slo_violation_s: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    replica_seconds: f64,
    scaling_actions: u64,
    restarts: u64,
    oom_kills: u64,
    timeouts: u64,
    events: u64,
    /// Remedial commands (see `Command::is_healing`).
    healing_actions: u64,
    /// Healing commands before any fault started (all of them on a
    /// fault-free run).
    false_healings: u64,
    /// The chaos experiment's figures (NaN or empty without one): seconds
    /// from the fault's start to the first reaction and to recovery, and
    /// `recovered`, `unrecovered` or `aborted`. An unrecovered run's MTTR
    /// is the time from the fault's start to the end of the run: a lower
    /// bound, flagged by its outcome, never dropped.
    detection_s: f64,
    mttr_s: f64,
    outcome: String,
    /// Client requests failed from the fault's start.
    fault_failed: u64,
    /// Simulated seconds.
    duration_s: f64,
}

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

impl RunRecord {
    pub fn header() -> String {
        Self::COLUMNS.join(",")
    }

    pub fn of(spec: &RunSpec, out: &RunOutput) -> Self {
        let s = &out.summary;
        let v = out.verdict.as_ref();
        let mut kinds: Vec<&str> = spec
            .loaded
            .spec
            .faults
            .iter()
            .map(|f| f.kind.as_str())
            .collect();
        kinds.dedup();
        RunRecord {
            index: spec.index,
            id: spec.id.clone(),
            scenario: spec.scenario.clone(),
            params: spec.params.clone(),
            controller: spec.controller.clone(),
            seed: spec.seed,
            faults: kinds.join(";"),
            requests: s.requests,
            served: s.served,
            failed: s.failed,
            slo_violation_s: s.slo_violation_s,
            latency_p50_ms: s.latency_p50_ms,
            latency_p99_ms: s.latency_p99_ms,
            replica_seconds: s.replica_seconds,
            scaling_actions: out
                .commands
                .iter()
                .filter(|(_, _, c)| matches!(c, Command::Scale { .. }))
                .count() as u64,
            restarts: s.restarts,
            oom_kills: s.oom_kills,
            timeouts: s.timeouts,
            events: s.events,
            healing_actions: out
                .commands
                .iter()
                .filter(|(_, _, c)| c.is_healing())
                .count() as u64,
            false_healings: {
                let first_fault = out
                    .faults
                    .iter()
                    .map(|f| f.start)
                    .min()
                    .unwrap_or(Time::MAX);
                out.commands
                    .iter()
                    .filter(|(t, _, c)| c.is_healing() && *t < first_fault)
                    .count() as u64
            },
            detection_s: v.and_then(|v| v.detection_s).unwrap_or(f64::NAN),
            mttr_s: v.map_or(f64::NAN, |v| {
                v.mttr_s
                    .unwrap_or((s.duration_s - v.fault_start_s).max(0.0))
            }),
            outcome: v.map_or(String::new(), |v| {
                if v.aborted_s.is_some() {
                    "aborted"
                } else if v.mttr_s.is_some() {
                    "recovered"
                } else {
                    "unrecovered"
                }
                .to_string()
            }),
            fault_failed: v.map_or(0, |v| v.failed_requests),
            duration_s: s.duration_s,
        }
    }
}

/// Reads a journal; a last line without its newline (a write cut off by a
/// kill) is dropped, any other bad line is an error naming its line.
pub fn read_journal(path: &Path) -> Result<Vec<RunRecord>, SweepError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(path)(e)),
    };
    let bad_line = |error| SweepError::Line {
        path: path.to_path_buf(),
        error,
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut lines = complete.lines().enumerate();
    match lines.next() {
        None => return Ok(Vec::new()),
        Some((_, h)) if h == RunRecord::header() => {}
        // A journal of another version of the record: its columns differ.
        Some((_, h)) if h.starts_with("index,id,") => {
            return Err(bad_line(CsvError::new(
                1,
                "a journal of another selfheal version (its columns differ from this one's): finish the sweep with that version, or run it into a new directory",
            )));
        }
        Some(_) => {
            return Err(bad_line(CsvError::new(
                1,
                "not a sweep journal (unexpected header)",
            )));
        }
    }
    lines
        .map(|(i, l)| RunRecord::from_line(l, i + 1).map_err(bad_line))
        .collect()
}

/// Per-second series of a run, with its scaling, healing and fault
/// markers: `t,requests,ok,good,failed,ready,desired,p99_ms,marker`. A
/// marker is `scale <service> <n>`, `heal <command> <service>`,
/// `fault <kind> <target>` or `end <kind> <target>`; `" / "` joins several.
pub fn series_csv(out: &RunOutput, entry: &str) -> String {
    use std::fmt::Write as _;
    let n = out.services.len().max(1);
    let entry_i = out.services.iter().position(|s| s == entry).unwrap_or(0);
    let scrapes: Vec<(f64, f64)> = out
        .metrics
        .iter()
        .filter(|(i, _)| *i == entry_i)
        .map(|(_, m)| (m.timestamp.as_secs_f64(), m.latency_p99))
        .collect();
    let mut markers: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (t, _, c) in &out.commands {
        let label = match c {
            Command::Scale {
                service, replicas, ..
            } if !c.is_healing() => format!("scale {service} {replicas}"),
            c => format!("heal {} {}", c.kind(), c.service()),
        };
        markers.entry(t.whole_secs()).or_default().push(label);
    }
    for f in &out.faults {
        markers
            .entry(f.start.whole_secs())
            .or_default()
            .push(format!("fault {} {}", f.kind.as_str(), f.target));
        if let Some(e) = f.end.filter(|e| *e > f.start) {
            markers.entry(e.whole_secs()).or_default().push(format!(
                "end {} {}",
                f.kind.as_str(),
                f.target
            ));
        }
    }
    let mut s = String::from("t,requests,ok,good,failed,ready,desired,p99_ms,marker\n");
    let mut k = 0;
    let mut p99 = f64::NAN;
    for (t, r) in out.root_seconds.iter().enumerate() {
        while k < scrapes.len() && scrapes[k].0 <= t as f64 {
            p99 = scrapes[k].1;
            k += 1;
        }
        let row = out.service_seconds.iter().skip(t * n).take(n);
        let (ready, desired) = row.fold((0, 0), |(a, b), x| (a + x.ready, b + x.desired));
        let marker = markers
            .get(&(t as u64))
            .map(|m| m.join(" / "))
            .unwrap_or_default();
        let p = if p99.is_finite() {
            p99.to_string()
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "{t},{},{},{},{},{ready},{desired},{p},{}",
            r.arrivals,
            r.ok,
            r.good,
            r.failed,
            quote(&marker)
        );
    }
    s
}

/// Runs the plan's runs that `shard` selects and the journal lacks; returns
/// every record of the shard (earlier and new), in matrix order.
pub fn execute(
    plan: &Plan,
    dir: &Path,
    shard: Option<(usize, usize)>,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<RunRecord>, SweepError> {
    let series = dir.join("series");
    std::fs::create_dir_all(&series).map_err(io_at(&series))?;
    let journal = dir.join(JOURNAL);
    let mut done: BTreeMap<String, RunRecord> = read_journal(&journal)?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    // Drop a cut-off last line so appends start on a fresh line.
    if let Ok(text) = std::fs::read_to_string(&journal)
        && !text.is_empty()
        && !text.ends_with('\n')
    {
        let keep = text.rfind('\n').map_or(0, |i| i + 1);
        std::fs::write(&journal, &text[..keep]).map_err(io_at(&journal))?;
    }
    let fresh = std::fs::metadata(&journal).map_or(true, |m| m.len() == 0);
    let mut file: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal)
        .map_err(io_at(&journal))?;
    if fresh {
        writeln!(file, "{}", RunRecord::header()).map_err(io_at(&journal))?;
    }
    let selected: Vec<&RunSpec> = plan
        .runs
        .iter()
        .filter(|r| shard.is_none_or(|(i, n)| r.index % n == i))
        .collect();
    let todo: Vec<&RunSpec> = selected
        .iter()
        .copied()
        .filter(|r| !done.contains_key(&r.id))
        .collect();
    let file = Mutex::new(file);
    let total = todo.len();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<RunRecord, SweepError>> = todo
        .par_iter()
        .map(|spec| {
            let out = crate::sim::run(&spec.loaded).map_err(|source| SweepError::Run {
                id: spec.id.clone(),
                source,
            })?;
            let rec = RunRecord::of(spec, &out);
            if spec.keep_series {
                let entry = spec
                    .loaded
                    .spec
                    .loads
                    .first()
                    .map(|l| l.service.as_str())
                    .unwrap_or("");
                let path = dir.join("series").join(format!("{}.csv", spec.index));
                let tmp = dir.join("series").join(format!(".{}.csv.tmp", spec.index));
                std::fs::write(&tmp, series_csv(&out, entry))
                    .and_then(|_| std::fs::rename(&tmp, &path))
                    .map_err(io_at(&path))?;
            }
            {
                let mut f = file.lock().expect("journal lock");
                f.write_all(format!("{}\n", rec.to_line()).as_bytes())
                    .and_then(|_| f.flush())
                    .map_err(io_at(&journal))?;
            }
            progress(
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                total,
            );
            Ok(rec)
        })
        .collect();
    for r in results {
        let r = r?;
        done.insert(r.id.clone(), r);
    }
    let mut all: Vec<RunRecord> = selected
        .iter()
        .filter_map(|s| {
            done.get(&s.id).cloned().map(|mut r| {
                r.index = s.index;
                r
            })
        })
        .collect();
    all.sort_by_key(|r| r.index);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal names its bad line and field; one of another version (other
    /// columns) says so rather than "not a journal".
    #[test]
    fn bad_journals_are_named_by_line_and_field() {
        let dir = std::env::temp_dir().join(format!("selfheal-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(JOURNAL);
        let read = |text: &str| {
            std::fs::write(&path, text).unwrap();
            read_journal(&path).unwrap_err().to_string()
        };
        let e = read("index,id,scenario\n0,a,b\n");
        assert!(
            e.contains(":1: a journal of another selfheal version"),
            "{e}"
        );
        let e = read("t,value\n0,1\n");
        assert!(e.contains(":1: not a sweep journal"), "{e}");
        let mut line = RunRecord::default().to_line();
        line = line.replacen("0,", "x,", 1);
        let e = read(&format!("{}\n{line}\n", RunRecord::header()));
        assert!(
            e.contains(":2: field `index`: `x` is not an integer"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
