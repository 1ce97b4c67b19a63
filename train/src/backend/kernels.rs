//! Fused CPU kernels on plain row-major `f32` slices: linear layers (matmul + bias + activation in
//! one pass over the output), their backward with gradients accumulated in place, and the
//! activation derivatives. The matmuls are candle's own (the `gemm` crate); what these kernels save
//! is the per-operation overhead of composing many small tensor ops.

use candle_core::{Result, bail};
use gemm::{Parallelism, gemm};
use shoal_common::spec::Activation;

fn parallelism(threads: usize) -> Parallelism {
    if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None }
}

/// Shape of a row-major matrix product.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub rows: usize,
    pub inputs: usize,
    pub outputs: usize,
}

fn check(name: &str, len: usize, want: usize) -> Result<()> {
    if len != want {
        bail!("{name}: expected {want} values, got {len}");
    }
    Ok(())
}

/// `z = x · wᵀ + b`, where x is rows×inputs, w is outputs×inputs (PyTorch layout), b has
/// `outputs` values and z is rows×outputs.
pub fn linear_forward(x: &[f32], w: &[f32], b: &[f32], z: &mut [f32], d: Dims, threads: usize) -> Result<()> {
    check("linear input", x.len(), d.rows * d.inputs)?;
    check("linear weight", w.len(), d.outputs * d.inputs)?;
    check("linear bias", b.len(), d.outputs)?;
    check("linear output", z.len(), d.rows * d.outputs)?;
    for row in z.chunks_exact_mut(d.outputs) {
        row.copy_from_slice(b);
    }
    if d.rows == 0 || d.outputs == 0 {
        return Ok(());
    }
    // SAFETY: the lengths were checked above against the strides given: dst is rows×outputs
    // (row stride outputs), lhs rows×inputs (row stride inputs), rhs = wᵀ, inputs×outputs read
    // from w with row stride 1 and column stride inputs.
    unsafe {
        gemm(
            d.rows,
            d.outputs,
            d.inputs,
            z.as_mut_ptr(),
            1,
            d.outputs as isize,
            true,
            x.as_ptr(),
            1,
            d.inputs as isize,
            w.as_ptr(),
            d.inputs as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(threads),
        );
    }
    Ok(())
}

/// Weight gradient of a linear layer: `gw (+)= dzᵀ · x`. With `accumulate` false the gradient is
/// overwritten (saves zeroing it first).
pub fn linear_weight_grad(
    x: &[f32],
    dz: &[f32],
    gw: &mut [f32],
    d: Dims,
    accumulate: bool,
    threads: usize,
) -> Result<()> {
    check("linear input", x.len(), d.rows * d.inputs)?;
    check("linear output gradient", dz.len(), d.rows * d.outputs)?;
    check("linear weight gradient", gw.len(), d.outputs * d.inputs)?;
    if d.rows == 0 {
        if !accumulate {
            gw.fill(0.0);
        }
        return Ok(());
    }
    // SAFETY: dst gw is outputs×inputs (row stride inputs); lhs dzᵀ is outputs×rows read from dz
    // (rows×outputs) with row stride 1, column stride outputs; rhs x is rows×inputs. Lengths checked.
    unsafe {
        gemm(
            d.outputs,
            d.inputs,
            d.rows,
            gw.as_mut_ptr(),
            1,
            d.inputs as isize,
            accumulate,
            dz.as_ptr(),
            d.outputs as isize,
            1,
            x.as_ptr(),
            1,
            d.inputs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(threads),
        );
    }
    Ok(())
}

/// Bias gradient: `gb (+)= Σ_rows dz`.
pub fn bias_grad(dz: &[f32], gb: &mut [f32], accumulate: bool) -> Result<()> {
    if gb.is_empty() || !dz.len().is_multiple_of(gb.len()) {
        bail!("bias gradient: {} values do not divide into rows of {}", dz.len(), gb.len());
    }
    if !accumulate {
        gb.fill(0.0);
    }
    for row in dz.chunks_exact(gb.len()) {
        gb.iter_mut().zip(row).for_each(|(g, v)| *g += v);
    }
    Ok(())
}

/// Input gradient of a linear layer: `dx = dz · w`.
pub fn linear_input_grad(dz: &[f32], w: &[f32], dx: &mut [f32], d: Dims, threads: usize) -> Result<()> {
    check("linear output gradient", dz.len(), d.rows * d.outputs)?;
    check("linear weight", w.len(), d.outputs * d.inputs)?;
    check("linear input gradient", dx.len(), d.rows * d.inputs)?;
    if d.rows == 0 || d.inputs == 0 {
        return Ok(());
    }
    // SAFETY: dst dx is rows×inputs, lhs dz rows×outputs, rhs w outputs×inputs, all row-major and
    // length-checked above.
    unsafe {
        gemm(
            d.rows,
            d.inputs,
            d.outputs,
            dx.as_mut_ptr(),
            1,
            d.inputs as isize,
            false,
            dz.as_ptr(),
            1,
            d.outputs as isize,
            w.as_ptr(),
            1,
            d.inputs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism(threads),
        );
    }
    Ok(())
}

