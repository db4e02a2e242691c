//! What training and distillation evaluation share: the frozen models, the
//! prompt split, the caches, and turning a manifest into ready examples
//! (transcript ids, encoder states and teacher targets), skipping bad items
//! with a count and a warning instead of failing the run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use diva_core::models::diva::PromptSplit;
use diva_core::models::llm::{load_llm, Llm, WeightMode};
use diva_core::models::whisper::WhisperWeights;
use diva_core::text::LlmTokenizer;
use diva_core::weights::cache;
use sha2::{Digest, Sha256};

use crate::data::{Item, SkipReason, Skipped};
use crate::features::EncoderFeatures;
use crate::student::PromptEmbeds;
use crate::teacher_cache::TeacherCache;

/// The frozen parts: Whisper (encoder, and its decoder weights for the
/// connector's initialisation), the LLM with its tokenizer and prompt split.
pub struct Frozen {
    pub whisper: WhisperWeights,
    pub whisper_dir: PathBuf,
    pub llm: Llm,
    pub llm_path: PathBuf,
    pub tokenizer: LlmTokenizer,
    pub split: PromptSplit,
    pub prompt: PromptEmbeds,
    pub device: Device,
    /// Compute dtype of the frozen encoder and LLM (f32 on CPU; bf16 on CUDA).
    pub dtype: DType,
}

impl Frozen {
    /// Resolve and load both models (names, directories or hub ids).
    pub fn load(whisper: &str, llm: &str, device: &Device, dtype: DType) -> Result<Self> {
        let whisper_dir = cache::resolve_whisper(whisper)?;
        let llm_path = cache::resolve_llm(llm)?;
        Self::load_paths(&whisper_dir, &llm_path, device, dtype)
    }

    pub fn load_paths(
        whisper_dir: &Path,
        llm_path: &Path,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let whisper = WhisperWeights::load_dir(whisper_dir)?;
        // Training differentiates through the LLM, so weights are dense
        // (GGUF blocks are dequantized once here).
        let llm = load_llm(llm_path, WeightMode::Dense(dtype), device)?;
        let tokenizer = LlmTokenizer::from_path(llm_path)?;
        let split = PromptSplit::from_template(&tokenizer, None)?;
        let prompt = PromptEmbeds::new(&llm, &split)?;
        Ok(Self {
            whisper,
            whisper_dir: whisper_dir.to_path_buf(),
            llm,
            llm_path: llm_path.to_path_buf(),
            tokenizer,
            split,
            prompt,
            device: device.clone(),
            dtype,
        })
    }

    /// Part of the cache keys; empty for f32 so f32 keys never changed.
    fn dtype_tag(&self) -> String {
        if self.dtype == DType::F32 {
            String::new()
        } else {
            format!("{:?}", self.dtype)
        }
    }

    /// Identifies the teacher: LLM weights and the prompt around the transcript.
    pub fn teacher_key(&self) -> String {
        let mut h = Sha256::new();
        h.update(file_identity(&self.llm_path).as_bytes());
        h.update(self.dtype_tag().as_bytes());
        for ids in [&self.split.prefix, &self.split.suffix] {
            h.update(format!("{ids:?}").as_bytes());
        }
        short_hex(h)
    }

    /// Identifies the encoder weights.
    pub fn encoder_key(&self) -> String {
        let mut h = Sha256::new();
        h.update(file_identity(&self.whisper_dir).as_bytes());
        h.update(self.dtype_tag().as_bytes());
        short_hex(h)
    }

    /// Transcript token ids (no special tokens, as the teacher sees them).
    pub fn transcript_ids(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, false)?)
    }

    /// Transcript ids → token embeddings `[T, d]` (frozen).
    pub fn transcript_embeds(&self, ids: &[u32]) -> Result<Tensor> {
        let t = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        Ok(self.llm.embed(&t)?.squeeze(0)?)
    }
}

/// A path's identity for cache keys: canonical path, size and mtime of the
/// file (or of the model files in a directory).
fn file_identity(p: &Path) -> String {
    let canon = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let files: Vec<PathBuf> = if canon.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&canon)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|f| {
            f.extension()
                .is_some_and(|e| e == "bin" || e == "safetensors" || e == "gguf")
        });
        v.sort();
        v
    } else {
        vec![canon.clone()]
    };
    let mut s = canon.display().to_string();
    for f in files {
        if let Ok(m) = std::fs::metadata(&f) {
            s.push_str(&format!("|{}:{}", f.display(), m.len()));
        }
    }
    s
}

