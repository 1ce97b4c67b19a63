use serde_json::Value;

use super::{Proposal, Strategy, StrategyOptions, TrialView};
use crate::rng::Rng;
use crate::space::{Config, Domain, Space};

/// REINFORCE: a factorised softmax policy with one categorical distribution per parameter (numeric
/// ranges cut into bins, sampled uniformly inside the chosen bin). After each trial the logits of
/// the choices it made move along the policy gradient, weighted by how much its score beat a
/// moving baseline (scores are standardised by a running scale, so objectives of any range work).
pub struct Reinforce {
    logits: Vec<Vec<f64>>,
    bins: usize,
    learning_rate: f64,
    baseline: Option<f64>,
    scale: f64,
}

impl Reinforce {
    pub fn new(space: &Space, opts: &StrategyOptions) -> Self {
        let bins = opts.bins.max(2);
        Self {
            logits: space.params.iter().map(|p| vec![0.0; p.levels(bins)]).collect(),
            bins,
            learning_rate: opts.learning_rate,
            baseline: None,
            scale: 0.0,
        }
    }

    fn probs(&self, i: usize) -> Vec<f64> {
        let l = &self.logits[i];
        let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|x| x / s).collect()
    }
}

impl Strategy for Reinforce {
    fn suggest(&mut self, space: &Space, _trials: &[TrialView<'_>], rng: &mut Rng) -> Option<Proposal> {
        let config = space.build(|i, p, _| {
            let level = rng.weighted(&self.probs(i));
            match &p.domain {
                Domain::Choice(c) => c[level].clone(),
                _ => {
                    let n = p.levels(self.bins);
                    if n == self.bins {
                        p.from_unit((level as f64 + rng.uniform()) / n as f64)
                    } else {
                        p.level(level, self.bins)
                    }
                }
            }
        });
        Some(Proposal { config, parent: None })
    }

    fn observe(&mut self, space: &Space, config: &Config, score: f64) {
        if !score.is_finite() {
            return;
        }
        let Some(b) = self.baseline else {
            self.baseline = Some(score);
            return;
        };
        let diff = score - b;
        self.scale = if self.scale == 0.0 { diff.abs() } else { 0.9 * self.scale + 0.1 * diff.abs() };
        let advantage = if self.scale > 0.0 { (diff / self.scale).clamp(-3.0, 3.0) } else { 0.0 };
        self.baseline = Some(0.8 * b + 0.2 * score);
        for (i, p) in space.params.iter().enumerate() {
            let Some(v) = config.get(&p.name) else { continue };
            let chosen = level_of(p, v, self.bins);
            let probs = self.probs(i);
            for (k, l) in self.logits[i].iter_mut().enumerate() {
                let indicator = if k == chosen { 1.0 } else { 0.0 };
                *l += self.learning_rate * advantage * (indicator - probs[k]);
            }
        }
    }
}

fn level_of(p: &crate::space::Param, v: &Value, bins: usize) -> usize {
    p.level_of(v, bins)
}
