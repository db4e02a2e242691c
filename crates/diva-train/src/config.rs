//! Training configuration: named presets, a TOML file on top, CLI overrides on
//! top of that. Every field has a preset value, so a config file only lists
//! what it changes.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Whisper model: a fetched name (`tiny.en`), a directory or a hub id.
    pub whisper: String,
    /// LLM: a fetched name (`smollm2`), a `.gguf`, a directory or a hub id.
    pub llm: String,
    /// Number of learned queries N (virtual tokens per clip).
    pub num_queries: usize,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Examples per forward/backward pass; `batch_size` must be a multiple
    /// (gradient accumulation over `batch_size / micro_batch` passes).
    pub micro_batch: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Learning-rate multiplier for the Whisper-decoder blocks (queries and
    /// projection use `lr`). 1.0 is the official recipe.
    pub decoder_lr_scale: f64,
    pub weight_decay: f64,
    /// Fraction of `steps` spent in linear warmup (official: 1%).
    pub warmup_frac: f64,
    /// Global gradient-norm bound; 0 disables clipping.
    pub clip_grad_norm: f64,
    /// Weight of the distillation L2 loss (official: 1).
    pub distill_weight: f64,
    /// Weight of the alignment L2 loss (official: 1).
    pub align_weight: f64,
    /// Weight of an optional KL(teacher ‖ student) loss on the first reply
    /// token's logits (Ultravox-style); 0 (official) disables it.
    pub kl_weight: f64,
    pub kl_temperature: f64,
    /// Weight of the response-level KL (Ultravox's `Response_KL`): the
    /// student, teacher-forced on the teacher's cached greedy reply, matches
    /// the teacher's distribution at every reply position. 0 (official)
    /// disables it.
    pub response_kl_weight: f64,
    /// Temperature τ of the response KL (Ultravox: 2).
    pub response_kl_temperature: f64,
    /// Reply tokens R the teacher writes (and the student is scored on).
    pub response_tokens: usize,
    /// Teacher tokens cached per reply position (the KL is truncated to
    /// them; the covered probability mass is logged). The vocabulary size
    /// makes it exact.
    pub response_top_k: usize,
    /// Weight of an in-batch contrastive loss (InfoNCE over cosine
    /// similarities) between the student's and the teacher's last-position
    /// states; 0 (official) disables it.
    pub contrastive_weight: f64,
    pub contrastive_temperature: f64,
    /// Weight of the per-token alignment target: the last T virtual tokens
    /// classified over the LLM vocabulary by L2 distance, cross-entropy
    /// against the transcript's tokens (`losses::align_ce_loss`). 0
    /// (official) disables it.
    pub align_ce_weight: f64,
    pub align_ce_temperature: f64,
    /// Encoder frames the connector attends to (the first F of Whisper's
    /// 1500, 20 ms each; 250 = the first 5 s). Recorded in config.json, so
    /// `diva chat` and evaluation crop the same way. 0 (official): all.
    pub encoder_frames: usize,
    /// Optimizer steps at the start that train the alignment loss alone (no
    /// LLM forward, so several times cheaper); 0 (official) disables it.
    pub align_only_steps: usize,
    /// How the projection starts: `torch` (nn.Linear default init, official)
    /// or `lstsq` (least squares from Whisper's token embeddings to the LLM's
    /// over the tokens both vocabularies share).
    pub projection_init: String,
    pub seed: u64,
    /// Save a checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Keep this many most recent step checkpoints.
    pub keep_last: usize,
    /// Validate every this many steps (0: only at the end).
    pub val_every: usize,
    /// At most this many validation clips.
    pub val_limit: usize,
    /// Clips whose greedy replies are compared (reply F1); 0 skips it.
    pub val_reply_clips: usize,
    /// Reply length for reply F1.
    pub max_new_tokens: usize,
    /// Retrieval@1 pool size.
    pub retrieval_pool: usize,
    /// Cache Whisper encoder states (f16) on disk so later epochs skip the
    /// frozen encoder.
    pub cache_encoder: bool,
    /// Refuse to train when more than this share of a manifest's entries is
    /// unusable (bad lines, undecodable audio, over-long transcripts); 1
    /// trains on whatever is usable.
    pub max_unusable_share: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        // unwrap-ok: a built-in preset, tested.
        Self::preset("tiny").expect("the tiny preset exists")
    }
}

pub const PRESETS: &[&str] = &["tiny", "paper"];

