//! The order of a stage's work on a mini-batch (GPipe or 1F1B), how its rows are cut into
//! micro-batches, and the idle share an ideal pipeline would have.

use shoal_common::spec::PipeSchedule;

/// The order of one stage's work on a mini-batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Forward(usize),
    Backward(usize),
}

/// Stage `stage`'s operations for `m` micro-batches. GPipe: every forward, then every backward.
/// 1F1B: `stages - stage - 1` warm-up forwards, then one forward and one backward in turn, then the
/// remaining backwards, so at most `stages` micro-batches are in flight on any stage.
pub fn schedule_ops(schedule: PipeSchedule, stage: usize, stages: usize, m: usize) -> Vec<Op> {
    match schedule {
        PipeSchedule::GPipe => (0..m).map(Op::Forward).chain((0..m).map(Op::Backward)).collect(),
        PipeSchedule::OneFOneB => {
            let warm = (stages - stage - 1).min(m);
            let mut ops: Vec<Op> = (0..warm).map(Op::Forward).collect();
            for i in 0..m - warm {
                ops.push(Op::Forward(warm + i));
                ops.push(Op::Backward(i));
            }
            ops.extend((m - warm..m).map(Op::Backward));
            ops
        }
    }
}

/// Idle share of a stage in an ideal pipeline of equal stages: (K-1)/(M+K-1).
pub fn bubble_theory(stages: usize, m: usize) -> f64 {
    (stages as f64 - 1.0) / (m + stages - 1) as f64
}

/// Rows of each of `m` micro-batches of a `rows`-row batch (the first ones get the remainder).
pub(super) fn micro_rows(rows: usize, m: usize) -> Vec<usize> {
    let (base, extra) = (rows / m, rows % m);
    (0..m).map(|i| base + usize::from(i < extra)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(ops: &[Op]) -> usize {
        let mut live = 0usize;
        let mut peak = 0;
        for op in ops {
            match op {
                Op::Forward(_) => live += 1,
                Op::Backward(_) => live -= 1,
            }
            peak = peak.max(live);
        }
        peak
    }

    #[test]
    fn schedules_run_every_micro_batch_once_and_1f1b_bounds_what_is_in_flight() {
        for stages in 1..=4 {
            for m in 1..=9 {
                for stage in 0..stages {
                    for schedule in [PipeSchedule::GPipe, PipeSchedule::OneFOneB] {
                        let ops = schedule_ops(schedule, stage, stages, m);
                        assert_eq!(ops.len(), 2 * m);
                        for i in 0..m {
                            let f = ops.iter().position(|o| *o == Op::Forward(i)).expect("forward");
                            let b = ops.iter().position(|o| *o == Op::Backward(i)).expect("backward");
                            assert!(f < b, "{schedule:?} runs B{i} before F{i}");
                        }
                        let peak = in_flight(&ops);
                        match schedule {
                            PipeSchedule::GPipe => assert_eq!(peak, m),
                            PipeSchedule::OneFOneB => assert_eq!(peak, (stages - stage).min(m), "{stages} {stage} {m}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn micro_batches_share_the_rows() {
        assert_eq!(micro_rows(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(micro_rows(512, 4), vec![128; 4]);
    }
}
