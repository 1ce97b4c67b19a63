//! Elementwise buffer kernels and the optimizer updates against `backend::rules`.

use shoal_train::backend::cuda::launch;
use shoal_train::backend::cuda::source::adam_bias_terms;
use shoal_train::backend::{AdamStep, rules};

use crate::emulation::emulator;
use crate::{Checks, launches, values};

type Accumulate = unsafe extern "C" fn(*mut f32, *const f32, i32, i32);
type Multiply = unsafe extern "C" fn(*mut f32, *const f32, i32);
type Scale = unsafe extern "C" fn(*mut f32, i32, f32);
type Sgd = unsafe extern "C" fn(*mut f32, *const f32, *mut f32, i32, f32, f32, i32, f32, i32, i32);
type Adamw = unsafe extern "C" fn(*mut f32, *const f32, *mut f32, *mut f32, i32, f32, f32, f32, f32, f32, f32, f32);

const N: usize = 35;

/// Reference: `dst + src` and `src` (the gradient accumulation the backends do).
#[test]
fn accumulate_adds_or_overwrites() {
    let mut checks = Checks::new("accumulate");
    let emu = emulator();
    let (dst0, src) = (values(N, 21), values(N, 22));
    for overwrite in [false, true] {
        let want: Vec<f32> = dst0.iter().zip(&src).map(|(d, s)| if overwrite { *s } else { d + s }).collect();
        for dims in launches(launch::elementwise(N)) {
            let mut dst = dst0.clone();
            let p = dst.as_mut_ptr();
            emu.launch("accumulate", dims, |f: Accumulate| unsafe {
                f(p, src.as_ptr(), N as i32, i32::from(overwrite))
            });
            checks.exact(&format!("overwrite {overwrite} {dims:?}"), &dst, &want);
        }
    }
}

/// Reference: an inverted-dropout mask as `Backend::dropout_mask` draws it (1/keep or 0)
/// applied elementwise; and scaling and filling.
#[test]
fn multiply_scale_and_fill_are_elementwise() {
    let mut checks = Checks::new("multiply, scale, fill");
    let emu = emulator();
    let x0 = values(N, 23);
    let keep = 0.7f64;
    let mask: Vec<f32> =
        values(N, 24).iter().map(|u| if f64::from(u + 2.0) / 4.0 < keep { (1.0 / keep) as f32 } else { 0.0 }).collect();
    let masked: Vec<f32> = x0.iter().zip(&mask).map(|(x, m)| x * m).collect();
    let scaled: Vec<f32> = x0.iter().map(|x| x * -0.375).collect();
    for dims in launches(launch::elementwise(N)) {
        let mut x = x0.clone();
        let p = x.as_mut_ptr();
        emu.launch("multiply", dims, |f: Multiply| unsafe { f(p, mask.as_ptr(), N as i32) });
        checks.exact(&format!("multiply {dims:?}"), &x, &masked);
        let mut x = x0.clone();
        let p = x.as_mut_ptr();
        emu.launch("scale", dims, |f: Scale| unsafe { f(p, N as i32, -0.375) });
        checks.exact(&format!("scale {dims:?}"), &x, &scaled);
        let mut x = x0.clone();
        let p = x.as_mut_ptr();
        emu.launch("fill", dims, |f: Scale| unsafe { f(p, N as i32, 0.5) });
        checks.exact(&format!("fill {dims:?}"), &x, &[0.5; N]);
    }
}

