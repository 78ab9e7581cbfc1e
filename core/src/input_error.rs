//! The errors of the readers of outside input: a CSV line (traces,
//! recorded metrics and SLIs) and a field of a Kubernetes-style resource
//! (Chaos Mesh objects, VirtualServices, Deployments), and how the
//! binaries print any error for a user.

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

/// An error and its causes on one line, each cause once (typed errors
/// often repeat their source in their own message): what the binaries
/// print for a user, instead of a debug dump with a backtrace.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Layer {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + 'static>>,
    }

    fn layer(message: &str, source: Option<Layer>) -> Layer {
        Layer {
            message: message.into(),
            source: source.map(|s| Box::new(s) as Box<dyn std::error::Error>),
        }
    }

    #[test]
    fn the_chain_names_each_cause_once() {
        let io = layer("No such file or directory", None);
        let read = layer("a.csv: line 3: No such file or directory", Some(io));
        let top = layer("reading the recording", Some(read));
        assert_eq!(
            error_chain(&top),
            "reading the recording: a.csv: line 3: No such file or directory"
        );
        assert_eq!(error_chain(&layer("alone", None)), "alone");
    }
}
