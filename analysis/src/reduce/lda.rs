//! Linear discriminant analysis for the `lda` transform: the directions along which the training
//! classes' means differ most relative to the spread within each class.

use super::linalg::{generalized_eigen, mean, scatter};
use super::pca::Shares;
use super::transform::Projection;
use crate::error::{AnalysisError, Result};

/// The ridge added to LDA's within-class scatter, relative to its mean diagonal entry: enough to
/// factor a scatter made singular by a constant or duplicated column, too little to move the
/// discriminants of well-posed data.
pub const LDA_RIDGE: f64 = 1e-6;

/// LDA: the directions v maximising between-class over within-class variance, the leading
/// solutions of S_b v = λ S_w v, where S_w is the pooled within-class scatter and S_b the
/// row-weighted scatter of the class means, both over n.
pub(super) fn discriminant(
    field: &str,
    x: &[f32],
    rows: usize,
    d: usize,
    labels: &[u32],
    classes: usize,
    components: Option<usize>,
) -> Result<Projection> {
    if classes < 2 {
        return Err(AnalysisError::invalid(field, format!("lda needs at least 2 classes, the task has {classes}")));
    }
    let most = (classes - 1).min(d);
    if let Some(k) = components.filter(|&k| k > most) {
        return Err(AnalysisError::invalid(
            format!("{field}.components"),
            format!("lda gives at most {most} components (classes − 1 = {}, inputs = {d}), {k} asked", classes - 1),
        ));
    }
    if labels.len() != rows {
        return Err(AnalysisError::invalid("labels", format!("{} labels for {rows} rows", labels.len())));
    }
    if let Some(r) = labels.iter().position(|&c| c as usize >= classes) {
        return Err(AnalysisError::invalid("labels", format!("row {r} has class {} of {classes}", labels[r])));
    }
    let mut counts = vec![0usize; classes];
    let mut means = vec![0.0; classes * d];
    for (row, &c) in x.chunks_exact(d).zip(labels) {
        counts[c as usize] += 1;
        means[c as usize * d..][..d].iter_mut().zip(row).for_each(|(m, &v)| *m += f64::from(v));
    }
    if counts.iter().filter(|&&n| n > 0).count() < 2 {
        return Err(AnalysisError::invalid("labels", "the training rows hold fewer than 2 classes"));
    }
    for (m, &n) in means.chunks_exact_mut(d).zip(&counts) {
        m.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    }
    let overall = mean(x, rows, d);
    let n = rows as f64;
    let mut within = scatter(x, d, |r| &means[labels[r] as usize * d..][..d]);
    within.iter_mut().for_each(|w| *w /= n);
    let mut between = vec![0.0; d * d];
    for (m, &c) in means.chunks_exact(d).zip(&counts) {
        let w = c as f64 / n;
        for i in 0..d {
            for j in 0..d {
                between[i * d + j] += w * (m[i] - overall[i]) * (m[j] - overall[j]);
            }
        }
    }
    let e = generalized_eigen(&between, &within, d, LDA_RIDGE)?;
    let k = components.unwrap_or(most);
    Ok(Shares::of(&e.values).projection(overall, (0..k).flat_map(|j| e.vector(j)).collect(), k))
}

#[cfg(test)]
mod tests {
    use crate::reduce::spec::TransformSpec;
    use crate::reduce::testing::gaussian;
    use crate::reduce::transform::Fitted;

    #[test]
    fn lda_recovers_the_separating_direction() {
        // Two classes with means 0 and Δ = (1, 1, 1) and shared covariance Σ = diag(1, 4, 1/4):
        // the population discriminant is Σ⁻¹ Δ = (1, 1/4, 4), up to scale and sign.
        let (n, d) = (3000, 3);
        let mix = [1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.5];
        let mut x = gaussian(2 * n, d, &mix, 21);
        x[n * d..].iter_mut().for_each(|v| *v += 1.0);
        let labels: Vec<u32> = (0..2 * n).map(|r| u32::from(r >= n)).collect();
        let lda = TransformSpec::Lda { components: None };
        let f = Fitted::fit(&lda, &x, 2 * n, d, Some(&labels), 2).expect("lda");
        assert_eq!(f.outputs(), 1);
        let v = &f.projection().expect("projection").basis;
        let want = [1.0, 0.25, 4.0];
        let cos = v.iter().zip(want).map(|(a, b)| a * b).sum::<f64>()
            / (v.iter().map(|a| a * a).sum::<f64>() * want.iter().map(|b| b * b).sum::<f64>()).sqrt();
        assert!(cos.abs() > 0.999, "cos = {cos}");
        // The output has unit pooled within-class variance (divisor n).
        let out = f.apply(&x, 2 * n);
        let within: f64 = [&out[..n], &out[n..]]
            .iter()
            .map(|o| {
                let m = o.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
                o.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>()
            })
            .sum::<f64>()
            / (2 * n) as f64;
        assert!((within - 1.0).abs() < 1e-4, "{within}");

        let err = Fitted::fit(&TransformSpec::Lda { components: Some(2) }, &x, 2 * n, d, Some(&labels), 2)
            .expect_err("too many");
        assert!(err.to_string().starts_with("transform.components: lda gives at most"), "{err}");
        let err = Fitted::fit(&lda, &x, 2 * n, d, None, 2).expect_err("no labels");
        assert!(err.to_string().contains("lda needs the training labels"), "{err}");
        let three: Vec<u32> = (0..2 * n as u32).map(|r| r % 3).collect();
        assert_eq!(Fitted::fit(&lda, &x, 2 * n, d, Some(&three), 3).expect("3 classes").outputs(), 2);
        assert!(Fitted::fit(&lda, &x, 2 * n, d, Some(&three), 2).is_err());
    }
}
