//! Seeded synthetic tasks. Classification mirrors the peer benchmarks: Gaussian inputs labelled by
//! the argmax of a random linear teacher, so the task is learnable and the loss falls.

use super::{Dataset, TargetData};
use crate::rng::Rng;

fn gaussian(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

/// `samples` rows of `features` N(0, 1) values; label = argmax(x·W + noise·ε), W ~ N(0, 1).
pub fn classification(samples: usize, features: usize, classes: usize, noise: f64, seed: u64) -> Dataset {
    let mut rng = Rng::derive(seed, "synthetic-classification", 0);
    let teacher = gaussian(&mut rng, features * classes);
    let x = gaussian(&mut rng, samples * features);
    let scale = (features as f64).sqrt();
    let labels = x
        .chunks_exact(features)
        .map(|row| {
            let mut best = (0, f64::NEG_INFINITY);
            for c in 0..classes {
                let mut s = 0.0f64;
                for (j, &v) in row.iter().enumerate() {
                    s += f64::from(v) * f64::from(teacher[j * classes + c]);
                }
                let s = s + noise * scale * rng.normal();
                if s > best.1 {
                    best = (c, s);
                }
            }
            best.0 as u32
        })
        .collect();
    Dataset { x, targets: TargetData::Classes { labels, classes }, rows: samples, features, image: None }
}

/// `samples` rows of N(0, 1) inputs; targets = x·W/√features + noise·ε.
pub fn regression(samples: usize, features: usize, targets: usize, noise: f64, seed: u64) -> Dataset {
    let mut rng = Rng::derive(seed, "synthetic-regression", 0);
    let w = gaussian(&mut rng, features * targets);
    let x = gaussian(&mut rng, samples * features);
    let inv = 1.0 / (features as f64).sqrt();
    let mut values = Vec::with_capacity(samples * targets);
    for row in x.chunks_exact(features) {
        for t in 0..targets {
            let s: f64 = row.iter().enumerate().map(|(j, &v)| f64::from(v) * f64::from(w[j * targets + t])).sum();
            values.push((s * inv + noise * rng.normal()) as f32);
        }
    }
    Dataset { x, targets: TargetData::Values { values, width: targets }, rows: samples, features, image: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_is_seeded_and_uses_every_class() {
        let a = classification(2000, 16, 4, 0.0, 9);
        assert_eq!(a, classification(2000, 16, 4, 0.0, 9));
        assert_ne!(a, classification(2000, 16, 4, 0.0, 10));
        let TargetData::Classes { labels, .. } = &a.targets else { panic!("classes") };
        for c in 0..4 {
            assert!(labels.iter().filter(|&&l| l == c).count() > 200, "class {c} is rare");
        }
    }
}