/// The default of [`TrainConfig::max_unusable_share`] (and of
/// `eval-distill --max-unusable-share`).
pub const DEFAULT_MAX_UNUSABLE_SHARE: f64 = 0.05;

impl TrainConfig {
    pub fn preset(name: &str) -> Result<Self> {
        let tiny = Self {
            whisper: "tiny.en".into(),
            llm: "smollm2".into(),
            num_queries: 64,
            batch_size: 8,
            micro_batch: 8,
            steps: 1000,
            lr: 2e-4,
            decoder_lr_scale: 1.0,
            weight_decay: 0.1,
            warmup_frac: 0.01,
            clip_grad_norm: 1.0,
            distill_weight: 1.0,
            align_weight: 1.0,
            kl_weight: 0.0,
            kl_temperature: 2.0,
            response_kl_weight: 0.0,
            response_kl_temperature: 2.0,
            response_tokens: 32,
            response_top_k: 256,
            contrastive_weight: 0.0,
            contrastive_temperature: 0.1,
            align_only_steps: 0,
            encoder_frames: 0,
            align_ce_weight: 0.0,
            align_ce_temperature: 1.0,
            projection_init: "torch".into(),
            seed: 0,
            checkpoint_every: 100,
            keep_last: 3,
            val_every: 100,
            val_limit: 100,
            val_reply_clips: 20,
            max_new_tokens: 32,
            retrieval_pool: 100,
            cache_encoder: true,
            max_unusable_share: DEFAULT_MAX_UNUSABLE_SHARE,
        };
        match name {
            "tiny" => Ok(tiny),
            // The official recipe (paper §3, official trainer).
            "paper" => Ok(Self {
                whisper: "openai/whisper-large-v3".into(),
                llm: "meta-llama/Meta-Llama-3-8B-Instruct".into(),
                num_queries: 448,
                batch_size: 512,
                micro_batch: 8,
                steps: 4300,
                lr: 5e-5,
                checkpoint_every: 500,
                val_every: 500,
                ..tiny
            }),
            other => bail!(
                "unknown preset `{other}`: choose one of {}",
                PRESETS.join(", ")
            ),
        }
    }

