//! An optional head start for the projection (`projection_init = "lstsq"`):
//! the Whisper decoder's outputs live near its (tied) token embeddings, so a
//! linear map that sends Whisper's embedding of each token to the LLM's
//! embedding of the same token is a projection that already speaks the LLM's
//! input language. It is fitted by ridge regression over the tokens whose
//! strings both vocabularies share (byte-level BPE makes that most of
//! Whisper's English vocabulary).
//!
//! The 384–1280-wide normal equations are solved by a small Cholesky
//! factorisation written here: the stack has no linear-algebra crate and this
//! is the only solve diva needs.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use diva_core::models::connector::Connector;
use diva_core::models::linear::Linear;

use crate::setup::Frozen;

/// Pairs `(whisper id, llm id)` of tokens spelled the same in both vocabularies.
pub fn shared_tokens(frozen: &Frozen) -> Result<Vec<(u32, u32)>> {
    let path = frozen.whisper_dir.join("tokenizer.json");
    let whisper = tokenizers::Tokenizer::from_file(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let wv = whisper.get_vocab(false);
    let lv = frozen.tokenizer.inner().get_vocab(false);
    let mut pairs: Vec<(u32, u32)> = lv
        .iter()
        .filter(|(s, _)| !s.starts_with("<|") && !s.starts_with('<'))
        .filter_map(|(s, &l)| wv.get(s).map(|&w| (w, l)))
        .collect();
    pairs.sort();
    Ok(pairs)
}

/// Solve `(A + λI) X = B` for symmetric positive definite `A` (`n × n`,
/// row-major) and `B` (`n × m`).
fn cholesky_solve(a: &[f64], b: &[f64], n: usize, m: usize, ridge: f64) -> Result<Vec<f64>> {
    let mut l = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j] + if i == j { ridge } else { 0.0 };
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 {
                    bail!("least-squares system is not positive definite");
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut x = b.to_vec();
    for c in 0..m {
        for i in 0..n {
            let mut s = x[i * m + c];
            for k in 0..i {
                s -= l[i * n + k] * x[k * m + c];
            }
            x[i * m + c] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut s = x[i * m + c];
            for k in i + 1..n {
                s -= l[k * n + i] * x[k * m + c];
            }
            x[i * m + c] = s / l[i * n + i];
        }
    }
    Ok(x)
}

/// Replace the connector's projection with the ridge fit `W, b` minimising
/// `Σ ‖W e_whisper(t) + b − e_llm(t)‖²` over shared tokens `t`.
pub fn least_squares(connector: &mut Connector, frozen: &Frozen) -> Result<usize> {
    let pairs = shared_tokens(frozen)?;
    if pairs.len() < 1000 {
        bail!(
            "only {} tokens are shared by the Whisper and LLM vocabularies: too few for projection_init = \"lstsq\"",
            pairs.len()
        );
    }
    let table = frozen
        .whisper
        .tensors
        .get("decoder.embed_tokens.weight")
        .context("the Whisper checkpoint has no decoder token table")?
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?;
    let llm_table = frozen
        .llm
        .embed_tokens
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?;
    let wid = Tensor::new(pairs.iter().map(|p| p.0).collect::<Vec<_>>(), &Device::Cpu)?;
    let lid = Tensor::new(pairs.iter().map(|p| p.1).collect::<Vec<_>>(), &Device::Cpu)?;
    // The connector's outputs come out of the decoder's final LayerNorm, so
    // fit from the normalised embeddings: same scale as what the projection
    // will actually see.
    let ln = &connector.decoder.layer_norm;
    let x = diva_core::models::exec::layer_norm(
        &table.index_select(&wid, 0)?,
        &ln.weight.to_dtype(DType::F64)?.to_device(&Device::Cpu)?,
        &ln.bias.to_dtype(DType::F64)?.to_device(&Device::Cpu)?,
        1e-5,
        diva_core::models::Exec::Autograd,
    )?;
    let y = llm_table.index_select(&lid, 0)?;
    let (xm, ym) = (x.mean_keepdim(0)?, y.mean_keepdim(0)?);
    let (xc, yc) = (x.broadcast_sub(&xm)?, y.broadcast_sub(&ym)?);
    let (dx, dy) = (xc.dim(1)?, yc.dim(1)?);
    let xtx = xc.t()?.matmul(&xc)?;
    let xty = xc.t()?.matmul(&yc)?;
    // Ridge relative to the data's scale keeps the fit well conditioned.
    let trace: f64 = (0..dx)
        .map(|i| xtx.get(i)?.get(i)?.to_scalar::<f64>())
        .sum::<candle_core::Result<f64>>()?;
    let ridge = 1e-3 * trace / dx as f64;
    let w = cholesky_solve(
        &xtx.flatten_all()?.to_vec1::<f64>()?,
        &xty.flatten_all()?.to_vec1::<f64>()?,
        dx,
        dy,
        ridge,
    )?;
    let w = Tensor::from_vec(w, (dx, dy), &Device::Cpu)?; // x·W
    let b = (ym - xm.matmul(&w)?)?.squeeze(0)?;
    let dtype = connector.projection.weight.dtype();
    let device = connector.projection.weight.device().clone();
    let to = |t: Tensor| -> Result<Tensor> { Ok(t.to_dtype(dtype)?.to_device(&device)?) };
    connector.projection = Linear::new(to(w.t()?.contiguous()?)?, Some(to(b)?));
    tracing::info!(
        "projection initialised by least squares over {} shared tokens",
        pairs.len()
    );
    Ok(pairs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        // A = [[4, 2], [2, 3]], X = [[1, 0], [2, -1]] → B = A X.
        let a = [4.0, 2.0, 2.0, 3.0];
        let b = [8.0, -2.0, 8.0, -3.0];
        let x = cholesky_solve(&a, &b, 2, 2, 0.0).unwrap();
        for (got, want) in x.iter().zip([1.0, 0.0, 2.0, -1.0]) {
            assert!((got - want).abs() < 1e-12, "{x:?}");
        }
        assert!(cholesky_solve(&[0.0, 0.0, 0.0, -1.0], &b, 2, 2, 0.0).is_err());
    }
}
