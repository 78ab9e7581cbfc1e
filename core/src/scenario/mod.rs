//! Scenario files: parsing, validation and error locations.
//!
//! Every error names the file, the line and the field, and says what is
//! wrong. Syntax and type errors come from the TOML deserialiser with its
//! span; semantic errors (an unknown service in the call graph, a probability
//! above 1, a missing trace file) carry a field path that is resolved to a
//! line through a span-preserving parse of the same text.

mod spec;
mod validate;
pub use validate::{expand_node_names, parse_percent_value};

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use spec::*;

/// The caller and callee of a call edge written `caller->callee` (spaces
/// around either name are allowed), as fault specs, metrics and API writes
/// name edges; `None` without the arrow.
pub fn edge_ends(edge: &str) -> Option<(&str, &str)> {
    edge.split_once("->").map(|(a, b)| (a.trim(), b.trim()))
}

use crate::load::Trace;

/// A scenario with its trace files read and checked.
#[derive(Clone, Debug)]
pub struct LoadedScenario {
    pub spec: Scenario,
    /// Trace data by the `file` string as written in the scenario.
    pub traces: BTreeMap<String, Arc<Trace>>,
    /// Where the scenario came from (for messages).
    pub source: String,
}

/// One step of a field path: a table key or an array index.
#[derive(Clone, Debug, PartialEq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted field path such as `service[1].call[0].to`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn key(&self, k: &str) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    pub fn index(&self, i: usize) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read the scenario: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}:{line}: field `{field}`: {message}")]
    Invalid {
        file: String,
        line: usize,
        field: String,
        message: String,
    },
}

impl ScenarioError {
    /// The line the error points at, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            ScenarioError::Io { .. } => None,
            ScenarioError::Syntax { line, .. } | ScenarioError::Invalid { line, .. } => Some(*line),
        }
    }
}

/// A semantic problem found by validation: the field at fault and why. A
/// file's reader turns it into [`ScenarioError::Invalid`] with its line.
#[derive(Debug, thiserror::Error)]
#[error("field `{path}`: {message}")]
pub struct Problem {
    pub path: FieldPath,
    pub message: String,
}

impl Problem {
    /// The problem in the TOML `text` of `file`, at the line of its field.
    pub fn in_file(self, text: &str, file: &str) -> ScenarioError {
        ScenarioError::Invalid {
            file: file.to_string(),
            line: locate_line(text, &self.path).unwrap_or(1),
            field: self.path.to_string(),
            message: self.message,
        }
    }
}

/// Reads, parses and validates a scenario file. Trace paths are relative to
/// the scenario file's directory.
pub fn load_file(path: &Path) -> Result<LoadedScenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        file: file.clone(),
        source,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &file, &base)
}

/// Parses and validates scenario text; `file` names it in errors and
/// `base_dir` anchors relative trace paths.
pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<LoadedScenario, ScenarioError> {
    let spec: Scenario = toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
    let invalid = |p: Problem| p.in_file(text, file);
    validate::check(&spec).map_err(invalid)?;
    let traces = validate::read_traces(&spec, base_dir).map_err(invalid)?;
    let loaded = LoadedScenario {
        spec,
        traces,
        source: file.to_string(),
    };
    validate::check_request_budget(&loaded).map_err(invalid)?;
    Ok(loaded)
}

/// A policy file (a `[controller]` table, as `selfheal tune` writes it),
/// parsed and checked as a scenario's `[controller]` is; `file` names it in
/// errors, which give the line and field.
pub fn parse_policy(text: &str, file: &str) -> Result<ControllerSpec, ScenarioError> {
    #[derive(serde::Deserialize)]
    struct PolicyFile {
        controller: ControllerSpec,
    }
    let p: PolicyFile = toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
    let path = FieldPath::default().key("controller");
    validate::check_controller(&path, &p.controller).map_err(|p| p.in_file(text, file))?;
    Ok(p.controller)
}

/// Reads and checks a policy file ([`parse_policy`]).
pub fn load_policy(path: &Path) -> Result<ControllerSpec, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        file: file.clone(),
        source,
    })?;
    parse_policy(&text, &file)
}

/// Checks a controller table on its own, as a scenario's `[controller]` is
/// checked.
pub fn check_controller(spec: &ControllerSpec) -> Result<(), Problem> {
    validate::check_controller(&FieldPath::default().key("controller"), spec)
}

/// Parses a scenario whose traces are given in memory (tests, generated
/// scenarios).
pub fn from_spec(
    spec: Scenario,
    traces: BTreeMap<String, Arc<Trace>>,
) -> Result<LoadedScenario, Problem> {
    validate::check(&spec)?;
    let loaded = LoadedScenario {
        spec,
        traces,
        source: "<in memory>".into(),
    };
    validate::check_request_budget(&loaded)?;
    Ok(loaded)
}

