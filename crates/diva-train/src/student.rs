//! The student's side of a training step: encoder states → connector →
//! virtual tokens inside the prompt → frozen LLM → the losses against the
//! cached teacher targets.
//!
//! Every example in a batch has the same student length (prefix + N + suffix),
//! so the student's "last position" needs no mask. The teacher side was
//! computed per transcript without padding (see `teacher_cache`), which is
//! what the official right-padded batch computes at each last real position;
//! `tests/trainer_loss.rs` checks this against the padded batch loss.

use candle_core::{IndexOp, Result, Tensor, D};
use diva_core::models::connector::Connector;
use diva_core::models::diva::PromptSplit;
use diva_core::models::exec::compute_dtype;
use diva_core::models::llm::{KvCache, Llm};
use diva_core::models::Exec;

use crate::losses::{align_loss, contrastive_loss, distill_loss, log_softmax};
use crate::response::{response_kl, ReplyBatch};

/// The constant parts of every student prompt, embedded once. The prefix's
/// keys and values are also computed once: causal attention means they do
/// not depend on what follows, and the prefix (SmolLM2's default system
/// prompt is 25 tokens) is a large share of a short student sequence.
pub struct PromptEmbeds {
    /// `[1, P, d]`
    pub prefix: Tensor,
    /// `[1, S, d]`
    pub suffix: Tensor,
    /// The LLM's cache after the prefix (batch 1), if precomputed.
    pub prefix_kv: Option<KvCache>,
}

impl PromptEmbeds {
    pub fn new(llm: &Llm, split: &PromptSplit) -> Result<Self> {
        Self::from_ids(llm, &split.prefix, &split.suffix, true)
    }

    pub fn from_ids(llm: &Llm, prefix: &[u32], suffix: &[u32], cache_prefix: bool) -> Result<Self> {
        let ids = |v: &[u32]| Tensor::new(v, &llm.device)?.unsqueeze(0);
        let prefix = llm.embed(&ids(prefix)?)?;
        let prefix_kv = if cache_prefix && prefix.dim(1)? > 0 {
            let mut cache = llm.new_cache();
            llm.forward_embeds(&prefix, None, Some(&mut cache), Exec::Fused)?;
            Some(cache)
        } else {
            None
        };
        Ok(Self {
            prefix,
            suffix: llm.embed(&ids(suffix)?)?,
            prefix_kv,
        })
    }

