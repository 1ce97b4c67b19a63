use std::collections::HashSet;

use serde_json::Value;

use super::{Proposal, Strategy, StrategyOptions, TrialView, fresh_sample};
use crate::rng::Rng;
use crate::space::{Config, Domain, Param, Space, same_value};

/// Multivariate TPE: l and g are mixtures of product kernels over all parameters at once (each
/// centred on one trial), so interactions between parameters (the best learning rate depends on
/// the optimizer) are modelled. Candidates are drawn around good trials; the one with the highest
/// l(x)/g(x) wins. Parameters inactive in either configuration do not count in a kernel.
fn joint(
    space: &Space,
    good: &[(&Config, f64)],
    bad: &[(&Config, f64)],
    rng: &mut Rng,
    attempt: usize,
    candidates: usize,
) -> Config {
    let widths = |set: &[(&Config, f64)]| -> Vec<f64> {
        space.params.iter().map(|p| bandwidth(&observations(p, set)) * (1.0 + attempt as f64)).collect()
    };
    let (bw_good, bw_bad) = (widths(good), widths(bad));
    let mut best: (f64, Config) = (f64::NEG_INFINITY, Config::new());
    for _ in 0..candidates {
        let pick = rng.below(good.len() + 1);
        let centre = good.get(pick).map(|g| g.0);
        let cfg = space.build(|i, p, _| match centre.and_then(|c| c.get(&p.name)) {
            Some(v) => perturb(p, v, bw_good[i], rng),
            None => p.sample(rng),
        });
        let score = log_mixture(space, &cfg, good, &bw_good) - log_mixture(space, &cfg, bad, &bw_bad);
        if score > best.0 {
            best = (score, cfg);
        }
    }
    best.1
}

/// A value near `v`: a Gaussian step on the unit scale, or for choices the same one with
/// probability 0.8.
fn perturb(p: &Param, v: &Value, bw: f64, rng: &mut Rng) -> Value {
    match &p.domain {
        Domain::Choice(c) if c.len() > 1 && rng.uniform() < 0.2 => c[rng.below(c.len())].clone(),
        Domain::Choice(_) => v.clone(),
        _ => p.from_unit(p.to_unit(v) + bw * rng.normal()),
    }
}

/// log of a mixture of product kernels centred on `set`, plus a uniform prior component.
fn log_mixture(space: &Space, cfg: &Config, set: &[(&Config, f64)], bw: &[f64]) -> f64 {
    let mut total = 1.0;
    for (c, _) in set {
        let mut k = 1.0;
        for (i, p) in space.params.iter().enumerate() {
            let (Some(x), Some(y)) = (cfg.get(&p.name), c.get(&p.name)) else { continue };
            k *= match &p.domain {
                Domain::Choice(ch) => {
                    let n = ch.len() as f64;
                    if same_value(x, y) { 0.8 * n } else { 0.2 * n / (n - 1.0).max(1.0) }
                }
                _ => {
                    let d = (p.to_unit(x) - p.to_unit(y)) / bw[i];
                    (-0.5 * d * d).exp() / (bw[i] * std::f64::consts::TAU.sqrt())
                }
            };
        }
        total += k;
    }
    (total / (set.len() as f64 + 1.0)).ln()
}

/// Tree-structured Parzen estimator: trials are split into the best `gamma` share (good) and the
/// rest (bad); each parameter gets a density of good values l(x) and of bad values g(x), and the
/// candidate drawn from l with the highest l(x)/g(x) is proposed, parameter by parameter in
/// declaration order (so conditional parameters only learn from trials where they were active).
///
/// Trials still running count as bad ("constant liar"), so suggestions made while others are
/// pending move away from them instead of repeating them.
pub struct Tpe {
    startup: usize,
    gamma: f64,
    candidates: usize,
    multivariate: bool,
}

impl Tpe {
    pub fn new(opts: &StrategyOptions) -> Self {
        Self {
            startup: opts.startup_trials.max(1),
            gamma: opts.gamma,
            candidates: opts.candidates.max(1),
            multivariate: opts.multivariate,
        }
    }
}

/// One observation of a parameter: its value mapped to [0, 1] (numeric) or its choice index.
struct Obs {
    unit: f64,
    choice: usize,
}

