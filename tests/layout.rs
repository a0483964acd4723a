//! The shape of the code that the design depends on (ARCHITECTURE.md): commands only parse
//! arguments and print, so the library never reaches into `cmd` and no command reaches into
//! another; no function in src/ is longer than 120 lines; no two modules import each other; data
//! flows one way (digests come before rendering, rendering is pure). Released migrations stay as
//! they were released.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_library_never_reaches_into_the_commands_and_no_command_into_another() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let cmd = src.join("cmd");
    let commands: Vec<String> = files
        .iter()
        .filter(|f| f.parent() == Some(cmd.as_path()))
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "mod")
        .collect();
    assert!(commands.len() >= 8, "{commands:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        if !file.starts_with(&cmd) && rel != "cli.rs" && rel != "main.rs" {
            assert!(!text.contains("crate::cmd"), "{rel} reaches into crate::cmd");
        }
        if file.starts_with(&cmd) {
            assert!(!text.contains("crate::cli"), "{rel} imports crate::cli, which imports the commands");
            let me = file.file_stem().unwrap().to_string_lossy();
            for other in commands.iter().filter(|c| **c != me) {
                for path in [format!("super::{other}::"), format!("crate::cmd::{other}::")] {
                    assert!(!text.contains(&path), "{rel} imports from the {other} command ({path})");
                }
            }
        }
    }
}

/// A released migration is never edited (a database that ran it would refuse the edited one, or
/// silently miss the change): every migration is listed with its SHA-256 in
/// subscribers/released-migrations.sha256 and still has it; a new one must be listed to ship.
#[test]
fn released_migrations_are_never_edited() {
    use sha2::{Digest, Sha256};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("subscribers");
    let list = std::fs::read_to_string(root.join("released-migrations.sha256")).unwrap();
    let released: std::collections::BTreeMap<&str, &str> = list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (sum, name) = l.split_once("  ").unwrap_or_else(|| panic!("not `sha256  name`: {l}"));
            (name, sum)
        })
        .collect();
    // One folder per backend: `sqlite/0001_subscribers.sql`, `postgres/0001_store.sql`.
    let mut files: Vec<String> = ["sqlite", "postgres"]
        .iter()
        .flat_map(|backend| {
            std::fs::read_dir(root.join("migrations").join(backend))
                .unwrap()
                .map(move |e| format!("{backend}/{}", e.unwrap().file_name().into_string().unwrap()))
        })
        .filter(|n| n.ends_with(".sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    for name in &files {
        let sum = hex::encode(Sha256::digest(std::fs::read(root.join("migrations").join(name)).unwrap()));
        match released.get(name.as_str()) {
            Some(listed) => {
                assert_eq!(*listed, sum, "{name} was edited after its release: put the change in a new migration")
            }
            None => {
                panic!("{name} is not in subscribers/released-migrations.sha256: add `{sum}  {name}` when it ships")
            }
        }
    }
    for name in released.keys() {
        assert!(files.iter().any(|f| f == name), "the released migration {name} is gone");
    }
}

// The rules of issue 29 on the code of src/: no function over 120 lines, no two modules that import
// each other, and the flow of data going one way (digests -> issue -> render -> deliver, with the
// store, scheduler, server and commands at the edges). They read the source as text: comments and
// the insides of string and char literals are blanked first, so only code counts. Their own tests,
// on small invented sources, are in `mod rules` at the end.

/// The longest a function of src/ may be, from its `fn` line to its closing brace.
const MAX_FUNCTION_LINES: usize = 120;

/// One file of src/: its path as a message names it (`src/deliver/smtp.rs`) and its text.
struct Source {
    path: String,
    text: String,
}

impl Source {
    fn new(path: &str, text: &str) -> Source {
        Source { path: path.to_string(), text: text.to_string() }
    }

    /// The module the file is: `src/lib.rs` is the crate root (no segment), `src/x.rs` and
    /// `src/x/mod.rs` are `x`, `src/x/y.rs` is `x::y`, `src/main.rs` is `main`.
    fn module(&self) -> Vec<String> {
        let rel = self.path.strip_prefix("src/").unwrap_or(&self.path);
        let rel = rel.strip_suffix(".rs").unwrap_or(rel);
        let mut segments: Vec<String> = rel.split('/').map(str::to_string).collect();
        if segments.last().is_some_and(|s| s == "mod") || segments == ["lib"] {
            segments.pop();
        }
        segments
    }
}

