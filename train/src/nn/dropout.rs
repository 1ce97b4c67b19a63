//! Inverted dropout: in training, zero each value with probability p and scale the rest by
//! 1/(1-p); at inference, pass through.

use candle_core::{Result, Tensor};

use super::cpu;
use super::layer::{Ctx, Layer, Param, Saved};

pub struct Dropout {
    p: f64,
}

impl Dropout {
    pub fn new(p: f64) -> Self {
        Self { p }
    }
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Saved)> {
        if !ctx.train() || self.p == 0.0 {
            return Ok((x.clone(), Saved::new(Vec::new(), x.dims())));
        }
        let keep = 1.0 - self.p;
        let scale = (1.0 / keep) as f32;
        let rng = &mut ctx.rng;
        let mask = cpu::build(x.shape(), |m| {
            m.iter_mut().for_each(|v| *v = if rng.uniform() < keep { scale } else { 0.0 });
            Ok(())
        })?
        .to_device(x.device())?;
        let y = (x * &mask)?;
        Ok((y, Saved::new(vec![mask], x.dims())))
    }

    fn backward(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        need_input_grad: bool,
        _threads: usize,
    ) -> Result<Option<Tensor>> {
        if !need_input_grad {
            return Ok(None);
        }
        match saved.tensors.first() {
            Some(mask) => Ok(Some((grad_out.reshape(mask.shape())? * mask)?)),
            None => Ok(Some(grad_out)),
        }
    }

    fn params(&self) -> &[Param] {
        &[]
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut []
    }

    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        input.to_vec()
    }

    fn macs(&self, _input: &[usize]) -> u64 {
        0
    }
}