/// Whether backward needs the pre-activation `z` (otherwise the output `y` suffices).
pub fn needs_preactivation(act: Activation) -> bool {
    matches!(act, Activation::Gelu | Activation::Silu)
}

const LEAKY_SLOPE: f32 = 0.01;

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// erf with |error| < 1.5e-7 (Abramowitz and Stegun 7.1.26), enough for f32 GELU.
fn erf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let r = 1.0 - poly * (-x * x).exp();
    if x >= 0.0 { r } else { -r }
}

fn gelu(z: f32) -> f32 {
    0.5 * z * (1.0 + erf(z * std::f32::consts::FRAC_1_SQRT_2))
}

/// Applies the activation in place (`z` becomes `y`).
pub fn activate(act: Activation, v: &mut [f32]) {
    match act {
        Activation::Identity => {}
        Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        Activation::LeakyRelu => v.iter_mut().for_each(|x| {
            if *x < 0.0 {
                *x *= LEAKY_SLOPE;
            }
        }),
        Activation::Tanh => v.iter_mut().for_each(|x| *x = x.tanh()),
        Activation::Sigmoid => v.iter_mut().for_each(|x| *x = sigmoid(*x)),
        Activation::Silu => v.iter_mut().for_each(|x| *x *= sigmoid(*x)),
        Activation::Gelu => v.iter_mut().for_each(|x| *x = gelu(*x)),
    }
}

/// Turns the output gradient `dy` into the pre-activation gradient `dz`, in place. `saved` is `y`
/// or, where [`needs_preactivation`], `z`.
pub fn activation_backward(act: Activation, saved: &[f32], dy: &mut [f32]) -> Result<()> {
    check("activation gradient", dy.len(), saved.len())?;
    let pairs = dy.iter_mut().zip(saved);
    match act {
        Activation::Identity => {}
        // Branch-free selects, so the loops vectorise.
        Activation::Relu => pairs.for_each(|(g, &y)| *g = if y > 0.0 { *g } else { 0.0 }),
        Activation::LeakyRelu => pairs.for_each(|(g, &y)| *g *= if y < 0.0 { LEAKY_SLOPE } else { 1.0 }),
        Activation::Tanh => pairs.for_each(|(g, &y)| *g *= 1.0 - y * y),
        Activation::Sigmoid => pairs.for_each(|(g, &y)| *g *= y * (1.0 - y)),
        Activation::Silu => pairs.for_each(|(g, &z)| {
            let s = sigmoid(z);
            *g *= s * (1.0 + z * (1.0 - s));
        }),
        Activation::Gelu => pairs.for_each(|(g, &z)| {
            let cdf = 0.5 * (1.0 + erf(z * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * z * z).exp() * 0.398_942_3;
            *g *= cdf + z * pdf;
        }),
    }
    Ok(())
}

/// Softmax cross-entropy over `rows` rows of `classes` logits. Writes `scale · (softmax − onehot)`
/// into `grad` and returns (sum of per-row losses, rows whose argmax equals the label).
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    scale: f32,
    grad: &mut [f32],
) -> Result<(f64, usize)> {
    check("logits", logits.len(), labels.len() * classes)?;
    check("logit gradient", grad.len(), logits.len())?;
    let mut loss = 0.0f64;
    let mut correct = 0;
    for ((row, g), &label) in logits.chunks_exact(classes).zip(grad.chunks_exact_mut(classes)).zip(labels) {
        let label = label as usize;
        if label >= classes {
            bail!("label {label} out of range for {classes} classes");
        }
        let (mut best, mut max) = (0, f32::NEG_INFINITY);
        for (i, &v) in row.iter().enumerate() {
            if v > max {
                max = v;
                best = i;
            }
        }
        if best == label {
            correct += 1;
        }
        let mut sum = 0.0f32;
        for (gi, &v) in g.iter_mut().zip(row) {
            let e = (v - max).exp();
            *gi = e;
            sum += e;
        }
        loss += f64::from(sum.ln() + max - row[label]);
        let inv = scale / sum;
        for gi in g.iter_mut() {
            *gi *= inv;
        }
        g[label] -= scale;
    }
    Ok((loss, correct))
}

