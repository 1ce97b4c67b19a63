//! Search jobs as users write them: the `search` section of a job spec, validated into a
//! [`SearchConfig`], and the rest of the spec as the template each trial's job is made from.

use serde_json::Value;
use shoal_common::proto::{self, JobSpec, MetricPoint};
use shoal_common::spec::{Duration, FieldError, FieldErrors, validate as validate_job};

use crate::arch::{MacroArch, MicroArch};
use crate::engine::{Asha, CurveStop, SearchConfig, Trial};
use crate::space::{Condition, Config, Domain, Param, Space};
use crate::strategy::{StrategyKind, StrategyOptions};

const DEFAULT_MAX_TRIALS: i64 = 16;
const DEFAULT_MAX_CONCURRENT: i64 = 2;
const MAX_TRIALS: i64 = 100_000;

/// A validated search job.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchJob {
    pub config: SearchConfig,
    /// Objective metric name as the user wrote it.
    pub metric: String,
    /// The job spec without its `search` section.
    pub template: JobSpec,
    pub fidelity: proto::FidelitySpec,
    /// Cell search, when the architecture space is a cell.
    pub micro: Option<MicroArch>,
    /// Budget unit: true when the template trains for epochs.
    pub epochs: bool,
    pub inherit: bool,
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Validates a search job: its `search` section and a template that stays valid for the
/// parameter values at the ends of every range. All errors at once.
pub fn validate(spec: &JobSpec) -> Result<SearchJob, Vec<FieldError>> {
    let mut e = FieldErrors::new();
    let Some(s) = spec.search.as_ref() else {
        return Err(vec![FieldError::new("search", "required for a search job")]);
    };
    let mut template = spec.clone();
    template.search = None;
    let base = validate_job(&template);

    let strategy = if s.strategy.is_empty() { Some(StrategyKind::Tpe) } else { StrategyKind::parse(&s.strategy) };
    if strategy.is_none() {
        e.fail(
            "search.strategy",
            format!("unknown strategy `{}` (grid, random, tpe, evolution, reinforce)", s.strategy),
        );
    }
    let metric = if s.metric.is_empty() { "validation_accuracy".to_owned() } else { s.metric.trim().to_owned() };
    let maximize = match s.mode.as_str() {
        "" => !metric.ends_with("loss"),
        "max" => true,
        "min" => false,
        other => {
            e.fail("search.mode", format!("must be max or min, got `{other}`"));
            true
        }
    };
    let max_trials = e.count("search.max_trials", s.max_trials, DEFAULT_MAX_TRIALS, MAX_TRIALS);
    let max_concurrent = e.count("search.max_concurrent", s.max_concurrent, DEFAULT_MAX_CONCURRENT, 10_000);
    if let Some(w) = s.max_seconds
        && !(w.is_finite() && w > 0.0)
    {
        e.fail("search.max_seconds", format!("must be > 0, got {w}"));
    }
    let seed = match s.seed {
        Some(v) if v < 0 => {
            e.fail("search.seed", "must be >= 0");
            0
        }
        Some(v) => v as u64,
        None => spec.training.as_ref().map_or(0, |t| t.seed.max(0) as u64),
    };

    let template_json = serde_json::to_value(&template).unwrap_or(Value::Null);
    let mut space = Space::default();
    for (i, p) in s.params.iter().enumerate() {
        if let Some(param) = param(&mut e, i, p, &space, &template_json) {
            space.params.push(param);
        }
    }
    let micro = s.arch.as_ref().filter(|a| a.cell_nodes != 0).and_then(|a| micro(&mut e, a, &template));
    let arch = s.arch.as_ref().filter(|a| a.cell_nodes == 0).and_then(|a| arch(&mut e, a, &template));
    if let Some(a) = &arch {
        space.params.extend(a.params());
    }
    if let Some(m) = &micro {
        space.params.extend(m.params());
    }
    if space.params.is_empty() {
        e.fail("search", "searches nothing: add search.params or search.arch");
    }

    // Fidelity and the budget unit.
    let fidelity = s.fidelity.unwrap_or_default();
    let (mut epochs, mut max_budget) = match &base {
        Ok(cfg) => match cfg.training.duration {
            Duration::Epochs(n) => (true, n as f64),
            Duration::Steps(n) => (false, n as f64),
        },
        Err(_) => (false, 1.0),
    };
    match (fidelity.steps, fidelity.epochs) {
        (Some(_), Some(_)) => e.fail("search.fidelity.steps", "set steps or epochs, not both"),
        (Some(n), None) if n > 0 => (epochs, max_budget) = (false, n as f64),
        (None, Some(n)) if n > 0 => (epochs, max_budget) = (true, n as f64),
        (None, None) => {}
        _ => e.fail("search.fidelity", "steps and epochs must be > 0"),
    }
    for (name, v) in [("data", fidelity.data), ("width", fidelity.width)] {
        if let Some(v) = v
            && !(v > 0.0 && v <= 1.0)
        {
            e.fail(format!("search.fidelity.{name}"), format!("must be in (0, 1], got {v}"));
        }
    }
    let asha = s.asha.as_ref().map(|a| {
        let eta = a.eta.unwrap_or(3.0);
        if !(eta > 1.0 && eta <= 100.0) {
            e.fail("search.asha.eta", format!("must be in (1, 100], got {eta}"));
        }
        let min_budget = a.min_budget.unwrap_or((max_budget / eta.max(1.01).powi(3)).max(1.0));
        if !(min_budget > 0.0 && min_budget < max_budget) {
            e.fail(
                "search.asha.min_budget",
                format!("must be > 0 and below a full trial's budget ({max_budget}), got {min_budget}"),
            );
        }
        Asha { eta, min_budget }
    });
    let curve = s.curve_stopping.as_ref().map(|c| {
        let d = CurveStop::default();
        let min_points = c.min_points.unwrap_or(d.min_points as i64);
        if !(2..=1000).contains(&min_points) {
            e.fail("search.curve_stopping.min_points", format!("must be in 2..=1000, got {min_points}"));
        }
        let min_fraction = c.min_fraction.unwrap_or(d.min_fraction);
        if !(0.0..1.0).contains(&min_fraction) {
            e.fail("search.curve_stopping.min_fraction", format!("must be in [0, 1), got {min_fraction}"));
        }
        let z = c.optimism.unwrap_or(d.z);
        if !(z.is_finite() && z >= 0.0) {
            e.fail("search.curve_stopping.optimism", format!("must be >= 0, got {z}"));
        }
        CurveStop { min_points: min_points.max(2) as usize, min_fraction, z }
    });
    let strategy = strategy.unwrap_or(StrategyKind::Tpe);
    if s.inherit {
        if strategy != StrategyKind::Evolution {
            e.fail("search.inherit", "weight inheritance needs strategy = \"evolution\"");
        }
        if arch.is_none() {
            e.fail("search.inherit", "weight inheritance morphs layer sequences: set a macro search.arch");
        }
        if arch.as_ref().is_some_and(|a| a.skips) {
            e.fail("search.inherit", "weight inheritance cannot widen layers with skip connections: drop arch.skips");
        }
    }
    let mut options = StrategyOptions { morph_only: s.inherit, ..Default::default() };
    options.population = e.count("search.population", s.population, options.population as i64, 10_000);
    options.tournament = e.count("search.tournament", s.tournament, options.tournament as i64, 10_000);
    options.grid_points = e.count("search.grid_points", s.grid_points, options.grid_points as i64, 1000);
    options.startup_trials = e.count("search.startup_trials", s.startup_trials, options.startup_trials as i64, 10_000);

    let job = SearchJob {
        config: SearchConfig {
            space,
            arch,
            strategy,
            options,
            maximize,
            max_trials,
            max_concurrent,
            max_wall_s: s.max_seconds,
            seed,
            max_budget,
            asha,
            curve,
        },
        metric,
        template,
        fidelity,
        micro,
        epochs,
        inherit: s.inherit,
    };
    if let Err(errors) = base {
        for err in errors {
            e.fail(err.path, err.reason);
        }
    } else if e.is_empty() {
        // Every trial must be a valid job: try a mid-range trial, then the ends of every range
        // (reporting only what the change itself breaks).
        let mid: Config = job.config.space.build(|_, q, _| q.from_unit(0.5));
        let mid_errors = validate_job(&trial_spec(&job, &mid, None, true)).err().unwrap_or_default();
        for err in &mid_errors {
            e.fail(
                "search",
                format!("a trial with {} would be invalid: {}: {}", describe_config(&mid), err.path, err.reason),
            );
        }
        for (i, p) in job.config.space.params.iter().enumerate() {
            for u in [0.0, 1.0] {
                // Mid-range values elsewhere, and whatever activates this parameter.
                let cfg: Config = job.config.space.build(|_, q, _| {
                    if q.name == p.name {
                        p.from_unit(u)
                    } else if let Some(c) = p.when.as_ref().filter(|c| c.param == q.name) {
                        c.values[0].clone()
                    } else {
                        q.from_unit(0.5)
                    }
                });
                if let Err(errors) = validate_job(&trial_spec(&job, &cfg, None, true)) {
                    for err in errors.into_iter().filter(|x| !mid_errors.contains(x)) {
                        let v = p.from_unit(u);
                        e.fail(
                            format!("search.params[{i}]"),
                            format!("with {} = {v}, {}: {}", p.name, err.path, err.reason),
                        );
                    }
                }
            }
        }
    }
    e.dedup();
    e.into_result(job)
}

