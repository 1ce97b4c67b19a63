//! The modules of `train/src` form layers, and a module imports only from its own layer or below,
//! with no cycles: errors at the bottom, then the transport traits, the backend, layers, data and
//! models, the loop core, the cooperation strategies, and the entry point on top. A new top-level
//! module fails this test until it is given a layer in [`LAYERS`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module of the crate and its layer (0 = bottom).
const LAYERS: &[(&str, usize)] = &[
    ("error", 0),
    ("collective", 1),
    ("link", 1),
    ("rng", 1),
    ("sparse", 2),
    ("backend", 2),
    ("nn", 3),
    ("data", 4),
    ("model", 4),
    ("optim", 4),
    ("checkpoint", 4),
    ("morph", 4),
    ("distributed", 4),
    ("engine", 5),
    ("coop", 6),
    ("compress", 6),
    ("trainer", 7),
];

/// Files outside the layers: the crate root (module lines and re-exports) and the benchmark
/// helpers on their way out of the library.
const EXEMPT: &[&str] = &["lib.rs", "bench.rs"];

/// One import of another top-level module.
#[derive(Clone, Debug)]
struct Edge {
    file: String,
    from: String,
    to: String,
    /// The path as written (`crate::model`, `super::engine`).
    import: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read src").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments, string or character literals (their contents could look like
/// paths or braces).
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c[i] == 'r' && (i == 0 || !ident(c[i - 1])) && matches!(next, Some('#') | Some('"')) {
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            while j < c.len() && !(c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#'))) {
                j += 1;
            }
            i = j + 1 + hashes;
            out.push_str("\"\"");
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' && next == Some('\\') {
            i += 2;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c[i] == '\'' && c.get(i + 2) == Some(&'\'') {
            i += 3;
            out.push_str("' '");
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Identifiers and the punctuation that matters for paths.
fn tokens(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let c: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_alphanumeric() || c[i] == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else {
            if !c[i].is_whitespace() {
                out.push(c[i].to_string());
            }
            i += 1;
        }
    }
    out
}

/// The first segments a path continues with at `toks[i]`: one name, or each name of a `{...}`
/// group.
fn heads(toks: &[String], i: usize) -> Vec<String> {
    match toks.get(i).map(String::as_str) {
        Some("{") => {
            let mut names = Vec::new();
            let mut depth = 0;
            let mut expect = true;
            for t in &toks[i..] {
                match t.as_str() {
                    "{" => {
                        depth += 1;
                        expect = depth == 1;
                    }
                    "}" => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    "," if depth == 1 => expect = true,
                    name if expect && depth == 1 => {
                        names.push(name.to_string());
                        expect = false;
                    }
                    _ => {}
                }
            }
            names
        }
        Some(name) => vec![name.to_string()],
        None => Vec::new(),
    }
}

/// The module path of a file: `engine/run.rs` is `engine::run`, `coop/mod.rs` is `coop`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// Names the crate root re-exports, and the top-level module each comes from (`Model` -> `model`).
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let toks = tokens(&code_only(lib));
    let mut map = BTreeMap::new();
    for i in 0..toks.len() {
        if toks[i] == "use" && i > 0 && toks[i - 1] == "pub" {
            let module = toks[i + 1].clone();
            let mut j = i + 2;
            let mut last = module.clone();
            while toks.get(j).map(String::as_str) == Some("::") {
                if toks.get(j + 1).map(String::as_str) == Some("{") {
                    for name in heads(&toks, j + 1) {
                        map.insert(name, module.clone());
                    }
                    last.clear();
                    break;
                }
                last = toks[j + 1].clone();
                j += 2;
            }
            if !last.is_empty() && last != module {
                map.insert(last, module.clone());
            }
        }
    }
    map
}

/// Every import in `src` of a top-level module other than the file's own.
fn edges_of(rel: &Path, src: &str, roots: &BTreeMap<String, String>) -> Vec<Edge> {
    let file = format!("train/src/{}", rel.display());
    let path = module_path(rel);
    let own = path[0].clone();
    let toks = tokens(&code_only(src));
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut edges = Vec::new();
    let mut add = |to: String, import: String| {
        let to = roots.get(&to).cloned().unwrap_or(to);
        if to != own {
            edges.push(Edge { file: file.clone(), from: own.clone(), to, import });
        }
    };
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i].as_str();
        let after_path = i > 0 && toks[i - 1] == "::";
        match t {
            "mod" if toks.get(i + 2).map(String::as_str) == Some("{") => {
                inline.push((toks[i + 1].clone(), depth + 1));
            }
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "crate" if !after_path && toks.get(i + 1).map(String::as_str) == Some("::") => {
                for head in heads(&toks, i + 2) {
                    add(head.clone(), format!("crate::{head}"));
                }
            }
            "super" if !after_path && toks.get(i + 1).map(String::as_str) == Some("::") => {
                let mut here: Vec<String> = path.iter().cloned().chain(inline.iter().map(|(m, _)| m.clone())).collect();
                let mut j = i;
                let mut written = String::new();
                while toks.get(j).map(String::as_str) == Some("super")
                    && toks.get(j + 1).map(String::as_str) == Some("::")
                {
                    here.pop();
                    written.push_str("super::");
                    j += 2;
                }
                if here.is_empty() {
                    for head in heads(&toks, j) {
                        add(head.clone(), format!("{written}{head}"));
                    }
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    edges
}

/// A cycle among the modules, as the edges that make it, if there is one.
fn find_cycle(edges: &[Edge]) -> Option<Vec<Edge>> {
    let mut graph: BTreeMap<&str, Vec<&Edge>> = BTreeMap::new();
    for e in edges {
        graph.entry(e.from.as_str()).or_default().push(e);
    }
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a Edge>>,
        done: &mut BTreeSet<&'a str>,
        stack: &mut Vec<&'a Edge>,
    ) -> Option<Vec<Edge>> {
        for &e in graph.get(node).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(start) = stack.iter().position(|s| s.from == e.to) {
                let mut cycle: Vec<Edge> = stack[start..].iter().map(|&s| s.clone()).collect();
                cycle.push(e.clone());
                return Some(cycle);
            }
            if e.to == node || done.contains(e.to.as_str()) {
                continue;
            }
            stack.push(e);
            if let Some(c) = visit(&e.to, graph, done, stack) {
                return Some(c);
            }
            stack.pop();
        }
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for &node in graph.keys() {
        if let Some(c) = visit(node, &graph, &mut done, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// All edges between top-level modules of `train/src`.
fn crate_edges() -> Vec<Edge> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let roots = root_reexports(&std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs"));
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src").to_path_buf();
        if EXEMPT.iter().any(|x| rel == Path::new(x)) {
            continue;
        }
        edges.extend(edges_of(&rel, &std::fs::read_to_string(&f).expect("read"), &roots));
    }
    edges
}

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

#[test]
fn modules_import_only_downward_and_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let top = module_path(rel)[0].clone();
        if !EXEMPT.iter().any(|x| rel == Path::new(x)) && layer(&top).is_none() {
            problems.push(format!("train/src/{}: module `{top}` has no layer in LAYERS", rel.display()));
        }
    }
    let edges = crate_edges();
    for e in &edges {
        match (layer(&e.from), layer(&e.to)) {
            (Some(from), Some(to)) if to > from => problems.push(format!(
                "{}: `{}` imports upward, from `{}` (layer {from}) to `{}` (layer {to})",
                e.file, e.import, e.from, e.to
            )),
            (Some(_), None) => problems.push(format!("{}: `{}` names unknown module `{}`", e.file, e.import, e.to)),
            _ => {}
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let steps: Vec<String> = cycle.iter().map(|e| format!("{} (`{}` in {})", e.from, e.import, e.file)).collect();
        problems.push(format!("import cycle: {}", steps.join(" -> ")));
    }
    assert!(problems.is_empty(), "layering violations:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_imports_through_groups_super_and_root_reexports() {
    let roots: BTreeMap<String, String> = [("Model".to_string(), "model".to_string())].into();
    let src = "//! `crate::trainer` in a comment\nuse crate::{error::Result, Model};\nuse super::engine::Plan;\n\
               mod tests {\n    use super::*;\n}\nconst S: &str = \"crate::coop\";\nfn f() { crate::rng::Rng::new(0); }\n";
    let edges = edges_of(Path::new("data/loader.rs"), src, &roots);
    let to: Vec<&str> = edges.iter().map(|e| e.to.as_str()).collect();
    assert_eq!(to, ["error", "model", "rng"], "{edges:?}");
    let top = edges_of(Path::new("coop.rs"), "use super::engine::Run;\n", &roots);
    assert_eq!(top.iter().map(|e| e.to.as_str()).collect::<Vec<_>>(), ["engine"]);
    let a = Edge { file: "a.rs".into(), from: "a".into(), to: "b".into(), import: "crate::b".into() };
    let b = Edge { file: "b.rs".into(), from: "b".into(), to: "a".into(), import: "crate::a".into() };
    assert_eq!(find_cycle(&[a.clone(), b]).map(|c| c.len()), Some(2));
    assert!(find_cycle(&[a]).is_none());
}
