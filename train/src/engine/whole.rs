//! The model a data-parallel rank trains: the whole network, possibly inheriting a parent's
//! weights through function-preserving morphs.

use shoal_common::spec::{InheritConfig, TrainConfig};

use super::report::RunOptions;
use crate::checkpoint;
use crate::error::Result;
use crate::model::{DataShape, Model};

/// The whole model, with the parent's weights when the job inherits them (and does not resume).
pub fn whole_model(cfg: &TrainConfig, shape: &DataShape, opts: &RunOptions) -> Result<(Model, String)> {
    let mut model = Model::build_on(&cfg.model, shape, cfg.training.seed, &opts.backend())?;
    let mut described = model.describe();
    if cfg.quantize.is_some_and(|q| q.aware) {
        let layers = model.fake_quantize();
        described = format!("{described}; quantization-aware: int8 fake quantization in {layers} linear layers");
    }
    if let (Some(inherit), None) = (&cfg.inherit, &opts.resume_from) {
        described = format!("{described}; {}", inherit_weights(&mut model, cfg, inherit, shape)?);
    }
    Ok((model, described))
}

/// Loads a parent's checkpoint into `model` through function-preserving morphs. Returns what was
/// done, for the job's log.
fn inherit_weights(model: &mut Model, cfg: &TrainConfig, inherit: &InheritConfig, shape: &DataShape) -> Result<String> {
    let dir = checkpoint::step_dir(&inherit.checkpoint);
    let parent = checkpoint::load(&dir)?;
    let parent_model = match &inherit.model {
        Some(m) => m.clone(),
        None => checkpoint::model_of(&dir)?,
    };
    let (params, morphs) = crate::morph::inherit(&parent_model, &parent.model, &cfg.model, shape, cfg.training.seed)?;
    model.load_named(&params, &dir)?;
    Ok(format!("inherited from {} ({morphs})", dir.display()))
}