/// Mean-squared error. Writes `scale · 2 (pred − target)` into `grad` and returns the sum of
/// squared errors.
pub fn squared_error(pred: &[f32], target: &[f32], scale: f32, grad: &mut [f32]) -> Result<f64> {
    check("targets", target.len(), pred.len())?;
    check("prediction gradient", grad.len(), pred.len())?;
    let mut sum = 0.0f64;
    for ((g, &p), &t) in grad.iter_mut().zip(pred).zip(target) {
        let d = p - t;
        sum += f64::from(d * d);
        *g = 2.0 * scale * d;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: straightforward triple loops in f64.
    fn naive_linear(x: &[f32], w: &[f32], b: &[f32], d: Dims) -> Vec<f32> {
        let mut z = vec![0f32; d.rows * d.outputs];
        for r in 0..d.rows {
            for o in 0..d.outputs {
                let mut s = f64::from(b[o]);
                for i in 0..d.inputs {
                    s += f64::from(x[r * d.inputs + i]) * f64::from(w[o * d.inputs + i]);
                }
                z[r * d.outputs + o] = s as f32;
            }
        }
        z
    }

    fn seq(n: usize, k: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * k).sin() * 0.5).collect()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "index {i}: {x} vs {y}");
        }
    }

    #[test]
    fn linear_matches_the_naive_product_including_odd_shapes() {
        for d in [
            Dims { rows: 5, inputs: 7, outputs: 3 },
            Dims { rows: 1, inputs: 33, outputs: 17 },
            Dims { rows: 64, inputs: 20, outputs: 9 },
        ] {
            let (x, w, b) = (seq(d.rows * d.inputs, 0.37), seq(d.outputs * d.inputs, 0.11), seq(d.outputs, 1.3));
            let mut z = vec![0f32; d.rows * d.outputs];
            linear_forward(&x, &w, &b, &mut z, d, 1).expect("forward");
            close(&z, &naive_linear(&x, &w, &b, d), 1e-5);
        }
    }

    #[test]
    fn linear_backward_matches_reference_and_accumulates() {
        let d = Dims { rows: 6, inputs: 5, outputs: 4 };
        let (x, w, dz) = (seq(30, 0.7), seq(20, 0.3), seq(24, 0.9));
        let mut gw = vec![0f32; 20];
        let mut gb = vec![0f32; 4];
        linear_weight_grad(&x, &dz, &mut gw, d, false, 1).expect("grads");
        bias_grad(&dz, &mut gb, false).expect("bias");
        let mut want_gw = vec![0f32; 20];
        let mut want_gb = vec![0f32; 4];
        for r in 0..6 {
            for o in 0..4 {
                want_gb[o] += dz[r * 4 + o];
                for i in 0..5 {
                    want_gw[o * 5 + i] += dz[r * 4 + o] * x[r * 5 + i];
                }
            }
        }
        close(&gw, &want_gw, 1e-5);
        close(&gb, &want_gb, 1e-5);
        linear_weight_grad(&x, &dz, &mut gw, d, true, 1).expect("grads again");
        bias_grad(&dz, &mut gb, true).expect("bias again");
        close(&gw, &want_gw.iter().map(|v| 2.0 * v).collect::<Vec<_>>(), 1e-5);
        close(&gb, &want_gb.iter().map(|v| 2.0 * v).collect::<Vec<_>>(), 1e-5);

        let mut dx = vec![0f32; 30];
        linear_input_grad(&dz, &w, &mut dx, d, 1).expect("dx");
        let mut want_dx = vec![0f32; 30];
        for r in 0..6 {
            for i in 0..5 {
                for o in 0..4 {
                    want_dx[r * 5 + i] += dz[r * 4 + o] * w[o * 5 + i];
                }
            }
        }
        close(&dx, &want_dx, 1e-5);
    }

    #[test]
    fn activation_derivatives_match_finite_differences() {
        let zs: Vec<f32> = (-20..=20).map(|i| i as f32 * 0.17 + 0.013).collect();
        for act in Activation::ALL {
            let mut y = zs.clone();
            activate(act, &mut y);
            let saved = if needs_preactivation(act) { zs.clone() } else { y.clone() };
            let mut g = vec![1f32; zs.len()];
            activation_backward(act, &saved, &mut g).expect("backward");
            for (k, &z) in zs.iter().enumerate() {
                let h = 1e-3f32;
                let (mut a, mut b) = ([z + h], [z - h]);
                activate(act, &mut a);
                activate(act, &mut b);
                let fd = (a[0] - b[0]) / (2.0 * h);
                assert!((fd - g[k]).abs() < 2e-3, "{act:?} at {z}: fd {fd} vs {}", g[k]);
            }
        }
    }

    #[test]
    fn cross_entropy_matches_the_definition() {
        let logits = [1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0];
        let labels = [1u32, 0];
        let mut grad = [0f32; 6];
        let (loss, correct) = softmax_cross_entropy(&logits, &labels, 3, 0.5, &mut grad).expect("ce");
        let row_loss = |r: &[f32], l: usize| {
            let s: f64 = r.iter().map(|v| f64::from(*v).exp()).sum();
            s.ln() - f64::from(r[l])
        };
        let want = row_loss(&logits[..3], 1) + row_loss(&logits[3..], 0);
        assert!((loss - want).abs() < 1e-5);
        assert_eq!(correct, 1);
        // Gradient rows sum to zero and the label entry is negative.
        assert!(grad[..3].iter().sum::<f32>().abs() < 1e-6);
        assert!(grad[1] < 0.0 && grad[3] < 0.0);
        assert!(softmax_cross_entropy(&logits, &[1, 7], 3, 1.0, &mut grad).is_err());
    }
}
