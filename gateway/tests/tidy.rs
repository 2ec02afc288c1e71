//! Tidy checks over the whole workspace's sources, the shape rules of
//! STYLE.md that a compiler does not enforce:
//! - no source file (under a crate's `src/`) over `SOURCE_LINES_MAX` lines;
//! - files of a crate import each other in one direction (no cycle among
//!   the modules `crate::` and `super::` paths name);
//! - no two types (struct, enum, trait, union or top-level alias) with the
//!   same name anywhere in the workspace, tests included;
//! - every source file opens with a `//!` module doc.
//!
//! It reads files only; it lives in the gateway's tests because the gateway
//! is the crate that sits over all the others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// "No source file over about 600 lines": the limit, with the slack
/// "about" gives. Tests can live in `tests/`, which this does not count.
const SOURCE_LINES_MAX: usize = 650;

const CRATES: [&str; 5] = ["engine", "persistence", "gateway", "loadtest", "benches"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway sits in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources(krate: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&workspace().join(krate).join("src"), &mut files);
    files.sort();
    files
}

#[test]
fn source_files_are_short() {
    let mut long = Vec::new();
    for krate in CRATES {
        for file in sources(krate) {
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            if lines > SOURCE_LINES_MAX {
                long.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "over {SOURCE_LINES_MAX} lines: {long:#?}");
}

#[test]
fn source_files_open_with_a_module_doc() {
    let mut missing = Vec::new();
    for krate in CRATES {
        for file in sources(krate) {
            let text = std::fs::read_to_string(&file).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                missing.push(file.display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "no `//!` doc: {missing:#?}");
}

/// A file's module path inside its crate: `src/http/purchase.rs` is
/// `["http", "purchase"]`; `lib.rs`, `main.rs` and `bin/*.rs` are roots.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return vec![format!("bin:{}", parts.join("/"))];
    }
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its trailing
/// `#[cfg(test)]` part (unit tests import their parent by design).
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a file names: with `crate::` or `super::` (brace
/// groups included), and its own child modules it names with `use child::`
/// or `use self::child::` (a facade re-exporting them). Each resolves to
/// the longest prefix that is a module of the crate.
fn imports(code: &str, me: &[String], modules: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    for path in paths(code) {
        let (mut base, mut rest): (Vec<String>, &[String]) = match path.first().map(String::as_str)
        {
            Some("crate") => (Vec::new(), &path[1..]),
            Some("self") => (me.to_vec(), &path[1..]),
            _ => (me.to_vec(), &path[..]),
        };
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
        let mut best = modules.contains(&base).then(|| base.clone());
        let mut target = base;
        for seg in rest {
            target.push(seg.clone());
            if modules.contains(&target) {
                best = Some(target.clone());
            }
        }
        // The crate root (`lib.rs`) is the crate's facade, not a peer of
        // its files: paths to its re-exports are not edges.
        if let Some(t) = best.filter(|t| t.as_slice() != me && !t.is_empty()) {
            out.insert(t);
        }
    }
    out
}

/// Every path a file's code names: `crate::…` and `super::…` anywhere, and
/// each `use` path, with brace groups expanded (`use crate::{a::X, b}` is
/// `crate::a::X` and `crate::b`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let starts_word = |at: usize| {
        at == 0
            || !(bytes[at - 1].is_ascii_alphanumeric()
                || bytes[at - 1] == b'_'
                || bytes[at - 1] == b':')
    };
    for (start, _) in code.match_indices("use ") {
        if !starts_word(start) {
            continue;
        }
        let from = start + 4;
        let end = code[from..].find(';').map_or(code.len(), |i| from + i);
        expand(&code[from..end], &mut out);
    }
    for keyword in ["crate::", "super::"] {
        for (start, _) in code.match_indices(keyword) {
            if !starts_word(start) {
                continue;
            }
            let text = &code[start..];
            let stop = text
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(text.len());
            // A brace group right after is a `use`, expanded above.
            if !text[stop..].starts_with('{') {
                out.push(split_path(&text[..stop]));
            }
        }
    }
    out
}

/// `a::{b::C, d}` as `a::b::C` and `a::d` (nested groups are flattened the
/// same way, one level at a time).
fn expand(text: &str, out: &mut Vec<Vec<String>>) {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    match text.find('{') {
        None => out.push(split_path(&text)),
        Some(open) => {
            let prefix = &text[..open];
            let inner = text[open + 1..].trim_end_matches('}');
            for item in inner.split(',').filter(|i| !i.is_empty()) {
                expand(&format!("{prefix}{item}"), out);
            }
        }
    }
}

fn split_path(text: &str) -> Vec<String> {
    text.split("::")
        .map(|s| s.trim_matches(|c: char| !(c.is_alphanumeric() || c == '_')))
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|n| n.join("::")).collect();
                    cycle.push(next.join("::"));
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn files_of_a_crate_import_each_other_one_way() {
    for krate in CRATES {
        let src = workspace().join(krate).join("src");
        let files = sources(krate);
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
        let mut graph = BTreeMap::new();
        for file in &files {
            let me = module_of(&src, file);
            if me.is_empty() || me[0].starts_with("bin:") {
                continue;
            }
            let code = code_of(&std::fs::read_to_string(file).unwrap());
            let edges: BTreeSet<Vec<String>> = imports(&code, &me, &modules)
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect();
            graph.insert(me, edges);
        }
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{krate}: files import each other in a circle: {}",
                cycle.join(" -> ")
            );
        }
    }
}

