//! Pooling over non-overlapping `size`×`size` windows of NCHW planes, on host slices: the
//! definitions every backend's pooling matches. The output is `h / size` × `w / size` (rounded
//! down); rows and columns cut off by the floor take no part. Max pooling keeps the window's
//! first maximum in row-major order, and its backward routes the window's gradient to exactly
//! that pixel (as PyTorch does); average pooling spreads it evenly.

use shoal_common::spec::PoolKind;

/// Sizes of a pooling: `planes` (batch·channels) planes of `h`×`w`, windows of `size`.
#[derive(Clone, Copy, Debug)]
pub struct PoolDims {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub size: usize,
}

impl PoolDims {
    fn out(&self) -> (usize, usize) {
        (self.h / self.size, self.w / self.size)
    }

    /// Values of the output.
    pub fn out_len(&self) -> usize {
        let (oh, ow) = self.out();
        self.planes * oh * ow
    }

    /// The input index of every pixel of window (`oy`, `ox`) of plane `p`, row-major.
    fn window(&self, p: usize, oy: usize, ox: usize) -> impl Iterator<Item = usize> + '_ {
        let base = p * self.h * self.w;
        (0..self.size)
            .flat_map(move |a| (0..self.size).map(move |b| base + (oy * self.size + a) * self.w + ox * self.size + b))
    }

    fn windows(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let (oh, ow) = self.out();
        (0..self.planes).flat_map(move |p| (0..oh).flat_map(move |oy| (0..ow).map(move |ox| (p, oy, ox))))
    }
}

/// `f32(1 / size²)`, the average's weight.
fn weight(size: usize) -> f32 {
    (1.0 / (size * size) as f64) as f32
}

/// The index of the window's first maximum.
fn argmax(x: &[f32], mut window: impl Iterator<Item = usize>) -> usize {
    let first = window.next().unwrap_or(0);
    window.fold(first, |best, i| if x[best] < x[i] { i } else { best })
}

/// The pooled planes of `x`.
pub fn forward(kind: PoolKind, d: PoolDims, x: &[f32]) -> Vec<f32> {
    let k = weight(d.size);
    d.windows()
        .map(|(p, oy, ox)| match kind {
            PoolKind::Max => x[argmax(x, d.window(p, oy, ox))],
            PoolKind::Avg => d.window(p, oy, ox).map(|i| x[i]).sum::<f32>() * k,
        })
        .collect()
}

/// The input gradient for output gradient `dy`, given the input `x`.
pub fn backward(kind: PoolKind, d: PoolDims, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0f32; x.len()];
    let k = weight(d.size);
    for ((p, oy, ox), &g) in d.windows().zip(dy) {
        match kind {
            PoolKind::Max => dx[argmax(x, d.window(p, oy, ox))] = g,
            PoolKind::Avg => d.window(p, oy, ox).for_each(|i| dx[i] = g * k),
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pooling_routes_the_gradient_to_the_first_maximum_only() {
        // One 2x2 window with a single maximum (3), one with a tie (5, 5): the first gets dy.
        let x = [1.0f32, 3.0, 0.0, 5.0, 2.0, 0.5, 5.0, 1.0];
        let d = PoolDims { planes: 1, h: 2, w: 4, size: 2 };
        assert_eq!(forward(PoolKind::Max, d, &x), vec![3.0, 5.0]);
        assert_eq!(backward(PoolKind::Max, d, &x, &[8.0, 8.0]), vec![0.0, 8.0, 0.0, 8.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn cut_off_rows_and_columns_get_no_gradient() {
        let d = PoolDims { planes: 1, h: 3, w: 3, size: 2 };
        let x: Vec<f32> = (0..9).map(|i| i as f32).collect();
        assert_eq!(forward(PoolKind::Avg, d, &x), vec![2.0]);
        let dx = backward(PoolKind::Avg, d, &x, &[4.0]);
        assert_eq!(dx, vec![1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(backward(PoolKind::Max, d, &x, &[4.0]), vec![0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
