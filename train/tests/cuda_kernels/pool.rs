//! Pooling against candle's `max_pool2d` / `avg_pool2d` forward ops and the host engine's
//! pooling (`backend::pool`, which every backend's pooling matches), with ties and with inputs
//! the window size does not divide.

use candle_core::{Device, Tensor};
use shoal_common::spec::PoolKind;
use shoal_train::backend::cuda::launch;
use shoal_train::backend::pool::{self, PoolDims};

use crate::emulation::emulator;
use crate::{Checks, launches, values};

type PoolForward = unsafe extern "C" fn(*const f32, *mut f32, i32, i32, i32, i32);
type MaxPoolBackward = unsafe extern "C" fn(*const f32, *const f32, *const f32, *mut f32, i32, i32, i32, i32);

/// (batch, channels, h, w, size): divisible, cut off in both directions, cut off by more than a
/// row (8 = 3·2 + 2), a single window.
const SHAPES: [(usize, usize, usize, usize, usize); 5] =
    [(2, 3, 6, 4, 2), (2, 3, 7, 5, 2), (1, 2, 8, 7, 3), (3, 1, 5, 9, 3), (1, 1, 2, 2, 2)];

#[derive(Clone, Copy)]
enum Kind {
    Max,
    Avg,
}

/// Inputs on a coarse grid (multiples of 0.5 in [-2, 2)), so that windows have tied maxima.
fn input(n: usize, seed: u64) -> Vec<f32> {
    values(n, seed).iter().map(|v| (v * 2.0).floor() / 2.0).collect()
}

fn pooled(kind: Kind, x: &Tensor, size: usize) -> Tensor {
    match kind {
        Kind::Max => x.max_pool2d(size),
        Kind::Avg => x.avg_pool2d(size),
    }
    .expect("pool")
}

fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values")
}

/// Reference: candle's forward ops.
#[test]
fn pool_forward_matches_candle() {
    let mut checks = Checks::new("pool forward");
    let emu = emulator();
    for (batch, channels, h, w, size) in SHAPES {
        let x = input(batch * channels * h * w, 50);
        let xt = Tensor::from_vec(x.clone(), (batch, channels, h, w), &Device::Cpu).expect("x");
        let planes = batch * channels;
        for (kind, name) in [(Kind::Max, "max_pool_forward"), (Kind::Avg, "avg_pool_forward")] {
            let want = host(&pooled(kind, &xt, size));
            assert_eq!(want.len(), planes * (h / size) * (w / size));
            for dims in launches(launch::elementwise(want.len())) {
                let mut y = vec![f32::NAN; want.len()];
                let yp = y.as_mut_ptr();
                emu.launch(name, dims, |f: PoolForward| unsafe {
                    f(x.as_ptr(), yp, planes as i32, h as i32, w as i32, size as i32)
                });
                checks.exact(&format!("{name} {batch}x{channels}x{h}x{w}/{size} {dims:?}"), &y, &want);
            }
        }
    }
}

fn host_kind(kind: Kind) -> PoolKind {
    match kind {
        Kind::Max => PoolKind::Max,
        Kind::Avg => PoolKind::Avg,
    }
}

/// Reference: the host engine's pooling backward, ties and cut-off rows and columns included.
#[test]
fn pool_backward_matches_the_host_definition() {
    let mut checks = Checks::new("pool backward");
    let emu = emulator();
    for (batch, channels, h, w, size) in SHAPES {
        let x = input(batch * channels * h * w, 51);
        let planes = batch * channels;
        let d = PoolDims { planes, h, w, size };
        let y = pool::forward(PoolKind::Max, d, &x);
        let dy = values(y.len(), 52);
        let shape = format!("{batch}x{channels}x{h}x{w}/{size}");
        let want_max = pool::backward(host_kind(Kind::Max), d, &x, &dy);
        let want_avg = pool::backward(host_kind(Kind::Avg), d, &x, &dy);
        for dims in launches(launch::elementwise(x.len())) {
            let mut dx = vec![f32::NAN; x.len()];
            let p = dx.as_mut_ptr();
            emu.launch("max_pool_backward", dims, |f: MaxPoolBackward| unsafe {
                f(x.as_ptr(), y.as_ptr(), dy.as_ptr(), p, planes as i32, h as i32, w as i32, size as i32)
            });
            checks.exact(&format!("max {shape} {dims:?}"), &dx, &want_max);
            let mut dx = vec![f32::NAN; x.len()];
            let p = dx.as_mut_ptr();
            emu.launch("avg_pool_backward", dims, |f: PoolForward| unsafe {
                f(dy.as_ptr(), p, planes as i32, h as i32, w as i32, size as i32)
            });
            checks.exact(&format!("avg {shape} {dims:?}"), &dx, &want_avg);
        }
    }
}

/// By hand: the first maximum of each window takes the whole gradient, ties included.
#[test]
fn max_pool_backward_routes_the_gradient_to_the_first_maximum() {
    let mut checks = Checks::new("max_pool_backward by hand");
    // One 2x2 window with a single maximum, one with two.
    let x = [1.0f32, 3.0, 0.0, 5.0, 2.0, 0.5, 5.0, 1.0];
    let dy = [8.0f32, 8.0];
    let want = [0.0f32, 8.0, 0.0, 8.0, 0.0, 0.0, 0.0, 0.0];
    let y = [3.0f32, 5.0];
    let mut dx = [f32::NAN; 8];
    let p = dx.as_mut_ptr();
    emulator().launch("max_pool_backward", launch::elementwise(8), |f: MaxPoolBackward| unsafe {
        f(x.as_ptr(), y.as_ptr(), dy.as_ptr(), p, 1, 2, 4, 2)
    });
    checks.exact("kernel", &dx, &want);
}
