//! Architecture and hyperparameter search for Shoal: search spaces (hyperparameters and macro
//! architectures), five strategies behind one interface, ASHA and learning-curve early stopping,
//! and the [`Engine`] that the coordinator drives per search job. Pure computation: no clocks, no
//! I/O, every random choice drawn from the search's seed.

pub mod arch;
pub mod curve;
pub mod engine;
pub mod rng;
pub mod sim;
pub mod space;
pub mod spec;
pub mod strategy;

pub use engine::{Asha, CurveStop, Engine, SearchConfig, Trial, TrialState};
pub use space::{Config, Domain, Param, Space};
pub use strategy::{StrategyKind, StrategyOptions};