fn src_sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    files
        .iter()
        .map(|f| Source {
            path: f.strip_prefix(root).unwrap().display().to_string(),
            text: std::fs::read_to_string(f).unwrap(),
        })
        .collect()
}

fn module_name(module: &[String]) -> String {
    if module.is_empty() { "crate".to_string() } else { module.join("::") }
}

/// `text` with every comment and the whole of every string and char literal turned into spaces;
/// newlines stay, so lines keep their numbers.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        let after_ident = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        let end = if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len())
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            block_comment_end(&c, i)
        } else if let Some(end) = raw_string_end(&c, i, after_ident) {
            end
        } else if c[i] == '"' {
            quoted_end(&c, i + 1, '"')
        } else if c[i] == '\'' && c.get(i + 1) == Some(&'\\') {
            quoted_end(&c, i + 1, '\'')
        } else if c[i] == '\'' && c.get(i + 2) == Some(&'\'') {
            i + 3
        } else {
            // Code, a lifetime's or a label's quote included.
            out.push(c[i]);
            i += 1;
            continue;
        };
        out.extend(c[i..end].iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }));
        i = end;
    }
    out
}

/// Where the block comment opening at `i` ends; block comments nest.
fn block_comment_end(c: &[char], i: usize) -> usize {
    let (mut depth, mut j) = (0, i);
    while j < c.len() {
        if c[j] == '/' && c.get(j + 1) == Some(&'*') {
            depth += 1;
            j += 2;
        } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return j;
            }
        } else {
            j += 1;
        }
    }
    c.len()
}

/// After the closing `quote` of a literal whose text starts at `j`, past backslash escapes.
fn quoted_end(c: &[char], mut j: usize, quote: char) -> usize {
    while j < c.len() {
        match c[j] {
            '\\' => j += 2,
            ch if ch == quote => return j + 1,
            _ => j += 1,
        }
    }
    c.len()
}

/// Where the raw string (`r"…"`, `r#"…"#`, `br`, `cr`) opening at `i` ends, if one opens there.
fn raw_string_end(c: &[char], i: usize, after_ident: bool) -> Option<usize> {
    if after_ident {
        return None;
    }
    let mut j = i;
    if matches!(c[j], 'b' | 'c') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&ch| ch == '#').count();
    j += hashes;
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"' && c[j + 1..].iter().take(hashes).filter(|&&ch| ch == '#').count() == hashes {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

/// A token of code: an identifier or number, `::`, `->`, `=>`, or one other character.
struct Token {
    text: String,
    line: usize,
}

impl Token {
    fn is(&self, text: &str) -> bool {
        self.text == text
    }

    fn is_ident(&self) -> bool {
        self.text.starts_with(|ch: char| ch.is_alphabetic() || ch == '_')
    }
}

fn tokens(text: &str) -> Vec<Token> {
    let code: Vec<char> = code_only(text).chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < code.len() {
        let ch = code[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < code.len() && (code[i].is_alphanumeric() || code[i] == '_') {
                i += 1;
            }
            // A raw identifier `r#match` is the identifier `match`.
            if i - start == 1 && ch == 'r' && code.get(i) == Some(&'#') {
                i += 1;
                continue;
            }
            out.push(Token { text: code[start..i].iter().collect(), line });
        } else {
            let two: String = code[i..(i + 2).min(code.len())].iter().collect();
            let len = if ["::", "->", "=>"].contains(&two.as_str()) { 2 } else { 1 };
            out.push(Token { text: code[i..i + len].iter().collect(), line });
            i += len;
        }
    }
    out
}

/// The index of the `}` closing the `{` at `open`.
fn closing_brace(t: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (k, tok) in t.iter().enumerate().skip(open) {
        if tok.is("{") {
            depth += 1;
        } else if tok.is("}") {
            depth -= 1;
            if depth == 0 {
                return k;
            }
        }
    }
    t.len() - 1
}

