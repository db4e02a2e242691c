//! A dense layer `y = x Wᵀ + b` (torch `nn.Linear` layout, W `[out, in]`).
//!
//! Unlike `candle_nn::Linear`, inputs with leading batch dimensions are
//! flattened into one 2-D matmul: candle's batched path broadcasts W per batch
//! and ran ~1.8× slower on the Whisper encoder's `[1, 1500, 384]` shapes.
//! Only differentiable ops are used, so the same layer serves training.
//!
//! Training sends gradients *through* the frozen LLM to the connector. candle's
//! matmul backward always computes both operand gradients, so every frozen
//! weight would also get a `[out, in]` gradient nobody reads: a third matmul
//! per layer and a weight-sized buffer. When the input carries a gradient and
//! the weight does not, [`FrozenMatmul`] computes the same product with a
//! backward pass for the input only. The converse case, a trainable weight on
//! a constant input (the connector's cross-attention keys and values of the
//! frozen encoder's states), goes through [`ConstInputMatmul`], whose backward
//! skips the `[b·1500, d]` gradient of the encoder states.
//!
//! Those keys and values are then split into heads, and every node between
//! the projection and the attention (bias add, reshapes, transpose, copy)
//! would carry its own `[b, 1500, d]` gradient: candle 0.11's backward gives
//! each node's input a fresh `zeros_like` and adds into it, so the chain
//! costs a zero-fill and an add of a 9 MB tensor per node per layer (about a
//! third of all gradient elements of the tiny training step).
//! [`Linear::forward_heads`] computes the projection straight into heads as
//! one node, [`HeadsOfConstInput`], whose backward returns `∂W` and `∂b`
//! directly.

use candle_core::backend::BackendStorage;

use crate::ops::few_rows;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, D,
};

