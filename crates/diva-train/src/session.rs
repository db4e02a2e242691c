//! What `diva train` and `diva eval-distill` open once: the frozen models,
//! the encoder and teacher caches, and a manifest turned into examples, with
//! each unusable entry reported once and a run refused when too many are.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};

use crate::data::{read_manifest_lines, Skipped};
use crate::features::EncoderFeatures;
use crate::response::{ReplyCache, ReplySpec};
use crate::setup::{self, Example, Frozen};
use crate::teacher_cache::TeacherCache;
use crate::validate::TeacherReplies;

/// How many reasons an "too many unusable entries" error quotes.
const REASONS_QUOTED: usize = 5;

/// The pieces a step needs, set up once.
pub struct Session {
    pub frozen: Frozen,
    pub features: EncoderFeatures,
    pub teacher: TeacherCache,
    pub replies: TeacherReplies,
    /// Where the teacher-side caches live (`<cache root>/teacher`).
    teacher_dir: std::path::PathBuf,
}

impl Session {
    pub fn open(
        whisper: &str,
        llm: &str,
        cache_dir: Option<&Path>,
        cache_encoder: bool,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let frozen = Frozen::load(whisper, llm, device, dtype)?;
        let root = setup::cache_root(cache_dir);
        let enc_key = frozen.encoder_key();
        let features = EncoderFeatures::new(
            &frozen.whisper,
            &enc_key,
            cache_encoder.then(|| root.join("encoder").join(&enc_key)),
            device,
            dtype,
        )?;
        let key = frozen.teacher_key();
        let dir = root.join("teacher");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let teacher = TeacherCache::open(&dir.join(format!("{key}.safetensors")), &key)?;
        let replies = TeacherReplies::open(Some(dir.join(format!("{key}-replies.json"))));
        Ok(Self {
            frozen,
            features,
            teacher,
            replies,
            teacher_dir: dir,
        })
    }

    /// The teacher's greedy replies (and top-k log-probabilities) for every
    /// example's transcript, for the response KL: read from the reply cache,
    /// the missing ones computed now (saved as they come, so an interrupted
    /// fill resumes) with a progress bar.
    pub fn reply_cache(&self, examples: &[Example], spec: ReplySpec) -> Result<ReplyCache> {
        let key = self.frozen.teacher_key();
        let mut cache = ReplyCache::open(&self.teacher_dir, &key, spec)?;
        let todo: Vec<(String, Vec<u32>)> = examples
            .iter()
            .filter(|e| cache.get(&e.item.text).is_none())
            .map(|e| (e.item.text.clone(), e.ids.clone()))
            .collect();
        if !todo.is_empty() {
            tracing::info!(
                "teacher replies: {} of {} transcripts to compute ({} tokens each at most)",
                todo.len(),
                examples.len(),
                spec.max_tokens
            );
            let bar = crate::progress::bar(todo.len() as u64, "teacher replies");
            let f = &self.frozen;
            cache.fill(&f.llm, &f.tokenizer, &f.split, &todo, 25, |n| {
                bar.set_position(n as u64);
                if bar.is_hidden() && n % 100 == 0 {
                    tracing::info!("teacher replies: {n}/{}", todo.len());
                }
            })?;
            bar.finish_and_clear();
        }
        Ok(cache)
    }

    /// A manifest → usable examples (see [`setup::prepare`]) and the number
    /// skipped. Each skipped entry is logged once as a warning; more than
    /// `max_unusable_share` of the entries skipped is an error saying how many,
    /// why, and how to override.
    pub fn examples(
        &mut self,
        manifest: &Path,
        num_queries: usize,
        limit: Option<usize>,
        max_unusable_share: f64,
        label: &str,
    ) -> Result<(Vec<Example>, usize)> {
        let mut lines = read_manifest_lines(manifest)?;
        if let Some(l) = limit {
            lines.truncate(l);
        }
        let items: Vec<(String, _)> = lines
            .items
            .into_iter()
            .map(|(n, it)| (format!("{}:{n}", manifest.display()), it))
            .collect();
        let (ex, skipped) = setup::prepare(
            &self.frozen,
            &self.features,
            &mut self.teacher,
            &items,
            num_queries,
            label,
        )?;
        let mut unusable: Vec<Skipped> = lines.bad.into_iter().map(|(_, s)| s).collect();
        unusable.extend(skipped);
        check_unusable(
            manifest,
            &unusable,
            unusable.len() + ex.len(),
            max_unusable_share,
        )?;
        for s in &unusable {
            tracing::warn!("{label}: skipped {s}");
        }
        if ex.is_empty() {
            bail!(
                "{}: no usable examples ({} skipped; see the warnings above)",
                manifest.display(),
                unusable.len()
            );
        }
        Ok((ex, unusable.len()))
    }
}

/// Refuse a manifest with more than `max_share` of its `total` entries unusable.
pub fn check_unusable(
    manifest: &Path,
    unusable: &[Skipped],
    total: usize,
    max_share: f64,
) -> Result<()> {
    let n = unusable.len();
    if n == 0 || total == 0 || n as f64 <= max_share * total as f64 {
        return Ok(());
    }
    let share = n as f64 / total as f64;
    let mut reasons: String = unusable
        .iter()
        .take(REASONS_QUOTED)
        .map(|s| format!("\n  {s}"))
        .collect();
    if n > REASONS_QUOTED {
        reasons.push_str(&format!("\n  … and {} more", n - REASONS_QUOTED));
    }
    // The smallest two-decimal share that lets this manifest through.
    let needed = ((share * 100.0).ceil() / 100.0).min(1.0);
    bail!(
        "{}: {n} of {total} entries are unusable ({:.0}%, more than the allowed {:.0}%):{reasons}\n\
         Fix or remove those entries, or pass --max-unusable-share {needed} (the config field \
         max_unusable_share for `diva train`) to use the {} usable ones",
        manifest.display(),
        share * 100.0,
        max_share * 100.0,
        total - n
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::SkipReason;

    fn bad(n: usize) -> Vec<Skipped> {
        (1..=n)
            .map(|i| {
                Skipped::new(
                    format!("m.jsonl:{i}"),
                    SkipReason::MalformedLine {
                        line: i,
                        error: "expected value".into(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn unusable_share_is_enforced_with_counts_reasons_and_the_override() {
        let m = Path::new("m.jsonl");
        assert!(check_unusable(m, &bad(1), 20, 0.05).is_ok());
        assert!(check_unusable(m, &[], 0, 0.0).is_ok());
        assert!(check_unusable(m, &bad(8), 10, 1.0).is_ok());
        let e = check_unusable(m, &bad(8), 10, 0.05)
            .unwrap_err()
            .to_string();
        assert!(e.contains("8 of 10 entries are unusable (80%"), "{e}");
        assert!(
            e.contains("m.jsonl:1: malformed line 1: expected value"),
            "{e}"
        );
        assert!(e.contains("m.jsonl:5:") && !e.contains("m.jsonl:6:"), "{e}");
        assert!(e.contains("and 3 more"), "{e}");
        assert!(e.contains("--max-unusable-share 0.8"), "{e}");
        assert!(e.contains("2 usable"), "{e}");
    }
}