/// The index of the `{` or `;` that ends the item header starting at `from` (outside parentheses
/// and brackets, so that `-> [u8; 4]` is part of a signature).
fn header_end(t: &[Token], from: usize) -> usize {
    let mut depth = 0i32;
    for (k, tok) in t.iter().enumerate().skip(from) {
        match tok.text.as_str() {
            "(" | "[" => depth += 1,
            ")" | "]" => depth -= 1,
            "{" | ";" if depth == 0 => return k,
            _ => {}
        }
    }
    t.len() - 1
}

/// The last name of the path starting at `k` (`crate::x::Foo<T>` is `Foo`).
fn last_name(t: &[Token], mut k: usize) -> String {
    while k + 2 < t.len() && t[k + 1].is("::") && t[k + 2].is_ident() {
        k += 2;
    }
    t.get(k).map(|tok| tok.text.clone()).unwrap_or_default()
}

/// What an `impl` or `trait` header starting at `k` is named for: the type after `for`, or the
/// type or trait itself.
fn owner_name(t: &[Token], k: usize, end: usize) -> String {
    let mut start = k + 1;
    if t[k].is("impl") && t.get(start).is_some_and(|tok| tok.is("<")) {
        let mut depth = 0;
        while start < end {
            match t[start].text.as_str() {
                "<" => depth += 1,
                ">" => depth -= 1,
                _ => {}
            }
            start += 1;
            if depth == 0 {
                break;
            }
        }
    }
    match (start..end).find(|&j| t[j].is("for")) {
        Some(f) => last_name(t, f + 1),
        None => last_name(t, start),
    }
}

/// A function with a body: its name (`Type::name` directly inside an `impl` or `trait`) and the
/// lines of its `fn` and of its closing brace.
struct Function {
    name: String,
    first: usize,
    last: usize,
}

fn functions(text: &str) -> Vec<Function> {
    let t = tokens(text);
    let mut found = Vec::new();
    // For each open brace, the type or trait whose block it opens, if it opens one.
    let mut blocks: Vec<Option<String>> = Vec::new();
    let mut owner_at: Option<(usize, String)> = None;
    for k in 0..t.len() {
        match t[k].text.as_str() {
            "{" => blocks.push(owner_at.take_if(|(at, _)| *at == k).map(|(_, name)| name)),
            "}" => {
                blocks.pop();
            }
            // An `impl` block or a trait, not `impl Trait` in a signature.
            "impl" | "trait"
                if t[k].is("trait") || k == 0 || ["}", ";", "{", "]", "unsafe"].contains(&t[k - 1].text.as_str()) =>
            {
                let end = header_end(&t, k + 1);
                if t[end].is("{") {
                    owner_at = Some((end, owner_name(&t, k, end)));
                }
            }
            // `fn` and a name: a function, not the type `fn(u8) -> u8` nor a macro's `fn $name`.
            "fn" if t.get(k + 1).is_some_and(Token::is_ident) => {
                let open = header_end(&t, k + 2);
                if t[open].is("{") {
                    let name = match blocks.last() {
                        Some(Some(owner)) => format!("{owner}::{}", t[k + 1].text),
                        _ => t[k + 1].text.clone(),
                    };
                    found.push(Function { name, first: t[k].line, last: t[closing_brace(&t, open)].line });
                }
            }
            _ => {}
        }
    }
    found
}

/// Every function of `sources` longer than `max` lines, as a sentence naming file and line.
fn long_functions(sources: &[Source], max: usize) -> Vec<String> {
    let mut found = Vec::new();
    for s in sources {
        for f in functions(&s.text) {
            let lines = f.last - f.first + 1;
            if lines > max {
                found.push(format!(
                    "{}:{}: fn {} is {lines} lines (lines {} to {}); no function is longer than {max}",
                    s.path, f.first, f.name, f.first, f.last
                ));
            }
        }
    }
    found
}

/// A path to another module of src/ in code: `use` trees and paths through `crate::`, `super::`,
/// `self::` or a child module's name (`gazette::` in main.rs).
struct Import {
    to: Vec<String>,
    line: usize,
    written: String,
}

