//! Audio → frozen Whisper encoder states, computed once per clip.
//!
//! The encoder is frozen and (on CPU) the most expensive part of a training
//! step, so its output is cached on disk in f16 and later epochs only read it.
//! States are always rounded through f16, cached or not, so a run that reads
//! the cache computes exactly what a run that filled it computed: that is
//! what makes a resumed run match an uninterrupted one bit for bit.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use diva_core::audio::{self, MelFilters};
use diva_core::models::whisper::{WhisperEncoder, WhisperWeights};
use sha2::{Digest, Sha256};

use crate::integrity;

pub struct EncoderFeatures {
    encoder: WhisperEncoder,
    dtype: DType,
    filters: MelFilters,
    /// Where cached states live; `None` computes every time.
    cache_dir: Option<PathBuf>,
    /// Identifies the encoder weights, so a cache never serves another model.
    model_key: String,
    device: Device,
}

impl EncoderFeatures {
    pub fn new(
        whisper: &WhisperWeights,
        model_key: &str,
        cache_dir: Option<PathBuf>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        if let Some(d) = &cache_dir {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create encoder cache {}", d.display()))?;
        }
        Ok(Self {
            encoder: whisper.encoder(dtype, device)?,
            dtype,
            filters: MelFilters::new(whisper.config.num_mel_bins),
            cache_dir,
            model_key: model_key.to_string(),
            device: device.clone(),
        })
    }

    fn cache_path(&self, audio: &Path) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        // Path + size + mtime: an edited file gets a new entry.
        let meta = std::fs::metadata(audio).ok()?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let mut h = Sha256::new();
        h.update(self.model_key.as_bytes());
        h.update(audio.to_string_lossy().as_bytes());
        h.update(meta.len().to_le_bytes());
        h.update(mtime.to_le_bytes());
        let key: String = h
            .finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(dir.join(format!("{key}.safetensors")))
    }

    /// Whether `audio`'s states are already cached.
    pub fn is_cached(&self, audio: &Path) -> bool {
        self.cache_path(audio).is_some_and(|p| p.is_file())
    }

    /// Encoder states `[frames, d]` (f32 values rounded through f16). A cached
    /// entry is used only when it is complete and its checksum matches; a
    /// truncated or corrupted one is recomputed (and rewritten), with a warning.
    pub fn states(&self, audio: &Path) -> Result<Tensor> {
        let cached = self.cache_path(audio);
        if let Some(p) = cached.as_ref().filter(|p| p.is_file()) {
            match read_entry(p, &self.device) {
                Ok(s) => return Ok(s.to_dtype(DType::F32)?),
                Err(why) => tracing::warn!(
                    "{}: encoder cache entry for {} is {why}; recomputing it",
                    p.display(),
                    audio.display()
                ),
            }
        }
        let pcm = audio::load_pcm_16k(audio)?;
        let pcm = &pcm[..pcm.len().min(audio::N_SAMPLES)];
        let mel = audio::log_mel(pcm, &self.filters);
        let mel = Tensor::from_vec(
            mel,
            (1, self.filters.n_mels(), audio::N_FRAMES),
            &self.device,
        )?
        .to_dtype(self.dtype)?;
        let half = self
            .encoder
            .forward(&mel)?
            .squeeze(0)?
            .to_dtype(DType::F16)?;
        if let Some(p) = cached {
            let entry = std::collections::HashMap::from([
                (CHECKSUM.to_string(), integrity::digest(&half)?),
                ("states".to_string(), half.clone()),
            ]);
            integrity::save_atomic(&entry, &p, &p.with_extension("tmp"))?;
        }
        Ok(half.to_dtype(DType::F32)?)
    }
}

/// The entry beside `states` holding their SHA-256 ([`integrity::digest`]).
const CHECKSUM: &str = "states.sha256";

/// A cache entry's states if the file is complete and they match their
/// checksum; else what is wrong with it. Entries written before checksums
/// existed (no `states.sha256`) are trusted on the file's own size checks.
fn read_entry(p: &Path, device: &Device) -> std::result::Result<Tensor, String> {
    let mut t = candle_core::safetensors::load(p, device)
        .map_err(|e| format!("unreadable (truncated or damaged: {e})"))?;
    let states = t.remove("states").ok_or("missing its states")?;
    match t.remove(CHECKSUM) {
        Some(sum) if integrity::matches(&states, &sum) => Ok(states),
        Some(_) => Err("corrupted (its checksum does not match)".into()),
        None => Ok(states),
    }
}