#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if x.track_op() && !self.weight.track_op() {
            // Through the frozen LLM: one node at the input's own rank, no
            // flattening reshapes whose gradients candle would zero-fill.
            x.contiguous()?
                .apply_op1(FrozenMatmul::new(&self.weight, x)?)?
        } else {
            let dims = x.dims().to_vec();
            let d_in = *dims.last().unwrap_or(&1);
            let rows = x.elem_count() / d_in.max(1);
            let x2 = x.reshape((rows, d_in))?;
            let y = if let Some(y) = self.few_rows(&x2)? {
                y
            } else if !x2.track_op() && self.weight.track_op() {
                x2.apply_op2(&self.weight, ConstInputMatmul)?
            } else {
                x2.matmul(&self.weight.t()?)?
            };
            let mut out = dims;
            *out.last_mut().unwrap_or(&mut 0) = self.weight.dim(0)?;
            y.reshape(out)?
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

impl Linear {
    /// The decode shape (a few rows, no gradient, f32 on the CPU) through
    /// [`kernels::few_rows`], which reads the weight once without packing
    /// it; `None` for every other case (the GEMM).
    fn few_rows(&self, x2: &Tensor) -> Result<Option<Tensor>> {
        let (rows, d_in) = x2.dims2()?;
        if rows > few_rows::MAX_ROWS
            || x2.track_op()
            || self.weight.track_op()
            || !x2.device().is_cpu()
            || x2.dtype() != DType::F32
            || self.weight.dtype() != DType::F32
        {
            return Ok(None);
        }
        let (storage, layout) = self.weight.storage_and_layout();
        let (Storage::Cpu(CpuStorage::F32(w)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        else {
            return Ok(None);
        };
        let d_out = self.weight.dim(0)?;
        let x = x2.flatten_all()?.to_vec1::<f32>()?;
        let y = few_rows::matmul_t(&x, rows, &w[a..b], d_out, d_in);
        Ok(Some(Tensor::from_vec(y, (rows, d_out), x2.device())?))
    }
}

/// `[b, t, h·hd]` → `[b, h, t, hd]`, contiguous: the attention head layout.
pub fn split_heads(y: &Tensor, n_head: usize) -> Result<Tensor> {
    let (b, t, d) = y.dims3()?;
    y.reshape((b, t, n_head, d / n_head))?
        .transpose(1, 2)?
        .contiguous()
}

impl Linear {
    /// `x Wᵀ + b` of `x` `[b, t, d_in]`, split into `n_head` heads:
    /// `[b, n_head, t, d_out / n_head]`, contiguous. For a constant `x` and a
    /// trainable weight on the CPU (the connector's cross-attention keys and
    /// values of the encoder states) the result is one graph node; otherwise
    /// it is the plain composition of [`Linear::forward`] and the split.
    pub fn forward_heads(&self, x: &Tensor, n_head: usize) -> Result<Tensor> {
        let (b, t, d_in) = x.dims3()?;
        let d_out = self.weight.dim(0)?;
        if d_out % n_head != 0 {
            candle_core::bail!("{d_out} output features do not split into {n_head} heads");
        }
        let one_node = !x.track_op()
            && self.weight.track_op()
            && x.device().is_cpu()
            && matches!(x.dtype(), DType::F32 | DType::F64)
            && self.weight.dtype() == x.dtype()
            && self.bias.as_ref().is_none_or(|b| b.dtype() == x.dtype());
        if !one_node {
            return split_heads(&self.forward(x)?, n_head);
        }
        let op = HeadsOfConstInput {
            batch: b,
            steps: t,
            n_head,
        };
        let x = x.reshape((b * t, d_in))?.contiguous()?;
        let weight = self.weight.contiguous()?;
        match &self.bias {
            Some(bias) => x.apply_op3(&weight, &bias.contiguous()?, op),
            None => x.apply_op2(&weight, op),
        }
    }
}

/// `x Wᵀ (+ b)` of a constant `x` `[b·t, d_in]`, written straight into heads
/// `[b, h, t, d_out / h]`, as one graph node. Backward returns `∂W = ∂yᵀ · x`
/// and `∂b = Σ_rows ∂y` (rows: `∂y` folded back to `[b·t, d_out]`), none
/// for the constant input.
pub struct HeadsOfConstInput {
    batch: usize,
    steps: usize,
    n_head: usize,
}

impl HeadsOfConstInput {
    fn forward(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, shape) = matmul_xwt(x, xl, w, wl)?;
        let (rows, d_out) = shape.dims2()?;
        if rows != self.batch * self.steps {
            candle_core::bail!(
                "heads-of-const-input: {rows} rows for {} × {}",
                self.batch,
                self.steps
            );
        }
        let bias = match bias {
            None => None,
            Some((b, bl)) => {
                let (s, e) = bl.contiguous_offsets().ok_or_else(|| {
                    candle_core::Error::Msg("heads-of-const-input: bias must be contiguous".into())
                })?;
                if e - s != d_out {
                    candle_core::bail!(
                        "heads-of-const-input: bias of {} for {d_out} features",
                        e - s
                    );
                }
                Some((b, s, e))
            }
        };
        let heads = match (&y, bias) {
            (CpuStorage::F32(y), None) => CpuStorage::F32(self.to_heads(y, None, d_out)),
            (CpuStorage::F32(y), Some((CpuStorage::F32(b), s, e))) => {
                CpuStorage::F32(self.to_heads(y, Some(&b[s..e]), d_out))
            }
            (CpuStorage::F64(y), None) => CpuStorage::F64(self.to_heads(y, None, d_out)),
            (CpuStorage::F64(y), Some((CpuStorage::F64(b), s, e))) => {
                CpuStorage::F64(self.to_heads(y, Some(&b[s..e]), d_out))
            }
            (other, _) => candle_core::bail!(
                "heads-of-const-input: {:?} (with a bias of the same dtype) is not a CPU training dtype",
                other.dtype()
            ),
        };
        let hd = d_out / self.n_head;
        Ok((
            heads,
            Shape::from((self.batch, self.n_head, self.steps, hd)),
        ))
    }

    /// Rows `[b·t, h·hd]` (+ bias) to `[b, h, t, hd]`.
    fn to_heads<T: Copy + std::ops::Add<Output = T>>(
        &self,
        y: &[T],
        bias: Option<&[T]>,
        d_out: usize,
    ) -> Vec<T> {
        let (t, h) = (self.steps, self.n_head);
        let hd = d_out / h;
        let mut out = Vec::with_capacity(y.len());
        for bi in 0..self.batch {
            for hi in 0..h {
                for ti in 0..t {
                    let row = &y[(bi * t + ti) * d_out + hi * hd..][..hd];
                    match bias {
                        Some(b) => {
                            out.extend(row.iter().zip(&b[hi * hd..][..hd]).map(|(&v, &c)| v + c))
                        }
                        None => out.extend_from_slice(row),
                    }
                }
            }
        }
        out
    }

    /// `∂y` `[b, h, t, hd]` back to rows `[b·t, d_out]`.
    fn rows(&self, grad: &Tensor) -> Result<Tensor> {
        let (_, h, _, hd) = grad.dims4()?;
        grad.transpose(1, 2)?
            .reshape((self.batch * self.steps, h * hd))
    }
}

impl CustomOp2 for HeadsOfConstInput {
    fn name(&self) -> &'static str {
        "heads-of-const-input"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(x, xl, w, wl, None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        _w: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let rows = self.rows(grad)?;
        Ok((None, Some(rows.t()?.matmul(x)?)))
    }
}

impl CustomOp3 for HeadsOfConstInput {
    fn name(&self) -> &'static str {
        "heads-of-const-input-bias"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(x, xl, w, wl, Some((b, bl)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let rows = self.rows(grad)?;
        Ok((None, Some(rows.t()?.matmul(x)?), Some(rows.sum(0)?)))
    }
}

impl candle_core::Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Linear::forward(self, x)
    }
}

/// `x Wᵀ` for a frozen `W`: backward returns `∂x = ∂y · W` only.
pub struct FrozenMatmul {
    weight: Tensor,
}

impl FrozenMatmul {
    fn new(weight: &Tensor, x: &Tensor) -> Result<Self> {
        if weight.rank() != 2 || x.rank() == 0 || weight.dim(1)? != x.dim(D::Minus1)? {
            candle_core::bail!(
                "frozen matmul: input {:?} does not fit weight {:?}",
                x.dims(),
                weight.dims()
            );
        }
        let weight = weight.to_dtype(x.dtype())?.to_device(x.device())?;
        Ok(Self { weight })
    }
}

/// A contiguous input `[.., k]` seen as rows `[m, k]`, and the output shape
/// `[.., n]` of its product with a `[n, k]` weight.
fn rows_of(layout: &Layout, n: usize) -> Result<(Layout, Shape)> {
    if !layout.is_contiguous() {
        candle_core::bail!("frozen matmul: the input must be contiguous");
    }
    let dims = layout.shape().dims();
    let k = *dims.last().unwrap_or(&1);
    let m = layout.shape().elem_count() / k.max(1);
    let mut out = dims.to_vec();
    if let Some(last) = out.last_mut() {
        *last = n;
    }
    Ok((
        Layout::contiguous_with_offset((m, k), layout.start_offset()),
        Shape::from(out),
    ))
}

/// `x Wᵀ` on storages: `x` `[m, k]`, `W` `[n, k]`.
fn matmul_xwt<S: BackendStorage>(
    x: &S,
    x_layout: &Layout,
    w: &S,
    w_layout: &Layout,
) -> Result<(S, Shape)> {
    let (m, k) = x_layout.shape().dims2()?;
    let (n, kw) = w_layout.shape().dims2()?;
    if k != kw {
        candle_core::bail!("matmul: input [{m}, {k}] does not fit weight [{n}, {kw}]");
    }
    let wt = w_layout.transpose(0, 1)?;
    Ok((
        x.matmul(w, (1, m, n, k), x_layout, &wt)?,
        Shape::from((m, n)),
    ))
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (w, wl) = self.weight.storage_and_layout();
        let (rows, out) = rows_of(layout, self.weight.dim(0)?)?;
        match &*w {
            Storage::Cpu(w) => Ok((matmul_xwt(x, &rows, w, wl)?.0, out)),
            _ => candle_core::bail!("frozen matmul: weight and input on different devices"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (w, wl) = self.weight.storage_and_layout();
        let (rows, out) = rows_of(layout, self.weight.dim(0)?)?;
        match &*w {
            Storage::Cuda(w) => Ok((matmul_xwt(x, &rows, w, wl)?.0, out)),
            _ => candle_core::bail!("frozen matmul: weight and input on different devices"),
        }
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let n = self.weight.dim(0)?;
        let rows = grad.elem_count() / n.max(1);
        Ok(Some(
            grad.reshape((rows, n))?
                .matmul(&self.weight)?
                .reshape(x.dims())?,
        ))
    }
}

/// `x Wᵀ` for a constant `x` and a trainable `W`: backward returns
/// `∂W = ∂yᵀ · x` only.
pub struct ConstInputMatmul;

impl CustomOp2 for ConstInputMatmul {
    fn name(&self) -> &'static str {
        "const-input-matmul"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        matmul_xwt(x, xl, w, wl)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        w: &candle_core::CudaStorage,
        wl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        matmul_xwt(x, xl, w, wl)
    }

    fn bwd(
        &self,
        x: &Tensor,
        _w: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((None, Some(grad.t()?.matmul(x)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// The one-node head projection gives the value and the `W`/`b`
    /// gradients of the plain projection → reshape → transpose → copy chain,
    /// with and without a bias; a tracked input keeps the plain chain.
    #[test]
    fn heads_of_a_constant_input_match_the_plain_chain() {
        let dev = Device::Cpu;
        let (b, t, d_in, d_out, h) = (2, 5, 4, 6, 3);
        let x0 = Tensor::randn(0f64, 1.0, (b, t, d_in), &dev).unwrap();
        let w0 = Tensor::randn(0f64, 1.0, (d_out, d_in), &dev).unwrap();
        let b0 = Tensor::randn(0f64, 1.0, d_out, &dev).unwrap();
        let coeffs = Tensor::randn(0f64, 1.0, (b, h, t, d_out / h), &dev).unwrap();
        let loss = |y: &Tensor| (y * &coeffs).unwrap().sqr().unwrap().sum_all().unwrap();
        for with_bias in [true, false] {
            let w = Var::from_tensor(&w0).unwrap();
            let bias = Var::from_tensor(&b0).unwrap();
            let layer = Linear::new(
                w.as_tensor().clone(),
                with_bias.then(|| bias.as_tensor().clone()),
            );
            let y = layer.forward_heads(&x0, h).unwrap();
            let yp = layer
                .forward(&x0)
                .unwrap()
                .reshape((b, t, h, d_out / h))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap();
            assert_eq!(y.dims(), &[b, h, t, d_out / h]);
            assert!(crate::testing::rel_l2(&y, &yp) < 1e-14);
            // One node instead of the chain.
            assert!(y.sorted_nodes().len() < yp.sorted_nodes().len());
            let (g, gp) = (loss(&y).backward().unwrap(), loss(&yp).backward().unwrap());
            let rel = crate::testing::rel_l2(g.get(&w).unwrap(), gp.get(&w).unwrap());
            assert!(rel < 1e-14, "dW {rel}");
            if with_bias {
                let rel = crate::testing::rel_l2(g.get(&bias).unwrap(), gp.get(&bias).unwrap());
                assert!(rel < 1e-14, "db {rel}");
            }
        }
        // A tracked input takes the plain chain and still gets its gradient.
        let x = Var::from_tensor(&x0).unwrap();
        let w = Var::from_tensor(&w0).unwrap();
        let layer = Linear::new(w.as_tensor().clone(), None);
        let g = loss(&layer.forward_heads(x.as_tensor(), h).unwrap())
            .backward()
            .unwrap();
        assert!(g.get(&x).is_some() && g.get(&w).is_some());
        // Heads must divide the output features.
        assert!(layer.forward_heads(&x0, 4).is_err());
    }

    /// Each special-cased product gives the value and the gradients of the
    /// plain matmul for the operand that is trained.
    #[test]
    fn frozen_weight_and_const_input_paths_match_plain_matmul() {
        let dev = Device::Cpu;
        let x0 = Tensor::randn(0f64, 1.0, (2, 5, 4), &dev).unwrap();
        let w0 = Tensor::randn(0f64, 1.0, (3, 4), &dev).unwrap();
        let b0 = Tensor::randn(0f64, 1.0, 3, &dev).unwrap();
        let coeffs = Tensor::randn(0f64, 1.0, (2, 5, 3), &dev).unwrap();
        let loss = |y: &Tensor| (y * &coeffs).unwrap().sqr().unwrap().sum_all().unwrap();
        let plain = |x: &Tensor, w: &Tensor| {
            x.broadcast_matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b0)
                .unwrap()
        };
        // Trainable weight, constant input.
        let w = Var::from_tensor(&w0).unwrap();
        let layer = Linear::new(w.as_tensor().clone(), Some(b0.clone()));
        let y = layer.forward(&x0).unwrap();
        let yp = plain(&x0, w.as_tensor());
        let g = loss(&y).backward().unwrap();
        let gp = loss(&yp).backward().unwrap();
        assert!(crate::testing::rel_l2(&y, &yp) < 1e-14);
        let (gw, gwp) = (g.get(&w).unwrap(), gp.get(&w).unwrap());
        assert!(crate::testing::rel_l2(gw, gwp) < 1e-14);
        // Frozen weight, trainable input.
        let x = Var::from_tensor(&x0).unwrap();
        let layer = Linear::new(w0.clone(), Some(b0.clone()));
        let g = loss(&layer.forward(x.as_tensor()).unwrap())
            .backward()
            .unwrap();
        let gp = loss(&plain(x.as_tensor(), &w0)).backward().unwrap();
        let (gx, gxp) = (g.get(&x).unwrap(), gp.get(&x).unwrap());
        assert!(crate::testing::rel_l2(gx, gxp) < 1e-14);
        assert_eq!(gx.dtype(), DType::F64);
    }
}
