//! The search engine: suggests trials within the budget, takes their metric reports, stops the
//! ones that ASHA or curve extrapolation rule out, and keeps every trial's curve. The coordinator
//! drives one per search job (persisting [`Trial`]s after every change); the benchmark drives one
//! against simulated trials. Nothing here knows about clocks or I/O: callers pass times in.

use serde::{Deserialize, Serialize};

use crate::arch::MacroArch;
use crate::curve;
use crate::rng::Rng;
use crate::space::{Config, Space};
use crate::strategy::{self, Strategy, StrategyKind, StrategyOptions, TrialView};

/// Asynchronous successive halving: rungs at `min_budget * eta^k` below the full budget. A trial
/// reaching a rung continues only if its score is in the top `1/eta` of the scores recorded at that
/// rung so far; otherwise it stops there and frees its worker.
#[derive(Clone, Debug, PartialEq)]
pub struct Asha {
    pub eta: f64,
    pub min_budget: f64,
}

/// Learning-curve stopping: once a trial has `min_points` validation points and used
/// `min_fraction` of its budget, it stops when even an optimistic extrapolation (the best fitted
/// family plus `z` times the fit spread) ends below the best completed trial.
#[derive(Clone, Debug, PartialEq)]
pub struct CurveStop {
    pub min_points: usize,
    pub min_fraction: f64,
    pub z: f64,
}

impl Default for CurveStop {
    fn default() -> Self {
        Self { min_points: 3, min_fraction: 0.2, z: 1.0 }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SearchConfig {
    pub space: Space,
    /// Macro architecture whose parameters are part of `space`.
    pub arch: Option<MacroArch>,
    pub strategy: StrategyKind,
    pub options: StrategyOptions,
    /// Maximise the metric (accuracy) or minimise it (loss).
    pub maximize: bool,
    pub max_trials: usize,
    pub max_concurrent: usize,
    /// Wall-clock budget of the whole search, in seconds.
    pub max_wall_s: Option<f64>,
    pub seed: u64,
    /// Budget of a full trial in the fidelity's unit (steps or epochs).
    pub max_budget: f64,
    pub asha: Option<Asha>,
    pub curve: Option<CurveStop>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    Running,
    Completed,
    /// Stopped early (ASHA, curve extrapolation, the search's wall time): its curve is kept.
    Stopped,
    Failed,
}

impl TrialState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

/// One trial as the engine (and the coordinator's database) keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub index: usize,
    pub config: Config,
    /// The trial this one was derived from (and may inherit weights from).
    pub parent: Option<usize>,
    pub state: TrialState,
    /// Validation points: (budget used, metric value).
    pub curve: Vec<(f64, f64)>,
    /// Final value (completed) or last value seen (stopped).
    pub value: Option<f64>,
    /// Why it stopped or failed.
    pub reason: String,
    /// Order in which trials ended.
    pub finish_seq: Option<u64>,
    pub started_s: f64,
    pub finished_s: Option<f64>,
    /// The cluster job running it.
    #[serde(default)]
    pub job_id: String,
    /// Its final checkpoint.
    #[serde(default)]
    pub checkpoint: String,
}

impl Trial {
    pub fn budget_used(&self) -> f64 {
        self.curve.last().map_or(0.0, |p| p.0)
    }
}

pub struct Engine {
    cfg: SearchConfig,
    strategy: Box<dyn Strategy>,
    trials: Vec<Trial>,
    next_finish: u64,
    /// Scores recorded at each ASHA rung.
    rungs: Vec<Vec<f64>>,
    exhausted: bool,
    halted: Option<String>,
}

impl Engine {
    pub fn new(cfg: SearchConfig) -> Self {
        Self::restore(cfg, Vec::new())
    }

    /// Rebuilds an engine from its stored trials: the strategy replays every ended trial in the
    /// order they ended, and ASHA's rungs are refilled from the curves.
    pub fn restore(cfg: SearchConfig, mut trials: Vec<Trial>) -> Self {
        trials.sort_by_key(|t| t.index);
        let strategy = strategy::build(cfg.strategy, &cfg.space, &cfg.options, cfg.seed);
        let rungs = vec![Vec::new(); milestones(&cfg).len()];
        let mut engine =
            Self { cfg, strategy, trials: Vec::new(), next_finish: 0, rungs, exhausted: false, halted: None };
        let mut ended: Vec<&Trial> = trials.iter().filter(|t| t.finish_seq.is_some()).collect();
        ended.sort_by_key(|t| t.finish_seq);
        for t in ended {
            engine.observe(t);
        }
        engine.next_finish = trials.iter().filter_map(|t| t.finish_seq).max().map_or(0, |s| s + 1);
        let marks = milestones(&engine.cfg);
        for t in &trials {
            for (k, m) in marks.iter().enumerate() {
                if let Some(&(_, v)) = t.curve.iter().find(|p| p.0 >= *m - 1e-9) {
                    let s = engine.score(v);
                    engine.rungs[k].push(s);
                }
            }
        }
        engine.trials = trials;
        engine
    }

