//! The fuzz targets' code, one function per target (`fuzz_targets/*.rs` are
//! one-line wrappers). The stable replay tests include the same files.

pub mod core_targets;
pub mod serve_targets;
pub mod train_targets;

/// Restore the standard panic hook (libfuzzer-sys installs one that aborts on
/// every panic, even one diva catches on purpose, such as a dependency's panic
/// turned into an error): a panic that escapes diva still aborts, since
/// libfuzzer-sys aborts when the target unwinds.
pub fn init() {
    let _ = std::panic::take_hook();
}
