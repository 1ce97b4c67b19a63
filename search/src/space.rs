//! Search spaces: named parameters with a domain each (a set of choices, an integer or float
//! range, optionally log-scaled), some active only when an earlier parameter takes given values.
//! A configuration maps every active parameter's name to a JSON value.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::rng::Rng;

/// One trial's parameter values, by name; inactive parameters are absent.
pub type Config = BTreeMap<String, Value>;

#[derive(Clone, Debug, PartialEq)]
pub enum Domain {
    Choice(Vec<Value>),
    Int { low: i64, high: i64, log: bool },
    Float { low: f64, high: f64, log: bool },
}

/// The parameter is active only when `param` (declared earlier) holds one of `values`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub param: String,
    pub values: Vec<Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub domain: Domain,
    pub when: Option<Condition>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Space {
    pub params: Vec<Param>,
}

/// Numeric equality that treats 3 and 3.0 alike (TOML integers vs floats).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl Param {
    /// Distinct values a strategy can pick from when it treats the domain as discrete: the
    /// choices, the integers of a small range, or `bins` points spread over a range.
    pub fn levels(&self, bins: usize) -> usize {
        match &self.domain {
            Domain::Choice(c) => c.len(),
            Domain::Int { low, high, log } if !*log && (high - low) < bins as i64 => (high - low + 1) as usize,
            _ => bins,
        }
    }

    /// The value of discrete level `i` out of `levels(bins)`; numeric levels are bin centres.
    pub fn level(&self, i: usize, bins: usize) -> Value {
        match &self.domain {
            Domain::Choice(c) => c[i.min(c.len() - 1)].clone(),
            _ => {
                let n = self.levels(bins);
                self.from_unit((i as f64 + 0.5) / n as f64)
            }
        }
    }

    /// Which level `value` falls in.
    pub fn level_of(&self, value: &Value, bins: usize) -> usize {
        match &self.domain {
            Domain::Choice(c) => c.iter().position(|v| same_value(v, value)).unwrap_or(0),
            _ => {
                let n = self.levels(bins);
                ((self.to_unit(value) * n as f64) as usize).min(n - 1)
            }
        }
    }

    /// Maps a numeric value to [0, 1] (log-scaled domains on the log scale). Choices map to
    /// their index's bin centre.
    pub fn to_unit(&self, value: &Value) -> f64 {
        match &self.domain {
            Domain::Choice(c) => {
                let i = c.iter().position(|v| same_value(v, value)).unwrap_or(0);
                (i as f64 + 0.5) / c.len() as f64
            }
            Domain::Int { low, high, log } => {
                let v = value.as_f64().unwrap_or(*low as f64);
                // Integers own the interval [k - 0.5, k + 0.5] so every one is equally likely.
                let (lo, hi) = (*low as f64 - 0.5, *high as f64 + 0.5);
                if *log {
                    let (lo, hi) = (lo.max(0.5), hi.max(0.5));
                    ((v.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln())).clamp(0.0, 1.0)
                } else {
                    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
                }
            }
            Domain::Float { low, high, log } => {
                let v = value.as_f64().unwrap_or(*low);
                if high <= low {
                    return 0.5;
                }
                if *log {
                    ((v.ln() - low.ln()) / (high.ln() - low.ln())).clamp(0.0, 1.0)
                } else {
                    ((v - low) / (high - low)).clamp(0.0, 1.0)
                }
            }
        }
    }

    /// Inverse of [`Param::to_unit`]: the value at position `u` in [0, 1].
    pub fn from_unit(&self, u: f64) -> Value {
        let u = u.clamp(0.0, 1.0);
        match &self.domain {
            Domain::Choice(c) => c[((u * c.len() as f64) as usize).min(c.len() - 1)].clone(),
            Domain::Int { low, high, log } => {
                let (lo, hi) = (*low as f64 - 0.5, *high as f64 + 0.5);
                let x = if *log {
                    let (lo, hi) = (lo.max(0.5), hi.max(0.5));
                    (lo.ln() + u * (hi.ln() - lo.ln())).exp()
                } else {
                    lo + u * (hi - lo)
                };
                Value::from((x.round() as i64).clamp(*low, *high))
            }
            Domain::Float { low, high, log } => {
                let x = if *log { (low.ln() + u * (high.ln() - low.ln())).exp() } else { low + u * (high - low) };
                Value::from(x.clamp(*low, *high))
            }
        }
    }

    pub fn sample(&self, rng: &mut Rng) -> Value {
        match &self.domain {
            Domain::Choice(c) => c[rng.below(c.len())].clone(),
            _ => self.from_unit(rng.uniform()),
        }
    }

    pub fn is_numeric(&self) -> bool {
        !matches!(self.domain, Domain::Choice(_))
    }
}

impl Space {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Whether parameter `i` is active given the values chosen so far in `cfg`.
    pub fn active(&self, i: usize, cfg: &Config) -> bool {
        match &self.params[i].when {
            None => true,
            Some(c) => cfg.get(&c.param).is_some_and(|v| c.values.iter().any(|w| same_value(v, w))),
        }
    }

    /// Builds a configuration parameter by parameter: `pick(i, param)` gives each active one's
    /// value, in declaration order (so conditions see their parents).
    pub fn build(&self, mut pick: impl FnMut(usize, &Param, &Config) -> Value) -> Config {
        let mut cfg = Config::new();
        for (i, p) in self.params.iter().enumerate() {
            if self.active(i, &cfg) {
                let v = pick(i, p, &cfg);
                cfg.insert(p.name.clone(), v);
            }
        }
        cfg
    }

