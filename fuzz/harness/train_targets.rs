//! The fuzz targets over diva-train's readers: the JSONL manifest and the TOML
//! training config. Shared by the cargo-fuzz crate and the stable replay test
//! `crates/diva-train/tests/fuzz_replay.rs` (see `core_targets.rs`).

use std::path::Path;

use diva_train::config::TrainConfig;
use diva_train::data::manifest::parse_manifest_lines;

/// A target: (name, entry point).
pub type Target = (&'static str, fn(&[u8]));

/// Every target of this file: (name, entry point).
pub const TARGETS: &[Target] = &[("manifest", manifest), ("train_config", train_config)];

/// A JSONL manifest (`{"id", "audio", "text"}` per line), as `diva train` reads it.
pub fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = parse_manifest_lines(&text, Path::new("data/fuzz.jsonl"));
    for (_, skipped) in &lines.bad {
        let _ = skipped.to_string();
    }
    let n = lines.items.len() / 2;
    lines.truncate(n);
}

/// A TOML training config on top of each preset, then the resume check against the
/// preset it overrides.
pub fn train_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for preset in ["tiny", "paper"] {
        if let Ok(cfg) = TrainConfig::from_toml(preset, &text, Path::new("fuzz.toml")) {
            let _ = cfg.warmup_steps();
            let _ = cfg.accumulation();
            if let Ok(base) = TrainConfig::preset(preset) {
                let _ = cfg.resume_mismatch(&base);
            }
        }
    }
}
