//! Gradient buckets summed in device memory while backward still runs. Each bucket is queued on
//! the device collective's own stream as soon as backward has produced all its gradients (after
//! the layer holding its first parameter), so the sums of the last layers travel while the first
//! layers' gradients are computed. The last bucket carries the stop flag and is queued after
//! backward, followed by one wait with the collective's deadline.

use crate::collective::{DeviceCollective, DeviceSpan};
use crate::distributed::Buckets;
use crate::error::{Result, TrainError};
use crate::model::Model;
use crate::nn::Param;

/// One step's bucket queue.
pub(super) struct Overlap<'b> {
    buckets: &'b Buckets,
    /// Buckets queued so far, from the first.
    queued: usize,
    /// A bucket with a parameter that got no gradient waits for [`Overlap::finish`] to zero it,
    /// and so do the buckets after it (every rank queues them in the same order).
    held: bool,
    /// The training stream, which the sums wait for.
    stream: u64,
}

impl<'b> Overlap<'b> {
    pub(super) fn new(buckets: &'b Buckets, stream: u64) -> Self {
        Self { buckets, queued: 0, held: false, stream }
    }

    /// Called after each layer's backward: queues every bucket whose gradients are now final,
    /// except the last, which waits for the stop flag.
    pub(super) fn on_layer(
        &mut self,
        model: &Model,
        first_final: usize,
        collective: &mut dyn DeviceCollective,
    ) -> Result<()> {
        let ready = self.buckets.ready(first_final).min(self.buckets.count() - 1);
        if self.held || self.queued >= ready {
            return Ok(());
        }
        let params: Vec<&Param> = model.params().collect();
        while self.queued < ready {
            let bucket = &params[self.buckets.params_of(self.queued)];
            if bucket.iter().any(|p| !p.grad_valid) {
                self.held = true;
                return Ok(());
            }
            collective.queue_sum(&spans(model, bucket.iter().copied())?, self.stream)?;
            self.queued += 1;
        }
        Ok(())
    }

    /// After backward: zeroes the gradients backward did not produce, queues the remaining
    /// buckets (the stop flag appended to the last), waits for every sum, and returns the flag
    /// summed over ranks.
    pub(super) fn finish(self, model: &mut Model, flag: f32, collective: &mut dyn DeviceCollective) -> Result<f32> {
        let backend = model.backend().clone();
        for p in model.params_mut().filter(|p| !p.grad_valid) {
            p.grad = backend.zeros(p.value.dims())?;
            p.grad_valid = true;
        }
        let flag_sum = backend.from_host(vec![flag], &[1])?;
        let flag_span = span(model, &flag_sum, "the stop flag")?;
        let params: Vec<&Param> = model.params().collect();
        let last = self.buckets.count() - 1;
        for b in self.queued..=last {
            let mut group = spans(model, params[self.buckets.params_of(b)].iter().copied())?;
            if b == last {
                group.push(flag_span);
            }
            collective.queue_sum(&group, self.stream)?;
        }
        collective.finish(self.stream)?;
        Ok(backend.to_host(&flag_sum)?.first().copied().unwrap_or(0.0))
    }
}

fn span(model: &Model, t: &crate::backend::Tensor, what: &str) -> Result<DeviceSpan> {
    model
        .backend()
        .device_span(t)
        .ok_or_else(|| TrainError::Candle(candle_core::Error::Msg(format!("{what} is not in device memory"))))
}