    pub fn config(&self) -> &SearchConfig {
        &self.cfg
    }

    pub fn trials(&self) -> &[Trial] {
        &self.trials
    }

    pub fn trial(&self, index: usize) -> Option<&Trial> {
        self.trials.get(index)
    }

    pub fn trial_mut(&mut self, index: usize) -> Option<&mut Trial> {
        self.trials.get_mut(index)
    }

    /// Higher is better.
    pub fn score(&self, value: f64) -> f64 {
        if self.cfg.maximize { value } else { -value }
    }

    pub fn running(&self) -> usize {
        self.trials.iter().filter(|t| t.state == TrialState::Running).count()
    }

    pub fn over_time(&self, now_s: f64) -> bool {
        self.cfg.max_wall_s.is_some_and(|w| now_s >= w)
    }

    /// No more trials will be suggested.
    pub fn closed(&self, now_s: f64) -> bool {
        self.exhausted || self.halted.is_some() || self.trials.len() >= self.cfg.max_trials || self.over_time(now_s)
    }

    /// The search is over: closed and nothing running.
    pub fn finished(&self, now_s: f64) -> bool {
        self.closed(now_s) && self.running() == 0
    }

    /// Stops suggesting (the search was cancelled or ran out of time); running trials are the
    /// caller's to stop.
    pub fn halt(&mut self, why: impl Into<String>) {
        self.halted.get_or_insert(why.into());
    }

    /// The next trial, if the budget and concurrency limit allow one.
    pub fn suggest(&mut self, now_s: f64) -> Option<&Trial> {
        if self.closed(now_s) || self.running() >= self.cfg.max_concurrent {
            return None;
        }
        let index = self.trials.len();
        let mut rng = Rng::derive(self.cfg.seed, "suggest", index as u64);
        let proposal = {
            let views = views(&self.trials, self.cfg.maximize);
            self.strategy.suggest(&self.cfg.space, &views, &mut rng)
        };
        let Some(p) = proposal else {
            self.exhausted = true;
            return None;
        };
        self.trials.push(Trial {
            index,
            config: p.config,
            parent: p.parent,
            state: TrialState::Running,
            curve: Vec::new(),
            value: None,
            reason: String::new(),
            finish_seq: None,
            started_s: now_s,
            finished_s: None,
            job_id: String::new(),
            checkpoint: String::new(),
        });
        self.trials.last()
    }
}

/// Ended trials in the order they ended, then running ones.
fn views(trials: &[Trial], maximize: bool) -> Vec<TrialView<'_>> {
    let score = |v: f64| if maximize { v } else { -v };
    {
        let mut order: Vec<&Trial> = trials.iter().collect();
        order.sort_by_key(|t| (t.finish_seq.unwrap_or(u64::MAX), t.index));
        order
            .into_iter()
            .map(|t| TrialView {
                index: t.index,
                config: &t.config,
                score: match t.state {
                    TrialState::Completed | TrialState::Stopped => t.value.map(score),
                    _ => None,
                },
                finished: t.state != TrialState::Running,
            })
            .collect()
    }
}

impl Engine {
    /// The best score of a completed trial.
    pub fn best_score(&self) -> Option<f64> {
        self.trials
            .iter()
            .filter(|t| t.state == TrialState::Completed)
            .filter_map(|t| t.value.map(|v| self.score(v)))
            .fold(None, |b: Option<f64>, s| Some(b.map_or(s, |b| b.max(s))))
    }

