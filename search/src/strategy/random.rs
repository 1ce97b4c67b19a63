use super::{Proposal, Strategy, TrialView, fresh_sample};
use crate::rng::Rng;
use crate::space::Space;

/// Independent uniform samples (log-uniform where the range asks).
pub struct Random;

impl Strategy for Random {
    fn suggest(&mut self, space: &Space, trials: &[TrialView<'_>], rng: &mut Rng) -> Option<Proposal> {
        Some(Proposal { config: fresh_sample(space, trials, rng), parent: None })
    }
}