fn describe_config(cfg: &Config) -> String {
    cfg.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
}

fn param(e: &mut FieldErrors, i: usize, p: &proto::SearchParam, space: &Space, template: &Value) -> Option<Param> {
    let path = format!("search.params[{i}]");
    let name = p.name.trim().to_owned();
    if name.is_empty() {
        e.fail(
            format!("{path}.name"),
            "must name a field of the trial template (\"optimizer.lr\") or a free parameter (\"trial.depth\")",
        );
        return None;
    }
    if space.param(&name).is_some() {
        e.fail(format!("{path}.name"), format!("`{name}` is searched twice"));
        return None;
    }
    if !name.starts_with("trial.") && lookup(template, &name).is_none() {
        e.fail(format!("{path}.name"), format!("the trial template has no field `{name}`"));
        return None;
    }
    let kind =
        if p.r#type.is_empty() { if p.values.is_empty() { "float" } else { "choice" } } else { p.r#type.as_str() };
    let domain = match kind {
        "choice" => {
            if p.values.is_empty() {
                e.fail(format!("{path}.values"), "must list at least one choice");
                return None;
            }
            Domain::Choice(p.values.iter().map(|v| parse_json(v)).collect())
        }
        "int" | "float" => {
            let (Some(low), Some(high)) = (p.low, p.high) else {
                e.fail(format!("{path}.low"), format!("a {kind} range needs low and high"));
                return None;
            };
            if !(low.is_finite() && high.is_finite()) || low > high {
                e.fail(format!("{path}.low"), format!("must be <= high ({low} > {high})"));
                return None;
            }
            if p.log && low <= 0.0 {
                e.fail(format!("{path}.low"), format!("a log scale needs low > 0, got {low}"));
                return None;
            }
            if !p.values.is_empty() {
                e.fail(format!("{path}.values"), format!("only choice parameters list values, not {kind}"));
            }
            if kind == "int" {
                if low.fract() != 0.0 || high.fract() != 0.0 {
                    e.fail(format!("{path}.low"), "int bounds must be whole numbers");
                }
                Domain::Int { low: low as i64, high: high as i64, log: p.log }
            } else {
                Domain::Float { low, high, log: p.log }
            }
        }
        other => {
            e.fail(format!("{path}.type"), format!("must be choice, int or float, got `{other}`"));
            return None;
        }
    };
    let when = match &p.when {
        None => None,
        Some(c) => {
            if space.param(&c.param).is_none() {
                e.fail(
                    format!("{path}.when.param"),
                    format!("`{}` is not a parameter declared before this one", c.param),
                );
                return None;
            }
            if c.values.is_empty() {
                e.fail(format!("{path}.when.values"), "must list at least one value");
                return None;
            }
            Some(Condition { param: c.param.clone(), values: c.values.iter().map(|v| parse_json(v)).collect() })
        }
    };
    Some(Param { name, domain, when })
}