/// Reference: `rules::sgd` over three steps (the first initialises the momentum buffer), for
/// plain, momentum and Nesterov updates with and without weight decay.
#[test]
fn sgd_follows_the_cpu_rule() {
    let mut checks = Checks::new("sgd");
    let emu = emulator();
    let w0 = values(N, 25);
    let grads: Vec<Vec<f32>> = (0..3).map(|s| values(N, 26 + s)).collect();
    let (lr, momentum_value) = (0.05f32, 0.9f32);
    for (has_momentum, momentum, nesterov) in
        [(false, 0.0, false), (true, 0.0, false), (true, momentum_value, false), (true, momentum_value, true)]
    {
        for weight_decay in [0.0f32, 0.01] {
            for dims in launches(launch::elementwise(N)) {
                let (mut want_w, mut want_buf) = (w0.clone(), vec![0f32; N]);
                let (mut w, mut buf) = (w0.clone(), vec![0f32; N]);
                for (step, g) in grads.iter().enumerate() {
                    let first = step == 0;
                    let want_buf_arg: &mut [f32] = if has_momentum { &mut want_buf } else { &mut [] };
                    rules::sgd(&mut want_w, g, want_buf_arg, lr, momentum, nesterov, weight_decay, first);
                    let (wp, bp) = (w.as_mut_ptr(), if has_momentum { buf.as_mut_ptr() } else { std::ptr::null_mut() });
                    emu.launch("sgd", dims, |f: Sgd| unsafe {
                        f(
                            wp,
                            g.as_ptr(),
                            bp,
                            N as i32,
                            lr,
                            momentum,
                            i32::from(nesterov),
                            weight_decay,
                            i32::from(first),
                            i32::from(has_momentum),
                        )
                    });
                    let what =
                        format!("momentum {momentum} nesterov {nesterov} decay {weight_decay} step {step} {dims:?}");
                    checks.exact(&format!("{what} w"), &w, &want_w);
                    checks.exact(&format!("{what} buf"), &buf, &want_buf);
                }
            }
        }
    }
}

/// Reference: `rules::adamw` at steps 1 to 4 and then 1000, with the bias terms from
/// `adam_bias_terms`.
#[test]
fn adamw_follows_the_cpu_rule() {
    let mut checks = Checks::new("adamw");
    let emu = emulator();
    let w0 = values(N, 30);
    for weight_decay in [0.0f32, 0.01] {
        for dims in launches(launch::elementwise(N)) {
            let (mut want_w, mut want_m, mut want_v) = (w0.clone(), vec![0f32; N], vec![0f32; N]);
            let (mut w, mut m, mut v) = (w0.clone(), vec![0f32; N], vec![0f32; N]);
            for t in [1u64, 2, 3, 4, 1000] {
                let g = values(N, 31 + t);
                let s = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, t };
                rules::adamw(&mut want_w, &g, &mut want_m, &mut want_v, &s);
                let (step_size, bias2_sqrt) = adam_bias_terms(&s);
                let (wp, mp, vp) = (w.as_mut_ptr(), m.as_mut_ptr(), v.as_mut_ptr());
                emu.launch("adamw", dims, |f: Adamw| unsafe {
                    f(
                        wp,
                        g.as_ptr(),
                        mp,
                        vp,
                        N as i32,
                        s.lr,
                        s.beta1,
                        s.beta2,
                        s.eps,
                        s.weight_decay,
                        step_size,
                        bias2_sqrt,
                    )
                });
                let what = format!("decay {weight_decay} t {t} {dims:?}");
                checks.exact(&format!("{what} w"), &w, &want_w);
                checks.exact(&format!("{what} m"), &m, &want_m);
                checks.exact(&format!("{what} v"), &v, &want_v);
            }
        }
    }
}

type ToBf16 = unsafe extern "C" fn(*const f32, *mut u16, i32);

/// Reference: the `half` crate's f32 to bf16 conversion (round to nearest, ties to even; NaN
/// kept quiet), on random values and the edge cases: both kinds of tie, infinities, NaN, the
/// largest f32 (which rounds to infinity), negative zero and a subnormal.
#[test]
fn to_bf16_rounds_to_nearest_even() {
    let emu = emulator();
    let mut x = values(N, 31);
    x.extend([
        f32::from_bits(0x3f80_8000),
        f32::from_bits(0x3f81_8000),
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MAX,
        -0.0,
        1e-40,
    ]);
    let want: Vec<u16> = x.iter().map(|v| half::bf16::from_f32(*v).to_bits()).collect();
    assert_eq!(want[N..N + 2], [0x3f80, 0x3f82], "ties go to the even neighbour");
    for dims in launches(launch::elementwise(x.len())) {
        let mut y = vec![0u16; x.len()];
        let p = y.as_mut_ptr();
        emu.launch("to_bf16", dims, |f: ToBf16| unsafe { f(x.as_ptr(), p, x.len() as i32) });
        assert_eq!(y, want, "{dims:?}");
    }
}