/// The module of src/ a path names: the longest leading part of it that is a file of src/.
fn resolve(
    segments: &[String],
    here: &[String],
    file_module: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let supers = segments.iter().take_while(|s| *s == "super").count();
    let (mut full, rest): (Vec<String>, &[String]) = match segments.first()?.as_str() {
        "crate" => (Vec::new(), &segments[1..]),
        "gazette" if file_module == ["main"] => (Vec::new(), &segments[1..]),
        "self" => (here.to_vec(), &segments[1..]),
        "super" if supers <= here.len() => (here[..here.len() - supers].to_vec(), &segments[supers..]),
        // A child module by its name, as in `pub use transport::Envelope;` in deliver/mod.rs.
        name if modules.contains(&[file_module, &[name.to_string()]].concat()) => (file_module.to_vec(), segments),
        _ => return None,
    };
    full.extend(rest.iter().cloned());
    (0..=full.len()).rev().map(|n| full[..n].to_vec()).find(|m| modules.contains(m))
}

/// Adds to `out` the paths that the `use` tree starting at `k` spells out, each with its line;
/// returns the index after the tree.
fn use_tree(t: &[Token], mut k: usize, prefix: &[String], out: &mut Vec<(Vec<String>, usize)>) -> usize {
    let mut path = prefix.to_vec();
    if t.get(k).is_some_and(|tok| tok.is("::")) {
        k += 1;
    }
    while k < t.len() {
        let tok = &t[k];
        if tok.is("{") {
            k += 1;
            while k < t.len() && !t[k].is("}") {
                k = use_tree(t, k, &path, out);
                if t.get(k).is_some_and(|tok| tok.is(",")) {
                    k += 1;
                }
            }
            return k + 1;
        } else if tok.is("*") {
            out.push((path, tok.line));
            return k + 1;
        } else if tok.is_ident() {
            // `self` inside braces is the path so far: `feeds::{self, FeedItem}`.
            if !tok.is("self") || path.is_empty() {
                path.push(tok.text.clone());
            }
            if t.get(k + 1).is_some_and(|n| n.is("::")) {
                k += 2;
                continue;
            }
            out.push((path, tok.line));
            k += 1;
            if t.get(k).is_some_and(|n| n.is("as")) {
                k += 2;
            }
            return k;
        } else {
            return k;
        }
    }
    k
}

/// What `source` imports of the other `modules` of src/: the paths of its `use` trees and of its
/// code, outside comments and literals, that name one of them.
fn imports(source: &Source, modules: &BTreeSet<Vec<String>>) -> Vec<Import> {
    let t = tokens(&source.text);
    let file_module = source.module();
    let mut found = Vec::new();
    // For each open brace, the inline module (`mod tests {`) it opens, if it opens one.
    let mut blocks: Vec<Option<String>> = Vec::new();
    let mut k = 0;
    while k < t.len() {
        let here: Vec<String> = file_module.iter().cloned().chain(blocks.iter().flatten().cloned()).collect();
        let mut paths = Vec::new();
        if t[k].is("{") {
            let inline = k >= 2 && t[k - 2].is("mod") && t[k - 1].is_ident();
            blocks.push(inline.then(|| t[k - 1].text.clone()));
            k += 1;
        } else if t[k].is("}") {
            blocks.pop();
            k += 1;
        } else if t[k].is("use") {
            k = use_tree(&t, k + 1, &[], &mut paths);
        } else if t[k].is_ident() && t.get(k + 1).is_some_and(|n| n.is("::")) && (k == 0 || !t[k - 1].is("::")) {
            let mut path = vec![t[k].text.clone()];
            let line = t[k].line;
            k += 1;
            while k + 1 < t.len() && t[k].is("::") && t[k + 1].is_ident() {
                path.push(t[k + 1].text.clone());
                k += 2;
            }
            paths.push((path, line));
        } else {
            k += 1;
        }
        for (path, line) in paths {
            let Some(to) = resolve(&path, &here, &file_module, modules) else { continue };
            if !to.is_empty() && to != file_module {
                found.push(Import { to, line, written: path.join("::") });
            }
        }
    }
    found
}

/// One module's imports of another: where (file, lines) and the first path as written.
struct Edge {
    file: String,
    lines: Vec<usize>,
    written: String,
}

impl Edge {
    fn at(&self) -> String {
        let lines: Vec<String> = self.lines.iter().map(usize::to_string).collect();
        format!("{}:{}", self.file, lines.join(","))
    }
}

