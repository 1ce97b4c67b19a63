//! Feature standardization (`dataset.normalize = "standard"`): each feature to zero mean and unit
//! variance with the training split's statistics, applied alike to validation data and to data a
//! trained model later predicts on.

use super::Dataset;

/// Per feature: the training mean and the inverse standard deviation.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaling(Vec<(f32, f32)>);

impl Scaling {
    /// The statistics of `train`'s features (a constant feature keeps its scale).
    pub fn fit(train: &Dataset) -> Self {
        let f = train.features;
        let mut mean = vec![0f64; f];
        let mut sq = vec![0f64; f];
        for row in train.x.chunks_exact(f) {
            for (j, &v) in row.iter().enumerate() {
                mean[j] += f64::from(v);
                sq[j] += f64::from(v) * f64::from(v);
            }
        }
        let n = train.rows.max(1) as f64;
        Self(
            mean.iter()
                .zip(&sq)
                .map(|(&s, &q)| {
                    let m = s / n;
                    let var = (q / n - m * m).max(0.0);
                    let sd = if var > 1e-12 { var.sqrt() } else { 1.0 };
                    (m as f32, (1.0 / sd) as f32)
                })
                .collect(),
        )
    }

    pub fn features(&self) -> usize {
        self.0.len()
    }

    /// Scales row-major samples in place.
    pub fn apply(&self, x: &mut [f32]) {
        for row in x.chunks_exact_mut(self.0.len().max(1)) {
            for (v, (m, inv)) in row.iter_mut().zip(&self.0) {
                *v = (*v - m) * inv;
            }
        }
    }

    /// Turns gradients with respect to scaled features into gradients with respect to the raw
    /// ones, in place (the chain rule through `apply`).
    pub fn pull_back(&self, grad: &mut [f32]) {
        for row in grad.chunks_exact_mut(self.0.len().max(1)) {
            for (g, (_, inv)) in row.iter_mut().zip(&self.0) {
                *g *= inv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic;

    #[test]
    fn standardizing_uses_training_statistics() {
        let mut train = synthetic::regression(500, 3, 1, 0.0, 1);
        train.x.iter_mut().for_each(|v| *v = *v * 4.0 + 10.0);
        let mut val = train.x.clone();
        let scaling = Scaling::fit(&train);
        scaling.apply(&mut train.x);
        scaling.apply(&mut val);
        let mean: f32 = train.x.iter().step_by(3).sum::<f32>() / 500.0;
        let var: f32 = train.x.iter().step_by(3).map(|v| v * v).sum::<f32>() / 500.0;
        assert!(mean.abs() < 1e-4, "mean {mean}");
        assert!((var - 1.0).abs() < 1e-3, "variance {var}");
        assert_eq!(train.x, val);
    }
}
