//! Bias-and-activation epilogues and activation derivatives, for every activation, against the
//! CPU engine's fused kernels and (for the NCHW epilogue of conv layers) candle's activations.

use candle_core::{Device, Tensor};
use shoal_common::spec::Activation;
use shoal_train::backend::activation;
use shoal_train::backend::cuda::launch;
use shoal_train::backend::cuda::source::activation_code;
use shoal_train::backend::kernels::{self, Dims};

use crate::emulation::emulator;
use crate::{Checks, launches, values};

type BiasAct = unsafe extern "C" fn(*mut f32, *const f32, *mut f32, i32, i32, i32);
type ChannelBiasAct = unsafe extern "C" fn(*mut f32, *const f32, *mut f32, i32, i32, i32, i32);
type ActivationBackward = unsafe extern "C" fn(*const f32, *mut f32, i32, i32);

/// z = x · wᵀ (no bias), the product a GPU takes from cuBLAS before the epilogue; naive loops.
fn product(x: &[f32], w: &[f32], d: Dims) -> Vec<f32> {
    let mut z = vec![0f32; d.rows * d.outputs];
    for r in 0..d.rows {
        for o in 0..d.outputs {
            z[r * d.outputs + o] = (0..d.inputs).map(|i| x[r * d.inputs + i] * w[o * d.inputs + i]).sum();
        }
    }
    z
}

/// Reference: `kernels::activate` on the product plus bias, which is `kernels::linear_forward`
/// up to the product's summation order.
#[test]
fn bias_act_forward_matches_the_fused_linear_kernel() {
    let mut checks = Checks::new("bias_act_forward");
    let emu = emulator();
    let d = Dims { rows: 5, inputs: 4, outputs: 7 };
    let (x, w, b) = (values(d.rows * d.inputs, 1), values(d.outputs * d.inputs, 2), values(d.outputs, 3));
    let mut fused = vec![0f32; d.rows * d.outputs];
    kernels::linear_forward(&x, &w, &b, &mut fused, d, 1).expect("linear forward");
    let product = product(&x, &w, d);
    let n = product.len();
    let want_z: Vec<f32> = product.iter().enumerate().map(|(i, p)| p + b[i % d.outputs]).collect();
    // The product's summation order is the only difference from the fused kernel.
    checks.close("product + bias vs linear_forward", &want_z, &fused, 1e-5, 1e-5);
    for act in Activation::ALL {
        let mut want_y = want_z.clone();
        kernels::activate(act, &mut want_y);
        let mut fused_y = fused.clone();
        kernels::activate(act, &mut fused_y);
        checks.close(&format!("{act:?} activated vs fused"), &want_y, &fused_y, 1e-5, 1e-5);
        for dims in launches(launch::elementwise(n)) {
            // Separate output, as when backward needs z.
            let (mut z, mut y) = (product.clone(), vec![f32::NAN; n]);
            let (zp, yp) = (z.as_mut_ptr(), y.as_mut_ptr());
            emu.launch("bias_act_forward", dims, |f: BiasAct| unsafe {
                f(zp, b.as_ptr(), yp, d.rows as i32, d.outputs as i32, activation_code(act))
            });
            checks.exact(&format!("{act:?} z {dims:?}"), &z, &want_z);
            checks.exact(&format!("{act:?} y {dims:?}"), &y, &want_y);
            // In place: y is z.
            let mut zy = product.clone();
            let p = zy.as_mut_ptr();
            emu.launch("bias_act_forward", dims, |f: BiasAct| unsafe {
                f(p, b.as_ptr(), p, d.rows as i32, d.outputs as i32, activation_code(act))
            });
            checks.exact(&format!("{act:?} in place {dims:?}"), &zy, &want_y);
        }
    }
}

