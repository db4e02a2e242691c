//! What the virtual tokens say: each of the last T virtual tokens (the ones
//! the alignment loss pulls toward the transcript's T token embeddings) is
//! mapped to its nearest LLM token embedding in L2, the alignment loss's own
//! metric, and the ids are decoded. Scored by WER against the transcript, it
//! measures how much of the words the connector carries, independently of
//! the LLM's reply. T is the transcript's own length (an oracle length: the
//! diagnostic reads words, it does not segment). The same table serves the
//! per-token alignment loss (`losses::align_ce_loss`).

use anyhow::Result;
use candle_core::{DType, Tensor, D};
use diva_core::models::llm::Llm;
use diva_core::text::LlmTokenizer;

/// The LLM's token table, laid out for nearest-neighbour search.
pub struct NearestToken {
    /// `[d, V]` f32, so a batch of queries is one matmul.
    pub table_t: Tensor,
    /// `‖E_v‖²` `[1, V]`.
    pub sq_norms: Tensor,
    /// `‖E_v‖² / 2` `[1, V]` (the per-token alignment loss's bias).
    pub half_sq_norms: Tensor,
}

impl NearestToken {
    pub fn new(llm: &Llm) -> Result<Self> {
        let e = llm.embed_tokens.to_dtype(DType::F32)?;
        let sq_norms = e.sqr()?.sum(D::Minus1)?.unsqueeze(0)?;
        Ok(Self {
            table_t: e.t()?.contiguous()?,
            half_sq_norms: (&sq_norms * 0.5)?,
            sq_norms,
        })
    }

    /// Nearest token id (L2) of each row of `v` `[t, d]`:
    /// argmin_v ‖E_v‖² − 2 x·E_v (‖x‖² is the same for every v).
    pub fn ids(&self, v: &Tensor) -> Result<Vec<u32>> {
        let x = v.to_dtype(DType::F32)?.to_device(self.table_t.device())?;
        let d = self
            .sq_norms
            .broadcast_sub(&(x.matmul(&self.table_t)? * 2.0)?)?;
        Ok(d.argmin(D::Minus1)?.to_vec1::<u32>()?)
    }

    /// The decoded text of the last `t` rows of `virtual_tokens` `[N, d]`.
    pub fn transcript(
        &self,
        tokenizer: &LlmTokenizer,
        virtual_tokens: &Tensor,
        t: usize,
    ) -> Result<String> {
        let n = virtual_tokens.dim(0)?;
        let t = t.clamp(1, n);
        let ids = self.ids(&virtual_tokens.narrow(0, n - t, t)?)?;
        Ok(tokenizer.decode(&ids, true)?.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use diva_core::models::llm::WeightMode;

    /// The transcript's own embeddings decode back to its ids: the diagnostic
    /// reads a perfectly aligned connector as WER 0.
    #[test]
    fn exact_embeddings_are_their_own_nearest_tokens() {
        let tiny = diva_core::testing::tiny_diva(DType::F32);
        let llm = tiny.llm;
        let near = NearestToken::new(&llm).unwrap();
        let want: Vec<u32> = vec![20, 21, 22, 3, 30, 31];
        let e = llm.embed_ids(&want).unwrap().squeeze(0).unwrap();
        assert_eq!(near.ids(&e).unwrap(), want);
        // A small perturbation keeps the answer; a far one moves it.
        let noisy = (&e + 1e-3).unwrap();
        assert_eq!(near.ids(&noisy).unwrap(), want);
        let other = llm
            .embed_ids(&[7, 7, 7, 7, 7, 7])
            .unwrap()
            .squeeze(0)
            .unwrap();
        assert_eq!(near.ids(&other).unwrap(), vec![7; 6]);
        let _ = (WeightMode::Quantized, Device::Cpu);
    }
}
