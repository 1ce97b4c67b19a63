//! The CUDA backend against the CPU backend, on a GPU: the conformance suite kernel by kernel,
//! then a few training steps of a small MLP. Without a GPU (or without the CUDA libraries) each
//! test prints why it was skipped, unless `SHOAL_REQUIRE_GPU=1` makes that a failure.
#![cfg(feature = "cuda")]

use std::io::Write;
use std::sync::Arc;

use shoal_common::spec::{
    Activation, LayerConfig, ModelConfig, ModelKind, OptimizerConfig, OptimizerKind, Schedule, ScheduleKind,
};
use shoal_train::backend::cuda::{CudaBackend, MathMode};
use shoal_train::backend::{self, Backend, conformance};
use shoal_train::nn::loss::{Targets, loss_and_grad};
use shoal_train::nn::{Ctx, Mode};
use shoal_train::optim::Optimizer;
use shoal_train::rng::Rng;
use shoal_train::{DataShape, Model};

/// GPU 0 with its products in `math`, or `None` after printing why there is none.
fn gpu_in(math: MathMode) -> Option<Arc<dyn Backend>> {
    match CudaBackend::open(0, math) {
        Ok(b) => Some(Arc::new(b)),
        Err(e) => {
            assert!(std::env::var("SHOAL_REQUIRE_GPU").as_deref() != Ok("1"), "SHOAL_REQUIRE_GPU=1 but: {e}");
            // Straight to stderr: the test harness hides `eprintln!` output of passing tests.
            let _ = writeln!(std::io::stderr(), "skipped: no GPU to test the CUDA backend on ({e})");
            None
        }
    }
}

fn gpu() -> Option<Arc<dyn Backend>> {
    gpu_in(MathMode::Fp32)
}

#[test]
fn every_kernel_agrees_with_the_cpu_backend() {
    let Some(cuda) = gpu() else { return };
    let got = conformance::run(&cuda).expect("cuda");
    let want = conformance::run(&backend::cpu()).expect("cpu");
    conformance::compare(&got, &want, 1e-4).expect("the CUDA backend agrees with the CPU backend");
}

/// bf16 operands carry 8 significant bits: products (and the kernels built on them) stay within a
/// few bf16 roundings of the fp32 CPU results.
#[test]
fn bf16_products_stay_within_bf16_rounding_of_the_cpu() {
    let Some(cuda) = gpu_in(MathMode::Bf16) else { return };
    let got = conformance::run(&cuda).expect("cuda");
    let want = conformance::run(&backend::cpu()).expect("cpu");
    conformance::compare(&got, &want, 5e-2).expect("bf16 products close to fp32");
}

#[test]
fn a_small_mlp_trains_to_the_same_parameters() {
    let Some(cuda) = gpu() else { return };
    let cfg = ModelConfig {
        kind: ModelKind::Mlp,
        layers: vec![LayerConfig::Linear { width: 32, activation: Activation::Relu, skip: false }],
        dropout: 0.0,
        input_shape: None,
    };
    let shape = DataShape { features: 16, image: None, outputs: 4 };
    let optimizer = OptimizerConfig {
        kind: OptimizerKind::Sgd { momentum: 0.9, nesterov: false },
        lr: 0.05,
        weight_decay: 0.0,
        schedule: Schedule { kind: ScheduleKind::Constant, warmup_steps: 0 },
    };
    let mut rng = Rng::new(5);
    let x: Vec<f32> = (0..64 * 16).map(|_| rng.normal() as f32).collect();
    let labels: Vec<u32> = (0..64).map(|i| (i % 4) as u32).collect();
    let trained: Vec<Vec<f32>> = [backend::cpu(), cuda]
        .iter()
        .map(|b| {
            let mut model = Model::build_on(&cfg, &shape, 3, b).expect("model");
            let mut opt = Optimizer::new(optimizer, 20, model.params()).expect("optimizer");
            let input = b.from_host(x.clone(), &[64, 16]).expect("x");
            for step in 0..20 {
                let (out, saved) =
                    model.forward(&input, &mut Ctx::new(Mode::Train, 1, Rng::new(step))).expect("forward");
                let loss =
                    loss_and_grad(b.as_ref(), &out, &Targets::Classes(labels.clone()), 1.0 / 64.0).expect("loss");
                model.zero_grad();
                model.backward(saved, loss.grad, 1).expect("backward");
                opt.step(model.params_mut()).expect("step");
            }
            let mut flat = Vec::new();
            b.gather_values(&mut model.params(), &mut flat).expect("values");
            flat
        })
        .collect();
    for (i, (g, c)) in trained[1].iter().zip(&trained[0]).enumerate() {
        assert!((g - c).abs() <= 1e-4 * (1.0 + c.abs()), "parameter {i}: GPU {g} vs CPU {c}");
    }
}
