//! Convolution as im2col plus a matrix product, and its input gradient as the product's
//! transpose plus col2im, against candle's `conv2d` and its autograd (what the conv layer runs).

use candle_core::{Device, Tensor, Var};
use shoal_train::backend::cuda::launch;

use crate::emulation::emulator;
use crate::{Checks, launches, values};

type Im2col = unsafe extern "C" fn(*const f32, *mut f32, i32, i32, i32, i32, i32, i32, i32, i32, i32);

/// A convolution's shape.
#[derive(Clone, Copy, Debug)]
struct Conv {
    batch: usize,
    channels: usize,
    h: usize,
    w: usize,
    out_channels: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Conv {
    fn out_hw(&self) -> (usize, usize) {
        let f = |n: usize| (n + 2 * self.pad - self.k) / self.stride + 1;
        (f(self.h), f(self.w))
    }

    /// Rows of an image's column matrix.
    fn patch(&self) -> usize {
        self.channels * self.k * self.k
    }

    /// Whether the stride steps exactly onto the last padded row and column. Candle 0.11's
    /// conv2d backward fails otherwise (its transposed convolution comes out a row or column
    /// short and the gradient add reports a shape mismatch).
    fn stride_fits(&self) -> bool {
        let fits = |n: usize| (n + 2 * self.pad - self.k).is_multiple_of(self.stride);
        fits(self.h) && fits(self.w)
    }

    fn args(&self) -> [i32; 9] {
        let (oh, ow) = self.out_hw();
        [self.batch, self.channels, self.h, self.w, self.k, self.stride, self.pad, oh, ow].map(|v| v as i32)
    }
}

/// Odd sizes; padding 1 with strides 1 and 2, where the stride leaves a remainder (width 6) and
/// where it does not (7×7).
const SHAPES: [Conv; 5] = [
    Conv { batch: 2, channels: 3, h: 7, w: 6, out_channels: 4, k: 3, stride: 1, pad: 1 },
    Conv { batch: 2, channels: 3, h: 7, w: 6, out_channels: 4, k: 3, stride: 2, pad: 1 },
    Conv { batch: 2, channels: 3, h: 7, w: 7, out_channels: 4, k: 3, stride: 2, pad: 1 },
    Conv { batch: 1, channels: 2, h: 8, w: 5, out_channels: 3, k: 2, stride: 2, pad: 0 },
    Conv { batch: 3, channels: 1, h: 5, w: 5, out_channels: 2, k: 5, stride: 1, pad: 2 },
];

fn run(name: &str, c: &Conv, dims: launch::LaunchDims, input: &[f32], out_len: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; out_len];
    let (ip, op) = (input.as_ptr(), out.as_mut_ptr());
    let a = c.args();
    emulator()
        .launch(name, dims, |f: Im2col| unsafe { f(ip, op, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]) });
    out
}

/// Per image: out[o][p] = Σ_r w[o][r] · cols[r][p], with w as out_channels × (channels·k·k).
fn conv_by_product(c: &Conv, cols: &[f32], w: &[f32]) -> Vec<f32> {
    let (oh, ow) = c.out_hw();
    let (p_len, r_len) = (oh * ow, c.patch());
    let mut out = vec![0f32; c.batch * c.out_channels * p_len];
    for n in 0..c.batch {
        let cols_n = &cols[n * r_len * p_len..(n + 1) * r_len * p_len];
        for o in 0..c.out_channels {
            for p in 0..p_len {
                out[(n * c.out_channels + o) * p_len + p] =
                    (0..r_len).map(|r| w[o * r_len + r] * cols_n[r * p_len + p]).sum();
            }
        }
    }
    out
}

/// Per image: dcols[r][p] = Σ_o w[o][r] · dy[o][p] (the product's transpose).
fn cols_grad_by_product(c: &Conv, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let (oh, ow) = c.out_hw();
    let (p_len, r_len) = (oh * ow, c.patch());
    let mut dcols = vec![0f32; c.batch * r_len * p_len];
    for n in 0..c.batch {
        for r in 0..r_len {
            for p in 0..p_len {
                dcols[(n * r_len + r) * p_len + p] =
                    (0..c.out_channels).map(|o| w[o * r_len + r] * dy[(n * c.out_channels + o) * p_len + p]).sum();
            }
        }
    }
    dcols
}

fn tensor(v: &[f32], dims: (usize, usize, usize, usize)) -> Tensor {
    Tensor::from_vec(v.to_vec(), dims, &Device::Cpu).expect("tensor")
}

fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values")
}

