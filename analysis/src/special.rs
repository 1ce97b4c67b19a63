//! Distribution functions the drift tests turn statistics into p-values with: the standard normal
//! distribution, the chi-square survival function and the Kolmogorov distribution's tail.
//!
//! Written here rather than taken from a crate so that the crate stays dependency-light and the
//! numerics are ours to test. Each function is accurate to about 1e-12 relative or better where
//! its value is a normal `f64`; a NaN argument (or an invalid degree of freedom) gives NaN, never a
//! panic.
//!
//! - The normal distribution uses the series Φ(x) = ½ + φ(x)·Σ x^(2n+1)/(2n+1)!! for |x| < 3
//!   (all terms positive) and the continued fraction of Mills' ratio for the tails, so that
//!   `normal_sf(10)` keeps its relative accuracy instead of rounding to `1 - 1`.
//! - The chi-square survival function is the regularized upper incomplete gamma Q(k/2, x/2),
//!   by the power series of P when x < a + 1 and the Lentz continued fraction of Q otherwise.
//! - The Kolmogorov tail Q_KS(λ) = 2 Σ (-1)^(k-1) e^(-2k²λ²) is summed directly for λ ≥ 1.18;
//!   below that the alternating series converges slowly, so the Jacobi-theta dual
//!   1 − √(2π)/λ · Σ e^(−(2k−1)²π²/(8λ²)) is used, which tends to 1 as λ → 0.

use std::f64::consts::PI;

const EPS: f64 = 1e-16;
const MAX_ITER: usize = 10_000;

/// φ(x), the standard normal density.
fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

/// Φ(x) − ½ for |x| < 3 by Marsaglia's series.
fn normal_central(x: f64) -> f64 {
    let (mut term, mut sum) = (x, x);
    let x2 = x * x;
    for n in 1..MAX_ITER {
        term *= x2 / (2 * n + 1) as f64;
        sum += term;
        if term.abs() <= EPS * sum.abs() {
            break;
        }
    }
    normal_pdf(x) * sum
}

/// 1 − Φ(x) for x ≥ 3 by the continued fraction R(x) = 1/(x + 1/(x + 2/(x + 3/(x + …)))).
fn normal_tail(x: f64) -> f64 {
    // Modified Lentz: f = x + 1/(x + 2/(x + …)) as b0 + a1/(b1 + a2/(b2 + …)) with a_k = k.
    let tiny = 1e-300;
    let mut f = x;
    let (mut c, mut d) = (x, 0.0);
    for k in 1..MAX_ITER {
        let a = k as f64;
        d = x + a * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = x + a / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() <= EPS {
            break;
        }
    }
    normal_pdf(x) / f
}

/// Φ(x), the standard normal distribution function.
pub fn normal_cdf(x: f64) -> f64 {
    if x.is_nan() {
        f64::NAN
    } else if x.is_infinite() {
        if x > 0.0 { 1.0 } else { 0.0 }
    } else if x.abs() < 3.0 {
        0.5 + normal_central(x)
    } else if x < 0.0 {
        normal_tail(-x)
    } else {
        1.0 - normal_tail(x)
    }
}

/// 1 − Φ(x), the standard normal survival function, accurate in the upper tail.
pub fn normal_sf(x: f64) -> f64 {
    normal_cdf(-x)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine terms; about 1e-15 relative).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the approximation in its accurate range.
        return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized upper incomplete gamma function Q(a, x) = Γ(a, x)/Γ(a), a > 0, x ≥ 0.
pub(crate) fn gamma_q(a: f64, x: f64) -> f64 {
    if a.is_nan() || x.is_nan() || a <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // P(a, x) = e^(−x) x^a / Γ(a+1) · Σ x^n / ((a+1)…(a+n)).
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..MAX_ITER {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() <= sum.abs() * EPS {
                break;
            }
        }
        1.0 - sum * log_prefix.exp()
    } else {
        // Q(a, x) = e^(−x) x^a / Γ(a) · 1/(x+1−a− 1·(1−a)/(x+3−a− 2·(2−a)/(x+5−a− …))).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..MAX_ITER {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            d = if d.abs() < tiny { tiny } else { d };
            c = b + an / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() <= EPS {
                break;
            }
        }
        log_prefix.exp() * h
    }
}

/// P(X ≥ x) for X chi-square distributed with `dof` degrees of freedom (`dof` > 0, else NaN).
pub fn chi_square_sf(x: f64, dof: f64) -> f64 {
    gamma_q(dof / 2.0, x / 2.0)
}

