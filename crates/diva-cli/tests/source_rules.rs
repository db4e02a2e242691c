//! Rules on the source itself, checked by the test command (CI runs no
//! clippy): every `unsafe` block or impl in non-test code carries a
//! `SAFETY:` comment on its line or in the three lines above it (clippy's
//! `undocumented_unsafe_blocks`, which the workspace also enables).

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
