//! Matrix products of the engine's row-major tensors as column-major BLAS calls. A row-major
//! r×c matrix is, to column-major BLAS, its transpose (c×r, leading dimension c), so each product
//! is planned on the transposes. Pure host logic: the plans are checked here against row-major
//! arithmetic by a reference column-major GEMM, and the CUDA backend hands them to cuBLAS.

/// Whether BLAS reads an operand as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    N,
    T,
}

/// One column-major `C = alpha · op(A) · op(B) + beta · C`, with C m×n and the inner size k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmPlan {
    pub op_a: Op,
    pub op_b: Op,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
}

impl GemmPlan {
    /// Values BLAS reads of A in `batch` products `stride` values apart (column-major: the last
    /// column of the last product ends `rows` values into it), for copies of the operand such as
    /// the bf16 ones of `training.precision = "bf16"`.
    pub fn a_len(&self, batch: usize, stride: usize) -> usize {
        let (rows, cols) = match self.op_a {
            Op::N => (self.m, self.k),
            Op::T => (self.k, self.m),
        };
        operand_len(rows, cols, self.lda, batch, stride)
    }

    /// Values BLAS reads of B (see [`GemmPlan::a_len`]).
    pub fn b_len(&self, batch: usize, stride: usize) -> usize {
        let (rows, cols) = match self.op_b {
            Op::N => (self.k, self.n),
            Op::T => (self.n, self.k),
        };
        operand_len(rows, cols, self.ldb, batch, stride)
    }
}

fn operand_len(rows: usize, cols: usize, ld: usize, batch: usize, stride: usize) -> usize {
    if rows == 0 || cols == 0 || batch == 0 {
        return 0;
    }
    (batch - 1) * stride + (cols - 1) * ld + rows
}

/// Which operands of the engine's product sit in BLAS's A and B slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slots {
    /// A is the engine's first operand, B its second.
    InOrder,
    /// A is the engine's second operand, B its first.
    Swapped,
}

/// Forward of a linear layer: `y (rows×outputs) = x (rows×inputs) · wᵀ`, w outputs×inputs.
/// BLAS computes yᵀ = w · xᵀ: A = w, B = x (the engine's operands are (x, w)).
pub fn linear_forward(rows: usize, inputs: usize, outputs: usize) -> (GemmPlan, Slots) {
    let plan =
        GemmPlan { op_a: Op::T, op_b: Op::N, m: outputs, n: rows, k: inputs, lda: inputs, ldb: inputs, ldc: outputs };
    (plan, Slots::Swapped)
}

/// Input gradient: `dx (rows×inputs) = dz (rows×outputs) · w`. BLAS computes dxᵀ = wᵀ · dzᵀ:
/// A = w, B = dz (the engine's operands are (dz, w)).
pub fn linear_input_grad(rows: usize, inputs: usize, outputs: usize) -> (GemmPlan, Slots) {
    let plan =
        GemmPlan { op_a: Op::N, op_b: Op::N, m: inputs, n: rows, k: outputs, lda: inputs, ldb: outputs, ldc: inputs };
    (plan, Slots::Swapped)
}

/// Weight gradient: `gw (outputs×inputs) = dzᵀ · x`. BLAS computes gwᵀ = xᵀ · dz: A = x, B = dz
/// (the engine's operands are (x, dz)).
pub fn linear_weight_grad(rows: usize, inputs: usize, outputs: usize) -> (GemmPlan, Slots) {
    let plan =
        GemmPlan { op_a: Op::N, op_b: Op::T, m: inputs, n: outputs, k: rows, lda: inputs, ldb: outputs, ldc: inputs };
    (plan, Slots::InOrder)
}

/// Sizes of a convolution lowered to products per image: the kernel as a
/// `out_channels × patch` matrix (patch = in_channels·k²) and each image's columns (from im2col)
/// as a `patch × pixels` matrix (pixels = output height·width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvDims {
    pub out_channels: usize,
    pub patch: usize,
    pub pixels: usize,
}

impl ConvDims {
    /// Values of one image's columns.
    pub fn cols_per_image(&self) -> usize {
        self.patch * self.pixels
    }

    /// Values of one image's output.
    pub fn out_per_image(&self) -> usize {
        self.out_channels * self.pixels
    }
}

/// Convolution forward per image: `out (oc×pixels) = w (oc×patch) · cols (patch×pixels)`. BLAS
/// computes outᵀ = colsᵀ · wᵀ: A = cols, B = w (the engine's operands are (w, cols)).
pub fn conv_forward(d: ConvDims) -> (GemmPlan, Slots) {
    let plan = GemmPlan {
        op_a: Op::N,
        op_b: Op::N,
        m: d.pixels,
        n: d.out_channels,
        k: d.patch,
        lda: d.pixels,
        ldb: d.patch,
        ldc: d.pixels,
    };
    (plan, Slots::Swapped)
}

/// Kernel gradient per image: `gw (oc×patch) (+)= dy (oc×pixels) · colsᵀ`. BLAS computes
/// gwᵀ = cols · dyᵀ: A = cols, B = dy (the engine's operands are (dy, cols)).
pub fn conv_weight_grad(d: ConvDims) -> (GemmPlan, Slots) {
    let plan = GemmPlan {
        op_a: Op::T,
        op_b: Op::N,
        m: d.patch,
        n: d.out_channels,
        k: d.pixels,
        lda: d.pixels,
        ldb: d.pixels,
        ldc: d.patch,
    };
    (plan, Slots::Swapped)
}