fn short_hex(h: Sha256) -> String {
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A training or validation example, ready except for its encoder states
/// (read from the cache when its batch comes up).
#[derive(Debug, Clone)]
pub struct Example {
    pub item: Item,
    pub ids: Vec<u32>,
    /// Teacher's final hidden state at the last prompt position `[d_llm]`.
    pub teacher: Tensor,
}

/// Where the shared caches live: `$DIVA_HOME/cache` unless given.
pub fn cache_root(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cache::diva_home().join("cache"))
}

/// Tokenize, encode (filling the encoder cache) and compute teacher targets
/// (filling the teacher cache) for `items` (each with its location, e.g.
/// `manifest.jsonl:7`). Items that cannot be used are skipped and returned
/// with the reason, unlogged: the caller reports them once.
pub fn prepare(
    frozen: &Frozen,
    features: &EncoderFeatures,
    teacher: &mut TeacherCache,
    items: &[(String, Item)],
    num_queries: usize,
    label: &str,
) -> Result<(Vec<Example>, Vec<Skipped>)> {
    let mut skipped = Vec::new();
    let mut kept = Vec::new();
    for (location, item) in items {
        let ids = match frozen.transcript_ids(&item.text) {
            Ok(ids) => ids,
            Err(e) => {
                skipped.push(Skipped::new(
                    location,
                    SkipReason::Unusable(format!("transcript does not tokenize: {e}")),
                ));
                continue;
            }
        };
        if ids.is_empty() {
            skipped.push(Skipped::new(location, SkipReason::EmptyTranscript));
            continue;
        }
        if ids.len() > num_queries {
            skipped.push(Skipped::new(
                location,
                SkipReason::Unusable(format!(
                    "transcript has {} tokens, more than the {num_queries} virtual tokens the alignment loss can match",
                    ids.len()
                )),
            ));
            continue;
        }
        kept.push((location, item.clone(), ids));
    }

    // Encoder pass: the expensive one, shown with a bar.
    let todo = kept
        .iter()
        .filter(|(_, it, _)| !features.is_cached(&it.audio))
        .count();
    let bar = crate::progress::bar(todo as u64, &format!("{label}: encoding audio"));
    let mut encoded = Vec::new();
    for (location, item, ids) in kept {
        let cached = features.is_cached(&item.audio);
        match features.states(&item.audio) {
            Ok(_) => encoded.push((item, ids)),
            Err(e) => {
                // diva-core's audio errors already name the file: keep the problem.
                let problem = match e.downcast_ref::<diva_core::Error>() {
                    Some(diva_core::Error::Audio { problem, .. }) => problem.clone(),
                    _ => format!("{e:#}"),
                };
                let reason = if item.audio.exists() {
                    SkipReason::UnreadableAudio {
                        path: item.audio.clone(),
                        problem,
                    }
                } else {
                    SkipReason::MissingAudio(item.audio.clone())
                };
                skipped.push(Skipped::new(location, reason));
            }
        }
        if !cached {
            bar.inc(1);
            if bar.is_hidden() && bar.position().is_multiple_of(100) {
                tracing::info!("{label}: encoded {}/{todo} clips", bar.position());
            }
        }
    }
    bar.finish_and_clear();

    let transcripts: Vec<String> = encoded.iter().map(|(it, _)| it.text.clone()).collect();
    let missing = transcripts
        .iter()
        .filter(|t| teacher.get(t).is_none())
        .count();
    let bar = crate::progress::bar(missing as u64, &format!("{label}: teacher targets"));
    teacher
        .fill(
            &frozen.llm,
            &frozen.tokenizer,
            &frozen.split,
            &transcripts,
            64,
            |n| bar.set_position(n as u64),
        )
        .context("computing teacher targets")?;
    bar.finish_and_clear();
    let examples = encoded
        .into_iter()
        .map(|(item, ids)| {
            let t = teacher
                .get(&item.text)
                .cloned()
                .context("teacher target missing after filling the cache")?;
            Ok(Example {
                item,
                ids,
                teacher: t.to_device(&frozen.device)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((examples, skipped))
}