    /// A preset with a TOML file's fields on top.
    pub fn load(preset: &str, file: Option<&Path>) -> Result<Self> {
        let Some(file) = file else {
            return Self::preset(preset);
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read config {}", file.display()))?;
        Self::from_toml(preset, &text, file)
    }

    /// [`TrainConfig::load`] on a TOML file's text; `file` is only used in error messages.
    pub fn from_toml(preset: &str, text: &str, file: &Path) -> Result<Self> {
        let base = Self::preset(preset)?;
        let overlay: toml::Table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", file.display()))?;
        let mut merged = toml::Table::try_from(&base)?;
        merged.extend(overlay);
        let cfg: Self = merged
            .try_into()
            .with_context(|| format!("bad config {}", file.display()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(anyhow::anyhow!("bad training config: {m}"));
        if self.num_queries == 0 {
            return fail("num_queries must be at least 1".into());
        }
        if self.micro_batch == 0
            || self.batch_size == 0
            || !self.batch_size.is_multiple_of(self.micro_batch)
        {
            return fail(format!(
                "batch_size ({}) must be a positive multiple of micro_batch ({})",
                self.batch_size, self.micro_batch
            ));
        }
        if self.steps == 0 {
            return fail("steps must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return fail(format!("lr must be positive, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.warmup_frac) {
            return fail(format!(
                "warmup_frac must be in [0, 1), got {}",
                self.warmup_frac
            ));
        }
        let weights = [
            self.distill_weight,
            self.align_weight,
            self.kl_weight,
            self.response_kl_weight,
            self.contrastive_weight,
            self.align_ce_weight,
        ];
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return fail("loss weights must be finite and non-negative".into());
        }
        if weights.iter().sum::<f64>() == 0.0 {
            return fail("at least one loss weight must be positive".into());
        }
        for (on, tau, name) in [
            (self.kl_weight, self.kl_temperature, "kl_temperature"),
            (
                self.response_kl_weight,
                self.response_kl_temperature,
                "response_kl_temperature",
            ),
            (
                self.contrastive_weight,
                self.contrastive_temperature,
                "contrastive_temperature",
            ),
            (
                self.align_ce_weight,
                self.align_ce_temperature,
                "align_ce_temperature",
            ),
        ] {
            if on > 0.0 && !(tau.is_finite() && tau > 0.0) {
                return fail(format!("{name} must be positive, got {tau}"));
            }
        }
        if self.response_kl_weight > 0.0 && (self.response_tokens == 0 || self.response_top_k == 0)
        {
            return fail(
                "response_tokens and response_top_k must be at least 1 with a response KL".into(),
            );
        }
        if self.contrastive_weight > 0.0 && self.micro_batch < 2 {
            return fail("the contrastive loss compares clips within a micro batch: micro_batch must be at least 2".into());
        }
        if self.encoder_frames > 1500 {
            return fail(format!(
                "encoder_frames must be at most Whisper's 1500 (0: all), got {}",
                self.encoder_frames
            ));
        }
        if self.align_only_steps >= self.steps {
            return fail(format!(
                "align_only_steps ({}) must be below steps ({}): the distillation never starts otherwise",
                self.align_only_steps, self.steps
            ));
        }
        if !matches!(self.projection_init.as_str(), "torch" | "lstsq") {
            return fail(format!(
                "projection_init must be `torch` or `lstsq`, got `{}`",
                self.projection_init
            ));
        }
        if self.checkpoint_every == 0 || self.keep_last == 0 {
            return fail("checkpoint_every and keep_last must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.max_unusable_share) {
            return fail(format!(
                "max_unusable_share must be in [0, 1], got {}",
                self.max_unusable_share
            ));
        }
        if self.retrieval_pool < 2 {
            return fail("retrieval_pool must be at least 2".into());
        }
        Ok(())
    }

    pub fn warmup_steps(&self) -> usize {
        ((self.steps as f64 * self.warmup_frac).round() as usize).max(1)
    }

    pub fn accumulation(&self) -> usize {
        self.batch_size / self.micro_batch
    }

    /// Fields that must not change when a run resumes (they change what the
    /// weights or the data order mean).
    pub fn resume_mismatch(&self, saved: &TrainConfig) -> Option<String> {
        let pairs = [
            ("whisper", self.whisper != saved.whisper),
            ("llm", self.llm != saved.llm),
            ("num_queries", self.num_queries != saved.num_queries),
            ("batch_size", self.batch_size != saved.batch_size),
            ("seed", self.seed != saved.seed),
            ("steps", self.steps != saved.steps),
            (
                "response_tokens",
                self.response_tokens != saved.response_tokens,
            ),
            (
                "response_top_k",
                self.response_top_k != saved.response_top_k,
            ),
            (
                "align_only_steps",
                self.align_only_steps != saved.align_only_steps,
            ),
            (
                "encoder_frames",
                self.encoder_frames != saved.encoder_frames,
            ),
        ];
        let bad: Vec<&str> = pairs.iter().filter(|(_, d)| *d).map(|(n, _)| *n).collect();
        (!bad.is_empty()).then(|| bad.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_preset_is_the_official_recipe() {
        let p = TrainConfig::preset("paper").unwrap();
        assert_eq!(
            (p.num_queries, p.batch_size, p.steps, p.lr, p.weight_decay),
            (448, 512, 4300, 5e-5, 0.1)
        );
        assert_eq!(p.warmup_steps(), 43);
        assert_eq!(
            (p.distill_weight, p.align_weight, p.kl_weight),
            (1.0, 1.0, 0.0)
        );
        // Every lever is off in the official recipe.
        assert_eq!(
            (
                p.response_kl_weight,
                p.contrastive_weight,
                p.align_only_steps
            ),
            (0.0, 0.0, 0)
        );
        assert!(TrainConfig::preset("huge").is_err());
    }

    #[test]
    fn toml_overrides_a_preset_and_typos_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "num_queries = 32\nlr = 1e-3\n").unwrap();
        let c = TrainConfig::load("tiny", Some(&f)).unwrap();
        assert_eq!((c.num_queries, c.lr, c.llm.as_str()), (32, 1e-3, "smollm2"));
        std::fs::write(&f, "num_querys = 32\n").unwrap();
        let e = format!("{:#}", TrainConfig::load("tiny", Some(&f)).unwrap_err());
        assert!(e.contains("num_querys"), "{e}");
        std::fs::write(&f, "batch_size = 6\nmicro_batch = 4\n").unwrap();
        let e = format!("{:#}", TrainConfig::load("tiny", Some(&f)).unwrap_err());
        assert!(e.contains("multiple of micro_batch"), "{e}");
    }
}
