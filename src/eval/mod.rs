//! Offline evaluations of the control core's models.

pub mod backtest;
pub mod forecast;
pub mod incidents;
pub mod nab;
pub mod suite;
