//! The transport between neighbouring pipeline stages: the messages they exchange and the link a
//! stage sends and receives them over. Implementations live with the worker.

use crate::collective::{Collective, CollectiveError};

/// What a message between neighbouring stages carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgKind {
    /// Activations of a training micro-batch, with its targets, towards the last stage.
    Forward,
    /// The gradient of those activations, back towards the first stage.
    Backward,
    /// Activations of a validation chunk.
    EvalForward,
    /// Validation sums, from the last stage back to the first.
    EvalResult,
    /// The stage boundaries chosen by the first stage.
    Partition,
}

impl MsgKind {
    pub fn code(self) -> u8 {
        match self {
            MsgKind::Forward => 1,
            MsgKind::Backward => 2,
            MsgKind::EvalForward => 3,
            MsgKind::EvalResult => 4,
            MsgKind::Partition => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => MsgKind::Forward,
            2 => MsgKind::Backward,
            3 => MsgKind::EvalForward,
            4 => MsgKind::EvalResult,
            5 => MsgKind::Partition,
            _ => return None,
        })
    }
}

/// One message between neighbouring stages.
#[derive(Clone, Debug, PartialEq)]
pub struct StageMsg {
    pub kind: MsgKind,
    /// Micro-batch (or validation chunk) index.
    pub mb: u32,
    /// Micro-batches in this step.
    pub count: u32,
    /// Largest stop request seen so far (a `FLAG_*` value of the distributed module).
    pub flag: f32,
    /// Loss sum and correct rows of the step (on the last backward message).
    pub aux: [f64; 2],
    /// Targets per row (0 = class labels) and the targets themselves, for the last stage.
    pub target_width: u32,
    pub targets: Vec<f32>,
    /// Activations, gradients, sums or bounds.
    pub data: Vec<f32>,
}

impl StageMsg {
    pub fn new(kind: MsgKind, mb: usize, data: Vec<f32>) -> Self {
        Self { kind, mb: mb as u32, count: 0, flag: 0.0, aux: [0.0; 2], target_width: 0, targets: Vec::new(), data }
    }
}

/// Which neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Prev,
    Next,
}

/// Links of one stage to its neighbours. Sends return at once (the transport queues them, so
/// sending overlaps compute); receives wait, with a deadline, for the next message from that
/// neighbour. Errors name the stage at fault.
pub trait StageLink {
    fn stage(&self) -> usize;

    fn stages(&self) -> usize;

    fn send(&mut self, to: Dir, msg: StageMsg) -> Result<(), CollectiveError>;

    fn recv(&mut self, from: Dir) -> Result<StageMsg, CollectiveError>;

    /// Tells both neighbours this stage is failing and why, so that they fail with the same reason
    /// instead of waiting out their deadline.
    fn abort(&mut self, reason: &str);
}

/// A stage's connections: its neighbours, and the same stage of the other pipeline replicas.
pub struct PipePeers<'a> {
    pub link: &'a mut dyn StageLink,
    /// World = the number of replicas; rank = this replica.
    pub replicas: Option<&'a mut dyn Collective>,
}
