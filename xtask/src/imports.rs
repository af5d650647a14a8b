//! `cargo xtask test`'s import check: no two modules of a crate import each other, directly
//! or around a loop.
//!
//! Each crate's module tree is read from its root (`src/lib.rs`, `src/main.rs`) by following
//! `mod NAME;` declarations to files. An edge A → B is a `use` of, or a path through, module B
//! in module A's file (`crate::…`, `super::…`, `self::…`, or a child module's name). Comments,
//! strings and inline `mod NAME { … }` blocks (tests) are left out. A path that names an
//! item of a parent module — say `crate::Stack`, re-exported by `lib.rs` — is an edge to that
//! parent, so a child that takes its siblings' items through the parent's re-exports closes
//! a loop: the rule is that re-exports point down and imports name the module that owns the
//! item.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

/// A module: its path from the crate root and its file.
#[derive(Debug)]
struct Module {
    path: Vec<String>,
    file: PathBuf,
    /// Child modules declared with `mod NAME;`, by name → index.
    children: BTreeMap<String, usize>,
    parent: Option<usize>,
}

/// The crate roots of the workspace's members (libraries, binaries and the eBPF programs).
fn crate_roots(root: &Path) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for member in [
        "dataplane",
        "control",
        "bench",
        "xtask",
        "ebpf/ioth-common",
        "ebpf/ioth-ebpf",
    ] {
        let src = root.join(member).join("src");
        for f in ["lib.rs", "main.rs"] {
            if src.join(f).is_file() {
                roots.push(src.join(f));
            }
        }
        if let Ok(bins) = fs::read_dir(src.join("bin")) {
            for b in bins.flatten() {
                if b.path().extension().is_some_and(|e| e == "rs") {
                    roots.push(b.path());
                }
            }
        }
    }
    roots
}

