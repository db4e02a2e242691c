//! Response-level distillation (Ultravox's `Response_KL`; BLSP-KD, arXiv
//! 2405.19041): the teacher answers each transcript once, greedily; the
//! student, given the audio, is teacher-forced on that same reply, and the
//! loss is KL(teacher ‖ student) at temperature τ at every reply position.
//!
//! The paper's distillation loss pins only the first reply token (its
//! Lemma 1); the later positions carry the content, which is what a student
//! trained on 10⁴ rather than 10⁶ clips lacks.
//!
//! Positions follow Ultravox exactly: the logits at the positions of the
//! reply tokens r₀…r_{R−1} (each predicting the token after it), KL summed
//! over the vocabulary, averaged over all reply positions of the batch
//! (`reduction="batchmean"` over the selected rows), no τ² factor.
//!
//! The teacher side is cached: per transcript the reply ids and, per
//! position, the teacher's `k` most likely tokens with their log-probabilities
//! at τ (normalised over the full vocabulary). Recomputing the teacher's
//! full-vocabulary distribution every step made a sample ~3× dearer in the
//! issue's probe; with the cache, the student pays only its own forward. With
//! `k` < vocabulary the KL is truncated to the teacher's top-k (the tail's
//! share is logged as `mass`); `k` = vocabulary is exact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, IndexOp, Tensor, D};
use diva_core::models::diva::PromptSplit;
use diva_core::models::llm::Llm;
use diva_core::models::Exec;
use diva_core::text::LlmTokenizer;

use crate::losses::log_softmax;
use crate::teacher_cache::transcript_key;

/// What the cache holds for one transcript.
#[derive(Debug, Clone)]
pub struct TeacherReply {
    /// Greedy reply ids r₀…r_{R−1} (the first stop token included, if reached).
    pub ids: Vec<u32>,
    /// `[R, k]` token ids of the teacher's top-k at each reply position.
    pub top_ids: Tensor,
    /// `[R, k]` their log-probabilities at τ (f32).
    pub top_logp: Tensor,
}

/// Settings that change the cached targets (part of the cache's key).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplySpec {
    pub max_tokens: usize,
    pub top_k: usize,
    pub temperature: f64,
}

impl ReplySpec {
    fn tag(&self) -> String {
        format!("r{}-k{}-t{}", self.max_tokens, self.top_k, self.temperature)
    }
}

/// The reply cache: one safetensors file per (teacher, spec), saved
/// atomically while it fills, so an interrupted fill resumes.
pub struct ReplyCache {
    path: PathBuf,
    spec: ReplySpec,
    entries: HashMap<String, TeacherReply>,
}

impl ReplyCache {
    /// Open (or start) `dir/{teacher_key}-replies-{spec}.safetensors`.
    pub fn open(dir: &Path, teacher_key: &str, spec: ReplySpec) -> Result<Self> {
        if spec.max_tokens == 0 || spec.top_k == 0 || spec.temperature <= 0.0 {
            bail!("response KL needs response_tokens ≥ 1, response_top_k ≥ 1 and response_kl_temperature > 0");
        }
        let path = dir.join(format!("{teacher_key}-replies-{}.safetensors", spec.tag()));
        let mut entries = HashMap::new();
        if path.is_file() {
            let raw = candle_core::safetensors::load(&path, &Device::Cpu).with_context(|| {
                format!(
                    "{} is not a readable reply cache: delete it",
                    path.display()
                )
            })?;
            for (name, ids) in raw.iter().filter(|(n, _)| n.ends_with(".ids")) {
                let key = name.trim_end_matches(".ids");
                let (Some(top_ids), Some(top_logp)) = (
                    raw.get(&format!("{key}.top_ids")),
                    raw.get(&format!("{key}.top_logp")),
                ) else {
                    bail!(
                        "{}: entry {key} is incomplete: delete the file",
                        path.display()
                    );
                };
                entries.insert(
                    key.to_string(),
                    TeacherReply {
                        ids: ids.to_vec1::<u32>()?,
                        top_ids: top_ids.clone(),
                        top_logp: top_logp.clone(),
                    },
                );
            }
        }
        Ok(Self {
            path,
            spec,
            entries,
        })
    }

    pub fn spec(&self) -> ReplySpec {
        self.spec
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, transcript: &str) -> Option<&TeacherReply> {
        self.entries.get(&transcript_key(transcript))
    }

