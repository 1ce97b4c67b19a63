//! Search strategies behind one interface. Every suggestion is a pure function of the strategy's
//! seed, the trial it is for and what the strategy has observed, so a coordinator that restarts
//! rebuilds the same strategy by replaying the finished trials.

mod evolution;
mod grid;
mod random;
mod reinforce;
mod tpe;

pub use evolution::Evolution;
pub use grid::Grid;
pub use random::Random;
pub use reinforce::Reinforce;
pub use tpe::Tpe;

use std::collections::HashSet;

use crate::rng::Rng;
use crate::space::{Config, Space};

/// Which strategy proposes trials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    Grid,
    Random,
    /// Tree-structured Parzen estimator (Bayesian optimisation), pending trials as liars.
    Tpe,
    /// Regularized (aging) evolution.
    Evolution,
    /// REINFORCE policy gradient over the space's choices.
    Reinforce,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 5] = [Self::Grid, Self::Random, Self::Tpe, Self::Evolution, Self::Reinforce];

    pub fn name(self) -> &'static str {
        match self {
            Self::Grid => "grid",
            Self::Random => "random",
            Self::Tpe => "tpe",
            Self::Evolution => "evolution",
            Self::Reinforce => "reinforce",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s || (s == "bayes" && *k == Self::Tpe))
    }
}

/// What a strategy sees of a trial.
#[derive(Clone, Debug)]
pub struct TrialView<'a> {
    pub index: usize,
    pub config: &'a Config,
    /// Higher is better; None while running, or when it failed without a value.
    pub score: Option<f64>,
    /// It ended (completed, stopped early or failed).
    pub finished: bool,
}

/// A proposed trial; `parent` is the trial it was derived from (evolution), whose weights it may
/// inherit.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    pub config: Config,
    pub parent: Option<usize>,
}

/// Knobs of the strategies, with defaults that suit tens to hundreds of trials.
#[derive(Clone, Debug, PartialEq)]
pub struct StrategyOptions {
    /// Grid points per continuous range.
    pub grid_points: usize,
    /// TPE: random trials before the model is used.
    pub startup_trials: usize,
    /// TPE: share of trials counted as good.
    pub gamma: f64,
    /// TPE: candidates drawn from the good density per suggestion.
    pub candidates: usize,
    /// TPE: model all parameters jointly (captures interactions) instead of one at a time.
    pub multivariate: bool,
    /// Evolution: population size (the newest finished trials) and tournament size.
    pub population: usize,
    pub tournament: usize,
    /// Evolution: mutate only in function-preserving ways (wider, deeper), so children inherit.
    pub morph_only: bool,
    /// REINFORCE: learning rate and discretisation of numeric ranges.
    pub learning_rate: f64,
    pub bins: usize,
}

impl Default for StrategyOptions {
    fn default() -> Self {
        Self {
            grid_points: 4,
            startup_trials: 10,
            gamma: 0.15,
            candidates: 24,
            multivariate: true,
            population: 10,
            tournament: 3,
            morph_only: false,
            learning_rate: 0.4,
            bins: 8,
        }
    }
}

pub trait Strategy: Send {
    /// The next trial to run, or None when the strategy has nothing left (an exhausted grid).
    fn suggest(&mut self, space: &Space, trials: &[TrialView<'_>], rng: &mut Rng) -> Option<Proposal>;

    /// A trial ended with `score` (higher is better). Called once per trial, in the order trials
    /// ended.
    fn observe(&mut self, _space: &Space, _config: &Config, _score: f64) {}
}

pub fn build(kind: StrategyKind, space: &Space, opts: &StrategyOptions, seed: u64) -> Box<dyn Strategy> {
    match kind {
        StrategyKind::Grid => Box::new(Grid::new(space, opts.grid_points, seed)),
        StrategyKind::Random => Box::new(Random),
        StrategyKind::Tpe => Box::new(Tpe::new(opts)),
        StrategyKind::Evolution => Box::new(Evolution::new(opts)),
        StrategyKind::Reinforce => Box::new(Reinforce::new(space, opts)),
    }
}

/// Samples until the configuration is new (up to a few tries; small spaces may repeat).
pub(crate) fn fresh_sample(space: &Space, trials: &[TrialView<'_>], rng: &mut Rng) -> Config {
    let seen: HashSet<String> = trials.iter().map(|t| Space::key(t.config)).collect();
    let mut cfg = space.sample(rng);
    for _ in 0..32 {
        if !seen.contains(&Space::key(&cfg)) {
            break;
        }
        cfg = space.sample(rng);
    }
    cfg
}

#[cfg(test)]
mod tests;
