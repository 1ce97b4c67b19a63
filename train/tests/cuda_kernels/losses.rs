//! Reductions (bias gradients) and the loss kernels against the CPU engine's.

use candle_core::{Device, Tensor};
use shoal_train::backend::cuda::launch;
use shoal_train::backend::kernels;

use crate::emulation::emulator;
use crate::{Checks, launches, values};

type ColumnSum = unsafe extern "C" fn(*const f32, *mut f32, i32, i32, i32);
type ChannelSum = unsafe extern "C" fn(*const f32, *mut f32, i32, i32, i32, i32);
type PlaneSum = unsafe extern "C" fn(*const f32, *mut f32, i32, i32);
type SoftmaxCrossEntropy = unsafe extern "C" fn(*const f32, *const u32, *mut f32, *mut f32, *mut i32, i32, i32, f32);
type SquaredError = unsafe extern "C" fn(*const f32, *const f32, *mut f32, *mut f32, i32, i32, f32);

/// Reference: `kernels::bias_grad`, overwriting and accumulating.
#[test]
fn column_sum_matches_the_bias_gradient() {
    let mut checks = Checks::new("column_sum");
    let emu = emulator();
    let (rows, cols) = (5usize, 7usize);
    let (dz, start) = (values(rows * cols, 11), values(cols, 12));
    for accumulate in [false, true] {
        let mut want = start.clone();
        kernels::bias_grad(&dz, &mut want, accumulate).expect("bias grad");
        for dims in launches(launch::per_column(cols)) {
            let mut gb = start.clone();
            let p = gb.as_mut_ptr();
            emu.launch("column_sum", dims, |f: ColumnSum| unsafe {
                f(dz.as_ptr(), p, rows as i32, cols as i32, i32::from(accumulate))
            });
            checks.exact(&format!("accumulate {accumulate} {dims:?}"), &gb, &want);
        }
    }
}

/// Reference: candle's sum over batch, height and width (what autograd gives a conv bias), and
/// the same sum in f64.
#[test]
fn channel_sum_matches_the_conv_bias_gradient() {
    let mut checks = Checks::new("channel_sum");
    let emu = emulator();
    let (batch, channels, h, w) = (3usize, 4usize, 5usize, 3usize);
    let hw = h * w;
    let (dz, start) = (values(batch * channels * hw, 13), values(channels, 14));
    let t = Tensor::from_vec(dz.clone(), (batch, channels, h, w), &Device::Cpu).expect("dz");
    let candle = t.sum((0, 2, 3)).and_then(|s| s.to_vec1::<f32>()).expect("candle sum");
    for accumulate in [false, true] {
        let f64_sum: Vec<f32> = (0..channels)
            .map(|c| {
                let s: f64 = (0..batch)
                    .flat_map(|n| (0..hw).map(move |i| (n, i)))
                    .map(|(n, i)| f64::from(dz[(n * channels + c) * hw + i]))
                    .sum();
                (s + if accumulate { f64::from(start[c]) } else { 0.0 }) as f32
            })
            .collect();
        let candle_want: Vec<f32> =
            candle.iter().zip(&start).map(|(s, g)| if accumulate { s + g } else { *s }).collect();
        for dims in launches(launch::per_column(channels)) {
            let mut gb = start.clone();
            let p = gb.as_mut_ptr();
            emu.launch("channel_sum", dims, |f: ChannelSum| unsafe {
                f(dz.as_ptr(), p, batch as i32, channels as i32, hw as i32, i32::from(accumulate))
            });
            checks.close(&format!("accumulate {accumulate} vs f64 {dims:?}"), &gb, &f64_sum, 1e-5, 1e-5);
            checks.close(&format!("accumulate {accumulate} vs candle {dims:?}"), &gb, &candle_want, 1e-5, 1e-5);
        }
    }
}

/// Reference: candle's conv bias gradient again, reached in two steps: plane_sum over each
/// (image, channel) plane, then column_sum over the batch × channels partial sums.
#[test]
fn plane_sum_then_column_sum_is_the_conv_bias_gradient() {
    let mut checks = Checks::new("plane_sum");
    let emu = emulator();
    let (batch, channels, h, w) = (3usize, 4usize, 5usize, 3usize);
    let (planes, hw) = (batch * channels, h * w);
    let dz = values(planes * hw, 19);
    let t = Tensor::from_vec(dz.clone(), (batch, channels, h, w), &Device::Cpu).expect("dz");
    let want_planes = t.sum((2, 3)).and_then(|s| s.flatten_all()?.to_vec1::<f32>()).expect("plane sums");
    let want = t.sum((0, 2, 3)).and_then(|s| s.to_vec1::<f32>()).expect("channel sums");
    for dims in launches(launch::per_column(planes)) {
        let mut partial = vec![f32::NAN; planes];
        let pp = partial.as_mut_ptr();
        emu.launch("plane_sum", dims, |f: PlaneSum| unsafe { f(dz.as_ptr(), pp, planes as i32, hw as i32) });
        checks.close(&format!("planes {dims:?}"), &partial, &want_planes, 1e-6, 1e-6);
        let mut gb = vec![f32::NAN; channels];
        let gp = gb.as_mut_ptr();
        emu.launch("column_sum", dims, |f: ColumnSum| unsafe {
            f(partial.as_ptr(), gp, batch as i32, channels as i32, 0)
        });
        checks.close(&format!("bias gradient {dims:?}"), &gb, &want, 1e-5, 1e-5);
    }
}