/// Reference: candle's `conv2d` (padding 1 with strides 1 and 2, and other shapes).
#[test]
fn im2col_and_a_product_equal_candle_conv2d() {
    let mut checks = Checks::new("im2col");
    for c in SHAPES {
        let (oh, ow) = c.out_hw();
        let (x, w) = (values(c.batch * c.channels * c.h * c.w, 40), values(c.out_channels * c.patch(), 41));
        let want = tensor(&x, (c.batch, c.channels, c.h, c.w))
            .conv2d(&tensor(&w, (c.out_channels, c.channels, c.k, c.k)), c.pad, c.stride, 1, 1)
            .expect("conv2d");
        assert_eq!(want.dims(), [c.batch, c.out_channels, oh, ow]);
        let cols_len = c.batch * c.patch() * oh * ow;
        for dims in launches(launch::elementwise(cols_len)) {
            let cols = run("im2col", &c, dims, &x, cols_len);
            assert!(cols.iter().all(|v| v.is_finite()), "{c:?} {dims:?}: an entry was not written");
            checks.close(&format!("{c:?} {dims:?}"), &conv_by_product(&c, &cols, &w), &host(&want), 1e-5, 1e-5);
        }
    }
}

/// The input gradient of a convolution by its definition, in f64: every output position sends
/// w · dy back to each input pixel its window covers.
fn input_grad_by_definition(c: &Conv, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let (oh, ow) = c.out_hw();
    let mut dx = vec![0f64; c.batch * c.channels * c.h * c.w];
    for n in 0..c.batch {
        for o in 0..c.out_channels {
            for (oy, ox) in (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox))) {
                let g = f64::from(dy[((n * c.out_channels + o) * oh + oy) * ow + ox]);
                for (ch, ki, kj) in
                    (0..c.channels).flat_map(|ch| (0..c.k).flat_map(move |ki| (0..c.k).map(move |kj| (ch, ki, kj))))
                {
                    let (iy, ix) = (
                        (oy * c.stride + ki) as isize - c.pad as isize,
                        (ox * c.stride + kj) as isize - c.pad as isize,
                    );
                    if (0..c.h as isize).contains(&iy) && (0..c.w as isize).contains(&ix) {
                        let wv = f64::from(w[((o * c.channels + ch) * c.k + ki) * c.k + kj]);
                        dx[((n * c.channels + ch) * c.h + iy as usize) * c.w + ix as usize] += wv * g;
                    }
                }
            }
        }
    }
    dx.into_iter().map(|v| v as f32).collect()
}

/// References: the input gradient candle's autograd gives `conv2d` for an output gradient dy
/// (through `sum(conv2d(x) · dy)`, as the conv layer backpropagates), where candle can compute
/// it, and the gradient by definition for every shape.
#[test]
fn col2im_of_the_transposed_product_equals_the_input_gradient() {
    let mut checks = Checks::new("col2im");
    for c in SHAPES {
        let (oh, ow) = c.out_hw();
        let (x, w) = (values(c.batch * c.channels * c.h * c.w, 42), values(c.out_channels * c.patch(), 43));
        let dy = values(c.batch * c.out_channels * oh * ow, 44);
        let by_definition = input_grad_by_definition(&c, &dy, &w);
        let candle = c.stride_fits().then(|| {
            let xv = Var::from_tensor(&tensor(&x, (c.batch, c.channels, c.h, c.w))).expect("var");
            let y =
                xv.conv2d(&tensor(&w, (c.out_channels, c.channels, c.k, c.k)), c.pad, c.stride, 1, 1).expect("conv2d");
            let grads = (y * tensor(&dy, (c.batch, c.out_channels, oh, ow)))
                .and_then(|p| p.sum_all()?.backward())
                .expect("backward");
            host(grads.get(xv.as_tensor()).expect("input gradient"))
        });
        let dcols = cols_grad_by_product(&c, &dy, &w);
        for dims in launches(launch::elementwise(x.len())) {
            let dx = run("col2im", &c, dims, &dcols, x.len());
            checks.close(&format!("{c:?} {dims:?} by definition"), &dx, &by_definition, 1e-5, 1e-5);
            if let Some(want) = &candle {
                checks.close(&format!("{c:?} {dims:?} vs candle"), &dx, want, 1e-5, 1e-5);
            }
        }
    }
    assert!(
        SHAPES.iter().filter(|c| c.stride_fits() && c.stride > 1).count() > 0,
        "no strided shape checked against candle"
    );
}

/// col2im is im2col's adjoint: ⟨im2col(x), u⟩ = ⟨x, col2im(u)⟩ for any x and u (in f64).
#[test]
fn col2im_is_the_adjoint_of_im2col() {
    let mut checks = Checks::new("im2col adjoint");
    for c in SHAPES {
        let (oh, ow) = c.out_hw();
        let cols_len = c.batch * c.patch() * oh * ow;
        let (x, u) = (values(c.batch * c.channels * c.h * c.w, 45), values(cols_len, 46));
        let dims = launch::elementwise(cols_len);
        let cols = run("im2col", &c, dims, &x, cols_len);
        let back = run("col2im", &c, dims, &u, x.len());
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| f64::from(*p) * f64::from(*q)).sum::<f64>();
        let (lhs, rhs) = (dot(&cols, &u), dot(&x, &back));
        checks.close(&format!("{c:?}"), &[lhs as f32], &[rhs as f32], 1e-5, 1e-5);
    }
}
