//! Architecture spaces, expanded into ordinary (conditional) parameters so every strategy searches
//! them alike.
//!
//! - Macro: a network's depth and each hidden layer's width, activation and (optionally) skip
//!   connection: `arch.depth`, `arch.layers[i].width` / `.activation` / `.skip`.
//! - Micro: one cell, a small DAG whose edges each choose an operation (`arch.cell.ops[k]`),
//!   stacked `arch.cells` times after a linear stem.

use serde_json::Value;

use crate::space::{Condition, Config, Domain, Param};

/// One hidden layer of a macro architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerChoice {
    pub width: i64,
    pub activation: String,
    pub skip: bool,
}

/// Layer-sequence search: depth in `min_depth..=max_depth`, each layer's width and activation from
/// the given choices (one activation choice = fixed), skip connections when `skips`.
#[derive(Clone, Debug, PartialEq)]
pub struct MacroArch {
    pub min_depth: i64,
    pub max_depth: i64,
    pub widths: Vec<i64>,
    pub activations: Vec<String>,
    pub skips: bool,
}

impl MacroArch {
    pub fn params(&self) -> Vec<Param> {
        let mut out = vec![Param {
            name: "arch.depth".into(),
            domain: Domain::Int { low: self.min_depth, high: self.max_depth, log: false },
            when: None,
        }];
        for i in 0..self.max_depth {
            // Layer i exists when depth > i.
            let when = (i >= self.min_depth).then(|| Condition {
                param: "arch.depth".into(),
                values: ((i + 1)..=self.max_depth).map(Value::from).collect(),
            });
            out.push(Param {
                name: format!("arch.layers[{i}].width"),
                domain: Domain::Choice(self.widths.iter().map(|w| Value::from(*w)).collect()),
                when: when.clone(),
            });
            if self.activations.len() > 1 {
                out.push(Param {
                    name: format!("arch.layers[{i}].activation"),
                    domain: Domain::Choice(self.activations.iter().map(|a| Value::from(a.as_str())).collect()),
                    when: when.clone(),
                });
            }
            if self.skips && i > 0 {
                out.push(Param {
                    name: format!("arch.layers[{i}].skip"),
                    domain: Domain::Choice(vec![Value::from(false), Value::from(true)]),
                    when,
                });
            }
        }
        out
    }

    /// The hidden layers a configuration describes. A layer with a skip connection keeps its
    /// input's width (the skip adds the input to the output).
    pub fn layers(&self, cfg: &Config) -> Vec<LayerChoice> {
        let depth = cfg.get("arch.depth").and_then(Value::as_i64).unwrap_or(self.min_depth);
        let mut out: Vec<LayerChoice> = Vec::new();
        for i in 0..depth {
            let width = cfg
                .get(&format!("arch.layers[{i}].width"))
                .and_then(Value::as_i64)
                .unwrap_or_else(|| self.widths.first().copied().unwrap_or(1));
            let activation = cfg
                .get(&format!("arch.layers[{i}].activation"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| self.activations.first().cloned())
                .unwrap_or_default();
            let skip = cfg.get(&format!("arch.layers[{i}].skip")).and_then(Value::as_bool).unwrap_or(false);
            let width = match (skip, out.last()) {
                (true, Some(prev)) => prev.width,
                _ => width,
            };
            out.push(LayerChoice { width, activation, skip: skip && i > 0 });
        }
        out
    }
}

/// Cell search: every edge of a DAG of `nodes` nodes (after the input) picks one of `ops`; the
/// network is a linear stem of `width` units followed by `min_cells..=max_cells` copies of the cell.
#[derive(Clone, Debug, PartialEq)]
pub struct MicroArch {
    pub nodes: usize,
    pub ops: Vec<String>,
    pub min_cells: i64,
    pub max_cells: i64,
    pub width: i64,
    pub activation: String,
}

impl MicroArch {
    pub fn edges(&self) -> usize {
        self.nodes * (self.nodes + 1) / 2
    }

    pub fn params(&self) -> Vec<Param> {
        let mut out: Vec<Param> = (0..self.edges())
            .map(|k| Param {
                name: format!("arch.cell.ops[{k}]"),
                domain: Domain::Choice(self.ops.iter().map(|o| Value::from(o.as_str())).collect()),
                when: None,
            })
            .collect();
        if self.max_cells > self.min_cells {
            out.push(Param {
                name: "arch.cells".into(),
                domain: Domain::Int { low: self.min_cells, high: self.max_cells, log: false },
                when: None,
            });
        }
        out
    }

    /// The cell's edge operations and how many cells are stacked.
    pub fn cell(&self, cfg: &Config) -> (Vec<String>, i64) {
        let ops = (0..self.edges())
            .map(|k| {
                cfg.get(&format!("arch.cell.ops[{k}]"))
                    .and_then(Value::as_str)
                    .map_or_else(|| self.ops[0].clone(), str::to_owned)
            })
            .collect();
        let cells = cfg.get("arch.cells").and_then(Value::as_i64).unwrap_or(self.min_cells);
        (ops, cells)
    }
}

/// Splits `arch.layers[3].width` into (3, "width").
pub fn layer_field(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("arch.layers[")?;
    let (index, field) = rest.split_once("].")?;
    Some((index.parse().ok()?, field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::space::Space;

    #[test]
    fn skip_layers_keep_their_input_width() {
        let a = MacroArch {
            min_depth: 1,
            max_depth: 4,
            widths: vec![16, 32, 64],
            activations: vec!["relu".into()],
            skips: true,
        };
        let space = Space { params: a.params() };
        let mut rng = Rng::new(3);
        let mut saw_skip = false;
        for _ in 0..100 {
            let layers = a.layers(&space.sample(&mut rng));
            assert!(!layers[0].skip);
            for w in layers.windows(2) {
                if w[1].skip {
                    saw_skip = true;
                    assert_eq!(w[1].width, w[0].width);
                }
            }
        }
        assert!(saw_skip);
    }

    #[test]
    fn cells_choose_an_operation_per_edge() {
        let m = MicroArch {
            nodes: 3,
            ops: vec!["zero".into(), "identity".into(), "linear".into()],
            min_cells: 1,
            max_cells: 3,
            width: 32,
            activation: "relu".into(),
        };
        let space = Space { params: m.params() };
        assert_eq!(space.params.len(), 6 + 1);
        let (ops, cells) = m.cell(&space.sample(&mut Rng::new(1)));
        assert_eq!(ops.len(), 6);
        assert!((1..=3).contains(&cells));
    }
}
