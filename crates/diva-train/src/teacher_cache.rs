//! The teacher's targets, computed once: the frozen LLM's final hidden state at
//! the last prompt position for each transcript, cached in a safetensors file
//! keyed by (model, transcript). Filling is resumable: the file is saved
//! atomically every few entries, and a restarted run computes only what is
//! missing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use candle_core::{DType, Device, IndexOp, Tensor};
use diva_core::models::diva::PromptSplit;
use diva_core::models::llm::Llm;
use diva_core::models::Exec;
use diva_core::text::LlmTokenizer;
use sha2::{Digest, Sha256};

use crate::integrity;

/// Cache entries are named by this hash of the transcript text.
pub fn transcript_key(transcript: &str) -> String {
    let digest = Sha256::digest(transcript.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The entry that records which model the targets belong to (UTF-8 bytes).
const MODEL_KEY: &str = "__model_key__";

/// Entry `K`'s checksum ([`integrity::digest`]) is stored as `sha256.K`.
const CHECKSUM_PREFIX: &str = "sha256.";

/// The targets of a loaded cache file whose checksums match, and how many did
/// not. Targets written before checksums existed (no `sha256.K` at all in the
/// file) are trusted on the file's own size checks.
fn verified(mut all: HashMap<String, Tensor>) -> (HashMap<String, Tensor>, usize) {
    all.remove(MODEL_KEY);
    let sums: HashMap<String, Tensor> = all
        .keys()
        .filter(|k| k.starts_with(CHECKSUM_PREFIX))
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(|k| {
            all.remove(&k)
                .map(|v| (k[CHECKSUM_PREFIX.len()..].to_string(), v))
        })
        .collect();
    let legacy = sums.is_empty();
    let mut bad = 0;
    all.retain(|k, v| {
        let ok = legacy || sums.get(k).is_some_and(|s| integrity::matches(v, s));
        bad += usize::from(!ok);
        ok
    });
    (all, bad)
}

pub struct TeacherCache {
    path: PathBuf,
    /// Identifies the LLM and prompt the targets belong to.
    model_key: String,
    entries: HashMap<String, Tensor>,
}

impl TeacherCache {
    /// Open (or start) a cache. An existing file made for another model is an
    /// error rather than silently reused. Entries are checked against their
    /// checksums: a file that is truncated or unreadable, and any entry whose
    /// values do not match, are dropped with a warning and recomputed.
    pub fn open(path: &Path, model_key: &str) -> Result<Self> {
        let mut entries = HashMap::new();
        if path.is_file() {
            match candle_core::safetensors::load(path, &Device::Cpu) {
                Ok(all) => {
                    let stored = all
                        .get(MODEL_KEY)
                        .and_then(|t| t.to_vec1::<u8>().ok())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    if stored != model_key {
                        bail!(
                            "{} holds teacher targets for `{stored}`, not `{model_key}`: use another --cache path or delete it",
                            path.display()
                        );
                    }
                    let (good, bad) = verified(all);
                    if bad > 0 {
                        tracing::warn!(
                            "{}: {bad} teacher targets are corrupted (checksum mismatch); recomputing them",
                            path.display()
                        );
                    }
                    entries = good;
                }
                Err(e) => tracing::warn!(
                    "{}: unreadable teacher cache (truncated or damaged: {e}); recomputing its targets",
                    path.display()
                ),
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            model_key: model_key.to_string(),
            entries,
        })
    }

    /// Add (or replace) the target of `transcript`.
    pub fn insert(&mut self, transcript: &str, target: Tensor) {
        self.entries.insert(transcript_key(transcript), target);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, transcript: &str) -> Option<&Tensor> {
        self.entries.get(&transcript_key(transcript))
    }

    /// Write the cache atomically (temporary file, then rename), each entry
    /// with its checksum. Entries another process saved meanwhile (a
    /// concurrent `diva eval-distill` sharing the cache) are merged in, if
    /// their checksums match, rather than overwritten. A failed write (a full
    /// disk) leaves the previous file as it was and says so.
    pub fn save(&self) -> Result<()> {
        let tmp = self
            .path
            .with_extension(format!("safetensors.{}.tmp", std::process::id()));
        let mut all = self.entries.clone();
        if let Ok(on_disk) = candle_core::safetensors::load(&self.path, &Device::Cpu) {
            for (k, v) in verified(on_disk).0 {
                all.entry(k).or_insert(v);
            }
        }
        let mut file = HashMap::with_capacity(2 * all.len() + 1);
        for (k, v) in all {
            file.insert(format!("{CHECKSUM_PREFIX}{k}"), integrity::digest(&v)?);
            file.insert(k, v);
        }
        let key = self.model_key.as_bytes().to_vec();
        let n = key.len();
        file.insert(
            MODEL_KEY.to_string(),
            Tensor::from_vec(key, n, &Device::Cpu)?,
        );
        integrity::save_atomic(&file, &self.path, &tmp)
    }

    /// Compute the targets that are missing, saving every `save_every` new
    /// entries and at the end. Returns how many were computed.
    pub fn fill(
        &mut self,
        llm: &Llm,
        tokenizer: &LlmTokenizer,
        split: &PromptSplit,
        transcripts: &[String],
        save_every: usize,
        mut on_done: impl FnMut(usize),
    ) -> Result<usize> {
        let mut computed = 0;
        for t in transcripts {
            let key = transcript_key(t);
            if self.entries.contains_key(&key) {
                on_done(computed);
                continue;
            }
            let ids = tokenizer.encode(t, false)?;
            let h = llm.forward_embeds(&split.teacher(llm, &ids)?, None, None, Exec::Fused)?;
            let last = h.i((0, h.dim(1)? - 1))?.to_dtype(DType::F32)?;
            self.entries.insert(key, last);
            computed += 1;
            on_done(computed);
            if save_every > 0 && computed % save_every == 0 {
                self.save()?;
            }
        }
        if computed > 0 {
            self.save()?;
        }
        Ok(computed)
    }
}
