//! Pooling against candle's `max_pool2d` / `avg_pool2d` and their autograd (what the pool layer
//! runs), with ties and with inputs the window size does not divide.

use candle_core::{Device, Tensor, Var};
use shoal_train::backend::cuda::launch;

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

/// The input gradient candle's autograd gives for output gradient dy (through `sum(pool(x) · dy)`).
fn candle_input_grad(kind: Kind, x: &Tensor, size: usize, dy: &[f32]) -> Vec<f32> {
    let xv = Var::from_tensor(x).expect("var");
    let y = pooled(kind, xv.as_tensor(), size);
    let dyt = Tensor::from_vec(dy.to_vec(), y.dims(), &Device::Cpu).expect("dy");
    let grads = (y * dyt).and_then(|p| p.sum_all()?.backward()).expect("backward");
    host(grads.get(xv.as_tensor()).expect("input gradient"))
}

/// Reference: candle's autograd, ties and cut-off rows and columns included.
#[test]
fn pool_backward_matches_candle_autograd() {
    let mut checks = Checks::new("pool backward");
    let emu = emulator();
    for (batch, channels, h, w, size) in SHAPES {
        let x = input(batch * channels * h * w, 51);
        let xt = Tensor::from_vec(x.clone(), (batch, channels, h, w), &Device::Cpu).expect("x");
        let y = host(&pooled(Kind::Max, &xt, size));
        let dy = values(y.len(), 52);
        let planes = batch * channels;
        let shape = format!("{batch}x{channels}x{h}x{w}/{size}");
        let want_max = candle_input_grad(Kind::Max, &xt, size, &dy);
        let want_avg = candle_input_grad(Kind::Avg, &xt, size, &dy);
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

/// What candle 0.11 does, and so what the kernel reproduces: every maximum of a window gets
/// dy · (maxima in the window) / size², not dy.
#[test]
fn max_pool_backward_scales_by_the_share_of_maxima_as_candle_does() {
    let mut checks = Checks::new("max_pool_backward by hand");
    // One 2x2 window with a single maximum, one with two.
    let x = [1.0f32, 3.0, 0.0, 5.0, 2.0, 0.5, 5.0, 1.0];
    let xt = Tensor::from_vec(x.to_vec(), (1, 1, 2, 4), &Device::Cpu).expect("x");
    let dy = [8.0f32, 8.0];
    let want = [0.0f32, 2.0, 0.0, 4.0, 0.0, 0.0, 4.0, 0.0];
    checks.exact("candle", &candle_input_grad(Kind::Max, &xt, 2, &dy), &want);
    let y = [3.0f32, 5.0];
    let mut dx = [f32::NAN; 8];
    let p = dx.as_mut_ptr();
    emulator().launch("max_pool_backward", launch::elementwise(8), |f: MaxPoolBackward| unsafe {
        f(x.as_ptr(), y.as_ptr(), dy.as_ptr(), p, 1, 2, 4, 2)
    });
    checks.exact("kernel", &dx, &want);
}