impl Strategy for Tpe {
    fn suggest(&mut self, space: &Space, trials: &[TrialView<'_>], rng: &mut Rng) -> Option<Proposal> {
        let scored: Vec<(&Config, f64)> = trials.iter().filter_map(|t| t.score.map(|s| (t.config, s))).collect();
        if scored.len() < self.startup {
            return Some(Proposal { config: fresh_sample(space, trials, rng), parent: None });
        }
        let worst = scored.iter().map(|(_, s)| *s).fold(f64::INFINITY, f64::min);
        let mut ranked: Vec<(&Config, f64)> = trials
            .iter()
            // Pending (and failed) trials lie: they count as the worst seen.
            .map(|t| (t.config, t.score.unwrap_or(worst)))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let n_good = ((self.gamma * scored.len() as f64).ceil() as usize).clamp(1, ranked.len());
        let (good, bad) = ranked.split_at(n_good);
        let seen: HashSet<String> = trials.iter().map(|t| Space::key(t.config)).collect();

        for attempt in 0..4 {
            if self.multivariate {
                let cfg = joint(space, good, bad, rng, attempt, self.candidates);
                if !seen.contains(&Space::key(&cfg)) {
                    return Some(Proposal { config: cfg, parent: None });
                }
                continue;
            }
            let cfg = space.build(|_, p, _| {
                let l = observations(p, good);
                let g = observations(p, bad);
                let mut top = (f64::NEG_INFINITY, Value::Null);
                for _ in 0..self.candidates {
                    let (unit, value) = draw(p, &l, rng, attempt);
                    let ratio = density(p, &l, unit).ln() - density(p, &g, unit).ln();
                    if ratio > top.0 {
                        top = (ratio, value);
                    }
                }
                top.1
            });
            if !seen.contains(&Space::key(&cfg)) {
                return Some(Proposal { config: cfg, parent: None });
            }
        }
        // The model keeps pointing at tried configurations: explore instead.
        Some(Proposal { config: fresh_sample(space, trials, rng), parent: None })
    }
}

fn observations(p: &Param, set: &[(&Config, f64)]) -> Vec<Obs> {
    set.iter()
        .filter_map(|(c, _)| c.get(&p.name))
        .map(|v| Obs {
            unit: p.to_unit(v),
            choice: match &p.domain {
                Domain::Choice(c) => c.iter().position(|w| same_value(w, v)).unwrap_or(0),
                _ => 0,
            },
        })
        .collect()
}

/// Kernel width of a numeric density over `n` points (Scott's rule on a unit range, bounded).
fn bandwidth(obs: &[Obs]) -> f64 {
    let n = obs.len().max(1) as f64;
    let mean = obs.iter().map(|o| o.unit).sum::<f64>() / n;
    let var = obs.iter().map(|o| (o.unit - mean).powi(2)).sum::<f64>() / n;
    (1.06 * var.sqrt().max(0.1) * n.powf(-0.2)).clamp(0.03, 0.5)
}

/// Density at `unit` (or of choice `unit` read as an index) with a uniform prior component of
/// weight 1 among the observations'.
fn density(p: &Param, obs: &[Obs], unit: f64) -> f64 {
    let n = obs.len() as f64;
    match &p.domain {
        Domain::Choice(c) => {
            let k = c.len() as f64;
            let i = ((unit * k) as usize).min(c.len() - 1);
            let count = obs.iter().filter(|o| o.choice == i).count() as f64;
            (count + 1.0 / k * 1.0) / (n + 1.0)
        }
        _ => {
            let h = bandwidth(obs);
            let kernel: f64 = obs
                .iter()
                .map(|o| (-0.5 * ((unit - o.unit) / h).powi(2)).exp() / (h * (std::f64::consts::TAU).sqrt()))
                .sum();
            (kernel + 1.0) / (n + 1.0)
        }
    }
}

/// A candidate drawn from the good density; later attempts (after duplicates) widen the kernels.
fn draw(p: &Param, good: &[Obs], rng: &mut Rng, attempt: usize) -> (f64, Value) {
    let n = good.len();
    match &p.domain {
        Domain::Choice(c) => {
            let k = c.len();
            let weights: Vec<f64> =
                (0..k).map(|i| good.iter().filter(|o| o.choice == i).count() as f64 + 1.0 / k as f64).collect();
            let i = rng.weighted(&weights);
            ((i as f64 + 0.5) / k as f64, c[i].clone())
        }
        _ => {
            let pick = rng.below(n + 1);
            let unit = if pick == n {
                rng.uniform()
            } else {
                let h = bandwidth(good) * (1.0 + attempt as f64);
                (good[pick].unit + h * rng.normal()).clamp(0.0, 1.0)
            };
            let value = p.from_unit(unit);
            (p.to_unit(&value), value)
        }
    }
}
