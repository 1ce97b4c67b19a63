//! Launch configurations for the kernels in `kernels.cu`, and the checks on the sizes passed to
//! them. Every kernel walks its index space with a grid-stride loop, so these choose speed, not
//! correctness: enough blocks to fill the device, capped so that a launch never has more threads
//! than the kernels' `unsigned int` indices allow.

/// Threads per block for elementwise kernels.
pub const BLOCK: u32 = 256;

/// Threads per block for kernels with one thread per row or column, which are fewer.
pub const ROW_BLOCK: u32 = 128;

/// Most blocks in a launch: 32 blocks of 256 threads for each of 128 multiprocessors, more than
/// an H100 or H200 holds at once; larger inputs take more than one element per thread.
pub const MAX_GRID: u32 = 4096;

/// The largest size or element count a kernel takes (its `int` arguments).
pub const MAX_SIZE: usize = i32::MAX as usize;

/// A one-dimensional launch: `grid` blocks of `block` threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchDims {
    pub grid: u32,
    pub block: u32,
}

impl LaunchDims {
    /// Threads in the launch.
    pub fn threads(self) -> u64 {
        u64::from(self.grid) * u64::from(self.block)
    }
}

/// A size too large for the kernels' `int` arguments.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} of {value} exceeds the CUDA kernels' limit of {MAX_SIZE}")]
pub struct SizeError {
    pub what: &'static str,
    pub value: usize,
}

/// `value` as a kernel's `int` argument (a size, or a product of sizes such as an element count,
/// which must also fit).
pub fn int_arg(what: &'static str, value: usize) -> Result<i32, SizeError> {
    i32::try_from(value).map_err(|_| SizeError { what, value })
}

fn covering(items: usize, block: u32) -> LaunchDims {
    let blocks = items.div_ceil(block as usize).clamp(1, MAX_GRID as usize);
    LaunchDims { grid: blocks as u32, block }
}

/// One thread per element of `n` (elementwise kernels, im2col, col2im, pooling): blocks of
/// [`BLOCK`] threads, at least one block and at most [`MAX_GRID`].
pub fn elementwise(n: usize) -> LaunchDims {
    covering(n, BLOCK)
}

/// One thread per row (`softmax_cross_entropy`, `squared_error`).
pub fn per_row(rows: usize) -> LaunchDims {
    covering(rows, ROW_BLOCK)
}

/// One thread per column, channel or plane (`column_sum`, `channel_sum`, `plane_sum`).
pub fn per_column(columns: usize) -> LaunchDims {
    covering(columns, ROW_BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elementwise_covers_small_inputs_with_whole_blocks() {
        assert_eq!(elementwise(0), LaunchDims { grid: 1, block: BLOCK });
        assert_eq!(elementwise(1), LaunchDims { grid: 1, block: BLOCK });
        assert_eq!(elementwise(256), LaunchDims { grid: 1, block: BLOCK });
        assert_eq!(elementwise(257), LaunchDims { grid: 2, block: BLOCK });
        assert_eq!(elementwise(784 * 128).grid, 392);
    }

    #[test]
    fn large_launches_are_capped_within_the_index_range() {
        for n in [MAX_GRID as usize * BLOCK as usize + 1, MAX_SIZE, usize::MAX] {
            let d = elementwise(n);
            assert_eq!(d.grid, MAX_GRID);
            // i < n < 2^31 and i + stride must not wrap an unsigned int.
            assert!(d.threads() <= 1 << 31);
        }
    }

    #[test]
    fn row_and_column_launches_give_each_a_thread() {
        assert_eq!(per_row(5), LaunchDims { grid: 1, block: ROW_BLOCK });
        assert_eq!(per_row(8192), LaunchDims { grid: 64, block: ROW_BLOCK });
        assert_eq!(per_column(129).grid, 2);
        for rows in [1, 127, 128, 129, 1000] {
            assert!(per_row(rows).threads() >= rows as u64);
        }
    }

    #[test]
    fn int_arg_rejects_sizes_past_i32() {
        assert_eq!(int_arg("rows", 7), Ok(7));
        assert_eq!(int_arg("elements", MAX_SIZE), Ok(i32::MAX));
        let err = int_arg("elements", MAX_SIZE + 1).expect_err("too large");
        assert_eq!(err, SizeError { what: "elements", value: MAX_SIZE + 1 });
        assert!(err.to_string().starts_with("elements of 2147483648 exceeds"));
    }
}
