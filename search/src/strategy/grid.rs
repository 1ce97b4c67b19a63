use std::collections::HashSet;

use serde_json::Value;

use super::{Proposal, Strategy, TrialView};
use crate::rng::Rng;
use crate::space::Space;

/// Every grid point once. Choices and small integer ranges are enumerated, other ranges cut into
/// `points` values. Grids are often larger than the trial budget, so points are visited in a
/// seeded order that strides through the whole grid (index `i` visits point `(offset + i * stride)
/// mod N` with the stride coprime to N) rather than exhausting the first parameter's first value.
/// Points that differ only in inactive parameters are the same trial and are visited once.
pub struct Grid {
    levels: Vec<Vec<Value>>,
    size: u64,
    stride: u64,
    offset: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Grid {
    pub fn new(space: &Space, points_per_range: usize, seed: u64) -> Self {
        let levels: Vec<Vec<Value>> =
            space.params.iter().map(|p| crate::space::grid_values(p, points_per_range)).collect();
        let size = levels.iter().fold(1u64, |n, l| n.saturating_mul(l.len().max(1) as u64)).min(1 << 60);
        let mut rng = Rng::derive(seed, "grid", 0);
        // Near the golden ratio of the size: consecutive trials land far apart.
        let mut stride = ((size as f64 * 0.618_033_988_7) as u64).max(1);
        while size > 1 && gcd(stride, size) != 1 {
            stride += 1;
        }
        let offset = if size > 1 { rng.next_u64() % size } else { 0 };
        Self { levels, size, stride, offset }
    }

    /// Number of grid points (before merging those that differ only in inactive parameters).
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    fn point(&self, space: &Space, i: u64) -> crate::space::Config {
        let mut index = ((self.offset as u128 + i as u128 * self.stride as u128) % self.size as u128) as u64;
        let mut digits = Vec::with_capacity(self.levels.len());
        for l in &self.levels {
            let n = l.len().max(1) as u64;
            digits.push((index % n) as usize);
            index /= n;
        }
        space.build(|k, _, _| self.levels[k][digits[k]].clone())
    }
}

impl Strategy for Grid {
    fn suggest(&mut self, space: &Space, trials: &[TrialView<'_>], _rng: &mut Rng) -> Option<Proposal> {
        let seen: HashSet<String> = trials.iter().map(|t| Space::key(t.config)).collect();
        (0..self.size)
            .map(|i| self.point(space, i))
            .find(|c| !seen.contains(&Space::key(c)))
            .map(|config| Proposal { config, parent: None })
    }
}