fn arch(e: &mut FieldErrors, a: &proto::SearchArch, template: &JobSpec) -> Option<MacroArch> {
    let model = template.model.clone().unwrap_or_default();
    if !(model.kind.is_empty() || model.kind == "mlp") {
        e.fail("search.arch", format!("searches MLP layer sequences; the template's model is `{}`", model.kind));
        return None;
    }
    if a.min_depth < 1 || a.max_depth < a.min_depth || a.max_depth > 64 {
        e.fail(
            "search.arch.min_depth",
            format!("need 1 <= min_depth <= max_depth <= 64, got {}..={}", a.min_depth, a.max_depth),
        );
        return None;
    }
    if a.widths.is_empty() || a.widths.iter().any(|w| *w <= 0 || *w > 1 << 20) {
        e.fail("search.arch.widths", "must list widths in 1..=1048576");
        return None;
    }
    if !a.cell_ops.is_empty() || a.min_cells != 0 || a.max_cells != 0 || a.cell_width != 0 {
        e.fail("search.arch", "cell_ops, min_cells, max_cells and cell_width need cell_nodes (a cell search)");
        return None;
    }
    let mut widths = a.widths.clone();
    widths.sort_unstable();
    widths.dedup();
    let activations = if a.activations.is_empty() {
        vec![if model.activation.is_empty() { "relu".to_owned() } else { model.activation.clone() }]
    } else {
        a.activations.clone()
    };
    Some(MacroArch { min_depth: a.min_depth, max_depth: a.max_depth, widths, activations, skips: a.skips })
}

