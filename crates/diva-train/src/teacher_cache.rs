//! The teacher's targets, computed once: the frozen LLM's final hidden state at
//! the last prompt position for each transcript, cached in a safetensors file
//! keyed by (model, transcript). Filling is resumable: the file is saved
//! atomically every few entries, and a restarted run computes only what is
//! missing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, IndexOp, Tensor};
use diva_core::models::diva::PromptSplit;
use diva_core::models::llm::Llm;
use diva_core::models::Exec;
use diva_core::text::LlmTokenizer;
use sha2::{Digest, Sha256};

/// Cache entries are named by this hash of the transcript text.
pub fn transcript_key(transcript: &str) -> String {
    let digest = Sha256::digest(transcript.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The entry that records which model the targets belong to (UTF-8 bytes).
const MODEL_KEY: &str = "__model_key__";

pub struct TeacherCache {
    path: PathBuf,
    /// Identifies the LLM and prompt the targets belong to.
    model_key: String,
    entries: HashMap<String, Tensor>,
}

impl TeacherCache {
    /// Open (or start) a cache. An existing file made for another model is an
    /// error rather than silently reused.
    pub fn open(path: &Path, model_key: &str) -> Result<Self> {
        let mut entries = HashMap::new();
        if path.is_file() {
            entries = candle_core::safetensors::load(path, &Device::Cpu)
                .with_context(|| format!("{} is not a readable teacher cache", path.display()))?;
            let stored = entries
                .remove(MODEL_KEY)
                .and_then(|t| t.to_vec1::<u8>().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if stored != model_key {
                bail!(
                    "{} holds teacher targets for `{stored}`, not `{model_key}`: use another --cache path or delete it",
                    path.display()
                );
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            model_key: model_key.to_string(),
            entries,
        })
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

    /// Write the cache atomically (temporary file, then rename). Entries
    /// another process saved meanwhile (a concurrent `diva eval-distill`
    /// sharing the cache) are merged in rather than overwritten.
    pub fn save(&self) -> Result<()> {
        let tmp = self
            .path
            .with_extension(format!("safetensors.{}.tmp", std::process::id()));
        let mut all = self.entries.clone();
        if let Ok(on_disk) = candle_core::safetensors::load(&self.path, &Device::Cpu) {
            for (k, v) in on_disk {
                if k != MODEL_KEY {
                    all.entry(k).or_insert(v);
                }
            }
        }
        let key = self.model_key.as_bytes().to_vec();
        let n = key.len();
        all.insert(
            MODEL_KEY.to_string(),
            Tensor::from_vec(key, n, &Device::Cpu)?,
        );
        candle_core::safetensors::save(&all, &tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot move {} into place", self.path.display()))?;
        Ok(())
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
