//! The `optimizer` section: SGD or AdamW with their settings, and the learning-rate schedule.

use crate::proto;
use crate::spec::config::{OptimizerConfig, OptimizerKind, Schedule, ScheduleKind};
use crate::spec::errors::FieldErrors;

pub(super) fn optimizer(c: &mut FieldErrors, o: Option<&proto::OptimizerSpec>) -> OptimizerConfig {
    let default = proto::OptimizerSpec { kind: "sgd".into(), ..Default::default() };
    let o = o.unwrap_or(&default);
    let kind_name = c
        .choice(
            "optimizer.kind",
            &o.kind,
            Some("sgd"),
            |k| ["sgd", "adamw"].into_iter().find(|n| *n == k),
            &["sgd", "adamw"],
        )
        .unwrap_or("sgd");
    let kind = if kind_name == "adamw" {
        c.unused("optimizer.momentum", o.momentum != 0.0, "adamw");
        c.unused("optimizer.nesterov", o.nesterov, "adamw");
        OptimizerKind::AdamW {
            beta1: c.in_range("optimizer.beta1", o.beta1.unwrap_or(0.9), 0.0, 1.0, false),
            beta2: c.in_range("optimizer.beta2", o.beta2.unwrap_or(0.999), 0.0, 1.0, false),
            eps: c.positive("optimizer.eps", o.eps.unwrap_or(1e-8)),
        }
    } else {
        c.unused("optimizer.beta1", o.beta1.is_some(), "sgd");
        c.unused("optimizer.beta2", o.beta2.is_some(), "sgd");
        c.unused("optimizer.eps", o.eps.is_some(), "sgd");
        let momentum = c.in_range("optimizer.momentum", o.momentum, 0.0, 1.0, false);
        if o.nesterov && momentum == 0.0 {
            c.fail("optimizer.nesterov", "needs optimizer.momentum > 0");
        }
        OptimizerKind::Sgd { momentum, nesterov: o.nesterov }
    };
    let default_lr = if kind_name == "adamw" { 1e-3 } else { 1e-2 };
    let lr = c.positive("optimizer.lr", o.lr.unwrap_or(default_lr));
    if lr > 100.0 {
        c.fail("optimizer.lr", "must be at most 100");
    }
    let default_wd = if kind_name == "adamw" { 0.01 } else { 0.0 };
    let weight_decay = c.in_range("optimizer.weight_decay", o.weight_decay.unwrap_or(default_wd), 0.0, 1.0, true);

    let s = o.schedule.clone().unwrap_or_default();
    let sched_kind = c
        .choice(
            "optimizer.schedule.kind",
            &s.kind,
            Some("constant"),
            |k| ["constant", "step", "cosine"].into_iter().find(|n| *n == k),
            &["constant", "step", "cosine"],
        )
        .unwrap_or("constant");
    let warmup_steps = c.non_negative("optimizer.schedule.warmup_steps", s.warmup_steps);
    let kind_s = match sched_kind {
        "step" => {
            c.unused("optimizer.schedule.min_lr", s.min_lr != 0.0, "the step schedule");
            ScheduleKind::Step {
                step_size: c.size("optimizer.schedule.step_size", s.step_size) as u64,
                gamma: {
                    let g = s.gamma.unwrap_or(0.1);
                    if !(g.is_finite() && g > 0.0 && g <= 1.0) {
                        c.fail("optimizer.schedule.gamma", format!("must be in (0, 1], got {g}"));
                    }
                    g
                },
            }
        }
        "cosine" => {
            c.unused("optimizer.schedule.step_size", s.step_size != 0, "the cosine schedule");
            c.unused("optimizer.schedule.gamma", s.gamma.is_some(), "the cosine schedule");
            ScheduleKind::Cosine { min_lr: c.in_range("optimizer.schedule.min_lr", s.min_lr, 0.0, lr, true) }
        }
        _ => {
            c.unused("optimizer.schedule.step_size", s.step_size != 0, "the constant schedule");
            c.unused("optimizer.schedule.gamma", s.gamma.is_some(), "the constant schedule");
            c.unused("optimizer.schedule.min_lr", s.min_lr != 0.0, "the constant schedule");
            ScheduleKind::Constant
        }
    };
    OptimizerConfig { kind, lr, weight_decay, schedule: Schedule { kind: kind_s, warmup_steps } }
}