    /// The best trial: the best completed one, or if none completed the best seen at all.
    pub fn best(&self) -> Option<&Trial> {
        let pick = |states: &[TrialState]| {
            self.trials
                .iter()
                .filter(|t| states.contains(&t.state))
                .filter_map(|t| t.value.map(|v| (t, self.score(v))))
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.index.cmp(&a.0.index)))
                .map(|(t, _)| t)
        };
        pick(&[TrialState::Completed]).or_else(|| pick(&[TrialState::Stopped]))
    }

    /// A validation point of a running trial. Returns why it must stop, if it must.
    pub fn report(&mut self, index: usize, budget: f64, value: f64, now_s: f64) -> Option<String> {
        let marks = milestones(&self.cfg);
        let score = self.score(value);
        let t = self.trials.get_mut(index).filter(|t| t.state == TrialState::Running)?;
        if !value.is_finite() {
            return None;
        }
        let before = t.budget_used();
        t.curve.push((budget, value));
        let mut verdict = None;
        if let Some(asha) = &self.cfg.asha {
            for (k, m) in marks.iter().enumerate() {
                if before < *m - 1e-9 && budget >= *m - 1e-9 {
                    self.rungs[k].push(score);
                    let cutoff = percentile(&self.rungs[k], 1.0 - 1.0 / asha.eta);
                    if score < cutoff && verdict.is_none() {
                        verdict = Some(format!(
                            "ASHA rung {k} (budget {m}): {value:.4} is not in the top 1/{} of the {} trials there (cutoff {:.4})",
                            asha.eta,
                            self.rungs[k].len(),
                            self.score(cutoff)
                        ));
                    }
                }
            }
        }
        if verdict.is_none()
            && let (Some(c), Some(best)) = (&self.cfg.curve, self.best_score())
        {
            let t = &self.trials[index];
            let frac = budget / self.cfg.max_budget;
            if t.curve.len() >= c.min_points && frac >= c.min_fraction && frac < 1.0 - 1e-9 {
                let pts: Vec<(f64, f64)> =
                    t.curve.iter().map(|&(b, v)| (b / self.cfg.max_budget, self.score(v))).collect();
                if let Some(hi) = curve::optimistic_end(&pts, c.z)
                    && hi < best
                {
                    verdict = Some(format!(
                        "learning curve: predicted to end at {:.4} at best, below the best so far ({:.4})",
                        self.score(hi),
                        self.score(best)
                    ));
                }
            }
        }
        if let Some(why) = &verdict {
            self.end(index, TrialState::Stopped, Some(value), why.clone(), now_s);
        }
        verdict
    }

    /// A trial ended on its own: completed with its final `value`, or failed.
    pub fn finish(&mut self, index: usize, ok: bool, value: Option<f64>, reason: &str, now_s: f64) {
        let Some(t) = self.trials.get(index).filter(|t| t.state == TrialState::Running) else { return };
        let value = value.or(t.curve.last().map(|p| p.1));
        let state = if ok && value.is_some() { TrialState::Completed } else { TrialState::Failed };
        self.end(index, state, value, reason.to_owned(), now_s);
    }

    /// Stops a running trial from outside (wall time, cancellation).
    pub fn stop(&mut self, index: usize, why: &str, now_s: f64) {
        if let Some(t) = self.trials.get(index).filter(|t| t.state == TrialState::Running) {
            let value = t.curve.last().map(|p| p.1);
            self.end(index, TrialState::Stopped, value, why.to_owned(), now_s);
        }
    }

    fn end(&mut self, index: usize, state: TrialState, value: Option<f64>, reason: String, now_s: f64) {
        let seq = self.next_finish;
        self.next_finish += 1;
        let t = &mut self.trials[index];
        t.state = state;
        t.value = value;
        t.reason = reason;
        t.finish_seq = Some(seq);
        t.finished_s = Some(now_s);
        let t = t.clone();
        self.observe(&t);
    }

    fn observe(&mut self, t: &Trial) {
        if let (TrialState::Completed | TrialState::Stopped, Some(v)) = (t.state, t.value) {
            let s = self.score(v);
            self.strategy.observe(&self.cfg.space, &t.config, s);
        }
    }
}

/// Budgets of the ASHA rungs.
pub fn milestones(cfg: &SearchConfig) -> Vec<f64> {
    let mut out = Vec::new();
    if let Some(a) = &cfg.asha {
        let mut m = a.min_budget;
        while m < cfg.max_budget * (1.0 - 1e-9) && a.eta > 1.0 && m > 0.0 {
            out.push(m);
            m *= a.eta;
        }
    }
    out
}

/// Linear-interpolated quantile `q` in [0, 1] of `xs`.
fn percentile(xs: &[f64], q: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NEG_INFINITY;
    }
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests;
