//! The errors of the readers of outside input: a CSV line (traces,
//! recorded metrics and SLIs) and a field of a Kubernetes-style resource
//! (Chaos Mesh objects, VirtualServices, Deployments).

/// A CSV line that could not be read. `line` counts from 1, the header
/// included; the caller adds the file.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {message}")]
pub struct CsvError {
    pub line: usize,
    pub message: String,
}

impl CsvError {
    pub fn new(line: usize, message: impl Into<String>) -> CsvError {
        CsvError {
            line,
            message: message.into(),
        }
    }

    /// A cell of `field` that is not what the column holds.
    pub fn field(line: usize, field: &str, message: impl std::fmt::Display) -> CsvError {
        CsvError::new(line, format!("field `{field}`: {message}"))
    }
}

/// Why a resource (a Chaos Mesh object, a VirtualService's fault, a
/// Deployment) was refused: the field at fault, as the API server would
/// name it, and why.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ResourceError {
    pub field: String,
    pub message: String,
}

impl ResourceError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ResourceError {
        ResourceError {
            field: field.into(),
            message: message.into(),
        }
    }
}
