//! The int8 matrix product of int8 inference: `acc[r, o] = Σ_k x[r, k] · w[o, k]` in int32.
//!
//! Weights are packed once, when a layer is built, into blocks of 16 outputs with 4 consecutive
//! inputs per 32-bit lane: the layout of the AVX-512 VNNI instruction `vpdpbusd`, which multiplies
//! 64 unsigned by signed byte pairs and adds them, four at a time, into 16 int32 lanes. That
//! instruction takes its first operand unsigned, so inputs are stored as `x + 128` and the product
//! is corrected by `128 · Σ_k w[o, k]`, computed once per output at packing. CPUs without VNNI run
//! the same packed layout through portable code.

/// Outputs per packed block (one 512-bit register of int32 lanes).
const LANES: usize = 16;
/// Inputs per lane.
const DEPTH: usize = 4;
/// Input rows of one register tile.
const TILE_ROWS: usize = 6;
/// Output blocks of one register tile.
const TILE_BLOCKS: usize = 4;
/// What an unsigned input byte means zero.
pub const ZERO_POINT: i32 = 128;

/// Int8 weights of an `[outputs, inputs]` matrix, packed for [`PackedI8::product`].
#[derive(Clone, Debug)]
pub struct PackedI8 {
    outputs: usize,
    inputs: usize,
    /// Groups of [`DEPTH`] inputs (the last one zero-padded).
    groups: usize,
    /// `blocks × groups × LANES × DEPTH` bytes.
    data: Vec<i8>,
    /// `ZERO_POINT · Σ_k w[o, k]` per output.
    correction: Vec<i32>,
}

impl PackedI8 {
    /// Packs row-major `[outputs, inputs]` int8 weights.
    pub fn pack(w: &[i8], outputs: usize, inputs: usize) -> Self {
        assert_eq!(w.len(), outputs * inputs, "weights are outputs × inputs");
        let groups = inputs.div_ceil(DEPTH);
        let blocks = outputs.div_ceil(LANES);
        let mut data = vec![0i8; blocks * groups * LANES * DEPTH];
        for o in 0..outputs {
            let (block, lane) = (o / LANES, o % LANES);
            for k in 0..inputs {
                let (g, t) = (k / DEPTH, k % DEPTH);
                data[((block * groups + g) * LANES + lane) * DEPTH + t] = w[o * inputs + k];
            }
        }
        let correction = w
            .chunks_exact(inputs.max(1))
            .map(|row| ZERO_POINT * row.iter().map(|&v| i32::from(v)).sum::<i32>())
            .collect();
        Self { outputs, inputs, groups, data, correction }
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Bytes per input row that [`PackedI8::product`] reads (`inputs` rounded up to 4).
    pub fn row_stride(&self) -> usize {
        self.groups * DEPTH
    }

    /// Quantizes `rows` rows of `x` (`inputs` wide) with `scale` into `out`, as unsigned bytes
    /// `round(x / scale) + 128` (clamped to ±127) with rows [`PackedI8::row_stride`] apart.
    pub fn quantize_input(&self, x: &[f32], rows: usize, scale: f32, out: &mut Vec<u8>) {
        let stride = self.row_stride();
        out.clear();
        out.resize(rows * stride, ZERO_POINT as u8);
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        #[cfg(target_arch = "x86_64")]
        let wide = std::arch::is_x86_feature_detected!("avx512f");
        for (dst, src) in out.chunks_exact_mut(stride).zip(x.chunks_exact(self.inputs)).take(rows) {
            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: the CPU has AVX-512F.
                unsafe { vnni::quantize_row(src, inv, &mut dst[..self.inputs]) };
                continue;
            }
            quantize_row(src, inv, &mut dst[..self.inputs]);
        }
    }

    /// `acc[r · outputs + o] = Σ_k x[r, k] · w[o, k]` for `rows` rows of `xu` from
    /// [`PackedI8::quantize_input`].
    pub fn product(&self, xu: &[u8], rows: usize, acc: &mut [i32]) {
        assert!(xu.len() >= rows * self.row_stride(), "input rows are shorter than the packed stride");
        assert!(acc.len() >= rows * self.outputs, "the accumulator is shorter than rows × outputs");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has the features `vnni::product` is compiled for, and the lengths
            // were checked above.
            unsafe { vnni::product(self, xu, rows, acc) };
            return;
        }
        self.product_portable(xu, rows, acc);
    }

    fn product_portable(&self, xu: &[u8], rows: usize, acc: &mut [i32]) {
        let stride = self.row_stride();
        let block_len = self.groups * LANES * DEPTH;
        for (r, xr) in xu.chunks_exact(stride).take(rows).enumerate() {
            for (block, wb) in self.data.chunks_exact(block_len).enumerate() {
                let mut sums = [0i32; LANES];
                for (g, wg) in wb.chunks_exact(LANES * DEPTH).enumerate() {
                    let xg = &xr[g * DEPTH..(g + 1) * DEPTH];
                    for (lane, wl) in wg.chunks_exact(DEPTH).enumerate() {
                        sums[lane] += (0..DEPTH).map(|t| i32::from(xg[t]) * i32::from(wl[t])).sum::<i32>();
                    }
                }
                for (lane, s) in sums.iter().enumerate() {
                    let o = block * LANES + lane;
                    if o < self.outputs {
                        acc[r * self.outputs + o] = s - self.correction[o];
                    }
                }
            }
        }
    }
}