fn micro(e: &mut FieldErrors, a: &proto::SearchArch, template: &JobSpec) -> Option<MicroArch> {
    let model = template.model.clone().unwrap_or_default();
    if !(model.kind.is_empty() || model.kind == "mlp") {
        e.fail("search.arch", format!("searches MLP cells; the template's model is `{}`", model.kind));
        return None;
    }
    if a.min_depth != 0 || a.max_depth != 0 || !a.widths.is_empty() || a.skips {
        e.fail("search.arch", "search either a layer sequence (depth, widths, skips) or a cell (cell_nodes), not both");
        return None;
    }
    if !(1..=6).contains(&a.cell_nodes) {
        e.fail("search.arch.cell_nodes", format!("must be in 1..=6, got {}", a.cell_nodes));
        return None;
    }
    let ops = if a.cell_ops.is_empty() {
        vec!["zero".to_owned(), "identity".to_owned(), "linear".to_owned()]
    } else {
        a.cell_ops.clone()
    };
    for (k, o) in ops.iter().enumerate() {
        if shoal_common::spec::CellOp::parse(o).is_none() {
            e.fail(format!("search.arch.cell_ops[{k}]"), format!("unknown operation `{o}` (zero, identity, linear)"));
            return None;
        }
    }
    let min_cells = if a.min_cells == 0 { 2 } else { a.min_cells };
    let max_cells = if a.max_cells == 0 { min_cells.max(2) } else { a.max_cells };
    if !(1 <= min_cells && min_cells <= max_cells && max_cells <= 16) {
        e.fail(
            "search.arch.min_cells",
            format!("need 1 <= min_cells <= max_cells <= 16, got {min_cells}..={max_cells}"),
        );
        return None;
    }
    let width = if a.cell_width == 0 { 64 } else { a.cell_width };
    if !(1..=65536).contains(&width) {
        e.fail("search.arch.cell_width", format!("must be in 1..=65536, got {width}"));
        return None;
    }
    let activation = a
        .activations
        .first()
        .cloned()
        .unwrap_or_else(|| if model.activation.is_empty() { "relu".to_owned() } else { model.activation.clone() });
    Some(MicroArch { nodes: a.cell_nodes as usize, ops, min_cells, max_cells, width, activation })
}

/// Finds `a.b[2].c` in a JSON tree.
fn lookup<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = root;
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, Some(rest.strip_suffix(']')?.parse::<usize>().ok()?)),
            None => (part, None),
        };
        cur = cur.as_object()?.get(key)?;
        if let Some(i) = index {
            cur = cur.as_array()?.get(i)?;
        }
    }
    Some(cur)
}

fn set(root: &mut Value, path: &str, value: Value) {
    let mut cur = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (n, part) in parts.iter().enumerate() {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*part, None),
        };
        let Some(obj) = cur.as_object_mut() else { return };
        let last = n + 1 == parts.len();
        if last && index.is_none() {
            obj.insert(key.to_owned(), value);
            return;
        }
        let entry = obj.entry(key.to_owned()).or_insert(Value::Null);
        if entry.is_null() {
            *entry = if index.is_some() { Value::Array(Vec::new()) } else { Value::Object(Default::default()) };
        }
        cur = entry;
        if let Some(i) = index {
            let Some(arr) = cur.as_array_mut() else { return };
            if i >= arr.len() {
                return;
            }
            if last {
                arr[i] = value;
                return;
            }
            cur = &mut arr[i];
        }
    }
}

