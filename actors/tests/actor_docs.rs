//! Keeps every actor's module doc true: the first doc comment of the file
//! that defines an actor (`impl Actor for A`) names every message the actor
//! answers, i.e. every `X` of an `impl Handler<X> for A` anywhere under
//! `actors/src` (handlers in sibling modules count for their actor).
//!
//! When a handler is added, the list in the doc changes in the same commit
//! (docs/architecture.md, CONVENTIONS.md). The test reads the sources as
//! text; it needs no running System.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Actors whose doc cannot be completed on this branch (their file is being
/// edited elsewhere), with the file. Each must still be incomplete: once its
/// doc lists every message, the test fails until the entry is removed here.
const AWAITING_DOCS: &[(&str, &str)] = &[];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The last path segment of a type, without generic arguments:
/// `status::GetRuntimeStatus` → `GetRuntimeStatus`.
fn type_name(path: &str) -> &str {
    let path = path.split('<').next().unwrap_or(path).trim();
    path.rsplit("::").next().unwrap_or(path)
}

/// `(message, actor)` of an `impl Handler<X> for A` line (`StreamHandler`
/// is input, not a message, and is not counted).
fn handler_impl(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix("impl")?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix("actix::").unwrap_or(rest);
    let rest = rest.strip_prefix("Handler<")?;
    // The message type ends at the `>` that closes `Handler<`.
    let mut depth = 1usize;
    let end = rest.char_indices().find_map(|(i, c)| {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            _ => {}
        }
        (depth == 0).then_some(i)
    })?;
    let actor = rest[end + 1..].trim_start().strip_prefix("for ")?;
    let actor = actor
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()?;
    Some((type_name(&rest[..end]).to_string(), actor.to_string()))
}

/// The actor of an `impl Actor for A` line.
fn actor_impl(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix("impl ")?;
    let rest = rest.strip_prefix("actix::").unwrap_or(rest);
    let actor = rest.strip_prefix("Actor for ")?;
    let actor = actor
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()?;
    Some(actor.to_string())
}

/// The leading `//!` comment of a file.
fn module_doc(source: &str) -> String {
    source
        .lines()
        .take_while(|l| l.trim_start().starts_with("//!"))
        .map(|l| l.trim_start().trim_start_matches("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `word` stands in `text` as a whole identifier.
fn names(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

struct Actor {
    file: PathBuf,
    doc: String,
    messages: Vec<String>,
}

fn actors() -> BTreeMap<String, Actor> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut actors = BTreeMap::new();
    let mut handlers = Vec::new();
    for file in files {
        let source = fs::read_to_string(&file).expect("reading a source file");
        // Test modules' own actors are not part of the broker.
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let code = source
            .split("#[cfg(test)]\nmod tests {")
            .next()
            .unwrap_or(&source);
        for line in code.lines() {
            if let Some(a) = actor_impl(line) {
                let doc = module_doc(&source);
                let actor = Actor {
                    file: file.clone(),
                    doc,
                    messages: Vec::new(),
                };
                assert!(
                    actors.insert(a.clone(), actor).is_none(),
                    "two actors named {a}"
                );
            }
            if let Some(h) = handler_impl(line) {
                handlers.push(h);
            }
        }
    }
    for (message, actor) in handlers {
        actors
            .get_mut(&actor)
            .unwrap_or_else(|| {
                panic!("Handler<{message}> for {actor}: no `impl Actor for {actor}`")
            })
            .messages
            .push(message);
    }
    actors
}

#[test]
fn every_actor_doc_lists_every_message_it_answers() {
    let actors = actors();
    assert!(
        actors.len() >= 10,
        "found only {} actors: the source walk is broken",
        actors.len()
    );
    let mut failures = Vec::new();
    for (name, a) in &actors {
        let missing: Vec<&str> = a
            .messages
            .iter()
            .map(String::as_str)
            .filter(|m| !names(&a.doc, m))
            .collect();
        let awaiting = AWAITING_DOCS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| *f);
        match (awaiting, missing.is_empty()) {
            (None, true) => {}
            (None, false) => failures.push(format!(
                "{}: the module doc of actor {name} does not name {}",
                a.file.display(),
                missing.join(", ")
            )),
            (Some(f), false) => {
                assert!(
                    a.file.ends_with(f),
                    "{name} is awaited in {f} but defined in {}",
                    a.file.display()
                );
                eprintln!(
                    "awaiting the doc of {name} ({f}): missing {}",
                    missing.join(", ")
                );
            }
            (Some(_), true) => failures.push(format!(
                "{}: the doc of {name} is complete now: remove it from AWAITING_DOCS",
                a.file.display()
            )),
        }
    }
    for (name, _) in AWAITING_DOCS {
        assert!(
            actors.contains_key(*name),
            "AWAITING_DOCS names {name}, not an actor"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_source_scan_reads_handler_and_actor_lines() {
    assert_eq!(
        handler_impl("impl Handler<status::GetRuntimeStatus> for Storage {"),
        Some(("GetRuntimeStatus".into(), "Storage".into()))
    );
    assert_eq!(
        handler_impl("impl actix::Handler<Wrap<Vec<u8>>> for Conn<T> {"),
        Some(("Wrap".into(), "Conn".into()))
    );
    assert_eq!(
        handler_impl("impl StreamHandler<Input> for Connection {"),
        None
    );
    assert_eq!(actor_impl("impl Actor for Broker {"), Some("Broker".into()));
    assert_eq!(
        actor_impl("impl Actor for BrokerRole {").as_deref(),
        Some("BrokerRole")
    );
    assert!(names("answers [`PutMessages`], [`Put`].", "Put"));
    assert!(!names("answers [`PutMessages`].", "Put"));
}
