//! Every committed fuzz input of the train targets (`fuzz/corpus/`, `fuzz/regressions/`)
//! replayed through the same code the cargo-fuzz targets run
//! (`fuzz/harness/train_targets.rs`), on stable Rust: none may panic (issue 20).

#[path = "../../../fuzz/harness/replay.rs"]
mod replay;
#[path = "../../../fuzz/harness/train_targets.rs"]
mod train_targets;

#[test]
fn committed_fuzz_inputs_never_panic() {
    let fuzz = replay::fuzz_dir(env!("CARGO_MANIFEST_DIR"));
    let ran = replay::replay(&fuzz, train_targets::TARGETS);
    assert!(ran > 0, "no fuzz inputs under {}", fuzz.display());
}
