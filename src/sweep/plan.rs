//! Suite files and their expansion into runs.
//!
//! A suite names scenario files, parameter ranges to vary in each (by field
//! path, as validation errors print them), controllers and seeds; the
//! matrix of all combinations is the sweep's list of runs, in a fixed order.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::scenario::{self, ControllerSpec, FieldPath, LoadedScenario};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{file}: cannot read the suite: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    /// The suite file's own error, at its line and field.
    #[error(transparent)]
    Invalid(scenario::ScenarioError),
    #[error("{suite}: scenario {index}: {source}")]
    Scenario {
        suite: String,
        index: usize,
        source: scenario::ScenarioError,
    },
}

/// The most seeds a suite names, and the most runs it expands to: each run
/// holds its own copy of its scenario, so a runaway count would exhaust
/// memory before the first run starts.
pub const MAX_SEEDS: usize = 10_000;
pub const MAX_RUNS: usize = 200_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    name: String,
    #[serde(default)]
    description: String,
    /// A list of seeds, or a count `n` meaning seeds 1 to n.
    seeds: Seeds,
    controllers: Vec<String>,
    /// Which runs keep their per-second series: the first seed of every
    /// (scenario, parameters, controller), all runs, or none.
    #[serde(default)]
    timeseries: SeriesPolicy,
    #[serde(rename = "scenario")]
    scenarios: Vec<ScenarioEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Seeds {
    Count(u64),
    List(Vec<u64>),
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SeriesPolicy {
    #[default]
    FirstSeed,
    All,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioEntry {
    /// Relative to the suite file.
    file: String,
    /// Field path -> values; every combination is a variant.
    #[serde(default)]
    vary: toml::Table,
    /// Controllers for this entry instead of the suite's (a chaos
    /// comparison runs a mesh variant under its own arm).
    controllers: Option<Vec<String>>,
}

/// One run of the matrix.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// Position in the matrix: the order of every output.
    pub index: usize,
    /// `scenario|params|controller|seed|digest`: the key that resume and
    /// merge match on. The digest covers the whole scenario as it runs and
    /// the traces it reads (and the selfheal scaler's default sizing where
    /// the spec leaves it), so a run whose scenario file, suite entry or
    /// controller changed is a new run, never an old result.
    pub id: String,
    pub scenario: String,
    /// `path=value` pairs joined by `;` (empty without variation).
    pub params: String,
    pub controller: String,
    pub seed: u64,
    pub keep_series: bool,
    pub loaded: LoadedScenario,
}

impl RunSpec {
    /// The id of a run: what resume and merge match on.
    pub fn id_for(
        scenario: &str,
        params: &str,
        controller: &str,
        loaded: &LoadedScenario,
    ) -> String {
        let s = &loaded.spec;
        let mut h = crate::digest::Fnv1a64::default();
        // serde_json writes non-finite numbers as null, so this cannot fail
        // on a validated scenario; an empty digest input would still differ
        // from any real one.
        h.write(&serde_json::to_vec(s).unwrap_or_default());
        // What the spec leaves to the code's default, where the default has
        // changed: a journal of the other default is not this run.
        if s.controller.kind == crate::scenario::ControllerKind::Selfheal
            && s.controller.sizing.is_none()
        {
            h.write(s.controller.sizing_or_default().as_str().as_bytes());
        }
        for (name, trace) in &loaded.traces {
            h.write(name.as_bytes());
            for (t, v) in trace.t.iter().zip(&trace.value) {
                h.write(&t.to_le_bytes()).write(&v.to_le_bytes());
            }
        }
        format!(
            "{scenario}|{params}|{controller}|{}|{:016x}",
            s.seed,
            h.finish()
        )
    }
}

pub struct Plan {
    pub name: String,
    pub description: String,
    pub runs: Vec<RunSpec>,
}

/// A suite's `vary` path that does not reach a value of the scenario.
#[derive(Debug, thiserror::Error)]
#[error("`{path}`: {message}")]
pub struct VaryPathError {
    pub path: String,
    pub message: String,
}

/// Sets the value at a field path (`load[0].curve.peak`) in a TOML document.
pub fn set_path(
    doc: &mut toml::Value,
    path: &str,
    value: toml::Value,
) -> Result<(), VaryPathError> {
    let fail = |message: String| VaryPathError {
        path: path.to_string(),
        message,
    };
    let mut node = doc;
    let mut segs = Vec::new();
    for part in path.split('.') {
        let (key, rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            segs.push((key.to_string(), None));
        }
        for idx in rest.split('[') {
            let idx = idx.trim_end_matches(']');
            if idx.is_empty() {
                continue;
            }
            let i: usize = idx
                .parse()
                .map_err(|_| fail(format!("`{idx}` is not an index")))?;
            segs.push((String::new(), Some(i)));
        }
    }
    let last = segs
        .len()
        .checked_sub(1)
        .ok_or_else(|| fail("an empty field path".into()))?;
    for (n, (key, idx)) in segs.into_iter().enumerate() {
        let is_last = n == last;
        node = match idx {
            Some(i) => {
                let arr = node
                    .as_array_mut()
                    .ok_or_else(|| fail(format!("not a list before [{i}]")))?;
                let len = arr.len();
                arr.get_mut(i).ok_or_else(|| {
                    fail(format!("index {i} is out of range (the list has {len})"))
                })?
            }
            None => {
                let table = node
                    .as_table_mut()
                    .ok_or_else(|| fail(format!("`{key}` is not inside a table")))?;
                if is_last {
                    table.insert(key, value);
                    return Ok(());
                }
                // A missing table on the way (`mesh` in a scenario that
                // takes the mesh defaults) is created, as TOML would read
                // `[mesh.retries]`; a missing list element is an error.
                table
                    .entry(key)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
        };
        if is_last {
            *node = value;
            return Ok(());
        }
    }
    Ok(())
}

fn value_label(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Reads a suite file and expands it.
pub fn load(path: &Path) -> Result<Plan, PlanError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PlanError::Io {
        file: file.clone(),
        source,
    })?;
    let invalid = |path: FieldPath, message: String| {
        PlanError::Invalid(scenario::Problem { path, message }.in_file(&text, &file))
    };
    let suite: SuiteFile = toml::from_str(&text)
        .map_err(|e| PlanError::Invalid(scenario::toml_error(&text, &file, &e)))?;
    let root = FieldPath::default();
    let count = match &suite.seeds {
        Seeds::Count(n) => *n,
        Seeds::List(l) => l.len() as u64,
    };
    if count > MAX_SEEDS as u64 {
        return Err(invalid(
            root.key("seeds"),
            format!("{count} seeds is more than the {MAX_SEEDS} a suite runs"),
        ));
    }
    let seeds: Vec<u64> = match suite.seeds {
        Seeds::Count(n) => (1..=n).collect(),
        Seeds::List(l) => l,
    };
    if seeds.is_empty() {
        return Err(invalid(root.key("seeds"), "needs at least one seed".into()));
    }
    let parse_controllers = |names: &[String], field: FieldPath| {
        if names.is_empty() {
            return Err(invalid(field, "needs at least one controller".into()));
        }
        names
            .iter()
            .enumerate()
            .map(|(j, c)| {
                ControllerSpec::parse_short(c)
                    .map(|spec| (c.clone(), spec))
                    .map_err(|e| invalid(field.index(j), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let suite_controllers = parse_controllers(&suite.controllers, root.key("controllers"))?;
    let base: PathBuf = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut runs = Vec::new();
    for (si, entry) in suite.scenarios.iter().enumerate() {
        let at = root.key("scenario").index(si);
        let controllers = match &entry.controllers {
            Some(list) => parse_controllers(list, at.key("controllers"))?,
            None => suite_controllers.clone(),
        };
        let scenario_path = base.join(&entry.file);
        let scenario_text =
            std::fs::read_to_string(&scenario_path).map_err(|source| PlanError::Scenario {
                suite: file.clone(),
                index: si,
                source: scenario::ScenarioError::Io {
                    file: scenario_path.display().to_string(),
                    source,
                },
            })?;
        let doc: toml::Value = toml::from_str(&scenario_text).map_err(|e| PlanError::Scenario {
            suite: file.clone(),
            index: si,
            source: scenario::toml_error(&scenario_text, &scenario_path.display().to_string(), &e),
        })?;
        // The cartesian product of the variations, in file order.
        let mut variants: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
        for (k, v) in &entry.vary {
            let values = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
                invalid(
                    at.key("vary").key(k),
                    "needs a non-empty list of values".into(),
                )
            })?;
            variants = variants
                .into_iter()
                .flat_map(|pre| {
                    values.iter().map(move |x| {
                        let mut p = pre.clone();
                        p.push((k.clone(), x.clone()));
                        p
                    })
                })
                .collect();
        }
        for variant in variants {
            let mut d = doc.clone();
            for (k, v) in &variant {
                set_path(&mut d, k, v.clone())
                    .map_err(|e| invalid(at.key("vary").key(k), e.message))?;
            }
            let variant_text = toml::to_string(&d).expect("a TOML value serialises");
            let label = format!(
                "{} ({})",
                scenario_path.display(),
                variant
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value_label(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let loaded = scenario::parse(
                &variant_text,
                &label,
                scenario_path.parent().unwrap_or(Path::new(".")),
            )
            .map_err(|e| {
                let field = match &e {
                    scenario::ScenarioError::Invalid { field, message, .. } => {
                        Some((field, message))
                    }
                    _ => None,
                };
                let varied = field.and_then(|(field, message)| {
                    variant
                        .iter()
                        .find(|(k, _)| {
                            field == k
                                || field.starts_with(&format!("{k}."))
                                || field.starts_with(&format!("{k}["))
                        })
                        .map(|(k, v)| (k, v, message))
                });
                match varied {
                    // The value came from the suite: point at its entry.
                    Some((k, v, message)) => invalid(
                        at.key("vary").key(k),
                        format!("the value {}: {message}", value_label(v)),
                    ),
                    // A field the variation left alone: the scenario file's
                    // own error, at its own line, when it has one.
                    None => PlanError::Scenario {
                        suite: file.clone(),
                        index: si,
                        source: scenario::parse(
                            &scenario_text,
                            &scenario_path.display().to_string(),
                            scenario_path.parent().unwrap_or(Path::new(".")),
                        )
                        .err()
                        .unwrap_or(e),
                    },
                }
            })?;
            let params = variant
                .iter()
                .map(|(k, v)| format!("{k}={}", value_label(v)))
                .collect::<Vec<_>>()
                .join(";");
            if runs.len() + controllers.len() * seeds.len() > MAX_RUNS {
                return Err(invalid(
                    at.clone(),
                    format!(
                        "the suite expands to more than {MAX_RUNS} runs here: split it into several suites"
                    ),
                ));
            }
            for (controller, c) in &controllers {
                for (ki, &seed) in seeds.iter().enumerate() {
                    let mut l = loaded.clone();
                    l.spec.seed = seed;
                    l.spec.use_controller(c.clone());
                    let controller = controller.clone();
                    let name = l.spec.name.clone();
                    runs.push(RunSpec {
                        index: runs.len(),
                        id: RunSpec::id_for(&name, &params, &controller, &l),
                        scenario: name,
                        params: params.clone(),
                        controller,
                        seed,
                        keep_series: match suite.timeseries {
                            SeriesPolicy::All => true,
                            SeriesPolicy::FirstSeed => ki == 0,
                            SeriesPolicy::None => false,
                        },
                        loaded: l,
                    });
                }
            }
        }
    }
    if runs.is_empty() {
        return Err(invalid(
            root.key("scenario"),
            "the suite has no [[scenario]]".into(),
        ));
    }
    Ok(Plan {
        name: suite.name,
        description: suite.description,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_path_reaches_nested_fields() {
        let mut d: toml::Value =
            toml::from_str("a = 1\n[[load]]\ncurve = { kind = \"constant\", rate = 5 }\n").unwrap();
        set_path(&mut d, "load[0].curve.rate", toml::Value::Integer(9)).unwrap();
        assert_eq!(d["load"][0]["curve"]["rate"].as_integer(), Some(9));
        set_path(&mut d, "a", toml::Value::Integer(2)).unwrap();
        assert_eq!(d["a"].as_integer(), Some(2));
        assert!(
            set_path(&mut d, "load[3].curve", toml::Value::Integer(1))
                .unwrap_err()
                .message
                .contains("out of range")
        );
        // A missing table on the way is created (a typo there is then an
        // unknown field for the scenario parser, which names it).
        set_path(&mut d, "mesh.retries.enabled", toml::Value::Boolean(true)).unwrap();
        assert_eq!(d["mesh"]["retries"]["enabled"].as_bool(), Some(true));
    }

    /// A suite with `seeds` over the quickstart scenario, loaded from a
    /// file beside the repository's scenarios.
    fn load_with_seeds(seeds: &str, controllers: usize) -> Result<Plan, PlanError> {
        let dir = std::env::temp_dir().join(format!(
            "selfheal-plan-{}-{}",
            std::process::id(),
            seeds.len() + controllers
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml");
        let names: Vec<String> = (0..controllers)
            .map(|i| format!("\"hpa:{}\"", 50 + i))
            .collect();
        let file = dir.join("suite.toml");
        std::fs::write(
            &file,
            format!(
                "name = \"x\"\nseeds = {seeds}\ncontrollers = [{}]\n[[scenario]]\nfile = {:?}\n",
                names.join(", "),
                scenario.display().to_string()
            ),
        )
        .unwrap();
        let plan = load(&file);
        let _ = std::fs::remove_dir_all(&dir);
        plan
    }

    #[test]
    fn a_runaway_seed_count_is_an_error_naming_the_field() {
        // Formerly a "capacity overflow" panic.
        let err = load_with_seeds("9223372036854775807", 1)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("suite.toml:2: field `seeds`"), "{err}");
        let err = load_with_seeds("10000", 30).err().unwrap().to_string();
        assert!(err.contains("more than 200000 runs"), "{err}");
        assert_eq!(load_with_seeds("3", 2).unwrap().runs.len(), 6);
    }
}