/// Reference: `kernels::softmax_cross_entropy`; the host sums the per-row losses in f64 and counts
/// the correct rows, as the backend will.
#[test]
fn softmax_cross_entropy_matches_the_cpu_loss() {
    let mut checks = Checks::new("softmax_cross_entropy");
    let emu = emulator();
    let (rows, classes) = (6usize, 7usize);
    let mut logits: Vec<f32> = values(rows * classes, 15).iter().map(|v| v * 3.0).collect();
    // Row 1 ties classes 2 and 5 for the maximum (the first wins); row 4 is large, to need the
    // max subtraction.
    logits[classes + 2] = 9.0;
    logits[classes + 5] = 9.0;
    for v in &mut logits[4 * classes..5 * classes] {
        *v += 80.0;
    }
    let labels: [u32; 6] = [0, 5, 6, 3, 1, 2];
    let mut labels_right = labels;
    labels_right[1] = 2; // the first of the tied maxima
    for labels in [labels, labels_right] {
        for scale in [1.0f32, 0.125] {
            let mut want_grad = vec![0f32; rows * classes];
            let (want_loss, want_correct) =
                kernels::softmax_cross_entropy(&logits, &labels, classes, scale, &mut want_grad).expect("ce");
            for dims in launches(launch::per_row(rows)) {
                let (mut grad, mut loss, mut correct) =
                    (vec![f32::NAN; rows * classes], vec![f32::NAN; rows], vec![-1; rows]);
                let (gp, lp, cp) = (grad.as_mut_ptr(), loss.as_mut_ptr(), correct.as_mut_ptr());
                emu.launch("softmax_cross_entropy", dims, |f: SoftmaxCrossEntropy| unsafe {
                    f(logits.as_ptr(), labels.as_ptr(), gp, lp, cp, rows as i32, classes as i32, scale)
                });
                let what = format!("labels {labels:?} scale {scale} {dims:?}");
                checks.exact(&format!("{what} grad"), &grad, &want_grad);
                let loss_sum: f64 = loss.iter().map(|&l| f64::from(l)).sum();
                assert!(
                    (loss_sum - want_loss).abs() <= 1e-6 * want_loss.abs(),
                    "{what}: loss {loss_sum} vs {want_loss}"
                );
                checks.equal(&format!("{what} correct"), correct.iter().sum::<i32>() as usize, want_correct);
                assert!(correct.iter().all(|&c| c == 0 || c == 1), "{what}: {correct:?}");
                // Row 1 ties classes 2 and 5: only the first is the prediction.
                checks.equal(&format!("{what} tie"), correct[1], i32::from(labels[1] == 2));
            }
        }
    }
}

/// A label out of range (the host rejects those first) gives a NaN loss and a zero gradient row,
/// never a read past the row.
#[test]
fn softmax_cross_entropy_flags_labels_out_of_range() {
    let mut checks = Checks::new("softmax_cross_entropy label range");
    let emu = emulator();
    let (rows, classes) = (2usize, 3usize);
    let logits = values(rows * classes, 16);
    let labels = [1u32, 3];
    let (mut grad, mut loss, mut correct) = (vec![f32::NAN; 6], vec![0f32; 2], vec![-1; 2]);
    let (gp, lp, cp) = (grad.as_mut_ptr(), loss.as_mut_ptr(), correct.as_mut_ptr());
    emu.launch("softmax_cross_entropy", launch::per_row(rows), |f: SoftmaxCrossEntropy| unsafe {
        f(logits.as_ptr(), labels.as_ptr(), gp, lp, cp, rows as i32, classes as i32, 1.0)
    });
    assert!(loss[0].is_finite() && loss[1].is_nan(), "{loss:?}");
    checks.exact("zeroed row", &grad[3..], &[0.0; 3]);
    checks.equal("correct", correct[1], 0);
}

/// Reference: `kernels::squared_error`; the host sums the per-row losses in f64.
#[test]
fn squared_error_matches_the_cpu_loss() {
    let mut checks = Checks::new("squared_error");
    let emu = emulator();
    for (rows, cols) in [(5usize, 7usize), (9, 1)] {
        let (pred, target) = (values(rows * cols, 17), values(rows * cols, 18));
        for scale in [1.0f32, 0.2] {
            let mut want_grad = vec![0f32; rows * cols];
            let want_loss = kernels::squared_error(&pred, &target, scale, &mut want_grad).expect("mse");
            for dims in launches(launch::per_row(rows)) {
                let (mut grad, mut loss) = (vec![f32::NAN; rows * cols], vec![f32::NAN; rows]);
                let (gp, lp) = (grad.as_mut_ptr(), loss.as_mut_ptr());
                emu.launch("squared_error", dims, |f: SquaredError| unsafe {
                    f(pred.as_ptr(), target.as_ptr(), gp, lp, rows as i32, cols as i32, scale)
                });
                let what = format!("{rows}x{cols} scale {scale} {dims:?}");
                checks.exact(&format!("{what} grad"), &grad, &want_grad);
                let loss_sum: f64 = loss.iter().map(|&l| f64::from(l)).sum();
                assert!((loss_sum - want_loss).abs() <= 1e-6 * want_loss, "{what}: loss {loss_sum} vs {want_loss}");
                checks.equal(&format!("{what} loss finite"), loss.iter().all(|l| l.is_finite()), true);
            }
        }
    }
}
