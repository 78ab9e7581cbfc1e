//! The failure predictor: the LSTM's health forecast, the pattern detector
//! and the time-to-failure estimate, as the seed's `FailurePredictionEngine`.

pub mod lstm;