/// Who imports whom among the modules of `sources`.
fn module_graph(sources: &[Source]) -> BTreeMap<(Vec<String>, Vec<String>), Edge> {
    let modules: BTreeSet<Vec<String>> = sources.iter().map(Source::module).collect();
    let mut graph: BTreeMap<(Vec<String>, Vec<String>), Edge> = BTreeMap::new();
    for s in sources {
        for import in imports(s, &modules) {
            let edge = graph.entry((s.module(), import.to)).or_insert_with(|| Edge {
                file: s.path.clone(),
                lines: Vec::new(),
                written: import.written,
            });
            if !edge.lines.contains(&import.line) {
                edge.lines.push(import.line);
            }
        }
    }
    graph
}

/// Every two modules that import each other. A folder's `mod.rs` and its own files are left out:
/// the `mod.rs` declares and re-exports them and they use what it defines, one module in all but
/// its files.
fn circles(sources: &[Source]) -> Vec<String> {
    let graph = module_graph(sources);
    let parent_of = |a: &Vec<String>, b: &Vec<String>| b.len() == a.len() + 1 && b.starts_with(a);
    let mut found = Vec::new();
    for ((a, b), there) in &graph {
        if a >= b || parent_of(a, b) || parent_of(b, a) {
            continue;
        }
        if let Some(back) = graph.get(&(b.clone(), a.clone())) {
            found.push(format!(
                "{} imports {} ({}) and {} imports {} ({}); no two modules import each other",
                there.at(),
                module_name(b),
                there.written,
                back.at(),
                module_name(a),
                back.written
            ));
        }
    }
    found
}

/// Modules the data flow must not reach from a module: (the module and its files, what it must
/// not import, why).
const UPWARD: &[(&str, &[&str], &str)] = &[
    ("digest", &["render"], "digests come before rendering"),
    (
        "render",
        &["store", "deliver", "scheduler", "server", "cmd", "cli", "project"],
        "rendering is pure: it never reaches the store, delivery, the clock or the commands",
    ),
];

/// Every import that goes against the flow: those of `UPWARD`, and any of `cmd` from outside
/// `cmd`, `cli` and `main` (commands parse arguments and print; the library never calls them).
fn upward_imports(sources: &[Source]) -> Vec<String> {
    let mut found = Vec::new();
    for ((from, to), edge) in module_graph(sources) {
        let (Some(top), Some(target)) = (from.first(), to.first()) else { continue };
        let mut why = UPWARD
            .iter()
            .filter(|(module, banned, _)| top == module && banned.contains(&target.as_str()))
            .map(|(module, _, why)| format!("{why}: {module} must not import {target}"))
            .next();
        if target == "cmd" && !["cmd", "cli", "main"].contains(&top.as_str()) {
            why = Some("only cli and main import cmd: the library never calls a command".to_string());
        }
        if let Some(why) = why {
            found.push(format!(
                "{}: {} imports {} ({}); {why}",
                edge.at(),
                module_name(&from),
                module_name(&to),
                edge.written
            ));
        }
    }
    found
}

#[test]
fn no_function_in_src_is_longer_than_120_lines() {
    let sources = src_sources();
    assert!(functions(&sources.iter().find(|s| s.path == "src/main.rs").unwrap().text).len() == 1);
    let found = long_functions(&sources, MAX_FUNCTION_LINES);
    assert!(found.is_empty(), "{} functions are too long:\n{}", found.len(), found.join("\n"));
}

#[test]
fn no_two_modules_of_src_import_each_other() {
    let sources = src_sources();
    assert!(module_graph(&sources).len() > 50, "the imports of src/ were not found");
    let found = circles(&sources);
    assert!(found.is_empty(), "{} pairs of modules import each other:\n{}", found.len(), found.join("\n"));
}

#[test]
fn the_data_flow_of_src_goes_one_way() {
    let found = upward_imports(&src_sources());
    assert!(found.is_empty(), "{} imports go against the flow:\n{}", found.len(), found.join("\n"));
}

/// The rules above on small invented sources: what they must catch and what they must let be.
mod rules {
    use super::*;

    fn lines_of(source: &str, name: &str) -> (usize, usize) {
        let f = functions(source).into_iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no fn {name}"));
        (f.first, f.last)
    }

