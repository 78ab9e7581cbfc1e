//! The failure predictor's training side: labelled synthetic traces, the
//! burn model, the trainer and the validation. Everything here may do IO;
//! the control core only sees the trained weights (`control::predictor`).

pub mod dataset;
pub mod interval_validation;
pub mod lstm_kernel;
pub mod lstm_op;
pub mod model;
pub mod recorded;
pub mod selector;
pub mod store;
pub mod traces;
pub mod trainer;
pub mod validate;
pub mod validation_report;
