//! The house rules of the library crates (storage, sql, wire), checked on the
//! source: no production file over 800 lines and no function over 80 lines,
//! unless the function's doc comment says why ("Longer than 80 lines because ...").
//! Test modules (`#[cfg(test)] mod ...` to the end of a file, and `tests.rs`
//! files) are not production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 80;
const EXEMPTION: &str = "Longer than 80 lines because";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs")
            && p.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(p);
        }
    }
}

/// The production lines of a file: up to a `#[cfg(test)]` that opens a module.
fn production(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].trim() == "#[cfg(test)]"
                && lines.get(i + 1).is_some_and(|l| l.starts_with("mod "))
        })
        .unwrap_or(lines.len());
    lines[..end].to_vec()
}

/// Strip string and char literals and line comments, so braces inside them do
/// not count.
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '\'' if chars.peek().is_some_and(|&n| n == '{' || n == '}') => {
                chars.next();
            }
            '/' if chars.peek() == Some(&'/') => break,
            _ => out.push(c),
        }
    }
    out
}

fn is_fn_start(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let t = t
        .strip_prefix("pub(crate) ")
        .or_else(|| t.strip_prefix("pub(super) "))
        .or_else(|| t.strip_prefix("pub "))
        .unwrap_or(t);
    let t = t.strip_prefix("async ").unwrap_or(t);
    let t = t.strip_prefix("const ").unwrap_or(t);
    let name = t.strip_prefix("fn ")?;
    Some(name.split(['(', '<']).next().unwrap_or(name))
}

/// (name, first line, length) of every function longer than the limit.
fn long_functions(lines: &[&str]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = is_fn_start(line) else {
            continue;
        };
        let (mut depth, mut opened) = (0i64, false);
        let mut end = i;
        for (j, l) in lines.iter().enumerate().skip(i) {
            let code = code_of(l);
            for c in code.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            end = j;
            if (opened && depth == 0) || (!opened && code.trim_end().ends_with(';')) {
                break;
            }
        }
        let len = end - i + 1;
        let doc_exempt = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with("///") || l.trim_start().starts_with("#["))
            .any(|l| l.contains(EXEMPTION));
        if len > MAX_FN_LINES && !doc_exempt {
            out.push((name.to_string(), i + 1, len));
        }
    }
    out
}

#[test]
fn library_files_and_functions_stay_within_the_size_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for krate in ["storage", "sql", "wire", "flight"] {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines = production(&text);
        let shown = f.strip_prefix(root).unwrap_or(f).display();
        if lines.len() > MAX_FILE_LINES {
            problems.push(format!("{shown}: {} production lines", lines.len()));
        }
        for (name, at, len) in long_functions(&lines) {
            problems.push(format!("{shown}:{at}: fn {name} is {len} lines"));
        }
    }
    assert!(
        problems.is_empty(),
        "over the size rules (split it, or say in the doc comment \"{EXEMPTION} ...\"):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scanner_measures_functions_and_skips_braces_in_literals() {
    let src = [
        "/// doc",
        "pub(crate) fn short(a: u8) -> u8 {",
        "    let s = \"}}}\"; // }",
        "    let c = '{';",
        "    a",
        "}",
        "fn decl();",
    ];
    assert!(long_functions(&src).is_empty());
    let mut long = vec!["async fn big() {"];
    long.extend(std::iter::repeat_n("    step();", MAX_FN_LINES));
    long.push("}");
    assert_eq!(
        long_functions(&long),
        vec![("big".to_string(), 1, MAX_FN_LINES + 2)]
    );
    let mut exempt = vec!["/// Longer than 80 lines because it is a table."];
    exempt.extend(long.iter().copied());
    assert!(long_functions(&exempt).is_empty());
}
