//! The DiVA losses, both plain (unsquared) L2 norms, as in the paper and the
//! official trainer.
//!
//! - distillation: `‖h_student − h_teacher‖₂` between the LLM's final hidden
//!   states (after the final norm, before `lm_head`) at the position that
//!   predicts the first reply token. `lm_head` is frozen and shared, so this
//!   bounds the distance between the two next-token distributions.
//! - alignment: the mean over the last `T` virtual tokens (`T` = transcript
//!   length in tokens) of `‖v_i − E(t_i)‖₂`; earlier virtual tokens are free.

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
