//! The DiVA losses, both plain (unsquared) L2 norms, as in the paper and the
//! official trainer.
//!
//! - distillation: `‖h_student − h_teacher‖₂` between the LLM's final hidden
//!   states (after the final norm, before `lm_head`) at the position that
//!   predicts the first reply token. `lm_head` is frozen and shared, so this
//!   bounds the distance between the two next-token distributions.
//! - alignment: the mean over the last `T` virtual tokens (`T` = transcript
//!   length in tokens) of `‖v_i − E(t_i)‖₂`; earlier virtual tokens are free.
//!
//! Beside them, options that are off in the official recipe: the in-batch
//! contrastive loss here, and the KL losses (`student::first_token_kl`,
//! `response::response_kl`), which share [`log_softmax`].

use candle_core::{IndexOp, Result, Tensor, D};
use diva_core::models::llm::Llm;
use diva_core::models::Exec;

/// Per-example distillation loss: `student`, `teacher` `[b, d]` → `[b]`.
pub fn distill_loss(student: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    (student - teacher)?.sqr()?.sum(D::Minus1)?.sqrt()
}

/// Alignment loss of one example: `virtual_tokens` `[N, d]` against the
/// transcript's token embeddings `[T, d]` → scalar. Needs `T ≤ N`.
pub fn align_loss(virtual_tokens: &Tensor, transcript_embeds: &Tensor) -> Result<Tensor> {
    let n = virtual_tokens.dim(0)?;
    let t = transcript_embeds.dim(0)?;
    if t == 0 || t > n {
        candle_core::bail!("alignment needs 1 ≤ transcript tokens ({t}) ≤ virtual tokens ({n})");
    }
    let tail = virtual_tokens.narrow(0, n - t, t)?;
    (tail - transcript_embeds)?
        .sqr()?
        .sum(D::Minus1)?
        .sqrt()?
        .mean_all()
}

/// Log-softmax over the last dimension, differentiable (candle's fused
/// softmax carries no gradient). The max is detached: it only shifts.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)
}

/// In-batch contrastive loss (InfoNCE, arXiv 2412.15712): the cosine
/// similarities of each student state `[b, d]` to every teacher state in the
/// batch, over `temperature`, scored by cross-entropy against its own
/// teacher. Penalises exactly the collapse where every clip gets the same
/// generic state. Per example `[b]`; the teachers carry no gradient.
pub fn contrastive_loss(student: &Tensor, teacher: &Tensor, temperature: f64) -> Result<Tensor> {
    let b = student.dim(0)?;
    if b < 2 || teacher.dims() != student.dims() {
        candle_core::bail!(
            "the contrastive loss needs a batch of ≥ 2 students and as many teachers, got {:?} and {:?}",
            student.dims(),
            teacher.dims()
        );
    }
    let unit = |x: &Tensor| -> Result<Tensor> {
        x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
    };
    let sim = (unit(student)?.matmul(&unit(&teacher.detach())?.t()?)? / temperature)?;
    let logp = log_softmax(&sim)?;
    let diag: Vec<u32> = (0..b as u32).collect();
    let own = Tensor::new(diag.as_slice(), student.device())?.unsqueeze(1)?;
    logp.gather(&own, D::Minus1)?.squeeze(1)?.neg()
}

/// Per-token alignment target (a cross-entropy counterpart of the L2
/// alignment loss): each of the last T virtual tokens `v_i` `[N, d]` scored
/// against every LLM token embedding `E_w` by `−‖v_i − E_w‖² / (2τ)`, i.e.
/// logits `(v_i·E_w − ‖E_w‖²/2) / τ` (the `‖v_i‖²` term is the same for every
/// w), and cross-entropy against the transcript token `t_i`; mean over the T
/// positions → scalar. The L2 loss alone lets the virtual tokens settle
/// near the embeddings' centroid, whose nearest token is the same frequent
/// word for every position; this one rewards being nearer the right token
/// than every other. `table_t` is `E^T` `[d, V]`, `half_sq_norms` `‖E_w‖²/2`
/// `[1, V]`, both constants.
pub fn align_ce_loss(
    virtual_tokens: &Tensor,
    transcript_ids: &[u32],
    table_t: &Tensor,
    half_sq_norms: &Tensor,
    temperature: f64,
) -> Result<Tensor> {
    let n = virtual_tokens.dim(0)?;
    let t = transcript_ids.len();
    if t == 0 || t > n {
        candle_core::bail!("alignment needs 1 ≤ transcript tokens ({t}) ≤ virtual tokens ({n})");
    }
    let tail = virtual_tokens.narrow(0, n - t, t)?;
    let table_t = table_t.to_dtype(tail.dtype())?;
    let logits = (tail
        .matmul(&table_t)?
        .broadcast_sub(&half_sq_norms.to_dtype(tail.dtype())?)?
        / temperature)?;
    let logp = log_softmax(&logits)?;
    let ids = Tensor::new(transcript_ids, tail.device())?.unsqueeze(1)?;
    logp.gather(&ids, D::Minus1)?.neg()?.mean_all()
}