/// Column gradient per image: `dcols (patch×pixels) = wᵀ · dy (oc×pixels)`. BLAS computes
/// dcolsᵀ = dyᵀ · w: A = dy, B = w (the engine's operands are (w, dy)).
pub fn conv_cols_grad(d: ConvDims) -> (GemmPlan, Slots) {
    let plan = GemmPlan {
        op_a: Op::N,
        op_b: Op::T,
        m: d.pixels,
        n: d.patch,
        k: d.out_channels,
        lda: d.pixels,
        ldb: d.patch,
        ldc: d.pixels,
    };
    (plan, Slots::Swapped)
}

/// A plain column-major GEMM on host slices: the reference the plans are checked with.
pub fn reference_gemm(p: &GemmPlan, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    let at = |i: usize, l: usize| match p.op_a {
        Op::N => a[i + l * p.lda],
        Op::T => a[l + i * p.lda],
    };
    let bt = |l: usize, j: usize| match p.op_b {
        Op::N => b[l + j * p.ldb],
        Op::T => b[j + l * p.ldb],
    };
    for j in 0..p.n {
        for i in 0..p.m {
            let dot: f32 = (0..p.k).map(|l| at(i, l) * bt(l, j)).sum();
            let out = &mut c[i + j * p.ldc];
            *out = alpha * dot + if beta == 0.0 { 0.0 } else { beta * *out };
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn operand_lengths_cover_exactly_what_blas_reads() {
        let p = GemmPlan { op_a: Op::T, op_b: Op::N, m: 3, n: 4, k: 5, lda: 5, ldb: 6, ldc: 3 };
        // A is k x m = 5 x 3 with lda 5: 15 values; B is k x n = 5 x 4 in columns of 6: 3*6 + 5.
        assert_eq!((p.a_len(1, 0), p.b_len(1, 0)), (15, 23));
        // Two products 40 values apart read the second one's extent past the first's start.
        assert_eq!(p.a_len(2, 40), 55);
        let empty = GemmPlan { k: 0, ..p };
        assert_eq!(empty.a_len(3, 10), 0);
    }

    use super::*;

    /// Row-major `r×c` matrix from a formula.
    fn matrix(r: usize, c: usize, seed: f32) -> Vec<f32> {
        (0..r * c).map(|i| ((i as f32 + 1.0) * seed).sin()).collect()
    }

    /// Row-major product `a (r×k) · b (k×c)`, with either side transposed on the way in.
    fn product(a: &[f32], b: &[f32], r: usize, k: usize, c: usize, at: bool, bt: bool) -> Vec<f32> {
        let ga = |i: usize, l: usize| if at { a[l * r + i] } else { a[i * k + l] };
        let gb = |l: usize, j: usize| if bt { b[j * k + l] } else { b[l * c + j] };
        (0..r * c).map(|x| (0..k).map(|l| ga(x / c, l) * gb(l, x % c)).sum()).collect()
    }

    fn run(plan: (GemmPlan, Slots), first: &[f32], second: &[f32], out: usize) -> Vec<f32> {
        let (p, slots) = plan;
        let (a, b) = match slots {
            Slots::InOrder => (first, second),
            Slots::Swapped => (second, first),
        };
        let mut c = vec![0.0; out];
        reference_gemm(&p, 1.0, a, b, 0.0, &mut c);
        c
    }

    fn close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "[{i}] {g} vs {w}");
        }
    }

    #[test]
    fn linear_plans_compute_the_row_major_products() {
        let (rows, inputs, outputs) = (5, 7, 3);
        let x = matrix(rows, inputs, 0.3);
        let w = matrix(outputs, inputs, 0.7);
        let dz = matrix(rows, outputs, 1.1);
        close(
            &run(linear_forward(rows, inputs, outputs), &x, &w, rows * outputs),
            &product(&x, &w, rows, inputs, outputs, false, true),
        );
        close(
            &run(linear_input_grad(rows, inputs, outputs), &dz, &w, rows * inputs),
            &product(&dz, &w, rows, outputs, inputs, false, false),
        );
        close(
            &run(linear_weight_grad(rows, inputs, outputs), &x, &dz, outputs * inputs),
            &product(&dz, &x, outputs, rows, inputs, true, false),
        );
    }

    #[test]
    fn conv_plans_compute_the_per_image_products() {
        let d = ConvDims { out_channels: 4, patch: 6, pixels: 9 };
        let w = matrix(d.out_channels, d.patch, 0.2);
        let cols = matrix(d.patch, d.pixels, 0.9);
        let dy = matrix(d.out_channels, d.pixels, 1.3);
        let (oc, patch, px) = (d.out_channels, d.patch, d.pixels);
        close(&run(conv_forward(d), &w, &cols, d.out_per_image()), &product(&w, &cols, oc, patch, px, false, false));
        close(&run(conv_weight_grad(d), &dy, &cols, oc * patch), &product(&dy, &cols, oc, px, patch, false, true));
        close(&run(conv_cols_grad(d), &w, &dy, d.cols_per_image()), &product(&w, &dy, patch, oc, px, true, false));
    }

    #[test]
    fn beta_one_accumulates_into_the_output() {
        let (p, _) = linear_weight_grad(2, 3, 2);
        let (x, dz) = (matrix(2, 3, 0.5), matrix(2, 2, 0.4));
        let mut once = vec![0.0; 6];
        reference_gemm(&p, 1.0, &x, &dz, 0.0, &mut once);
        let mut twice = once.clone();
        reference_gemm(&p, 1.0, &x, &dz, 1.0, &mut twice);
        close(&twice, &once.iter().map(|v| 2.0 * v).collect::<Vec<_>>());
    }
}