/// The job spec of a trial: the template with the trial's parameters (and architecture) applied,
/// at the search's lower fidelity unless `full`. `inherit` names the parent's checkpoint and model.
pub fn trial_spec(job: &SearchJob, cfg: &Config, inherit: Option<(&str, &proto::ModelSpec)>, full: bool) -> JobSpec {
    let mut v = serde_json::to_value(&job.template).unwrap_or(Value::Null);
    for (name, value) in cfg {
        if !name.starts_with("arch.") && !name.starts_with("trial.") {
            set(&mut v, name, value.clone());
        }
    }
    let mut spec: JobSpec = serde_json::from_value(v).unwrap_or_else(|_| job.template.clone());
    if let Some(a) = &job.config.arch {
        let model = spec.model.get_or_insert_with(Default::default);
        model.layers = a
            .layers(cfg)
            .into_iter()
            .map(|l| proto::LayerSpec {
                r#type: "linear".into(),
                width: l.width,
                activation: l.activation,
                skip: l.skip,
                ..Default::default()
            })
            .collect();
    }
    if let Some(m) = &job.micro {
        let model = spec.model.get_or_insert_with(Default::default);
        let (ops, cells) = m.cell(cfg);
        let mut layers = vec![proto::LayerSpec {
            r#type: "linear".into(),
            width: m.width,
            activation: m.activation.clone(),
            ..Default::default()
        }];
        for _ in 0..cells {
            layers.push(proto::LayerSpec {
                r#type: "cell".into(),
                ops: ops.clone(),
                activation: m.activation.clone(),
                ..Default::default()
            });
        }
        model.layers = layers;
    }
    if !full {
        let f = &job.fidelity;
        if let Some(t) = spec.training.as_mut() {
            if let Some(n) = f.steps {
                (t.steps, t.epochs) = (n, 0);
            }
            if let Some(n) = f.epochs {
                (t.epochs, t.steps) = (n, 0);
            }
        }
        if let Some(d) = f.data {
            spec.dataset.get_or_insert_with(Default::default).train_fraction = Some(d);
        }
        if let Some(w) = f.width
            && let Some(m) = spec.model.as_mut()
        {
            for l in &mut m.layers {
                l.width = ((l.width as f64 * w).round() as i64).max(if l.width > 0 { 1 } else { 0 });
                l.channels = ((l.channels as f64 * w).round() as i64).max(if l.channels > 0 { 1 } else { 0 });
            }
        }
        if let Some((checkpoint, model)) = inherit {
            spec.inherit = Some(proto::InheritSpec { checkpoint: checkpoint.to_owned(), model: Some(model.clone()) });
        }
    }
    spec.trial_params = serde_json::to_string(&program_params(cfg)).unwrap_or_default();
    spec
}

/// The parameters a trial's program sees: free `trial.*` parameters without their prefix, the
/// others by their full name.
pub fn program_params(cfg: &Config) -> Config {
    cfg.iter().map(|(k, v)| (k.strip_prefix("trial.").unwrap_or(k).to_owned(), v.clone())).collect()
}

/// The trial's job name: `<search>/trial-<index>`.
pub fn trial_name(search: &str, index: usize) -> String {
    format!("{search}/trial-{index}")
}

/// The objective's value in a validation metric point, if it carries it.
pub fn metric_value(metric: &str, m: &MetricPoint) -> Option<f64> {
    let name = metric.strip_prefix("validation_").unwrap_or(metric);
    match name {
        "accuracy" => m.accuracy,
        "loss" => Some(m.loss),
        other => m.extra.get(other).copied(),
    }
}

/// Budget a metric point stands for, in the search's unit.
pub fn budget_of(job: &SearchJob, m: &MetricPoint) -> f64 {
    if job.epochs && m.total_epochs > 0 && m.total_steps > 0 {
        m.step as f64 * m.total_epochs as f64 / m.total_steps as f64
    } else {
        m.step as f64
    }
}

/// A one-line description of a trial's parameters.
pub fn describe(trial: &Trial, arch: Option<&MacroArch>, micro: Option<&MicroArch>) -> String {
    let mut parts: Vec<String> = trial
        .config
        .iter()
        .filter(|(k, _)| !k.starts_with("arch."))
        .map(|(k, v)| match v.as_f64() {
            Some(x) if v.is_f64() => format!("{k}={x:.4e}"),
            _ => format!("{k}={v}"),
        })
        .collect();
    if let Some(a) = arch {
        let layers: Vec<String> = a
            .layers(&trial.config)
            .iter()
            .map(|l| format!("{}{}{}", if l.skip { "+" } else { "" }, l.width, short(&l.activation)))
            .collect();
        parts.insert(0, format!("layers=[{}]", layers.join(",")));
    }
    if let Some(m) = micro {
        let (ops, cells) = m.cell(&trial.config);
        let short: Vec<&str> = ops.iter().map(|o| o.get(..3).unwrap_or(o)).collect();
        parts.insert(0, format!("cell=[{}] x{cells}", short.join(" ")));
    }
    parts.join(" ")
}

fn short(act: &str) -> String {
    match act {
        "relu" => String::new(),
        other => format!(":{other}"),
    }
}

#[cfg(test)]
mod tests;
