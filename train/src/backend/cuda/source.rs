//! The CUDA kernels' source and what the host needs to call them: the kernel names, activation
//! codes, NVRTC options and the AdamW terms the host computes. Pure host code, built without the
//! `cuda` feature.
//!
//! The ABI (`kernels.cu` has the signatures): f32 data, `int` sizes below 2^31, row-major (NCHW
//! for images), grid-stride loops, so any launch computes the whole result. Two departures from
//! a one-to-one port of the CPU kernels: `adamw` takes `step_size` and `bias2_sqrt` (see
//! [`adam_bias_terms`]) instead of the step number, because the CPU rule computes the bias
//! corrections in f64; and three small kernels with no CPU counterpart: `fill` sets a buffer to a
//! value, `plane_sum` sums each plane of an NCHW tensor (a conv bias gradient in two steps
//! with more parallelism than `channel_sum`), and `to_bf16` rounds product operands to bf16.

use shoal_common::spec::Activation;

use crate::backend::AdamStep;

/// The kernels, CUDA C++ (compiled with NVRTC at run time, or as C++ for host emulation).
pub const SOURCE: &str = include_str!("kernels.cu");

/// Every `extern "C" __global__` kernel in [`SOURCE`].
pub const KERNELS: &[&str] = &[
    "bias_act_forward",
    "channel_bias_act_forward",
    "activation_backward",
    "column_sum",
    "channel_sum",
    "plane_sum",
    "softmax_cross_entropy",
    "squared_error",
    "accumulate",
    "multiply",
    "scale",
    "fill",
    "to_bf16",
    "sgd",
    "adamw",
    "im2col",
    "col2im",
    "max_pool_forward",
    "avg_pool_forward",
    "max_pool_backward",
    "avg_pool_backward",
];

/// NVRTC options. PTX for the compute_80 virtual architecture JITs on Ampere, Hopper and later.
/// Without contracted multiply-adds the elementwise kernels and optimizer updates round as the
/// CPU engine does; they are memory-bound, so it costs nothing measurable.
pub const NVRTC_OPTIONS: &[&str] = &["--gpu-architecture=compute_80", "--std=c++17", "--fmad=false"];

/// The `act` argument of the kernels: the activation's index in [`Activation::ALL`].
pub const fn activation_code(act: Activation) -> i32 {
    match act {
        Activation::Relu => 0,
        Activation::Gelu => 1,
        Activation::Tanh => 2,
        Activation::Sigmoid => 3,
        Activation::Silu => 4,
        Activation::LeakyRelu => 5,
        Activation::Identity => 6,
    }
}

/// The `step_size` and `bias2_sqrt` arguments of `adamw` for step `s.t`: `lr / (1 − beta1^t)` and
/// `sqrt(1 − beta2^t)`, in f64 rounded to f32, as `rules::adamw` computes them.
pub fn adam_bias_terms(s: &AdamStep) -> (f32, f32) {
    let t = s.t as i32;
    let bc1 = 1.0 - f64::from(s.beta1).powi(t);
    let bc2 = 1.0 - f64::from(s.beta2).powi(t);
    ((f64::from(s.lr) / bc1) as f32, bc2.sqrt() as f32)
}

/// The names of the `.entry` directives of a PTX module, in order.
pub fn ptx_entries(ptx: &str) -> Vec<&str> {
    ptx.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix(".visible ").unwrap_or(line.trim_start());
            let rest = rest.strip_prefix(".entry ")?;
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            Some(&rest[..end])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_codes_are_the_index_in_all() {
        for (i, act) in Activation::ALL.into_iter().enumerate() {
            assert_eq!(activation_code(act), i as i32, "{act:?}");
        }
    }

    /// The names of the kernels defined in the source, found textually.
    fn defined_kernels() -> Vec<&'static str> {
        let marker = "extern \"C\" __global__ void ";
        SOURCE
            .match_indices(marker)
            .map(|(at, _)| {
                let rest = &SOURCE[at + marker.len()..];
                &rest[..rest.find('(').expect("a parameter list")]
            })
            .collect()
    }

    #[test]
    fn kernels_lists_every_kernel_in_the_source_once() {
        let mut defined = defined_kernels();
        assert_eq!(defined.len(), KERNELS.len(), "{defined:?}");
        defined.sort_unstable();
        let mut listed = KERNELS.to_vec();
        listed.sort_unstable();
        listed.dedup();
        assert_eq!(defined, listed);
    }

    #[test]
    fn adam_bias_terms_follow_the_definition() {
        // Step 1: lr / (1 - beta1) and sqrt(1 - beta2) (0.999 as f32 is 0.999 + 1.3e-8, which
        // moves the root by 6e-6 relative); at large t both corrections vanish.
        let mut s = AdamStep { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, t: 1 };
        let (step, bias2) = adam_bias_terms(&s);
        assert!((step - 0.1).abs() < 1e-6, "{step}");
        assert!((bias2 / 0.001f32.sqrt() - 1.0).abs() < 2e-5, "{bias2}");
        s.t = 100_000;
        let (step, bias2) = adam_bias_terms(&s);
        assert!((step - 0.01).abs() < 1e-9 && (bias2 - 1.0).abs() < 1e-7, "{step} {bias2}");
    }

    #[test]
    fn ptx_entries_reads_entry_names() {
        let ptx = ".version 8.0\n.target sm_80\n\n\t// .globl\tscale\n.visible .entry scale(\n\t.param .u64 a\n)\n\
                   .entry fill(\n.func helper(\n";
        assert_eq!(ptx_entries(ptx), ["scale", "fill"]);
    }
}
