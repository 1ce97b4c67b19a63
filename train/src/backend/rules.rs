//! Update rules on plain slices, shared by workers (through in-place tensor ops) and parameter
//! servers. They follow PyTorch's definitions of SGD (coupled weight decay, momentum without
//! dampening, optional Nesterov) and AdamW (decoupled weight decay, bias-corrected moments).

/// One SGD step. `buf` is the momentum buffer (ignored when `momentum` is 0); `first` marks the
/// first step, where the buffer is initialised with the gradient.
#[allow(clippy::too_many_arguments)]
pub fn sgd(
    w: &mut [f32],
    g: &[f32],
    buf: &mut [f32],
    lr: f32,
    momentum: f32,
    nesterov: bool,
    weight_decay: f32,
    first: bool,
) {
    if momentum == 0.0 {
        for (w, &g) in w.iter_mut().zip(g) {
            let d = g + weight_decay * *w;
            *w -= lr * d;
        }
        return;
    }
    for ((w, &g), b) in w.iter_mut().zip(g).zip(buf.iter_mut()) {
        let d = g + weight_decay * *w;
        *b = if first { d } else { momentum * *b + d };
        let step = if nesterov { d + momentum * *b } else { *b };
        *w -= lr * step;
    }
}

/// Moment updates of AdamW for step `t` (1-based).
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub t: u64,
}

/// One AdamW step over parameters `w` with gradient `g` and moments `m`, `v`.
pub fn adamw(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamStep) {
    let bc1 = 1.0 - f64::from(s.beta1).powi(s.t as i32);
    let bc2 = 1.0 - f64::from(s.beta2).powi(s.t as i32);
    let step_size = (f64::from(s.lr) / bc1) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    let decay = 1.0 - s.lr * s.weight_decay;
    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *w *= decay;
        *m = s.beta1 * *m + (1.0 - s.beta1) * g;
        *v = s.beta2 * *v + (1.0 - s.beta2) * g * g;
        let denom = v.sqrt() / bc2_sqrt + s.eps;
        *w -= step_size * *m / denom;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_with_momentum_follows_the_recurrence() {
        // Reference: b1 = g1, w1 = w0 - lr b1; b2 = mu b1 + g2, w2 = w1 - lr b2.
        let mut w = [1.0f32];
        let mut b = [0.0f32];
        sgd(&mut w, &[0.5], &mut b, 0.1, 0.9, false, 0.0, true);
        assert!((w[0] - 0.95).abs() < 1e-7);
        sgd(&mut w, &[0.5], &mut b, 0.1, 0.9, false, 0.0, false);
        assert!((b[0] - 0.95).abs() < 1e-7);
        assert!((w[0] - (0.95 - 0.095)).abs() < 1e-7);
    }

    #[test]
    fn adamw_first_step_moves_by_lr() {
        // With bias correction the first update is lr · g/|g| (plus decay), whatever the scale of g.
        let mut w = [1.0f32, -2.0];
        let (mut m, mut v) = ([0.0f32; 2], [0.0f32; 2]);
        let s = AdamStep { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-12, weight_decay: 0.0, t: 1 };
        adamw(&mut w, &[1000.0, -0.001], &mut m, &mut v, &s);
        assert!((w[0] - 0.99).abs() < 1e-6, "{}", w[0]);
        assert!((w[1] - -1.99).abs() < 1e-6, "{}", w[1]);
    }
}
