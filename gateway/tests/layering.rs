//! The layering of gateway/src, written down as a table: a module may import only modules in
//! layers below its own. The bottom holds the shared vocabulary (addresses, decisions, bodies,
//! the clock); the stages (identity, policy, approval, creds, mask, record) import neither
//! `config` nor `http`; `config` only composes the stages' own types; http sits above the
//! chain, proxy and daemon on top. Test files (`tests.rs`, `#[cfg(test)]` modules) may build
//! their fixtures from anything.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Layer by layer, bottom first.
const LAYERS: &[&[&str]] = &[
    // Vocabulary and leaf utilities.
    &[
        "addr", "admin", "body", "clock", "decision", "glob", "keyfile", "metrics", "notify",
    ],
    // Kernel and TLS.
    &["intercept", "tls"],
    // The gateway's own HTTP client.
    &["client"],
    // Who is calling.
    &["identity"],
    // MCP messages, sessions and the chain the stages plug into.
    &["mcp"],
    // Stages.
    &["approval", "mask", "record"],
    &["creds", "policy"],
    // Composition of the stages' configuration.
    &["config"],
    // The data path over HTTP, the connection handler, the daemon.
    &["http"],
    &["proxy"],
    &["daemon"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level modules a piece of Rust source refers to through `crate::`.
fn crate_refs(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut refs = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::b, c, d::{e, f}}`: the names at the group's top level.
            let mut depth = 1;
            let mut expect_name = true;
            let mut chars = group.char_indices();
            while let Some((at, c)) = chars.next() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => expect_name = true,
                    c if depth == 1 && expect_name && (c.is_ascii_alphabetic() || c == '_') => {
                        let name = ident(&group[at..]);
                        for _ in 1..name.len() {
                            chars.next();
                        }
                        refs.insert(name);
                        expect_name = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                refs.insert(name);
            }
        }
    }
    refs
}

/// A file's code without its `#[cfg(test)]` module (by convention the end of the file).
fn without_tests(source: &str) -> &str {
    match source.find("#[cfg(test)]\nmod ") {
        Some(at) => &source[..at],
        None => source,
    }
}

/// Every violation of the table in these (module, source) pairs.
fn violations<'a>(files: impl IntoIterator<Item = (&'a str, &'a str, String)>) -> Vec<String> {
    let mut found = Vec::new();
    for (module, file, source) in files {
        let Some(own) = layer_of(module) else {
            found.push(format!("{file}: module `{module}` has no layer in LAYERS"));
            continue;
        };
        for used in crate_refs(without_tests(&source)) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(layer) if layer < own => {}
                Some(_) => found.push(format!(
                    "{file}: `{module}` (layer {own}) imports `{used}` (layer {}), which is not below it",
                    layer_of(&used).unwrap_or_default()
                )),
                None => {} // not a module: a macro or a binary-only name
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
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

/// The library's modules (`pub mod` in lib.rs) and, for each, its non-test source files.
fn library() -> BTreeMap<String, Vec<(PathBuf, String)>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let mut modules = BTreeMap::new();
    for line in lib.lines() {
        let Some(name) = line
            .trim()
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        else {
            continue;
        };
        let mut files = Vec::new();
        let single = src.join(format!("{name}.rs"));
        if single.is_file() {
            files.push(single);
        }
        rust_files(&src.join(name), &mut files);
        let files = files
            .into_iter()
            .filter(|p| {
                p.file_name().is_some_and(|f| f != "tests.rs")
                    && !p.components().any(|c| c.as_os_str() == "tests")
            })
            .map(|p| {
                let text = fs::read_to_string(&p).expect("source file");
                (p, text)
            })
            .collect();
        modules.insert(name.to_owned(), files);
    }
    modules
}

#[test]
fn modules_import_only_layers_below_their_own() {
    let library = library();
    assert!(library.len() > 10, "lib.rs lists the modules");
    let files: Vec<(String, String, String)> = library
        .iter()
        .flat_map(|(module, files)| {
            files
                .iter()
                .map(move |(path, text)| (module.clone(), path.display().to_string(), text.clone()))
        })
        .collect();
    let found = violations(
        files
            .iter()
            .map(|(m, f, s)| (m.as_str(), f.as_str(), s.clone())),
    );
    assert!(
        found.is_empty(),
        "the layering is broken:\n  {}",
        found.join("\n  ")
    );
    for layer in LAYERS {
        for module in *layer {
            assert!(
                library.contains_key(*module),
                "LAYERS names `{module}`, which lib.rs does not have"
            );
        }
    }
}

#[test]
fn a_stage_importing_http_or_config_is_a_violation() {
    let policy = "use crate::{\n    decision::Decision,\n    http::L7,\n};\nfn f() { crate::config::load(None); }\n";
    let found = violations([("policy", "policy/mod.rs", policy.to_owned())]);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("imports `config`"), "{found:?}");
    assert!(found[1].contains("imports `http`"), "{found:?}");
    // Same layer is not below.
    let found = violations([("mask", "mask/mod.rs", "use crate::record::Recorder;".into())]);
    assert_eq!(found.len(), 1, "{found:?}");
    // Imports in the test module do not count; a module missing from the table does.
    let tested = "use crate::glob::glob_match;\n#[cfg(test)]\nmod tests {\n    use crate::config::parse_config;\n}\n";
    assert!(violations([("policy", "policy/mod.rs", tested.into())]).is_empty());
    assert_eq!(
        violations([("newstage", "newstage.rs", String::new())]).len(),
        1
    );
}

#[test]
fn imports_are_read_from_paths_and_groups() {
    let refs = crate_refs(
        "use crate::{a::{b, c}, d, e::f};\nlet x = crate::g::h(); // crate::comment\nuse crate::i;",
    );
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    assert_eq!(refs, ["a", "d", "e", "g", "i"]);
}