/// The losses of a batch, per example and combined.
#[derive(Debug, Clone)]
pub struct BatchLoss {
    /// Mean over examples of `distill + align` (the official reduction).
    pub total: Tensor,
    pub distill: Tensor,
    pub align: Tensor,
}

/// One batch through the frozen LLM, with official padding semantics:
/// - `student` `[b, Ls, d]`: prefix ⧺ virtual tokens ⧺ suffix, all the same
///   length, so the student's state is at the last position;
/// - `teacher` `[b, Lt, d]`: prefix ⧺ transcript ⧺ suffix, right-padded, with
///   `teacher_mask` `[b, Lt]` (1 real, 0 padding); each teacher state is taken
///   at its last real position, and carries no gradient;
/// - `virtual_tokens` `[b, N, d]` and each example's transcript embeddings
///   `[T_i, d]` for the alignment loss.
pub fn batch_loss(
    llm: &Llm,
    student: &Tensor,
    teacher: &Tensor,
    teacher_mask: &Tensor,
    virtual_tokens: &Tensor,
    transcripts: &[Tensor],
    exec: Exec,
) -> Result<BatchLoss> {
    let b = student.dim(0)?;
    if transcripts.len() != b || teacher.dim(0)? != b {
        candle_core::bail!(
            "batch of {b} students, {} teachers, {} transcripts",
            teacher.dim(0)?,
            transcripts.len()
        );
    }
    let hs = llm.forward_embeds(student, None, None, exec)?;
    let student_last = hs.i((.., hs.dim(1)? - 1))?;
    let ht = llm
        .forward_embeds(teacher, Some(teacher_mask), None, exec)?
        .detach();
    let lengths = teacher_mask
        .to_dtype(candle_core::DType::F32)?
        .sum(1)?
        .to_vec1::<f32>()?;
    let teacher_last = lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| ht.i((i, (n as usize).max(1) - 1)))
        .collect::<Result<Vec<_>>>()?;
    let distill = distill_loss(&student_last, &Tensor::stack(&teacher_last, 0)?)?;
    let align = transcripts
        .iter()
        .enumerate()
        .map(|(i, t)| align_loss(&virtual_tokens.i(i)?, t))
        .collect::<Result<Vec<_>>>()?;
    let align = Tensor::stack(&align, 0)?;
    let total = (&distill + &align)?.mean_all()?;
    Ok(BatchLoss {
        total,
        distill,
        align,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn contrastive_loss_is_low_for_matching_states_and_high_for_swapped() {
        let dev = Device::Cpu;
        let t = Tensor::new(&[[1.0f64, 0.0], [0.0, 1.0]], &dev).unwrap();
        let swapped = Tensor::new(&[[0.0f64, 1.0], [1.0, 0.0]], &dev).unwrap();
        let own = contrastive_loss(&t, &t, 0.1)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let bad = contrastive_loss(&swapped, &t, 0.1)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        // -log(e^10 / (e^10 + e^0)) and -log(e^0 / (e^0 + e^10)).
        let want_own = (1.0 + (-10.0f64).exp()).ln();
        assert!((own[0] - want_own).abs() < 1e-12 && (own[1] - want_own).abs() < 1e-12);
        assert!((bad[0] - (want_own + 10.0)).abs() < 1e-9, "{bad:?}");
        assert!(contrastive_loss(
            &t.narrow(0, 0, 1).unwrap(),
            &t.narrow(0, 0, 1).unwrap(),
            0.1
        )
        .is_err());
    }

    #[test]
    fn norms_are_unsquared_and_alignment_uses_the_tail() {
        let dev = Device::Cpu;
        let s = Tensor::new(&[[3.0f64, 4.0], [1.0, 1.0]], &dev).unwrap();
        let t = Tensor::new(&[[0.0f64, 0.0], [1.0, 1.0]], &dev).unwrap();
        assert_eq!(
            distill_loss(&s, &t).unwrap().to_vec1::<f64>().unwrap(),
            vec![5.0, 0.0]
        );
        let v = Tensor::new(&[[9.0f64, 9.0], [3.0, 4.0], [0.0, 2.0]], &dev).unwrap();
        let e = Tensor::new(&[[0.0f64, 0.0], [0.0, 0.0]], &dev).unwrap();
        // Last two virtual tokens: norms 5 and 2 → mean 3.5; the first is free.
        assert_eq!(align_loss(&v, &e).unwrap().to_scalar::<f64>().unwrap(), 3.5);
        assert!(align_loss(
            &v,
            &Tensor::zeros((4, 2), candle_core::DType::F64, &dev).unwrap()
        )
        .is_err());
    }
}
