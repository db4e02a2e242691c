//! Replays the committed fuzz inputs (`fuzz/corpus/<target>/*` and
//! `fuzz/regressions/<target>/*`) through the targets' code on stable Rust: each
//! file must come back (error or not) without a panic. Included by the crates'
//! `tests/fuzz_replay.rs`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The fuzz crate's folder, from a crate's manifest dir (`crates/<name>`).
pub fn fuzz_dir(manifest_dir: &str) -> PathBuf {
    Path::new(manifest_dir).join("../../fuzz")
}

/// A target: (name, entry point), as the targets' files list them.
pub type Target = (&'static str, fn(&[u8]));

/// Run every committed input of every target in `targets`; returns how many files
/// ran. Panics listing each file that panicked (by path), or that took longer
/// than the fuzzers' `-timeout=10`.
pub fn replay(fuzz: &Path, targets: &[Target]) -> usize {
    let mut failures = Vec::new();
    let mut ran = 0;
    for (name, target) in targets {
        let mut files = Vec::new();
        for kind in ["corpus", "regressions"] {
            let dir = fuzz.join(kind).join(name);
            if let Ok(entries) = std::fs::read_dir(&dir) {
                files.extend(
                    entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.is_file()),
                );
            }
        }
        files.sort();
        for file in files {
            let data = match std::fs::read(&file) {
                Ok(d) => d,
                Err(e) => {
                    failures.push(format!("{}: cannot read: {e}", file.display()));
                    continue;
                }
            };
            let t0 = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| target(&data)));
            let took = t0.elapsed();
            ran += 1;
            if let Err(panic) = outcome {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                failures.push(format!("{} [{name}]: panicked: {what}", file.display()));
            } else if took > Duration::from_secs(10) {
                failures.push(format!(
                    "{} [{name}]: took {took:?} (> 10 s)",
                    file.display()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "fuzz inputs that fail:\n{}",
        failures.join("\n")
    );
    ran
}