/// Adding and subtracting 1.5 · 2²³ rounds a float of magnitude below 2²² to the nearest
/// integer, ties to even, in plain vector arithmetic (no rounding instruction is needed).
const ROUND: f32 = 12_582_912.0;

fn quantize_row(src: &[f32], inv: f32, dst: &mut [u8]) {
    for (q, &v) in dst.iter_mut().zip(src) {
        let r = ((v * inv).clamp(-127.0, 127.0) + ROUND) - ROUND;
        *q = (r as i32 + ZERO_POINT) as u8;
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::{DEPTH, LANES, PackedI8, TILE_BLOCKS, TILE_ROWS};

    /// [`super::quantize_row`] sixteen values at a time (rounding to nearest even, as the
    /// portable version does).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn quantize_row(src: &[f32], inv: f32, dst: &mut [u8]) {
        let n = src.len().min(dst.len());
        let full = n / 16 * 16;
        let scale = _mm512_set1_ps(inv);
        let (lo, hi, zero) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127), _mm512_set1_epi32(super::ZERO_POINT));
        for i in (0..full).step_by(16) {
            // SAFETY: `i + 16 <= n`, within both slices.
            unsafe {
                let v = _mm512_mul_ps(_mm512_loadu_ps(src.as_ptr().add(i)), scale);
                let q = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                let q = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi), zero);
                _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), _mm512_cvtepi32_epi8(q));
            }
        }
        super::quantize_row(&src[full..n], inv, &mut dst[full..n]);
    }

    /// Register tiles of up to [`TILE_ROWS`] rows by [`TILE_BLOCKS`] blocks over the whole depth.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn product(p: &PackedI8, xu: &[u8], rows: usize, acc: &mut [i32]) {
        let blocks = p.outputs.div_ceil(LANES);
        let mut block = 0;
        while block < blocks {
            let n = (blocks - block).min(TILE_BLOCKS);
            let mut row = 0;
            while row < rows {
                let m = (rows - row).min(TILE_ROWS);
                // SAFETY: the tile lies inside `xu`, `p.data` and `acc` (checked by the caller).
                unsafe {
                    match (m, n) {
                        (6, 4) => tile::<6, 4>(p, xu, row, block, acc),
                        (6, 3) => tile::<6, 3>(p, xu, row, block, acc),
                        (6, 2) => tile::<6, 2>(p, xu, row, block, acc),
                        (6, _) => tile::<6, 1>(p, xu, row, block, acc),
                        (5, 4) => tile::<5, 4>(p, xu, row, block, acc),
                        (4, 4) => tile::<4, 4>(p, xu, row, block, acc),
                        (3, 4) => tile::<3, 4>(p, xu, row, block, acc),
                        (2, 4) => tile::<2, 4>(p, xu, row, block, acc),
                        (1, 4) => tile::<1, 4>(p, xu, row, block, acc),
                        (1, 3) => tile::<1, 3>(p, xu, row, block, acc),
                        (1, 2) => tile::<1, 2>(p, xu, row, block, acc),
                        (1, _) => tile::<1, 1>(p, xu, row, block, acc),
                        // Rare shapes (a few leftover rows and blocks): one row at a time.
                        (m, n) => {
                            for r in row..row + m {
                                match n {
                                    3 => tile::<1, 3>(p, xu, r, block, acc),
                                    2 => tile::<1, 2>(p, xu, r, block, acc),
                                    _ => tile::<1, 1>(p, xu, r, block, acc),
                                }
                            }
                        }
                    }
                }
                row += m;
            }
            block += n;
        }
    }

    /// `M` rows from `row` by `N` blocks from `block`: `M × N` accumulators held in registers.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile<const M: usize, const N: usize>(p: &PackedI8, xu: &[u8], row: usize, block: usize, acc: &mut [i32]) {
        let stride = p.row_stride();
        let block_len = p.groups * LANES * DEPTH;
        let mut sums = [[_mm512_setzero_si512(); N]; M];
        // SAFETY: rows `row..row + M` of `xu` and blocks `block..block + N` of the packed data
        // exist; unaligned loads read exactly 4 and 64 bytes inside them.
        unsafe {
            let x = xu.as_ptr().add(row * stride);
            let w = p.data.as_ptr().add(block * block_len);
            for g in 0..p.groups {
                let wv: [__m512i; N] =
                    std::array::from_fn(|j| _mm512_loadu_si512(w.add(j * block_len + g * LANES * DEPTH).cast()));
                for (i, si) in sums.iter_mut().enumerate() {
                    let xv = _mm512_set1_epi32(std::ptr::read_unaligned(x.add(i * stride + g * DEPTH).cast::<i32>()));
                    for j in 0..N {
                        si[j] = _mm512_dpbusd_epi32(si[j], xv, wv[j]);
                    }
                }
            }
        }
        for (i, si) in sums.iter().enumerate() {
            let out = &mut acc[(row + i) * p.outputs..(row + i + 1) * p.outputs];
            for (j, s) in si.iter().enumerate() {
                let first = (block + j) * LANES;
                let valid = (p.outputs - first).min(LANES);
                let mut lanes = [0i32; LANES];
                // SAFETY: `lanes` holds 16 int32.
                unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), *s) };
                for (lane, v) in lanes[..valid].iter().enumerate() {
                    out[first + lane] = v - p.correction[first + lane];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn reference(x: &[i8], w: &[i8], rows: usize, inputs: usize, outputs: usize) -> Vec<i32> {
        let mut acc = vec![0; rows * outputs];
        for r in 0..rows {
            for o in 0..outputs {
                acc[r * outputs + o] =
                    (0..inputs).map(|k| i32::from(x[r * inputs + k]) * i32::from(w[o * inputs + k])).sum();
            }
        }
        acc
    }

    #[test]
    fn packed_products_are_exact_for_every_tile_shape() {
        let mut rng = Rng::new(5);
        let byte = |rng: &mut Rng| (rng.below(255) as i32 - 127) as i8;
        // Row counts cover full and partial tiles; output counts full and partial blocks and tiles.
        for (rows, inputs, outputs) in [(1, 3, 1), (5, 37, 11), (13, 64, 70), (6, 9, 64), (17, 130, 33), (256, 40, 90)]
        {
            let x: Vec<i8> = (0..rows * inputs).map(|_| byte(&mut rng)).collect();
            let w: Vec<i8> = (0..outputs * inputs).map(|_| byte(&mut rng)).collect();
            let p = PackedI8::pack(&w, outputs, inputs);
            let stride = p.row_stride();
            let mut xu = vec![ZERO_POINT as u8; rows * stride];
            for r in 0..rows {
                for k in 0..inputs {
                    xu[r * stride + k] = (i32::from(x[r * inputs + k]) + ZERO_POINT) as u8;
                }
            }
            let want = reference(&x, &w, rows, inputs, outputs);
            let mut fast = vec![0; rows * outputs];
            p.product(&xu, rows, &mut fast);
            assert_eq!(fast, want, "{rows}×{inputs}×{outputs}");
            let mut portable = vec![0; rows * outputs];
            p.product_portable(&xu, rows, &mut portable);
            assert_eq!(portable, want, "portable {rows}×{inputs}×{outputs}");
        }
    }

    #[test]
    fn inputs_are_quantized_symmetrically_around_the_zero_point() {
        let p = PackedI8::pack(&[1, 1, 1, 1, 1], 1, 5);
        let mut out = Vec::new();
        p.quantize_input(&[0.0, 1.0, -1.0, 100.0, -100.0], 1, 0.5, &mut out);
        assert_eq!(out, vec![128, 130, 126, 255, 1, 128, 128, 128]);

        // Rows long enough for the vector path round like the portable one, ties to even.
        let mut rng = Rng::new(9);
        let inputs = 37;
        let p = PackedI8::pack(&vec![1; 3 * inputs], 3, inputs);
        let mut x: Vec<f32> = (0..2 * inputs).map(|_| rng.normal() as f32 * 3.0).collect();
        x[5] = 0.25;
        x[6] = 0.75;
        p.quantize_input(&x, 2, 0.5, &mut out);
        let mut want = vec![0u8; inputs];
        for (r, row) in x.chunks_exact(inputs).enumerate() {
            quantize_row(row, 2.0, &mut want);
            assert_eq!(&out[r * p.row_stride()..r * p.row_stride() + inputs], &want[..], "row {r}");
        }
        assert_eq!((out[5], out[6]), (128, 130), "0.5 and 1.5 go to the even 0 and 2");
    }
}
