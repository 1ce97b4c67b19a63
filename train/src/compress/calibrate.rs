//! Activation ranges for post-training quantization: the absolute values a layer's input takes
//! on calibration batches, reduced to the clipping threshold of its int8 scale by the largest
//! value (`minmax`), a percentile of them, or the threshold whose quantized histogram loses the
//! least information (`entropy`: smallest KL divergence, as TensorRT calibrates).

pub use shoal_common::spec::Calibration;

/// Histogram bins over [0, max |x|] for the entropy search.
const BINS: usize = 2048;
/// Int8 levels on one side of zero.
const LEVELS: usize = 128;

/// The clipping threshold for `abs`, the absolute values seen (not empty).
pub fn threshold(method: Calibration, abs: &mut [f32]) -> f32 {
    let max = abs.iter().fold(0f32, |m, &v| m.max(v));
    if max == 0.0 {
        return 0.0;
    }
    match method {
        Calibration::MinMax => max,
        Calibration::Percentile(p) => {
            let rank = ((p / 100.0) * (abs.len() - 1) as f64).round() as usize;
            let (_, v, _) = abs.select_nth_unstable_by(rank.min(abs.len() - 1), f32::total_cmp);
            v.max(f32::MIN_POSITIVE)
        }
        Calibration::Entropy => {
            // Exact zeros (half of a ReLU's outputs, the blank pixels of an image) are exact at
            // every scale: they get a bin of their own that no level merges, as int8 keeps them.
            // Merged into the first level they would be smeared over its bins and make every wide
            // level look lossy, clipping far too much.
            let mut hist = vec![0f64; BINS];
            let mut zeros = 0.0;
            for &v in abs.iter() {
                if v == 0.0 {
                    zeros += 1.0;
                } else {
                    hist[((v / max * BINS as f32) as usize).min(BINS - 1)] += 1.0;
                }
            }
            let kl = |edge| kl_at(&hist, zeros, edge);
            let best = (LEVELS..=BINS).min_by(|&a, &b| kl(a).total_cmp(&kl(b))).unwrap_or(BINS);
            max * best as f32 / BINS as f32
        }
    }
}

/// KL(P ‖ Q) for clipping at bin `edge`: P is the histogram with everything above folded into
/// its last bin (what clipping does), Q the bins below the edge alone merged into `LEVELS` levels
/// and spread back over the bins that were not empty (what int8 can represent); both hold the
/// `zeros` as they are. Clipping too much piles mass into P's last bin that Q lacks; clipping too
/// little blurs Q.
fn kl_at(hist: &[f64], zeros: f64, edge: usize) -> f64 {
    let mut p = hist[..edge].to_vec();
    p[edge - 1] += hist[edge..].iter().sum::<f64>();
    let mut q = vec![0f64; edge];
    for level in 0..LEVELS {
        let (lo, hi) = (level * edge / LEVELS, ((level + 1) * edge / LEVELS).min(edge));
        let mass: f64 = hist[lo..hi].iter().sum();
        let filled = hist[lo..hi].iter().filter(|&&v| v > 0.0).count();
        for i in lo..hi {
            if hist[i] > 0.0 {
                q[i] = mass / filled as f64;
            }
        }
    }
    p.push(zeros);
    q.push(zeros);
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    p.iter()
        .zip(&q)
        .filter(|(a, _)| **a > 0.0)
        .map(|(a, b)| {
            let (a, b) = (a / sp, (b / sq).max(1e-12));
            a * (a / b).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outliers_move_minmax_but_not_percentile_or_entropy() {
        let mut values: Vec<f32> = (0..10_000).map(|i| (i % 100) as f32 / 100.0).collect();
        values.push(50.0);
        assert_eq!(threshold(Calibration::MinMax, &mut values.clone()), 50.0);
        let p = threshold(Calibration::Percentile(99.9), &mut values.clone());
        assert!((0.9..1.0).contains(&p), "{p}");
        let e = threshold(Calibration::Entropy, &mut values);
        assert!(e < 5.0, "the entropy threshold ignores one far outlier: {e}");
        assert_eq!(threshold(Calibration::MinMax, &mut [0.0, 0.0]), 0.0);
    }

    #[test]
    fn the_zeros_of_a_relu_do_not_pull_the_entropy_threshold_down() {
        // Half exact zeros, the rest spread evenly up to 4: nothing to clip.
        let mut values: Vec<f32> = (0..4000).map(|i| if i % 2 == 0 { 0.0 } else { (i % 400) as f32 / 100.0 }).collect();
        let e = threshold(Calibration::Entropy, &mut values);
        assert!(e > 3.0, "a uniform tail keeps (nearly) its whole range: {e}");
    }

    #[test]
    fn a_few_discrete_levels_with_zeros_keep_their_range() {
        // Pixels of 17 grey levels, mostly blank: clipping below the brightest loses real values.
        let mut values: Vec<f32> = (0..5000).map(|i| if i % 3 == 0 { (i % 17) as f32 / 16.0 } else { 0.0 }).collect();
        let e = threshold(Calibration::Entropy, &mut values);
        assert!(e > 0.5, "the entropy threshold must not fold everything into the first level: {e}");
    }
}
