//! Validation: the distillation metrics of a student (a connector, or the
//! Whisper → LLM cascade as the reference point) on held-out examples.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, IndexOp, Tensor};
use diva_core::audio;
use diva_core::generate::{SamplingParams, TextGenerator, Transcriber};
use diva_core::models::connector::Connector;
use diva_core::models::Exec;
use serde::Serialize;

use crate::features::EncoderFeatures;
use crate::metrics;
use crate::setup::{Example, Frozen};
use crate::student::{self, LossWeights};
use crate::teacher_cache::transcript_key;
use crate::virtual_transcript::NearestToken;
use diva_eval::wer::WerCounter;

/// Who answers the held-out clips.
pub enum Student<'a> {
    /// The speech LLM: audio → connector → virtual tokens.
    Connector(&'a Connector),
    /// The baseline: Whisper's transcript as the user message.
    Cascade(&'a Transcriber),
}

#[derive(Debug, Clone)]
pub struct ValOptions {
    pub pool: usize,
    /// Clips whose replies are compared (the first ones).
    pub reply_clips: usize,
    /// How student and teacher replies are generated (greedy by default).
    pub replies: SamplingParams,
    pub batch: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValReport {
    pub clips: usize,
    /// Mean distillation L2 loss.
    pub distill: f64,
    /// Mean L2 distance to other clips' teacher states (same pools).
    pub distill_mismatched: f64,
    /// Mean alignment L2 loss (connector only).
    pub align: Option<f64>,
    pub retrieval_at_1: f64,
    /// 1 / pool size, averaged over the pools scored.
    pub retrieval_chance: f64,
    pub first_token: f64,
    /// Share of the teacher's most common first token.
    pub first_token_majority: f64,
    pub reply_clips: usize,
    pub reply_f1: Option<f64>,
    pub reply_f1_mismatched: Option<f64>,
    /// WER (%) of the virtual transcript (connector only; see
    /// [`crate::virtual_transcript`]).
    pub virtual_wer: Option<f64>,
    /// The first few virtual transcripts, beside their transcripts.
    pub virtual_samples: Vec<VirtualSample>,
    pub elapsed_s: f64,
    /// The same statistics clip by clip (in the examples' order), for
    /// `diva eval run --task distill`'s paired bootstrap; not in the JSON.
    #[serde(skip)]
    pub per_clip: Vec<ClipStats>,
}

/// One clip's share of a [`ValReport`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClipStats {
    /// L2 distance of the student's last state to the teacher's.
    pub distill: f64,
    /// Retrieval@1 hit (None: in no scored pool).
    pub retrieved: Option<bool>,
    /// The student's first token is the teacher's.
    pub first_token: bool,
    /// Reply F1 against the teacher's reply (the first `reply_clips` only).
    pub reply_f1: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VirtualSample {
    pub transcript: String,
    pub virtual_transcript: String,
}

/// Virtual transcripts kept in a report.
const VIRTUAL_SAMPLES: usize = 3;

impl ValReport {
    pub fn summary(&self) -> String {
        let mut s = format!(
            "distill {:.3} (mismatched {:.3}){} | retrieval@1 {:.3} (chance {:.3}) | first token {:.3} (majority {:.3})",
            self.distill,
            self.distill_mismatched,
            self.align.map(|a| format!(" align {a:.3}")).unwrap_or_default(),
            self.retrieval_at_1,
            self.retrieval_chance,
            self.first_token,
            self.first_token_majority
        );
        if let Some(w) = self.virtual_wer {
            s.push_str(&format!(" | virtual-transcript WER {w:.1}%"));
        }
        if let (Some(f), Some(m)) = (self.reply_f1, self.reply_f1_mismatched) {
            s.push_str(&format!(
                " | reply F1 {f:.3} (mismatched {m:.3}, {} clips)",
                self.reply_clips
            ));
        }
        s
    }
}

/// The teacher's replies, computed once per transcript and sampling setting
/// and kept in a JSON file beside the teacher cache.
pub struct TeacherReplies {
    path: Option<PathBuf>,
    replies: HashMap<String, String>,
    dirty: bool,
}

impl TeacherReplies {
    pub fn open(path: Option<PathBuf>) -> Self {
        let replies = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        Self {
            path,
            replies,
            dirty: false,
        }
    }

    fn get(
        &mut self,
        frozen: &Frozen,
        text: &str,
        ids: &[u32],
        params: &SamplingParams,
    ) -> Result<String> {
        let key = reply_key(text, params);
        if let Some(r) = self.replies.get(&key) {
            return Ok(r.clone());
        }
        let prompt = frozen.split.teacher(&frozen.llm, ids)?;
        let r = reply(frozen, &prompt, params)?;
        self.replies.insert(key, r.clone());
        self.dirty = true;
        Ok(r)
    }

    pub fn save(&mut self) -> Result<()> {
        if let (Some(p), true) = (&self.path, self.dirty) {
            // Keep replies another process saved meanwhile.
            if let Some(on_disk) = std::fs::read_to_string(p)
                .ok()
                .and_then(|s| serde_json::from_str::<HashMap<String, String>>(&s).ok())
            {
                for (k, v) in on_disk {
                    self.replies.entry(k).or_insert(v);
                }
            }
            let tmp = p.with_extension(format!("json.{}.tmp", std::process::id()));
            std::fs::write(&tmp, serde_json::to_string(&self.replies)?)?;
            std::fs::rename(&tmp, p)?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// A cached reply is only reused for the same transcript and the same
/// sampling settings (greedy 32 tokens and sampled 256 differ).
fn reply_key(text: &str, p: &SamplingParams) -> String {
    format!(
        "{}|t{}|p{:?}|k{:?}|r{}x{}|s{}|m{}|stop{:?}",
        transcript_key(text),
        p.temperature,
        p.top_p,
        p.top_k,
        p.repeat_penalty,
        p.repeat_last_n,
        p.seed,
        p.max_tokens,
        p.stop_strings
    )
}

fn reply(frozen: &Frozen, prompt: &Tensor, params: &SamplingParams) -> Result<String> {
    let g = TextGenerator::new(&frozen.llm, &frozen.tokenizer);
    let out = g.generate_embeds(prompt, &mut frozen.llm.new_cache(), params, |_| {})?;
    Ok(out.text.trim().to_string())
}

fn argmax_rows(logits: &Tensor) -> Result<Vec<u32>> {
    Ok(logits.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?)
}

/// Score `student` on `examples`.
pub fn evaluate(
    frozen: &Frozen,
    features: &EncoderFeatures,
    student: &Student,
    examples: &[Example],
    opts: &ValOptions,
    replies: &mut TeacherReplies,
) -> Result<ValReport> {
    let t0 = Instant::now();
    let n = examples.len();
    anyhow::ensure!(n >= 2, "validation needs at least 2 clips, got {n}");
    let mut student_last: Vec<Vec<f32>> = Vec::with_capacity(n);
    let mut distill_sum = 0.0;
    let mut distill_per: Vec<f64> = Vec::with_capacity(n);
    let mut align_sum = 0.0;
    let mut prompts: Vec<Tensor> = Vec::new();
    let want_replies = opts.reply_clips.min(n);
    let nearest = match student {
        Student::Connector(_) => Some(NearestToken::new(&frozen.llm)?),
        Student::Cascade(_) => None,
    };
    let mut wer = WerCounter::default();
    let mut virtual_samples = Vec::new();
    let bar = crate::progress::bar(n as u64, "validating");
    for chunk in examples.chunks(opts.batch.max(1)) {
        let teacher = Tensor::stack(
            &chunk.iter().map(|e| e.teacher.clone()).collect::<Vec<_>>(),
            0,
        )?;
        let (last, prompt_embeds) = match student {
            Student::Connector(c) => {
                let states = Tensor::stack(
                    &chunk
                        .iter()
                        .map(|e| features.states(&e.item.audio))
                        .collect::<Result<Vec<_>>>()?,
                    0,
                )?;
                let out = student::forward(c, &frozen.llm, &frozen.prompt, &states, Exec::Fused)?;
                // Evaluation keeps clips longer than the queries; their
                // alignment is scored on the last N transcript tokens.
                let n_q = c.num_queries();
                let transcripts = chunk
                    .iter()
                    .map(|e| frozen.transcript_embeds(&e.ids[e.ids.len().saturating_sub(n_q)..]))
                    .collect::<Result<Vec<_>>>()?;
                let l = student::losses(
                    &frozen.llm,
                    &out,
                    &teacher,
                    &transcripts,
                    LossWeights::default(),
                )?;
                align_sum += l.align.sum_all()?.to_scalar::<f32>()? as f64;
                if let Some(near) = &nearest {
                    for (i, e) in chunk.iter().enumerate() {
                        let hyp = near.transcript(
                            &frozen.tokenizer,
                            &out.virtual_tokens.i(i)?,
                            e.ids.len(),
                        )?;
                        wer.add(&e.item.text, &hyp);
                        if virtual_samples.len() < VIRTUAL_SAMPLES {
                            virtual_samples.push(VirtualSample {
                                transcript: e.item.text.clone(),
                                virtual_transcript: hyp,
                            });
                        }
                    }
                }
                let mut p = Vec::new();
                for i in 0..chunk.len() {
                    if prompts.len() + p.len() < want_replies {
                        p.push(
                            frozen
                                .split
                                .assemble(&frozen.llm, &out.virtual_tokens.i(i..i + 1)?)?,
                        );
                    }
                }
                (out.last_hidden, p)
            }
            Student::Cascade(tr) => {
                let mut lasts = Vec::new();
                let mut p = Vec::new();
                for e in chunk {
                    let pcm = audio::load_pcm_16k(&e.item.audio)?;
                    let text = tr.transcribe_pcm(&pcm)?.text;
                    let ids = frozen.transcript_ids(&text)?;
                    let prompt = frozen.split.teacher(&frozen.llm, &ids)?;
                    let h = frozen
                        .llm
                        .forward_embeds(&prompt, None, None, Exec::Fused)?;
                    lasts.push(h.i((0, h.dim(1)? - 1))?);
                    if prompts.len() + p.len() < want_replies {
                        p.push(prompt);
                    }
                }
                (Tensor::stack(&lasts, 0)?, p)
            }
        };
        let last = last.to_dtype(DType::F32)?;
        let d =
            crate::losses::distill_loss(&last, &teacher.to_dtype(DType::F32)?)?.to_vec1::<f32>()?;
        distill_sum += d.iter().map(|&x| x as f64).sum::<f64>();
        distill_per.extend(d.iter().map(|&x| x as f64));
        student_last.extend(last.to_vec2::<f32>()?);
        prompts.extend(prompt_embeds);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();

    let teacher_last: Vec<Vec<f32>> = examples
        .iter()
        .map(|e| e.teacher.to_dtype(DType::F32)?.to_vec1::<f32>())
        .collect::<candle_core::Result<_>>()?;
    let (retrieval, scored) = metrics::retrieval_at_1(&student_last, &teacher_last, opts.pool);
    let hits = metrics::retrieval_hits(&student_last, &teacher_last, opts.pool);
    // Chance is 1/size per scored pool, so the per-clip mean is pools/clips.
    let pools = (0..n)
        .step_by(opts.pool.max(2))
        .filter(|&start| (start + opts.pool.max(2)).min(n) - start >= 2)
        .count();
    let chance = pools as f64 / scored.max(1) as f64;

    let to_tensor = |rows: &[Vec<f32>]| -> Result<Tensor> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Ok(Tensor::from_vec(
            flat,
            (rows.len(), rows[0].len()),
            &frozen.device,
        )?)
    };
    let s_first = argmax_rows(
        &frozen
            .llm
            .logits(&to_tensor(&student_last)?.to_dtype(frozen.llm.dtype)?)?,
    )?;
    let t_first = argmax_rows(
        &frozen
            .llm
            .logits(&to_tensor(&teacher_last)?.to_dtype(frozen.llm.dtype)?)?,
    )?;
    let (first_token, majority) = metrics::first_token_agreement(&s_first, &t_first);

    let (mut reply_f1, mut reply_mm) = (None, None);
    let mut reply_per: Vec<f64> = Vec::new();
    if want_replies >= 2 {
        let bar = crate::progress::bar(want_replies as u64, "validating: replies");
        let mut s_replies = Vec::new();
        let mut t_replies = Vec::new();
        let mut texts = Vec::new();
        for (e, p) in examples.iter().zip(&prompts) {
            s_replies.push(reply(frozen, p, &opts.replies)?);
            t_replies.push(
                replies
                    .get(frozen, &e.item.text, &e.ids, &opts.replies)
                    .context("teacher reply")?,
            );
            texts.push(e.item.text.clone());
            bar.inc(1);
        }
        bar.finish_and_clear();
        replies.save()?;
        reply_per = s_replies
            .iter()
            .zip(&t_replies)
            .map(|(s, t)| metrics::token_f1(s, t))
            .collect();
        let (f, m) = metrics::reply_f1(&s_replies, &t_replies, &texts);
        reply_f1 = Some(f);
        reply_mm = Some(m);
    }

    Ok(ValReport {
        clips: n,
        distill: distill_sum / n as f64,
        distill_mismatched: metrics::mismatched_distance(&student_last, &teacher_last, opts.pool),
        align: matches!(student, Student::Connector(_)).then_some(align_sum / n as f64),
        retrieval_at_1: retrieval,
        retrieval_chance: chance,
        first_token,
        first_token_majority: majority,
        reply_clips: if want_replies >= 2 { want_replies } else { 0 },
        reply_f1,
        reply_f1_mismatched: reply_mm,
        virtual_wer: nearest.is_some().then(|| wer.wer()),
        virtual_samples,
        elapsed_s: t0.elapsed().as_secs_f64(),
        per_clip: (0..n)
            .map(|i| ClipStats {
                distill: distill_per[i],
                retrieved: hits[i],
                first_token: s_first[i] == t_first[i],
                reply_f1: reply_per.get(i).copied(),
            })
            .collect(),
    })
}
