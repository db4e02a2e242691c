//! What the `diva bench …` subcommands share: medians, peak memory, the
//! synthetic clip, and where the reference Python environment is. One module
//! the bench files import, so none of them imports another.

use std::path::PathBuf;

use diva_core::weights::cache;

/// Median of `v` (the upper one of an even count); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Peak resident memory of this process (Linux), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A synthetic clip (a rising chirp); timing does not depend on content.
pub fn chirp(seconds: f32, f0: f32) -> Vec<f32> {
    let n = (seconds * 16_000.0) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            0.3 * (2.0 * std::f32::consts::PI * (f0 + 200.0 * t) * t).sin()
        })
        .collect()
}

/// The Python of the reference environment (`tools/reference/setup-venv`):
/// `explicit`, else `$DIVA_REF_VENV/bin/python`, else
/// `$DIVA_HOME/venv-ref/bin/python`, if it exists.
pub fn reference_python(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let venv = std::env::var_os("DIVA_REF_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache::diva_home().join("venv-ref"));
        let py = venv.join("bin/python");
        py.is_file().then_some(py)
    })
}