    fn save(&self) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (k, r) in &self.entries {
            tensors.insert(
                format!("{k}.ids"),
                Tensor::new(r.ids.as_slice(), &Device::Cpu)?,
            );
            tensors.insert(format!("{k}.top_ids"), r.top_ids.clone());
            tensors.insert(format!("{k}.top_logp"), r.top_logp.clone());
        }
        let tmp = self
            .path
            .with_extension(format!("safetensors.{}.tmp", std::process::id()));
        candle_core::safetensors::save(&tensors, &tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(())
    }

    /// Compute the missing transcripts' replies (`ids[i]` tokenizes
    /// `transcripts[i]`), saving every `save_every` entries and at the end.
    pub fn fill(
        &mut self,
        llm: &Llm,
        tokenizer: &LlmTokenizer,
        split: &PromptSplit,
        transcripts: &[(String, Vec<u32>)],
        save_every: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<()> {
        let mut done = 0;
        let mut unsaved = 0;
        for (text, ids) in transcripts {
            let key = transcript_key(text);
            if !self.entries.contains_key(&key) {
                let r = teacher_reply(llm, tokenizer, split, ids, self.spec)
                    .with_context(|| format!("teacher reply to {text:?}"))?;
                self.entries.insert(key, r);
                unsaved += 1;
                if unsaved >= save_every.max(1) {
                    self.save()?;
                    unsaved = 0;
                }
            }
            done += 1;
            progress(done);
        }
        if unsaved > 0 {
            self.save()?;
        }
        Ok(())
    }
}

/// The teacher's greedy reply to `transcript` and its top-k log-probabilities
/// at τ at each reply token's position (one KV-cached decode step each).
pub fn teacher_reply(
    llm: &Llm,
    tokenizer: &LlmTokenizer,
    split: &PromptSplit,
    transcript: &[u32],
    spec: ReplySpec,
) -> Result<TeacherReply> {
    let prompt = split.teacher(llm, transcript)?;
    let mut cache = llm.new_cache();
    let h = llm.forward_embeds(&prompt, None, Some(&mut cache), Exec::Fused)?;
    let mut next = argmax(&llm.logits(&h.i((0, h.dim(1)? - 1))?)?)?;
    let (mut ids, mut top_ids, mut top_logp) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..spec.max_tokens {
        ids.push(next);
        let h = llm.forward_embeds(
            &llm.embed_ids(&[next])?,
            None,
            Some(&mut cache),
            Exec::Fused,
        )?;
        let logits = llm.logits(&h.i((0, 0))?)?;
        let logp = log_softmax(&(logits.to_dtype(DType::F32)? / spec.temperature)?)?;
        let (i, p) = top_k(&logp.to_vec1::<f32>()?, spec.top_k);
        top_ids.extend(i);
        top_logp.extend(p);
        if tokenizer.is_stop(next) {
            break;
        }
        next = argmax(&logits)?;
    }
    let (r, k) = (ids.len(), spec.top_k.min(llm.config.vocab_size));
    Ok(TeacherReply {
        ids,
        top_ids: Tensor::from_vec(top_ids, (r, k), &Device::Cpu)?,
        top_logp: Tensor::from_vec(top_logp, (r, k), &Device::Cpu)?,
    })
}

fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}

/// The `k` largest entries of `v` (ids, values), largest first.
pub fn top_k(v: &[f32], k: usize) -> (Vec<u32>, Vec<f32>) {
    let k = k.min(v.len());
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    let by_value = |a: &u32, b: &u32| v[*b as usize].total_cmp(&v[*a as usize]);
    if k < idx.len() {
        idx.select_nth_unstable_by(k, by_value);
        idx.truncate(k);
    }
    idx.sort_by(by_value);
    let vals = idx.iter().map(|&i| v[i as usize]).collect();
    (idx, vals)
}

/// Ultravox's `Response_KL` on selected rows: `student_logits` `[rows, V]`
/// (the student's logits at the reply positions of every example, stacked),
/// the teacher's cached top-k ids and log-probabilities at τ `[rows, k]`.
/// Returns `Σ_rows Σ_k p_t (log p_t − log p_s) / rows`, a scalar.
pub fn response_kl(
    student_logits: &Tensor,
    teacher_ids: &Tensor,
    teacher_logp: &Tensor,
    tau: f64,
) -> candle_core::Result<Tensor> {
    let rows = student_logits.dim(0)?;
    if rows == 0 || teacher_ids.dims() != teacher_logp.dims() || teacher_ids.dim(0)? != rows {
        candle_core::bail!(
            "response KL: {rows} student rows against teacher ids {:?} / log-probs {:?}",
            teacher_ids.dims(),
            teacher_logp.dims()
        );
    }
    let ls = log_softmax(&(student_logits / tau)?)?;
    let ls_k = ls.gather(&teacher_ids.contiguous()?, D::Minus1)?;
    let lt = teacher_logp.to_dtype(ls.dtype())?.detach();
    let kl = (lt.exp()? * (&lt - &ls_k)?)?.sum_all()?;
    kl / rows as f64
}

