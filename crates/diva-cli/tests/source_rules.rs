//! Rules on the source itself, checked by the test command (CI runs no
//! clippy):
//! - every `unsafe` block or impl in non-test code carries a `SAFETY:`
//!   comment on its line or in the three lines above it (clippy's
//!   `undocumented_unsafe_blocks`, which the workspace also enables);
//! - the modules that parse data from files and requests (weights, audio,
//!   text/tokenizers, the training config and manifests, the server) have no
//!   `.unwrap()` or `.expect(` outside `#[cfg(test)]` items, except where a
//!   `// unwrap-ok: <why>` comment on the line or the line above says why it
//!   cannot fail (issue 20): bad input is an error, never a panic.

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
fn every_unsafe_block_says_why_it_is_sound() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for c in std::fs::read_dir(&crates).unwrap() {
        let src = c.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut missing = Vec::new();
    let mut seen = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !(code.contains("unsafe {") || code.contains("unsafe impl")) {
                continue;
            }
            seen += 1;
            let window = &lines[i.saturating_sub(3)..=i];
            if !window.iter().any(|l| l.contains("SAFETY:")) {
                missing.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        seen > 0,
        "no unsafe found at all: is the scan looking in the right place?"
    );
    assert!(
        missing.is_empty(),
        "unsafe without a SAFETY: comment:\n{}",
        missing.join("\n")
    );
}

/// The code that reads data from files or requests (paths under `crates/`):
/// every `.rs` file in a directory, or one file.
const PARSERS: &[&str] = &[
    "diva-core/src/weights",
    "diva-core/src/audio",
    "diva-core/src/text",
    "diva-train/src/config.rs",
    "diva-train/src/data",
    "diva-serve/src",
];

/// Files under [`PARSERS`] that parse nothing, with the reason.
const NOT_PARSERS: &[(&str, &str)] = &[(
    "diva-core/src/audio/mel.rs",
    "the log-mel of samples already decoded and bounded; no file data",
)];

/// `text` with the contents of comments, strings and character literals
/// blanked out (newlines kept, so line numbers stay).
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r' && (next == Some('"') || next == Some('#')) && {
            let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
            c.get(i + 1 + hashes) == Some(&'"')
        } {
            // A raw string r#"…"#: ends at a quote followed by as many hashes.
            let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
            let open = 2 + hashes;
            out.extend(std::iter::repeat_n(' ', open));
            i += open;
            while i < c.len() {
                if c[i] == '"'
                    && c[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    out.extend(std::iter::repeat_n(' ', 1 + hashes));
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' && (c.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A character literal ('{', '\'', '\u{7b}'); a lifetime has no closing quote.
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '\'' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// For each line of `code` (from [`code_only`]), whether it lies inside a
/// `#[cfg(test)]` item (a `mod tests { … }`, a function, an impl).
fn test_lines(code: &str) -> Vec<bool> {
    let mut in_test = Vec::new();
    let mut depth = 0i64;
    // Depth at which the current test item began, once its body opened.
    let mut test_from: Option<i64> = None;
    let mut pending = false;
    for line in code.lines() {
        let trimmed = line.trim();
        if test_from.is_none() && !pending && trimmed.starts_with("#[cfg(test)]") {
            pending = true;
        }
        let inside = pending || test_from.is_some();
        for ch in line.chars() {
            match ch {
                '{' => {
                    if pending {
                        test_from = Some(depth);
                        pending = false;
                    }
                    depth += 1;
                }
                '}' => {
                    depth -= 1;
                    if test_from == Some(depth) {
                        test_from = None;
                    }
                }
                ';' if pending => pending = false,
                _ => {}
            }
        }
        in_test.push(inside);
    }
    in_test
}

/// `.unwrap()` / `.expect(` in non-test code of `text`, as (line, text),
/// unless marked `// unwrap-ok:` on the line or the line above.
fn unmarked_unwraps(text: &str) -> Vec<(usize, String)> {
    let code = code_only(text);
    let tests = test_lines(&code);
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, c) in code.lines().enumerate() {
        if tests.get(i).copied().unwrap_or(false) {
            continue;
        }
        if !(c.contains(".unwrap()") || c.contains(".expect(")) {
            continue;
        }
        let marked = |j: usize| lines.get(j).is_some_and(|l| l.contains("// unwrap-ok:"));
        if marked(i) || (i > 0 && marked(i - 1)) {
            continue;
        }
        found.push((i + 1, lines.get(i).map_or("", |l| l.trim()).to_string()));
    }
    found
}

#[test]
fn the_scanner_sees_code_not_comments_strings_or_tests() {
    let src = r##"
fn a(x: Option<u8>) -> u8 {
    // x.unwrap() in a comment
    let s = "x.unwrap() in a string {";
    let r = r#"x.expect("raw") {"#;
    let c = '{';
    x.unwrap()
}
fn b(x: Option<u8>) -> u8 {
    x.expect("marked") // unwrap-ok: the caller checked
}
fn c(x: Option<u8>) -> u8 {
    // unwrap-ok: the caller checked
    x.expect("marked above")
}
#[cfg(test)]
mod tests {
    fn t() { Some(1).unwrap(); }
    mod inner { fn u() { Some(1).unwrap(); } }
}
fn d<'a>(x: &'a Option<u8>) -> u8 {
    x.expect("after the tests")
}
"##;
    let found: Vec<usize> = unmarked_unwraps(src).into_iter().map(|(l, _)| l).collect();
    assert_eq!(found, vec![7, 22], "{:?}", unmarked_unwraps(src));
}

#[test]
fn parsers_do_not_unwrap_untrusted_data() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for p in PARSERS {
        let path = crates.join(p);
        assert!(path.exists(), "{} is gone: update PARSERS", path.display());
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path);
        }
    }
    files.retain(|f| !NOT_PARSERS.iter().any(|(skip, _)| f.ends_with(skip)));
    assert!(files.len() > 20, "found only {} parser files", files.len());
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (line, code) in unmarked_unwraps(&text) {
            found.push(format!("{}:{line}: {code}", f.display()));
        }
    }
    assert!(
        found.is_empty(),
        "unwrap()/expect( on untrusted data: return an error naming the file and the \
         problem, or add `// unwrap-ok: <why it cannot fail>`:\n{}",
        found.join("\n")
    );
}