/// A TOML error as a scenario error: a type or value error in a document
/// that parses names the field it sits in; anything else is a syntax error
/// at its line and column.
pub fn toml_error(text: &str, file: &str, e: &toml::de::Error) -> ScenarioError {
    let message = e.message().trim().to_string();
    let offset = e.span().map(|s| s.start);
    let (line, column) = offset.map(|o| line_col(text, o)).unwrap_or((1, 1));
    // A field missing from the top level comes with an empty span at the
    // document's start, which is also the first key's: that key is not the
    // field at fault.
    let top_level = e.span().is_some_and(|s| s.start == 0 && s.is_empty());
    match offset
        .filter(|_| !top_level)
        .and_then(|o| field_at(text, o))
    {
        Some(field) if !field.0.is_empty() => ScenarioError::Invalid {
            file: file.to_string(),
            line,
            field: field.to_string(),
            message,
        },
        _ => ScenarioError::Syntax {
            file: file.to_string(),
            line,
            column,
            message,
        },
    }
}

/// The path of the deepest key or value whose text holds byte `offset`,
/// if the text is well-formed TOML.
pub fn field_at(text: &str, offset: usize) -> Option<FieldPath> {
    use toml_edit::{Item, Table, Value};
    fn holds(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
        span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
    }
    fn in_value(v: &Value, offset: usize, path: &mut Vec<Seg>) {
        match v {
            Value::InlineTable(t) => {
                for (k, v) in t.iter() {
                    let key_span = t.key(k).and_then(|k| k.span());
                    if holds(key_span, offset) || holds(v.span(), offset) {
                        path.push(Seg::Key(k.to_string()));
                        in_value(v, offset, path);
                        return;
                    }
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    if holds(v.span(), offset) {
                        path.push(Seg::Index(i));
                        in_value(v, offset, path);
                        return;
                    }
                }
            }
            _ => {}
        }
    }
    /// Whether `offset` lies in this table's body, pushing the path to it.
    fn in_table(t: &Table, offset: usize, path: &mut Vec<Seg>) -> bool {
        for (k, item) in t.iter() {
            let key_span = t.key(k).and_then(|k| k.span());
            let depth = path.len();
            path.push(Seg::Key(k.to_string()));
            let found = match item {
                Item::Value(v) => {
                    let here = holds(key_span.clone(), offset) || holds(v.span(), offset);
                    if here {
                        in_value(v, offset, path);
                    }
                    here
                }
                Item::Table(sub) => holds(key_span.clone(), offset) || in_table(sub, offset, path),
                Item::ArrayOfTables(a) => a.iter().enumerate().any(|(i, sub)| {
                    path.push(Seg::Index(i));
                    let here = holds(sub.span(), offset) || in_table(sub, offset, path);
                    if !here {
                        path.pop();
                    }
                    here
                }),
                Item::None => false,
            };
            if found {
                return true;
            }
            path.truncate(depth);
        }
        false
    }
    let doc = toml_edit::Document::parse(text.to_string()).ok()?;
    let mut path = Vec::new();
    in_table(doc.as_table(), offset, &mut path);
    Some(FieldPath(path))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The line of the deepest part of `path` present in the document (a missing
/// field points at its table).
pub fn locate_line(text: &str, path: &FieldPath) -> Option<usize> {
    use toml_edit::{Item, Table, Value};
    enum Node<'a> {
        Item(&'a Item),
        Table(&'a Table),
        Value(&'a Value),
    }
    let doc = toml_edit::Document::parse(text.to_string()).ok()?;
    let mut node = Node::Table(doc.as_table());
    let mut best = None;
    for seg in &path.0 {
        let next = match (&node, seg) {
            (Node::Table(t), Seg::Key(k)) => t.get(k).map(Node::Item),
            (Node::Item(Item::Table(t)), Seg::Key(k)) => t.get(k).map(Node::Item),
            (Node::Item(Item::ArrayOfTables(a)), Seg::Index(i)) => a.get(*i).map(Node::Table),
            (Node::Item(Item::Value(v)), _) | (&Node::Value(v), _) => match (v, seg) {
                (Value::InlineTable(t), Seg::Key(k)) => t.get(k).map(Node::Value),
                (Value::Array(a), Seg::Index(i)) => a.get(*i).map(Node::Value),
                _ => None,
            },
            _ => None,
        };
        let Some(next) = next else { break };
        let span = match &next {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        };
        if let Some(s) = span {
            best = Some(s.start);
        }
        node = next;
    }
    best.map(|o| line_col(text, o).0)
}