/// The teacher's probability mass covered by its cached top-k, averaged over
/// positions (1.0 when k is the vocabulary): how exact the truncated KL is.
pub fn covered_mass(reply: &TeacherReply) -> Result<f64> {
    let m = reply.top_logp.exp()?.sum(D::Minus1)?.mean_all()?;
    Ok(m.to_scalar::<f32>()? as f64)
}

/// A batch's cached replies, ready for the student: ids padded to the
/// longest reply (the padding sits after every real position, so causal
/// attention keeps it out of them, and its rows are not scored).
pub struct ReplyBatch {
    /// `[b, R_max]`
    pub ids: Tensor,
    pub lengths: Vec<usize>,
    /// `[Σ R_i, k]`, example by example.
    pub top_ids: Tensor,
    pub top_logp: Tensor,
}

impl ReplyBatch {
    pub fn new(replies: &[&TeacherReply], device: &Device) -> Result<Self> {
        let r_max = replies.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        if r_max == 0 {
            bail!("response KL: the batch's teacher replies are empty");
        }
        let mut ids = Vec::with_capacity(replies.len() * r_max);
        for r in replies {
            ids.extend(&r.ids);
            let pad = *r.ids.last().unwrap_or(&0);
            ids.extend(std::iter::repeat_n(pad, r_max - r.ids.len()));
        }
        let cat = |f: fn(&TeacherReply) -> &Tensor| -> Result<Tensor> {
            let parts: Vec<&Tensor> = replies.iter().map(|r| f(r)).collect();
            Ok(Tensor::cat(&parts, 0)?.to_device(device)?)
        };
        Ok(Self {
            ids: Tensor::from_vec(ids, (replies.len(), r_max), device)?,
            lengths: replies.iter().map(|r| r.ids.len()).collect(),
            top_ids: cat(|r| &r.top_ids)?,
            top_logp: cat(|r| &r.top_logp)?,
        })
    }

    /// The real rows of reply states `[b, R_max, d]` → `[Σ R_i, d]`.
    pub fn select_rows(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        let rows = self
            .lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| hidden.i(i)?.narrow(0, 0, n))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&rows, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KL(p ‖ q) by hand, for one row with the full vocabulary cached.
    #[test]
    fn response_kl_matches_the_definition_and_vanishes_on_the_teacher() {
        let dev = Device::Cpu;
        let tau = 2.0;
        let s = Tensor::new(&[[1.0f64, 2.0, 0.5], [0.0, -1.0, 3.0]], &dev).unwrap();
        let t = Tensor::new(&[[0.5f64, 0.0, 2.0], [1.0, 1.0, 1.0]], &dev).unwrap();
        let lt = log_softmax(&(&t / tau).unwrap()).unwrap();
        let (ids, logp): (Vec<Vec<u32>>, Vec<Vec<f64>>) = lt
            .to_vec2::<f64>()
            .unwrap()
            .iter()
            .map(|row| (vec![0u32, 1, 2], row.clone()))
            .unzip();
        let ids = Tensor::new(ids, &dev).unwrap();
        let logp = Tensor::new(logp, &dev).unwrap();
        let got = response_kl(&s, &ids, &logp, tau)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let soft = |row: &[f64]| {
            let z: f64 = row.iter().map(|x| (x / tau).exp()).sum();
            row.iter()
                .map(|x| (x / tau).exp() / z)
                .collect::<Vec<f64>>()
        };
        let (sv, tv) = (s.to_vec2::<f64>().unwrap(), t.to_vec2::<f64>().unwrap());
        let want: f64 = sv
            .iter()
            .zip(&tv)
            .map(|(a, b)| {
                let (q, p) = (soft(a), soft(b));
                p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>()
            })
            .sum::<f64>()
            / 2.0;
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        let zero = response_kl(&t, &ids, &logp, tau)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(
            zero.abs() < 1e-12,
            "KL of the teacher with itself is {zero}"
        );
    }

    #[test]
    fn top_k_keeps_the_largest_in_order() {
        let (i, v) = top_k(&[0.1, 3.0, -1.0, 2.0], 2);
        assert_eq!(i, vec![1, 3]);
        assert_eq!(v, vec![3.0, 2.0]);
        assert_eq!(top_k(&[1.0, 2.0], 5).0, vec![1, 0]);
    }
}