/// The resolver itself: `super::` climbs, `crate::` starts at the root, and
/// a path ending in an item resolves to the module that holds it.
#[test]
fn imports_resolve_to_modules() {
    let m = |path: &str| -> Vec<String> {
        path.split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let modules: BTreeSet<Vec<String>> = ["", "a", "a::b", "a::d", "c"].map(m).into();
    let code = "use super::super::c::Thing; use super::d::Y; let x = crate::c::f();";
    assert_eq!(
        imports(code, &m("a::b"), &modules),
        [m("a::d"), m("c")].into()
    );
    // A parent naming its child is an edge, and so is the child naming its
    // parent: together, a circle between the two files.
    assert_eq!(
        imports("pub use b::Z;", &m("a"), &modules),
        [m("a::b")].into()
    );
    assert_eq!(
        imports("use super::X;", &m("a::b"), &modules),
        [m("a")].into()
    );
    // Brace groups.
    let code = "use crate::{a::d::Y, c};";
    assert_eq!(
        imports(code, &m("a::b"), &modules),
        [m("a::d"), m("c")].into()
    );
    let mut graph = BTreeMap::new();
    graph.insert(vec!["a".to_string()], [vec!["c".to_string()]].into());
    graph.insert(vec!["c".to_string()], [vec!["a".to_string()]].into());
    assert!(find_cycle(&graph).is_some());
}

#[test]
fn type_names_are_unique_in_the_workspace() {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for krate in CRATES {
        let mut files = Vec::new();
        rust_files(&workspace().join(krate), &mut files);
        files.retain(|f| !f.components().any(|c| c.as_os_str() == "target"));
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for name in declared_types(&text) {
                seen.entry(name)
                    .or_default()
                    .push(file.display().to_string());
            }
        }
    }
    let dups: Vec<_> = seen.iter().filter(|(_, files)| files.len() > 1).collect();
    assert!(dups.is_empty(), "types declared twice: {dups:#?}");
}

/// Names declared by `struct`, `enum`, `trait` or `union` items anywhere,
/// and by `type` aliases at the top level (an indented `type` is an
/// associated type, such as a `Future`'s `Output`).
fn declared_types(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let top = !line.starts_with(char::is_whitespace);
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_some_and(|w| w.starts_with("pub")) {
            words.next();
        }
        let (Some(kind), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let name: String = name
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let is_type =
            matches!(kind, "struct" | "enum" | "trait" | "union") || (kind == "type" && top);
        if is_type && name.starts_with(|c: char| c.is_ascii_uppercase()) {
            names.push(name);
        }
    }
    names
}