/// The gradients' spans, in the order backward produced them (last parameter first), as the
/// host path lays out its buffers.
fn spans<'p>(model: &Model, params: impl DoubleEndedIterator<Item = &'p Param>) -> Result<Vec<DeviceSpan>> {
    params.rev().map(|p| span(model, &p.grad, &format!("the gradient of {}", p.name))).collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;

    use shoal_common::spec::{Activation, LayerConfig, ModelConfig, ModelKind};

    use super::*;
    use crate::backend::spanned::{STREAM, Spanned};
    use crate::backend::{self, Backend};
    use crate::collective::CollectiveError;
    use crate::model::DataShape;
    use crate::nn::loss::{Targets, loss_and_grad};
    use crate::nn::{Ctx, Mode};
    use crate::rng::Rng;

    #[derive(Debug, PartialEq)]
    enum Event {
        Layer(usize),
        Sum(Vec<usize>),
        Finish,
    }

    /// Records what is queued, interleaved with the layers backward finishes.
    struct Recorder(Rc<RefCell<Vec<Event>>>);

    impl DeviceCollective for Recorder {
        fn queue_sum(&mut self, spans: &[DeviceSpan], compute: u64) -> Result<(), CollectiveError> {
            assert_eq!(compute, STREAM, "sums wait for the training stream");
            self.0.borrow_mut().push(Event::Sum(spans.iter().map(|s| s.len).collect()));
            Ok(())
        }

        fn finish(&mut self, compute: u64) -> Result<(), CollectiveError> {
            assert_eq!(compute, STREAM);
            self.0.borrow_mut().push(Event::Finish);
            Ok(())
        }
    }

    fn mlp(widths: &[usize]) -> ModelConfig {
        ModelConfig {
            kind: ModelKind::Mlp,
            layers: widths
                .iter()
                .map(|&width| LayerConfig::Linear { width, activation: Activation::Relu, skip: false })
                .collect(),
            dropout: 0.0,
            input_shape: None,
        }
    }

    fn model(on: Arc<dyn Backend>) -> Model {
        let shape = DataShape { features: 4, image: None, outputs: 3 };
        Model::build_on(&mlp(&[8, 6]), &shape, 1, &on).expect("model")
    }

    /// One backward pass with the overlap queue; returns the events and the summed flag.
    fn step(model: &mut Model, buckets: &Buckets, flag: f32) -> (Vec<Event>, f32) {
        let backend = model.backend().clone();
        let x = backend.from_host((0..20).map(|i| i as f32 / 10.0).collect(), &[5, 4]).expect("x");
        let (out, saved) = model.forward(&x, &mut Ctx::new(Mode::Train, 1, Rng::new(0))).expect("forward");
        let loss = loss_and_grad(backend.as_ref(), &out, &Targets::Classes(vec![0, 1, 2, 0, 1]), 0.2).expect("loss");
        let events = Rc::new(RefCell::new(Vec::new()));
        let mut sums = Recorder(events.clone());
        let mut overlap = Overlap::new(buckets, STREAM);
        model
            .backward_observed(saved, loss.grad, 1, &mut |m, first| {
                events.borrow_mut().push(Event::Layer(first));
                overlap.on_layer(m, first, &mut sums)
            })
            .expect("backward");
        let total = overlap.finish(model, flag, &mut sums).expect("finish");
        (std::mem::take(&mut *events.borrow_mut()), total)
    }

    #[test]
    fn buckets_are_ready_as_backward_passes_their_first_parameter() {
        let m = model(backend::cpu());
        // Three linear layers of (weight, bias): parameters 0..6. One bucket per parameter.
        let b = Buckets::new(&m, 4);
        assert_eq!(b.count(), 6);
        assert_eq!(b.params_of(0), 5..6, "the last layer's bias comes first");
        assert_eq!(b.ready(6), 0, "nothing is final before backward");
        assert_eq!(b.ready(4), 2, "after the last layer: its weight and bias");
        assert_eq!(b.ready(0), 6);
        // One bucket for everything is ready only at the end.
        let one = Buckets::new(&m, 1 << 20);
        assert_eq!((one.count(), one.ready(2), one.ready(0)), (1, 0, 1));
    }

    #[test]
    fn each_bucket_is_queued_as_soon_as_backward_has_produced_it() {
        let mut m = model(Arc::new(Spanned::new()));
        // Parameters 0..6: 8x4 + 8, 6x8 + 6, 3x6 + 3 values. Buckets of at most 30 values, filled
        // from the last parameter: [3, 18, 6] (parameters 3..6, across two layers), [48], [8], [32].
        let buckets = Buckets::new(&m, 30 * 4);
        assert_eq!(buckets.count(), 4);
        let (events, flag) = step(&mut m, &buckets, 1.0);
        let want = vec![
            Event::Layer(4),
            // The first bucket also holds the middle layer's bias: it waits for that layer.
            Event::Layer(2),
            Event::Sum(vec![3, 18, 6]),
            Event::Sum(vec![48]),
            Event::Layer(0),
            Event::Sum(vec![8]),
            // The last bucket carries the stop flag and goes after backward.
            Event::Sum(vec![32, 1]),
            Event::Finish,
        ];
        assert_eq!(events, want);
        assert_eq!(flag, 1.0, "one rank: the flag comes back as it went");
        assert!(m.params().all(|p| p.grad_valid));
    }

    #[test]
    fn a_bucket_without_gradients_waits_and_is_zeroed() {
        let mut m = model(Arc::new(Spanned::new()));
        let buckets = Buckets::new(&m, 30 * 4);
        // Backward that skips nothing, then a pass where no gradient was produced yet:
        // the first bucket (and every later one) waits until after backward, which zeroes them.
        let (first, _) = step(&mut m, &buckets, 0.0);
        assert_eq!(first.iter().filter(|e| matches!(e, Event::Sum(_))).count(), 4);
        m.zero_grad();
        let mut overlap = Overlap::new(&buckets, STREAM);
        let events = Rc::new(RefCell::new(Vec::new()));
        let mut sums = Recorder(events.clone());
        overlap.on_layer(&m, 2, &mut sums).expect("nothing valid yet");
        assert!(events.borrow().is_empty(), "a bucket with missing gradients is not queued early");
        let flag = overlap.finish(&mut m, 3.0, &mut sums).expect("finish");
        assert_eq!(flag, 3.0);
        assert_eq!(events.borrow().len(), 5, "four buckets and the wait");
        for p in m.params() {
            assert!(p.grad_valid);
            assert!(backend::to_host_vec(&p.grad).expect("grad").iter().all(|v| *v == 0.0), "{}", p.name);
        }
    }

    #[test]
    fn host_tensors_have_no_device_spans() {
        let m = model(backend::cpu());
        let p = m.params().next().expect("a parameter");
        let err = spans(&m, std::iter::once(p)).expect_err("host memory");
        assert!(err.to_string().contains("gradient of layers.0.weight is not in device memory"), "{err}");
    }
}