    /// The prefix cache repeated for a batch of `b`.
    fn batch_cache(&self, b: usize) -> Result<Option<KvCache>> {
        let Some(c) = &self.prefix_kv else {
            return Ok(None);
        };
        let expand = |t: &Tensor| -> Result<Tensor> {
            let (_, h, p, d) = t.dims4()?;
            t.broadcast_as((b, h, p, d))?.contiguous()
        };
        let layers = c
            .layers
            .iter()
            .map(|l| match l {
                Some((k, v)) => Ok(Some((expand(k)?, expand(v)?))),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(KvCache::from_layers(layers)))
    }
}

/// What the student computes for a batch.
pub struct StudentOutput {
    /// `[b, N, d_llm]`
    pub virtual_tokens: Tensor,
    /// Final-norm hidden state at the last prompt position, `[b, d_llm]`.
    pub last_hidden: Tensor,
    /// Final-norm hidden states at the teacher-forced reply tokens'
    /// positions `[b, R, d_llm]`, when a reply was given.
    pub reply_hidden: Option<Tensor>,
}

/// Encoder states `[b, frames, d_whisper]` → the student's outputs.
pub fn forward(
    connector: &Connector,
    llm: &Llm,
    prompt: &PromptEmbeds,
    states: &Tensor,
    exec: Exec,
) -> Result<StudentOutput> {
    forward_with_reply(connector, llm, prompt, states, None, exec)
}

/// [`forward`], teacher-forced on reply ids `[b, R]` after the prompt (for
/// the response KL); causal attention leaves the prompt's states unchanged.
pub fn forward_with_reply(
    connector: &Connector,
    llm: &Llm,
    prompt: &PromptEmbeds,
    states: &Tensor,
    reply_ids: Option<&Tensor>,
    exec: Exec,
) -> Result<StudentOutput> {
    let virtual_tokens = connector.forward(states, exec)?;
    let reply = reply_ids.map(|ids| llm.embed(ids)).transpose()?;
    let (last_hidden, reply_hidden) =
        llm_hidden(llm, prompt, &virtual_tokens, reply.as_ref(), exec)?;
    Ok(StudentOutput {
        virtual_tokens,
        last_hidden,
        reply_hidden,
    })
}

/// Virtual tokens `[b, N, d]` inside the prompt → the LLM's final hidden
/// state at the last position `[b, d]`.
pub fn llm_last_hidden(
    llm: &Llm,
    prompt: &PromptEmbeds,
    virtual_tokens: &Tensor,
    exec: Exec,
) -> Result<Tensor> {
    Ok(llm_hidden(llm, prompt, virtual_tokens, None, exec)?.0)
}

/// The prompt around `virtual_tokens`, then `reply` embeddings `[b, R, d]`
/// if given → (the state at the last prompt position `[b, d]`, the states
/// at the reply positions `[b, R, d]`).
fn llm_hidden(
    llm: &Llm,
    prompt: &PromptEmbeds,
    virtual_tokens: &Tensor,
    reply: Option<&Tensor>,
    exec: Exec,
) -> Result<(Tensor, Option<Tensor>)> {
    let (b, _, d) = virtual_tokens.dims3()?;
    let expand = |t: &Tensor| t.broadcast_as((b, t.dim(1)?, d))?.contiguous();
    let virt = virtual_tokens.to_dtype(llm.dtype)?;
    let suffix = expand(&prompt.suffix)?;
    let reply = reply.map(|r| r.to_dtype(llm.dtype)).transpose()?;
    let mut parts = vec![&virt, &suffix];
    if let Some(r) = &reply {
        parts.push(r);
    }
    let cache = prompt.batch_cache(b)?;
    let prefix;
    if cache.is_none() {
        prefix = expand(&prompt.prefix)?;
        parts.insert(0, &prefix);
    }
    let input = Tensor::cat(&parts, 1)?;
    let hidden = match cache {
        Some(mut cache) => llm.forward_embeds(&input, None, Some(&mut cache), exec)?,
        None => llm.forward_embeds(&input, None, None, exec)?,
    };
    let r = reply.as_ref().map_or(Ok(0), |r| r.dim(1))?;
    let last = hidden.dim(1)? - r - 1;
    let reply_hidden = (r > 0).then(|| hidden.narrow(1, last + 1, r)).transpose()?;
    Ok((hidden.i((.., last))?, reply_hidden))
}

/// How the losses combine. The official recipe is distill + align; every
/// other weight is 0 there.
#[derive(Debug, Clone, Copy)]
pub struct LossWeights {
    pub distill: f64,
    pub align: f64,
    pub kl: f64,
    pub kl_temperature: f64,
    /// In-batch contrastive loss on the last-position states.
    pub contrastive: f64,
    pub contrastive_temperature: f64,
    /// Response-level KL over the teacher-forced reply (needs replies).
    pub response_kl: f64,
    pub response_kl_temperature: f64,
    /// Per-token alignment target: each of the last T virtual tokens
    /// classified over the LLM vocabulary by negative squared L2 distance
    /// (see [`crate::losses::align_ce_loss`]).
    pub align_ce: f64,
    pub align_ce_temperature: f64,
}

impl Default for LossWeights {
    /// The official sum.
    fn default() -> Self {
        Self {
            distill: 1.0,
            align: 1.0,
            kl: 0.0,
            kl_temperature: 1.0,
            contrastive: 0.0,
            contrastive_temperature: 0.1,
            response_kl: 0.0,
            response_kl_temperature: 2.0,
            align_ce: 0.0,
            align_ce_temperature: 1.0,
        }
    }
}

/// Per-example losses (`[b]`) and the weighted batch mean that is optimised.
pub struct Losses {
    pub total: Tensor,
    pub distill: Tensor,
    pub align: Tensor,
    /// Present when the KL weight is positive.
    pub kl: Option<Tensor>,
    /// `[b]`, present when the contrastive weight is positive.
    pub contrastive: Option<Tensor>,
    /// Batch scalar (mean over all reply positions), when replies were given
    /// and the response-KL weight is positive.
    pub response_kl: Option<Tensor>,
    /// `[b]`, present when the per-token alignment weight is positive (added
    /// by the trainer, which holds the token table).
    pub align_ce: Option<Tensor>,
}

/// The losses of a batch: `teacher` `[b, d]` are the teacher's last-position
/// states, `transcripts[i]` `[T_i, d]` the transcript token embeddings.
pub fn losses(
    llm: &Llm,
    out: &StudentOutput,
    teacher: &Tensor,
    transcripts: &[Tensor],
    w: LossWeights,
) -> Result<Losses> {
    losses_with_replies(llm, out, teacher, transcripts, None, w)
}

/// [`losses`], plus the response KL against `replies` (the batch's cached
/// teacher replies, which `out` was teacher-forced on).
pub fn losses_with_replies(
    llm: &Llm,
    out: &StudentOutput,
    teacher: &Tensor,
    transcripts: &[Tensor],
    replies: Option<&ReplyBatch>,
    w: LossWeights,
) -> Result<Losses> {
    let b = out.last_hidden.dim(0)?;
    if transcripts.len() != b || teacher.dim(0)? != b {
        candle_core::bail!(
            "batch of {b} students, {} teacher targets, {} transcripts",
            teacher.dim(0)?,
            transcripts.len()
        );
    }
    // Losses in f32 for half-precision models, f64 stays f64 (gradient checks).
    let work = compute_dtype(out.last_hidden.dtype());
    let student = out.last_hidden.to_dtype(work)?;
    let teacher = teacher.to_dtype(work)?;
    let distill = distill_loss(&student, &teacher)?;
    let align = transcripts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            align_loss(
                &out.virtual_tokens.i(i)?.to_dtype(work)?,
                &t.to_dtype(work)?,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let align = Tensor::stack(&align, 0)?;
    let mut total = ((&distill * w.distill)? + (&align * w.align)?)?;
    let kl = if w.kl > 0.0 {
        let k = first_token_kl(llm, &student, &teacher, w.kl_temperature)?;
        total = (total + (&k * w.kl)?)?;
        Some(k)
    } else {
        None
    };
    let contrastive = if w.contrastive > 0.0 {
        let c = contrastive_loss(&student, &teacher, w.contrastive_temperature)?;
        total = (total + (&c * w.contrastive)?)?;
        Some(c)
    } else {
        None
    };
    let mut total = total.mean_all()?;
    let response_kl = match (replies, &out.reply_hidden) {
        (Some(r), Some(h)) if w.response_kl > 0.0 => {
            let rows = r.select_rows(h)?;
            let logits = llm
                .lm_head
                .forward(&rows.to_dtype(llm.dtype)?)?
                .to_dtype(work)?;
            let k = response_kl(&logits, &r.top_ids, &r.top_logp, w.response_kl_temperature)?;
            total = (total + (&k * w.response_kl)?)?;
            Some(k)
        }
        (None, _) | (_, None) if w.response_kl > 0.0 => {
            candle_core::bail!(
                "the response KL needs the teacher's replies and a teacher-forced student"
            )
        }
        _ => None,
    };
    Ok(Losses {
        total,
        distill,
        align,
        kl,
        contrastive,
        response_kl,
        align_ce: None,
    })
}

/// The alignment loss alone (the staged schedule's first stage): no LLM
/// forward. `distill` is reported as zeros so the metrics keep their keys.
pub fn align_only_losses(
    virtual_tokens: &Tensor,
    transcripts: &[Tensor],
    weight: f64,
) -> Result<Losses> {
    let b = virtual_tokens.dim(0)?;
    if transcripts.len() != b {
        candle_core::bail!("batch of {b} students, {} transcripts", transcripts.len());
    }
    let work = compute_dtype(virtual_tokens.dtype());
    let align = transcripts
        .iter()
        .enumerate()
        .map(|(i, t)| align_loss(&virtual_tokens.i(i)?.to_dtype(work)?, &t.to_dtype(work)?))
        .collect::<Result<Vec<_>>>()?;
    let align = Tensor::stack(&align, 0)?;
    Ok(Losses {
        total: (&align * weight)?.mean_all()?,
        distill: align.zeros_like()?,
        align,
        kl: None,
        contrastive: None,
        response_kl: None,
        align_ce: None,
    })
}

/// KL(teacher ‖ student) of the first reply token's distribution at
/// temperature τ, scaled by τ² (Hinton; Ultravox uses τ = 2). `[b]`.
pub fn first_token_kl(llm: &Llm, student: &Tensor, teacher: &Tensor, tau: f64) -> Result<Tensor> {
    // Logits in the loss dtype (f32 for half models, f64 in gradient checks).
    let work = compute_dtype(student.dtype());
    let logits = |h: &Tensor| -> Result<Tensor> {
        llm.lm_head.forward(&h.to_dtype(llm.dtype)?)?.to_dtype(work)
    };
    let ls = log_softmax(&(logits(student)? / tau)?)?;
    let lt = log_softmax(&(logits(teacher)? / tau)?)?.detach();
    let kl = (lt.exp()? * (&lt - &ls)?)?.sum(D::Minus1)?;
    kl * (tau * tau)
}
