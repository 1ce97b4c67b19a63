//! Where a rank trains: on the CPU when no GPU was reserved for it, else on the first GPU of its
//! assignment through the CUDA backend. A job that asked for GPUs never falls back to the CPU:
//! without the backend (a build without the `cuda` feature) or without a usable GPU it fails, and
//! the coordinator may place it elsewhere.

use std::sync::Arc;

use shoal_common::JobId;
use shoal_common::spec::Precision;
use shoal_train::backend::Backend;

use super::error::RunError;

/// The backend for a rank that was given `gpus`; `None` trains on the CPU.
pub fn backend_for(job: &JobId, gpus: &[u32], precision: Precision) -> Result<Option<Arc<dyn Backend>>, RunError> {
    let Some(&gpu) = gpus.first() else { return Ok(None) };
    open(job, gpu, gpus, precision).map(Some)
}

#[cfg(feature = "cuda")]
fn open(job: &JobId, gpu: u32, _gpus: &[u32], precision: Precision) -> Result<Arc<dyn Backend>, RunError> {
    use shoal_train::backend::cuda::{CudaBackend, MathMode};
    let backend = CudaBackend::open(gpu as usize, MathMode::from(precision)).map_err(|e| RunError::GpuOpen {
        job: job.clone(),
        gpu,
        reason: e.to_string(),
    })?;
    tracing::info!(gpu, device = %backend.gpu().name(), ?precision, "training on the GPU");
    Ok(Arc::new(backend))
}

#[cfg(not(feature = "cuda"))]
fn open(job: &JobId, _gpu: u32, gpus: &[u32], _precision: Precision) -> Result<Arc<dyn Backend>, RunError> {
    Err(RunError::NoCudaTraining { job: job.clone(), gpus: gpus.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_gpus_means_the_cpu() {
        let job = JobId::new("j".to_owned());
        assert!(backend_for(&job, &[], Precision::Fp32).expect("cpu").is_none());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn reserved_gpus_without_the_cuda_backend_fail_instead_of_running_on_the_cpu() {
        let job = JobId::new("j".to_owned());
        let err = backend_for(&job, &[1], Precision::Fp32).expect_err("no silent CPU fallback");
        assert!(err.retryable(), "another worker may have the backend");
        assert!(err.to_string().contains("[1]"), "{err}");
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn a_gpu_that_cannot_be_opened_fails_the_rank() {
        // Without a driver (CI) or with fewer GPUs than 64 the backend cannot open GPU 63.
        let job = JobId::new("j".to_owned());
        let err = backend_for(&job, &[63], Precision::Fp32).expect_err("no GPU 63");
        assert!(matches!(err, RunError::GpuOpen { gpu: 63, .. }), "{err}");
    }
}
