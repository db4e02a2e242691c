//! Training data layer: the JSONL manifest format and importers that turn
//! common speech datasets (and HF parquet exports) into manifest [`Item`]s.

pub mod hf_parquet;
pub mod importers;
pub mod manifest;
pub mod synth;

pub use hf_parquet::import_hf_parquet;
pub use importers::{import_asterisk, import_commonvoice, import_folder, import_librispeech};
pub use manifest::{
    read_manifest, read_manifest_lines, write_manifest, Item, ManifestLines, SkipReason, Skipped,
};