/// Reference: the conv layer's epilogue, candle's `broadcast_add` and `activation::forward`;
/// and `kernels::activate` on the biased values, which the kernel must match exactly.
#[test]
fn channel_bias_act_forward_matches_the_conv_epilogue() {
    let mut checks = Checks::new("channel_bias_act_forward");
    let emu = emulator();
    let (batch, channels, hw) = (2usize, 3usize, 5usize);
    let n = batch * channels * hw;
    let (z0, b) = (values(n, 4), values(channels, 5));
    let zt = Tensor::from_vec(z0.clone(), (batch, channels, 1, hw), &Device::Cpu).expect("z");
    let bt = Tensor::from_vec(b.clone(), (1, channels, 1, 1), &Device::Cpu).expect("b");
    let biased = zt.broadcast_add(&bt).expect("add");
    let want_z = biased.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("z values");
    for act in Activation::ALL {
        let candle_y = activation::forward(act, &biased).and_then(|t| t.flatten_all()?.to_vec1::<f32>()).expect("y");
        let mut want_y = want_z.clone();
        kernels::activate(act, &mut want_y);
        for dims in launches(launch::elementwise(n)) {
            let (mut z, mut y) = (z0.clone(), vec![f32::NAN; n]);
            let (zp, yp) = (z.as_mut_ptr(), y.as_mut_ptr());
            emu.launch("channel_bias_act_forward", dims, |f: ChannelBiasAct| unsafe {
                f(zp, b.as_ptr(), yp, batch as i32, channels as i32, hw as i32, activation_code(act))
            });
            checks.exact(&format!("{act:?} z {dims:?}"), &z, &want_z);
            checks.exact(&format!("{act:?} y {dims:?}"), &y, &want_y);
            // candle's GELU uses an exact erf where the engine's kernels use a 1.5e-7 approximation.
            checks.close(&format!("{act:?} y vs candle {dims:?}"), &y, &candle_y, 1e-5, 1e-6);
            let mut zy = z0.clone();
            let p = zy.as_mut_ptr();
            emu.launch("channel_bias_act_forward", dims, |f: ChannelBiasAct| unsafe {
                f(p, b.as_ptr(), p, batch as i32, channels as i32, hw as i32, activation_code(act))
            });
            checks.exact(&format!("{act:?} in place {dims:?}"), &zy, &want_y);
        }
    }
}

/// Reference: `kernels::activation_backward` with what `needs_preactivation` says is saved, and
/// candle's `activation::backward` (given both z and y).
#[test]
fn activation_backward_matches_the_cpu_derivatives() {
    let mut checks = Checks::new("activation_backward");
    let emu = emulator();
    let n = 5 * 7;
    // Pre-activations across the interesting range, including exact zeros.
    let mut z = values(n, 6).iter().map(|v| v * 2.0).collect::<Vec<_>>();
    z[3] = 0.0;
    z[17] = 0.0;
    let dy = values(n, 7);
    let device = Device::Cpu;
    for act in Activation::ALL {
        let mut y = z.clone();
        kernels::activate(act, &mut y);
        let saved = if kernels::needs_preactivation(act) { z.clone() } else { y.clone() };
        let mut want = dy.clone();
        kernels::activation_backward(act, &saved, &mut want).expect("backward");
        let (zt, yt, dyt) = (
            Tensor::from_vec(z.clone(), n, &device).expect("z"),
            Tensor::from_vec(y.clone(), n, &device).expect("y"),
            Tensor::from_vec(dy.clone(), n, &device).expect("dy"),
        );
        let candle = activation::backward(act, &zt, &yt, &dyt).and_then(|t| t.to_vec1::<f32>()).expect("candle");
        for dims in launches(launch::elementwise(n)) {
            let mut g = dy.clone();
            let gp = g.as_mut_ptr();
            emu.launch("activation_backward", dims, |f: ActivationBackward| unsafe {
                f(saved.as_ptr(), gp, n as i32, activation_code(act))
            });
            checks.exact(&format!("{act:?} {dims:?}"), &g, &want);
            // At z = 0 the candle reference takes the other one-sided derivative of leaky_relu.
            let away_from_kinks: Vec<usize> = (0..n).filter(|&i| z[i] != 0.0).collect();
            let pick = |v: &[f32]| away_from_kinks.iter().map(|&i| v[i]).collect::<Vec<_>>();
            checks.close(&format!("{act:?} vs candle {dims:?}"), &pick(&g), &pick(&candle), 1e-5, 1e-6);
        }
    }
}
