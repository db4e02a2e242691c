//! Training data layer: the JSONL manifest format and importers that turn
//! common speech datasets into manifest [`Item`]s.

pub mod importers;
pub mod manifest;
pub mod synth;

pub use importers::{import_asterisk, import_commonvoice, import_folder, import_librispeech};
pub use manifest::{read_manifest, write_manifest, Item, SkipReason, Skipped};
