//! Data for the transforms' tests: correlated Gaussian rows, and a covariance computed entry by
//! entry from its definition to check the fitted ones against.

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// `rows × d` standard normal draws times `mix` (`d × d`): rows with covariance mixᵀ mix.
pub fn gaussian(rows: usize, d: usize, mix: &[f64], seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let z: Vec<f64> = (0..rows * d).map(|_| StandardNormal.sample(&mut rng)).collect();
    z.chunks(d).flat_map(|r| (0..d).map(move |j| (0..d).map(|k| r[k] * mix[k * d + j]).sum::<f64>() as f32)).collect()
}

/// The sample covariance of `rows × d` f32 values by the definition, one entry at a time.
pub fn naive_covariance(x: &[f32], rows: usize, d: usize) -> Vec<f64> {
    let m: Vec<f64> = (0..d).map(|j| x.chunks(d).map(|r| f64::from(r[j])).sum::<f64>() / rows as f64).collect();
    (0..d * d)
        .map(|k| {
            let (i, j) = (k / d, k % d);
            x.chunks(d).map(|r| (f64::from(r[i]) - m[i]) * (f64::from(r[j]) - m[j])).sum::<f64>() / (rows - 1) as f64
        })
        .collect()
}
