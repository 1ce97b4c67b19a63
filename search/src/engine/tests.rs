use super::*;
use crate::space::{Domain, Param};

fn space() -> Space {
    Space {
        params: vec![Param { name: "x".into(), domain: Domain::Float { low: 0.0, high: 1.0, log: false }, when: None }],
    }
}

fn cfg(asha: Option<Asha>, curve: Option<CurveStop>) -> SearchConfig {
    SearchConfig {
        space: space(),
        arch: None,
        strategy: StrategyKind::Random,
        options: StrategyOptions::default(),
        maximize: true,
        max_trials: 20,
        max_concurrent: 20,
        max_wall_s: None,
        seed: 1,
        max_budget: 9.0,
        asha,
        curve,
    }
}

#[test]
fn asha_promotes_the_top_third_at_each_rung() {
    let mut e = Engine::new(cfg(Some(Asha { eta: 3.0, min_budget: 1.0 }), None));
    assert_eq!(milestones(e.config()), vec![1.0, 3.0]);
    for _ in 0..6 {
        e.suggest(0.0).expect("trial");
    }
    // Rung 0 (budget 1): trials arrive in order of their score.
    let values = [0.5, 0.6, 0.4, 0.9, 0.3, 0.8];
    let verdicts: Vec<bool> = values.iter().enumerate().map(|(i, v)| e.report(i, 1.0, *v, 1.0).is_none()).collect();
    // 0.5 alone: continues. 0.6 beats the 2/3 quantile of {0.5,0.6}: continues. 0.4: stops.
    // 0.9: continues. 0.3: stops. 0.8: quantile of {.5,.6,.4,.9,.3,.8} at 2/3 is 0.6+..: continues.
    assert_eq!(verdicts, vec![true, true, false, true, false, true]);
    assert_eq!(e.trial(2).expect("t").state, TrialState::Stopped);
    assert!(e.trial(2).expect("t").reason.contains("ASHA rung 0"), "{}", e.trial(2).expect("t").reason);
    // Rung 1 (budget 3): 0.9's trial goes on, the weaker survivors stop.
    assert!(e.report(3, 3.0, 0.92, 2.0).is_none());
    assert!(e.report(0, 3.0, 0.55, 2.0).is_some());
    assert!(e.report(5, 3.0, 0.95, 2.0).is_none());
    // Past the last rung trials run to the end.
    assert!(e.report(5, 9.0, 0.96, 3.0).is_none());
    e.finish(5, true, Some(0.96), "", 3.0);
    assert_eq!(e.best().expect("best").index, 5);
    // A stopped trial keeps its curve.
    assert_eq!(e.trial(2).expect("t").curve, vec![(1.0, 0.4)]);
}

#[test]
fn curve_extrapolation_stops_a_clearly_worse_trial_and_keeps_a_better_one() {
    let mut e = Engine::new(cfg(None, Some(CurveStop::default())));
    for _ in 0..3 {
        e.suggest(0.0).expect("trial");
    }
    let rise = |end: f64, b: f64| end - (end - 0.1) * (-3.0 * b / 9.0).exp();
    for b in 1..=9 {
        assert!(e.report(0, b as f64, rise(0.9, b as f64), 0.0).is_none());
    }
    e.finish(0, true, Some(rise(0.9, 9.0)), "", 1.0);
    // Trial 1 heads for 0.6: stopped once it has 3 points and 20% of its budget.
    let mut stopped_at = None;
    for b in 1..=9 {
        if e.report(1, b as f64, rise(0.6, b as f64), 2.0).is_some() {
            stopped_at = Some(b);
            break;
        }
    }
    assert_eq!(stopped_at, Some(3));
    let t = e.trial(1).expect("t");
    assert_eq!(t.state, TrialState::Stopped);
    assert!(t.reason.contains("learning curve"), "{}", t.reason);
    assert_eq!(t.curve.len(), 3);
    // Trial 2 heads for 0.95: never stopped.
    for b in 1..=9 {
        assert!(e.report(2, b as f64, rise(0.95, b as f64), 3.0).is_none(), "stopped at {b}");
    }
}

#[test]
fn concurrency_and_trial_budget_are_respected() {
    let mut c = cfg(None, None);
    c.max_concurrent = 2;
    c.max_trials = 3;
    let mut e = Engine::new(c);
    assert!(e.suggest(0.0).is_some());
    assert!(e.suggest(0.0).is_some());
    assert!(e.suggest(0.0).is_none(), "a third concurrent trial");
    e.finish(0, true, Some(0.5), "", 1.0);
    assert!(e.suggest(1.0).is_some());
    e.finish(1, false, None, "worker lost", 2.0);
    assert!(e.suggest(2.0).is_none(), "over the trial budget");
    assert!(!e.finished(2.0));
    e.finish(2, true, Some(0.7), "", 3.0);
    assert!(e.finished(3.0));
    assert_eq!(e.trial(1).expect("t").state, TrialState::Failed);
}

#[test]
fn wall_time_closes_the_search() {
    let mut c = cfg(None, None);
    c.max_wall_s = Some(10.0);
    let mut e = Engine::new(c);
    assert!(e.suggest(0.0).is_some());
    assert!(e.suggest(11.0).is_none());
    e.stop(0, "search ran out of time", 11.0);
    assert!(e.finished(11.0));
}

#[test]
fn a_restored_engine_suggests_what_the_original_would() {
    for kind in StrategyKind::ALL {
        let mut c = cfg(None, None);
        c.strategy = kind;
        c.space = crate::sim::space();
        c.max_concurrent = 2;
        c.options.population = 4;
        c.options.startup_trials = 3;
        let mut a = Engine::new(c.clone());
        let mut t = 0.0;
        for _ in 0..8 {
            while a.suggest(t).is_some() {}
            let i = a.trials().iter().position(|t| t.state == TrialState::Running).expect("running");
            let v = crate::sim::final_value(&a.trials()[i].config);
            t += 1.0;
            a.finish(i, true, Some(v), "", t);
        }
        let mut b = Engine::restore(c, a.trials().to_vec());
        let (na, nb) = (a.suggest(t).map(|t| t.config.clone()), b.suggest(t).map(|t| t.config.clone()));
        assert_eq!(na, nb, "{}", kind.name());
        assert!(na.is_some() || kind == StrategyKind::Grid);
    }
}

#[test]
fn minimising_flips_the_score() {
    let mut c = cfg(None, None);
    c.maximize = false;
    let mut e = Engine::new(c);
    e.suggest(0.0);
    e.suggest(0.0);
    e.finish(0, true, Some(0.2), "", 1.0);
    e.finish(1, true, Some(0.1), "", 1.0);
    assert_eq!(e.best().expect("best").index, 1);
}