/// Source text without comments, string and char literals (replaced by spaces, so a `;`
/// or `crate::` inside them counts for nothing).
pub(crate) fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied()) {
            (b'/', Some(b'/')) => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
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
            }
            (b'r', Some(b'#' | b'"')) if i == 0 || !is_ident(b[i - 1]) => {
                // Raw string r"…" or r#"…"#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"' && b[j + 1..].iter().take(hashes).all(|c| *c == b'#') {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                i = j;
                out.push_str("\"\"");
            }
            (b'"', _) => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            (b'\'', _) => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
                let end = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .position(|c| *c == b'\'')
                        .map(|p| i + 3 + p)
                } else if b.get(i + 2) == Some(&b'\'') {
                    Some(i + 3)
                } else {
                    None
                };
                match end {
                    Some(e) => {
                        out.push_str("' '");
                        i = e;
                    }
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            (c, _) => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Removes inline `mod NAME { … }` blocks (their paths are relative to another module).
pub(crate) fn without_inline_mods(code: &str) -> String {
    let b = code.as_bytes();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < b.len() {
        if code[i..].starts_with("mod ") && (i == 0 || !is_ident(b[i - 1])) {
            let mut j = i + 4;
            while j < b.len() && (is_ident(b[j]) || b[j] == b' ') {
                j += 1;
            }
            if b.get(j) == Some(&b'{') {
                let mut depth = 0;
                while j < b.len() {
                    match b[j] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                i = j + 1;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// `mod NAME;` declarations of a file (stripped code).
fn mod_decls(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in code.match_indices("mod ") {
        if i > 0 && is_ident(code.as_bytes()[i - 1]) {
            continue;
        }
        let rest = &code[i + 4..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && rest[name.len()..].trim_start().starts_with(';') {
            found.push(name);
        }
    }
    found
}

/// Expands the use tree `tree` (`a::{b, c::{d}}`) into its paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let base = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&base, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&base, &inner[start..], out);
    } else if !tree.is_empty() {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(join(prefix, path));
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}::{b}"),
    }
}

/// Every module path a file refers to: its `use` trees and inline `crate::`/`super::`/
/// `self::` paths.
fn references(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (i, _) in code.match_indices("use ") {
        if i > 0 && is_ident(code.as_bytes()[i - 1]) {
            continue;
        }
        let Some(end) = code[i..].find(';') else {
            continue;
        };
        let tree: String = code[i + 4..i + end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        expand("", &tree, &mut paths);
    }
    for start in ["crate::", "super::", "self::"] {
        for (i, _) in code.match_indices(start) {
            if i > 0 && (is_ident(code.as_bytes()[i - 1]) || code.as_bytes()[i - 1] == b':') {
                continue;
            }
            let path: String = code[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let path = path.trim_end_matches(':');
            // `crate::{…}` / `super::{…}` are use trees, expanded above.
            if !matches!(path, "crate" | "super" | "self") {
                paths.push(path.to_owned());
            }
        }
    }
    paths
}

/// The module a path leads to from module `from`, if it stays inside the crate.
fn resolve(mods: &[Module], from: usize, path: &str) -> Option<usize> {
    let mut segs = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut at = match *segs.peek()? {
        "crate" => {
            segs.next();
            0
        }
        "self" => {
            segs.next();
            from
        }
        "super" => {
            let mut m = from;
            while segs.peek() == Some(&"super") {
                segs.next();
                m = mods[m].parent?;
            }
            m
        }
        first if mods[from].children.contains_key(first) => from,
        _ => return None,
    };
    for s in segs {
        match mods[at].children.get(s) {
            Some(&c) => at = c,
            None => break,
        }
    }
    Some(at)
}

/// Reads the module tree of the crate rooted at `root_file`.
fn module_tree(root_file: &Path) -> Result<Vec<Module>> {
    let mut mods = vec![Module {
        path: Vec::new(),
        file: root_file.to_owned(),
        children: BTreeMap::new(),
        parent: None,
    }];
    let mut i = 0;
    while i < mods.len() {
        let file = mods[i].file.clone();
        let code = strip(&fs::read_to_string(&file).with_context(|| file.display().to_string())?);
        // Children of `src/lib.rs`, `src/x/mod.rs` and `src/bin/y.rs` live beside them;
        // children of `src/x.rs` live in `src/x/`.
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let dir = if i == 0 || stem == "mod" {
            file.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            file.with_extension("")
        };
        for name in mod_decls(&code) {
            let candidates = [
                dir.join(format!("{name}.rs")),
                dir.join(&name).join("mod.rs"),
            ];
            let Some(child) = candidates.into_iter().find(|p| p.is_file()) else {
                continue;
            };
            let mut path = mods[i].path.clone();
            path.push(name.clone());
            let idx = mods.len();
            mods.push(Module {
                path,
                file: child,
                children: BTreeMap::new(),
                parent: Some(i),
            });
            mods[i].children.insert(name, idx);
        }
        i += 1;
    }
    Ok(mods)
}

/// The import loops of one crate, each as a list of module names.
fn loops_in(root_file: &Path) -> Result<Vec<Vec<String>>> {
    let mods = module_tree(root_file)?;
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); mods.len()];
    for (i, m) in mods.iter().enumerate() {
        let code = without_inline_mods(&strip(&fs::read_to_string(&m.file)?));
        for r in references(&code) {
            if let Some(to) = resolve(&mods, i, &r)
                && to != i
            {
                edges[i].insert(to);
            }
        }
    }
    if std::env::var_os("IOTH_IMPORTS_DEBUG").is_some() {
        for (i, e) in edges.iter().enumerate() {
            for &j in e {
                eprintln!("{} -> {}", mods[i].path.join("::"), mods[j].path.join("::"));
            }
        }
    }
    let name = |i: usize| {
        if mods[i].path.is_empty() {
            "crate".to_owned()
        } else {
            mods[i].path.join("::")
        }
    };
    Ok(strongly_connected(&edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.into_iter().map(name).collect())
        .collect())
}

/// Tarjan's strongly connected components.
fn strongly_connected(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        edges: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in s.edges[v].iter() {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            comp.sort_unstable();
            s.out.push(comp);
        }
    }
    let n = edges.len();
    let mut s = State {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Fails with every import loop of the workspace, crate by crate.
pub fn check(root: &Path) -> Result<()> {
    let mut found = Vec::new();
    for r in crate_roots(root) {
        for l in loops_in(&r)? {
            let krate = r.strip_prefix(root).unwrap_or(&r).display().to_string();
            found.push(format!("{krate}: {}", l.join(" ⇄ ")));
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("import loops:\n  {}", found.join("\n  "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_trees_expand_to_every_path() {
        let mut out = Vec::new();
        expand("", "crate::{a::{B, c::D}, e as f, g::*}", &mut out);
        assert_eq!(
            out,
            ["crate::a::B", "crate::a::c::D", "crate::e", "crate::g::*"]
        );
    }

    #[test]
    fn comments_strings_and_test_modules_do_not_count() {
        let code = strip("// use crate::a;\nlet s = \"crate::b\"; /* crate::c */ use crate::d;\n");
        assert_eq!(references(&code), ["crate::d", "crate::d"]);
        let code = without_inline_mods(&strip("mod tests { use super::x; }\nuse crate::e;"));
        assert_eq!(references(&code), ["crate::e", "crate::e"]);
    }

    #[test]
    fn a_loop_between_two_files_is_found_and_a_chain_is_not() {
        let dir = std::env::temp_dir().join(format!("ioth-imports-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("b")).expect("temp dir");
        let write = |p: &str, s: &str| fs::write(dir.join(p), s).expect("write");
        write("lib.rs", "mod a; mod b;\n");
        write("a.rs", "use crate::b::inner::X;\n");
        write("b/mod.rs", "pub mod inner;\n");
        write("b/inner.rs", "pub struct X;\n");
        assert!(loops_in(&dir.join("lib.rs")).expect("read").is_empty());
        // The child reaches its sibling through the parent's re-export: a loop.
        write(
            "b/mod.rs",
            "pub mod inner; pub mod other; pub use inner::X; pub use other::Y;\n",
        );
        write("b/other.rs", "pub struct Y;\n");
        write("b/inner.rs", "use super::Y; pub struct X;\n");
        let loops = loops_in(&dir.join("lib.rs")).expect("read");
        assert_eq!(loops, [vec!["b".to_owned(), "b::inner".to_owned()]]);
        let _ = fs::remove_dir_all(&dir);
    }
}