    /// A function of `n` lines, from its `fn` line to its closing brace.
    fn function_of(n: usize) -> String {
        let body: String = (0..n - 2).map(|i| format!("    let _x{i} = {i};\n")).collect();
        format!("/// Docs and attributes are not counted.\n#[inline]\nfn f() {{\n{body}}}\n")
    }

    #[test]
    fn a_function_of_121_lines_is_caught_and_one_of_120_is_not() {
        assert!(long_functions(&[Source::new("src/a.rs", &function_of(120))], 120).is_empty());
        let found = long_functions(&[Source::new("src/a.rs", &function_of(121))], 120);
        assert_eq!(found, ["src/a.rs:3: fn f is 121 lines (lines 3 to 123); no function is longer than 120"]);
        assert_eq!(lines_of("fn f() {}", "f"), (1, 1));
    }

    #[test]
    fn nested_functions_impl_and_trait_blocks_are_each_measured() {
        let source = r#"impl<T: Clone> Holder<T> {
    fn outer(&self) -> u8 {
        fn inner() -> [u8; 2] {
            [1, 2]
        }
        inner()[0]
    }
}
trait Speak {
    fn say(&self);
    fn default_say(&self) -> String {
        String::new()
    }
}
impl<'a> std::fmt::Display for crate::x::Holder<'a> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}
type F = fn(u8) -> u8;
macro_rules! m { ($name:ident) => { fn $name() {} }; }
mod tests {
    fn r#match() {
    }
}
fn make(x: impl Into<u8>) -> impl Iterator<Item = u8> {
    fn helper() {}
    std::iter::once(x.into())
}
"#;
        assert_eq!(lines_of(source, "Holder::outer"), (2, 7));
        assert_eq!(lines_of(source, "inner"), (3, 5));
        assert_eq!(lines_of(source, "Speak::default_say"), (11, 13));
        assert_eq!(lines_of(source, "Holder::fmt"), (16, 18));
        assert_eq!(lines_of(source, "match"), (23, 24));
        let names: Vec<String> = functions(source).into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["Holder::outer", "inner", "Speak::default_say", "Holder::fmt", "match", "make", "helper"]);
    }

    #[test]
    fn braces_in_comments_strings_and_chars_are_not_code() {
        let source = r###"fn f<'a>(x: &'a str) -> &'a str {
    let _ = "}"; let _ = '}'; let _ = b'{'; let _ = '\''; let _ = "\"}";
    let _ = r#"}"# ; let _ = br"{"; let _ = r##"a "# } "##;
    // }
    /* { /* } */ } */
    /// }
    let _ = 'x: loop { break 'x; };
    let _ = "multi
    }
    line";
    x
}
fn g() {
}
"###;
        assert_eq!(lines_of(source, "f"), (1, 12));
        assert_eq!(lines_of(source, "g"), (13, 14));
        let code = code_only(source);
        assert_eq!(code.lines().count(), source.lines().count(), "lines keep their numbers");
        assert!(!code.contains("multi") && !code.contains('"'), "{code}");
    }

    fn edges(sources: &[Source]) -> Vec<String> {
        module_graph(sources)
            .into_iter()
            .map(|((a, b), e)| format!("{} -> {} {}", module_name(&a), module_name(&b), e.at()))
            .collect()
    }

    #[test]
    fn a_circle_through_crate_paths_is_caught_naming_files_and_lines() {
        let sources = [
            Source::new("src/lib.rs", "pub mod a;\npub mod b;\n"),
            Source::new("src/a.rs", "//! Uses b.\nuse crate::b::thing;\n"),
            Source::new("src/b.rs", "pub fn thing() {\n    crate::a::other();\n}\n"),
        ];
        assert_eq!(
            circles(&sources),
            ["src/a.rs:2 imports b (crate::b::thing) and src/b.rs:2 imports a (crate::a::other); \
              no two modules import each other"]
        );
        assert!(circles(&sources[..2]).is_empty());
    }

    #[test]
    fn super_paths_and_use_groups_are_imports_and_a_folder_with_its_own_files_is_not_a_circle() {
        let sources = [
            Source::new("src/x/mod.rs", "mod a;\nmod b;\npub use a::A;\npub use b::{B, self};\npub struct X;\n"),
            Source::new("src/x/a.rs", "use super::{X, b::{self, B}};\npub struct A;\n"),
            Source::new("src/x/b.rs", "pub struct B;\nfn f() -> super::a::A {\n    super::a::A\n}\n"),
        ];
        assert_eq!(
            edges(&sources),
            [
                "x -> x::a src/x/mod.rs:3",
                "x -> x::b src/x/mod.rs:4",
                "x::a -> x src/x/a.rs:1",
                "x::a -> x::b src/x/a.rs:1",
                "x::b -> x::a src/x/b.rs:2,3"
            ]
        );
        assert_eq!(circles(&sources).len(), 1, "{:?}", circles(&sources));
        assert!(
            circles(&sources)[0]
                .starts_with("src/x/a.rs:1 imports x::b (super::b) and src/x/b.rs:2,3 imports x::a (super::a::A)"),
            "{:?}",
            circles(&sources)
        );
    }

    #[test]
    fn a_path_is_an_import_of_the_deepest_file_it_names() {
        let sources = [
            Source::new("src/lib.rs", "pub mod x;\npub mod z;\n"),
            Source::new("src/x/mod.rs", "pub mod y;\npub struct Y;\n"),
            Source::new("src/x/y.rs", "pub fn f() {}\n"),
            Source::new("src/z.rs", "fn g() {\n    crate::x::y::f();\n    let _ = crate::x::Y;\n}\n"),
        ];
        // `pub mod y;` declares a module: it is not an import.
        assert_eq!(edges(&sources), ["z -> x src/z.rs:3", "z -> x::y src/z.rs:2"]);
    }

    #[test]
    fn mentions_in_comments_and_strings_and_a_files_own_tests_are_not_imports() {
        let sources = [
            Source::new(
                "src/a.rs",
                "//! Not crate::b::f.\n/// crate::b::f\nfn f() {\n    let _ = \"crate::b::f\"; /* crate::b */\n}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::b::B;\n}\n",
            ),
            Source::new("src/b.rs", "pub struct B;\nfn g() {\n    crate::a::f();\n}\n"),
        ];
        assert_eq!(edges(&sources), ["a -> b src/a.rs:9", "b -> a src/b.rs:3"]);
        assert_eq!(edges(&sources[..1]), Vec::<String>::new(), "a.rs alone names nothing of src/ but itself");
    }

    #[test]
    fn imports_against_the_flow_are_caught_and_the_others_let_be() {
        let sources = [
            Source::new("src/lib.rs", "pub mod cli;\n"),
            Source::new("src/digest.rs", "fn f() {\n    crate::render::markdown::to_html(\"\");\n}\n"),
            Source::new("src/issue.rs", "use crate::digest::Digest;\n"),
            Source::new("src/render/mod.rs", "mod feeds;\npub mod markdown;\nuse crate::issue::Issue;\n"),
            Source::new("src/render/markdown.rs", "pub fn to_html() {}\n"),
            Source::new("src/render/feeds.rs", "use crate::{config::Config, store::Store};\n"),
            Source::new("src/config.rs", ""),
            Source::new("src/store.rs", ""),
            Source::new("src/server.rs", "\nuse crate::cmd::templates;\n"),
            Source::new("src/cli.rs", "fn run() {\n    crate::cmd::send::run();\n}\n"),
            Source::new("src/main.rs", "fn main() {\n    gazette::cli::main();\n}\n"),
            Source::new("src/cmd/mod.rs", "pub mod send;\npub fn templates() {}\n"),
            Source::new("src/cmd/send.rs", "use super::templates;\nuse crate::cmd::templates as t;\n"),
        ];
        assert_eq!(
            upward_imports(&sources),
            [
                "src/digest.rs:2: digest imports render::markdown (crate::render::markdown::to_html); \
                 digests come before rendering: digest must not import render",
                "src/render/feeds.rs:1: render::feeds imports store (crate::store::Store); rendering is pure: it \
                 never reaches the store, delivery, the clock or the commands: render must not import store",
                "src/server.rs:2: server imports cmd (crate::cmd::templates); only cli and main import cmd: \
                 the library never calls a command",
            ]
        );
        assert!(edges(&sources).contains(&"main -> cli src/main.rs:2".to_string()));
    }
}