/// Q_KS(λ) = 2 Σ_{k≥1} (−1)^(k−1) e^(−2k²λ²), the limiting tail of √n·D for the
/// Kolmogorov–Smirnov statistic D; 1 for λ ≤ 0.
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda.is_nan() {
        return f64::NAN;
    }
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.18 {
        // 1 − Q_KS(λ) = √(2π)/λ Σ_{k≥1} e^(−(2k−1)²π²/(8λ²)); its terms fall off very fast here.
        let w = -PI * PI / (8.0 * lambda * lambda);
        let mut sum = 0.0;
        for k in 1..MAX_ITER {
            let j = (2 * k - 1) as f64;
            let term = (w * j * j).exp();
            sum += term;
            if term <= EPS * sum {
                break;
            }
        }
        return (1.0 - (2.0 * PI).sqrt() / lambda * sum).clamp(0.0, 1.0);
    }
    let w = -2.0 * lambda * lambda;
    let (mut sum, mut sign) = (0.0, 1.0);
    for k in 1..MAX_ITER {
        let kf = k as f64;
        let term = (w * kf * kf).exp();
        sum += sign * term;
        if term <= EPS * sum.abs() {
            break;
        }
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!((got - want).abs() <= rel * want.abs(), "got {got:e}, want {want:e} (rel {rel:e})");
    }

    #[test]
    fn normal_matches_scipy() {
        // scipy.stats.norm.cdf(x) / norm.sf(x), scipy 1.x, printed with repr().
        close(normal_cdf(1.96), 0.9750021048517795, 1e-13);
        close(normal_cdf(0.0), 0.5, 1e-15);
        close(normal_cdf(-1.0), 0.15865525393145707, 1e-13);
        close(normal_cdf(0.3), 0.6179114221889526, 1e-13);
        close(normal_cdf(-2.9), 0.0018658133003840375, 1e-12);
        close(normal_cdf(-3.1), 0.0009676032132183563, 1e-12);
        close(normal_sf(5.0), 2.866515718791933e-07, 1e-12);
        close(normal_sf(10.0), 7.61985302416047e-24, 1e-12);
        close(normal_sf(-2.0), 0.9772498680518208, 1e-13);
        assert_eq!(normal_cdf(f64::INFINITY), 1.0);
        assert_eq!(normal_cdf(f64::NEG_INFINITY), 0.0);
        assert!(normal_cdf(f64::NAN).is_nan());
    }

    #[test]
    fn chi_square_matches_tables_and_scipy() {
        // The 5% points for 1 and 10 degrees of freedom: scipy.stats.chi2.isf(0.05, 1) and (0.05, 10).
        close(chi_square_sf(3.8414588206941285, 1.0), 0.05, 1e-12);
        close(chi_square_sf(18.30703805327515, 10.0), 0.05, 1e-12);
        // scipy.stats.chi2.sf(x, k)
        close(chi_square_sf(0.5, 3.0), 0.9188914116546758, 1e-12);
        close(chi_square_sf(30.0, 4.0), 4.894437128029217e-06, 1e-12);
        close(chi_square_sf(100.0, 7.0), 1.0787979671702833e-18, 1e-11);
        close(chi_square_sf(2.0, 2.0), (-1.0f64).exp(), 1e-14);
        assert_eq!(chi_square_sf(0.0, 3.0), 1.0);
        assert!(chi_square_sf(1.0, 0.0).is_nan());
        close(ln_gamma(0.5), PI.sqrt().ln(), 1e-14);
        close(ln_gamma(10.0), 362_880f64.ln(), 1e-14);
    }

    #[test]
    fn kolmogorov_matches_scipy() {
        // scipy.special.kolmogorov(x)
        close(kolmogorov_sf(1.36), 0.049485876755377876, 1e-12);
        close(kolmogorov_sf(1.0), 0.26999967167735456, 1e-12);
        close(kolmogorov_sf(0.5), 0.9639452436648751, 1e-12);
        close(kolmogorov_sf(1.18), 0.1234538094297657, 1e-12);
        close(kolmogorov_sf(2.5), 7.453306344157342e-06, 1e-12);
        close(kolmogorov_sf(0.2), 0.999999999999495, 1e-14);
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert_eq!(kolmogorov_sf(-1.0), 1.0);
    }
}