    pub fn sample(&self, rng: &mut Rng) -> Config {
        self.build(|_, p, _| p.sample(rng))
    }

    /// Drops parameters that are no longer active (after a mutation changed a parent) and fills
    /// in newly active ones from `fill`.
    pub fn repair(&self, cfg: &Config, mut fill: impl FnMut(&Param) -> Value) -> Config {
        self.build(|_, p, _| cfg.get(&p.name).cloned().unwrap_or_else(|| fill(p)))
    }

    /// A canonical text of a configuration, to recognise duplicates.
    pub fn key(cfg: &Config) -> String {
        serde_json::to_string(cfg).unwrap_or_default()
    }

    /// Every grid point: choices and small integer ranges enumerated, other numeric ranges at
    /// `points` evenly spaced values (on the log scale where asked). Inactive parameters do not
    /// multiply the grid. At most `limit` points.
    pub fn grid(&self, points: usize, limit: usize) -> Vec<Config> {
        let mut out = Vec::new();
        self.grid_from(0, Config::new(), points, limit, &mut out);
        out
    }

    fn grid_from(&self, i: usize, cfg: Config, points: usize, limit: usize, out: &mut Vec<Config>) {
        if out.len() >= limit {
            return;
        }
        if i == self.params.len() {
            out.push(cfg);
            return;
        }
        if !self.active(i, &cfg) {
            return self.grid_from(i + 1, cfg, points, limit, out);
        }
        let p = &self.params[i];
        for v in grid_values(p, points) {
            let mut next = cfg.clone();
            next.insert(p.name.clone(), v);
            self.grid_from(i + 1, next, points, limit, out);
        }
    }
}

/// The values a grid takes for one parameter.
pub fn grid_values(p: &Param, points: usize) -> Vec<Value> {
    match &p.domain {
        Domain::Choice(c) => c.clone(),
        Domain::Int { low, high, log: false } if (high - low + 1) as usize <= points => {
            (*low..=*high).map(Value::from).collect()
        }
        _ => {
            let n = points.max(2);
            let mut vals: Vec<Value> = Vec::new();
            for k in 0..n {
                let v = p.grid_point(k as f64 / (n - 1) as f64);
                if !vals.iter().any(|w| same_value(w, &v)) {
                    vals.push(v);
                }
            }
            vals
        }
    }
}

impl Param {
    /// Like [`Param::from_unit`] but 0 and 1 land exactly on the bounds (grid ends).
    fn grid_point(&self, u: f64) -> Value {
        match &self.domain {
            Domain::Int { low, high, log } => {
                let (lo, hi) = (*low as f64, *high as f64);
                let x = if *log && *low > 0 { (lo.ln() + u * (hi.ln() - lo.ln())).exp() } else { lo + u * (hi - lo) };
                Value::from((x.round() as i64).clamp(*low, *high))
            }
            _ => self.from_unit(u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn space() -> Space {
        Space {
            params: vec![
                Param { name: "opt".into(), domain: Domain::Choice(vec![json!("sgd"), json!("adamw")]), when: None },
                Param {
                    name: "momentum".into(),
                    domain: Domain::Float { low: 0.0, high: 0.9, log: false },
                    when: Some(Condition { param: "opt".into(), values: vec![json!("sgd")] }),
                },
                Param { name: "lr".into(), domain: Domain::Float { low: 1e-4, high: 1e-1, log: true }, when: None },
                Param { name: "depth".into(), domain: Domain::Int { low: 1, high: 3, log: false }, when: None },
            ],
        }
    }

    #[test]
    fn samples_respect_domains_and_conditions() {
        let s = space();
        let mut rng = Rng::new(1);
        let mut seen_sgd = false;
        for _ in 0..200 {
            let c = s.sample(&mut rng);
            let lr = c["lr"].as_f64().expect("lr");
            assert!((1e-4..=1e-1).contains(&lr));
            let d = c["depth"].as_i64().expect("depth");
            assert!((1..=3).contains(&d));
            assert_eq!(c.contains_key("momentum"), c["opt"] == json!("sgd"));
            seen_sgd |= c["opt"] == json!("sgd");
        }
        assert!(seen_sgd);
    }

    #[test]
    fn log_scale_spreads_over_decades() {
        let p = Param { name: "lr".into(), domain: Domain::Float { low: 1e-4, high: 1.0, log: true }, when: None };
        let mut rng = Rng::new(2);
        let below = (0..1000).filter(|_| p.sample(&mut rng).as_f64().expect("f") < 1e-2).count();
        // Half the log range lies below 1e-2.
        assert!((400..600).contains(&below), "{below}");
        assert!((p.to_unit(&json!(1e-2)) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn grid_enumerates_active_parameters_only() {
        let g = space().grid(3, 10_000);
        // sgd: 3 momentum x 3 lr x 3 depth; adamw: 3 lr x 3 depth.
        assert_eq!(g.len(), 27 + 9);
        let keys: std::collections::HashSet<String> = g.iter().map(Space::key).collect();
        assert_eq!(keys.len(), g.len());
        assert!(g.iter().any(|c| c["lr"].as_f64() == Some(1e-1)));
    }
}
