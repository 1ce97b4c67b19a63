use serde_json::Value;

use super::{Proposal, Strategy, StrategyOptions, TrialView, fresh_sample};
use crate::rng::Rng;
use crate::space::{Config, Domain, Param, Space, same_value};

/// Regularized (aging) evolution: the population is the newest `population` finished trials, so
/// old ones age out however good they were. Each child mutates one parameter of the best of
/// `tournament` members drawn at random.
///
/// With `morph_only`, architecture parameters (`arch.*`) only change in ways a network morphism
/// can realise from the parent's weights: a layer gets wider, or the network one layer deeper
/// (a copy of the last hidden layer's width and activation, initialised to the identity).
pub struct Evolution {
    population: usize,
    tournament: usize,
    morph_only: bool,
}

impl Evolution {
    pub fn new(opts: &StrategyOptions) -> Self {
        Self { population: opts.population.max(2), tournament: opts.tournament.max(1), morph_only: opts.morph_only }
    }
}

impl Strategy for Evolution {
    fn suggest(&mut self, space: &Space, trials: &[TrialView<'_>], rng: &mut Rng) -> Option<Proposal> {
        // Trials are indexed in suggestion order; finished ones in the order given by the engine.
        let finished: Vec<&TrialView<'_>> = trials.iter().filter(|t| t.finished).collect();
        if finished.len() < self.population {
            return Some(Proposal { config: fresh_sample(space, trials, rng), parent: None });
        }
        let pop = &finished[finished.len() - self.population..];
        let mut parent = pop[rng.below(pop.len())];
        for _ in 1..self.tournament {
            let c = pop[rng.below(pop.len())];
            if c.score.unwrap_or(f64::NEG_INFINITY) > parent.score.unwrap_or(f64::NEG_INFINITY) {
                parent = c;
            }
        }
        let seen: std::collections::HashSet<String> = trials.iter().map(|t| Space::key(t.config)).collect();
        let mut child = mutate(space, parent.config, rng, self.morph_only);
        for _ in 0..16 {
            if !seen.contains(&Space::key(&child)) {
                break;
            }
            child = mutate(space, &child, rng, self.morph_only);
        }
        Some(Proposal { config: child, parent: Some(parent.index) })
    }
}

/// Changes one active parameter to a different value.
pub fn mutate(space: &Space, cfg: &Config, rng: &mut Rng, morph_only: bool) -> Config {
    let active: Vec<&Param> = space.params.iter().filter(|p| cfg.contains_key(&p.name)).collect();
    if active.is_empty() {
        return cfg.clone();
    }
    for _ in 0..8 {
        let p = active[rng.below(active.len())];
        let mut next = cfg.clone();
        if morph_only && p.name.starts_with("arch.") {
            if !morph(space, &mut next, rng) {
                continue;
            }
        } else {
            let old = &cfg[&p.name];
            let value = changed(p, old, rng);
            if same_value(&value, old) {
                continue;
            }
            next.insert(p.name.clone(), value);
        }
        return space.repair(&next, |q| {
            // A newly active layer copies its predecessor's settings.
            inherited_default(&next, q).unwrap_or_else(|| q.sample(rng))
        });
    }
    cfg.clone()
}

fn changed(p: &Param, old: &Value, rng: &mut Rng) -> Value {
    match &p.domain {
        Domain::Choice(c) if c.len() > 1 => {
            let i = c.iter().position(|v| same_value(v, old)).unwrap_or(0);
            let j = (i + 1 + rng.below(c.len() - 1)) % c.len();
            c[j].clone()
        }
        Domain::Choice(c) => c[0].clone(),
        _ => {
            if rng.uniform() < 0.5 {
                p.sample(rng)
            } else {
                p.from_unit(p.to_unit(old) + 0.15 * rng.normal())
            }
        }
    }
}

/// Settings a layer gets when it appears: those of the layer before it.
fn inherited_default(cfg: &Config, p: &Param) -> Option<Value> {
    let (i, field) = crate::arch::layer_field(&p.name)?;
    if i == 0 {
        return None;
    }
    cfg.get(&format!("arch.layers[{}].{field}", i - 1)).cloned()
}

/// A function-preserving architecture change: widen one layer or deepen by one. False when the
/// architecture is already at the space's limits.
fn morph(space: &Space, cfg: &mut Config, rng: &mut Rng) -> bool {
    let depth = cfg.get("arch.depth").and_then(Value::as_i64).unwrap_or(0);
    type Morph = Box<dyn Fn(&mut Config) -> bool>;
    let mut options: Vec<Morph> = Vec::new();
    for i in 0..depth {
        let name = format!("arch.layers[{i}].width");
        if let Some(Domain::Choice(c)) = space.param(&name).map(|p| &p.domain) {
            let cur = cfg.get(&name).and_then(Value::as_f64).unwrap_or(0.0);
            let wider: Vec<Value> = c.iter().filter(|v| v.as_f64().is_some_and(|w| w > cur)).cloned().collect();
            if !wider.is_empty() {
                options.push(Box::new(move |c: &mut Config| {
                    c.insert(name.clone(), wider[0].clone());
                    true
                }));
            }
        }
    }
    if let Some(Domain::Int { high, .. }) = space.param("arch.depth").map(|p| &p.domain) {
        let last_act = cfg.get(&format!("arch.layers[{}].activation", depth - 1)).cloned();
        let deepen_ok = depth >= 1 && depth < *high && last_act.as_ref().is_none_or(|a| a == "relu" || a == "identity");
        if deepen_ok {
            options.push(Box::new(move |c: &mut Config| {
                c.insert("arch.depth".into(), Value::from(depth + 1));
                for field in ["width", "activation"] {
                    if let Some(v) = c.get(&format!("arch.layers[{}].{field}", depth - 1)).cloned() {
                        c.insert(format!("arch.layers[{depth}].{field}"), v);
                    }
                }
                true
            }));
        }
    }
    if options.is_empty() {
        return false;
    }
    let k = rng.below(options.len());
    options[k](cfg)
}
