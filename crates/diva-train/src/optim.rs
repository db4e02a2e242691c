//! Optimisation: AdamW (decoupled weight decay, torch semantics), the
//! official schedule (linear warmup then cosine decay to zero), and
//! global-norm gradient clipping.
//!
//! AdamW is written here rather than taken from `candle_nn::optim::AdamW`
//! because resuming a run exactly needs the moments and step count, which
//! candle keeps private. A test checks both give the same updates.

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};
use rayon::prelude::*;

/// Linear warmup to `peak_lr` over `warmup_steps`, then cosine decay to 0 at
/// `total_steps` (the official recipe uses 1% warmup).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub peak_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl Schedule {
    /// The official recipe's shape: warmup over 1% of the steps.
    pub fn official(peak_lr: f64, total_steps: usize) -> Self {
        Self {
            peak_lr,
            warmup_steps: (total_steps / 100).max(1),
            total_steps,
        }
    }

    /// Learning rate for optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        self.peak_lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[derive(Debug, Clone)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    /// torch's defaults, with the official weight decay of 0.1.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// AdamW with its state in the open, so checkpoints can save and restore it.
pub struct AdamW {
    pub params: AdamWParams,
    pub vars: Vec<Var>,
    /// First and second moments, one pair per var.
    pub moments: Vec<(Tensor, Tensor)>,
    /// Number of steps taken.
    pub step: usize,
    /// Per-var learning-rate multipliers (1.0 unless set).
    pub lr_scales: Vec<f64>,
}

impl AdamW {
    pub fn new(vars: Vec<Var>, params: AdamWParams) -> Result<Self> {
        let moments = vars
            .iter()
            .map(|v| Ok((v.as_tensor().zeros_like()?, v.as_tensor().zeros_like()?)))
            .collect::<Result<_>>()?;
        let lr_scales = vec![1.0; vars.len()];
        Ok(Self {
            params,
            vars,
            moments,
            step: 0,
            lr_scales,
        })
    }

    /// One update at learning rate `lr` (vars without a gradient are left alone).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let g: Vec<Option<Tensor>> = self.vars.iter().map(|v| grads.get(v).cloned()).collect();
        self.step_grads(&g, lr)
    }

    /// One update from gradients aligned with `vars` (`None`: no gradient).
    pub fn step_grads(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        self.step += 1;
        let p = &self.params;
        let bias1 = 1.0 - p.beta1.powi(self.step as i32);
        let bias2 = 1.0 - p.beta2.powi(self.step as i32);
        for (i, (var, (m, v))) in self.vars.iter().zip(self.moments.iter_mut()).enumerate() {
            let Some(g) = grads.get(i).and_then(Option::as_ref) else {
                continue;
            };
            let lr = lr * self.lr_scales[i];
            if fused_cpu_step(var, m, v, g, p, StepScalars { lr, bias1, bias2 })? {
                continue;
            }
            *m = ((&*m * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            *v = ((&*v * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let m_hat = (&*m / bias1)?;
            let v_hat = (&*v / bias2)?;
            let decayed = (var.as_tensor() * (1.0 - lr * p.weight_decay))?;
            let update = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
            var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }
}

/// What one tensor's update needs besides the hyper-parameters: its learning
/// rate and this step's bias corrections.
#[derive(Clone, Copy)]
struct StepScalars {
    lr: f64,
    bias1: f64,
    bias2: f64,
}

/// The elements of a contiguous CPU storage of type `T`, if it is one.
fn cpu_slice<'a, T: candle_core::WithDType>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
) -> Option<&'a [T]> {
    let (a, b) = layout.contiguous_offsets()?;
    match storage {
        candle_core::Storage::Cpu(c) => T::cpu_storage_as_slice(c).ok().map(|s| &s[a..b]),
        _ => None,
    }
}

/// One AdamW update of a CPU f32/f64 parameter in one parallel pass over
/// (p, m, v, g). The candle-op path below makes ~12 passes, each with its own
/// allocation, per tensor: 30–45 ms a step for the tiny connector against
/// torch's 20 ms (docs/benchmarks.md). Same formula, same order of operations
/// per element: bit-identical results. Returns `false` (nothing done) off CPU or for other dtypes.
fn fused_cpu_step(
    var: &Var,
    m: &mut Tensor,
    v: &mut Tensor,
    g: &Tensor,
    hp: &AdamWParams,
    k: StepScalars,
) -> Result<bool> {
    let t = var.as_tensor();
    if !t.device().is_cpu() || g.shape() != t.shape() {
        return Ok(false);
    }
    Ok(match t.dtype() {
        DType::F32 => fused_step_typed::<f32>(var, m, v, g, hp, k)?,
        DType::F64 => fused_step_typed::<f64>(var, m, v, g, hp, k)?,
        _ => false,
    })
}

fn fused_step_typed<T>(
    var: &Var,
    m: &mut Tensor,
    v: &mut Tensor,
    g: &Tensor,
    hp: &AdamWParams,
    k: StepScalars,
) -> Result<bool>
where
    T: candle_core::WithDType + num_traits::Float + Send + Sync,
{
    let g = g.to_dtype(T::DTYPE)?;
    let c = |x: f64| T::from(x).expect("finite coefficient");
    let (b1, b2, omb1, omb2) = (
        c(hp.beta1),
        c(hp.beta2),
        c(1.0 - hp.beta1),
        c(1.0 - hp.beta2),
    );
    let (inv_bias1, inv_bias2) = (c(1.0 / k.bias1), c(1.0 / k.bias2));
    let (lr, decay, eps) = (c(k.lr), c(1.0 - k.lr * hp.weight_decay), c(hp.eps));
    // Read the four tensors in place; the guards drop before `var.set` writes.
    let (pn, mn, vn) = {
        let (ps, pl) = var.as_tensor().storage_and_layout();
        let (ms, ml) = m.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (gs, gl) = g.storage_and_layout();
        let (Some(p0), Some(m0), Some(v0), Some(g0)) = (
            cpu_slice::<T>(&ps, pl),
            cpu_slice::<T>(&ms, ml),
            cpu_slice::<T>(&vs, vl),
            cpu_slice::<T>(&gs, gl),
        ) else {
            return Ok(false);
        };
        if m0.len() != p0.len() || v0.len() != p0.len() || g0.len() != p0.len() {
            return Ok(false);
        }
        let n = p0.len();
        let (mut pn, mut mn, mut vn) = (vec![T::zero(); n], vec![T::zero(); n], vec![T::zero(); n]);
        const CHUNK: usize = 16 * 1024;
        pn.par_chunks_mut(CHUNK)
            .zip(mn.par_chunks_mut(CHUNK))
            .zip(vn.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(ci, ((pc, mc), vc))| {
                let o = ci * CHUNK;
                for j in 0..pc.len() {
                    let (p, m, v, g) = (p0[o + j], m0[o + j], v0[o + j], g0[o + j]);
                    let m = m * b1 + g * omb1;
                    let v = v * b2 + g * g * omb2;
                    let update = (m * inv_bias1) / ((v * inv_bias2).sqrt() + eps);
                    pc[j] = p * decay - update * lr;
                    mc[j] = m;
                    vc[j] = v;
                }
            });
        (pn, mn, vn)
    };
    let shape = var.as_tensor().shape().clone();
    let dev = candle_core::Device::Cpu;
    var.set(&Tensor::from_vec(pn, shape.clone(), &dev)?)?;
    *m = Tensor::from_vec(mn, shape.clone(), &dev)?;
    *v = Tensor::from_vec(vn, shape, &dev)?;
    Ok(true)
}

/// Gradients of a list of vars, summed over micro-batches.
pub fn accumulate(acc: &mut [Option<Tensor>], grads: &GradStore, vars: &[Var]) -> Result<()> {
    for (slot, v) in acc.iter_mut().zip(vars) {
        if let Some(g) = grads.get(v) {
            *slot = Some(match slot.take() {
                Some(a) => (a + g)?,
                None => g.clone(),
            });
        }
    }
    Ok(())
}

/// [`clip_grad_norm`] for gradients aligned with their vars.
pub fn clip_grads(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let mut total = 0.0;
    for g in grads.iter().flatten() {
        total += g
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
    }
    let norm = total.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            if let Some(t) = g.take() {
                *g = Some((t * scale)?);
            }
        }
    }
    Ok(norm)
}

/// Scale all gradients so their global L2 norm is at most `max_norm`
/// (torch's `clip_grad_norm_`). Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut aligned: Vec<Option<Tensor>> = vars.iter().map(|v| grads.remove(v)).collect();
    let norm = clip_grads(&mut aligned, max_norm)?;
    for (v, g) in vars.iter().zip(aligned) {
        if let Some(g) = g {
            grads.insert(v, g);
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::optim::Optimizer;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let s = Schedule::official(5e-5, 4300);
        assert_eq!(s.warmup_steps, 43);
        assert!((s.lr(0) - 5e-5 / 43.0).abs() < 1e-15);
        assert!((s.lr(42) - 5e-5).abs() < 1e-15, "peak at the end of warmup");
        let mid = s.lr(43 + (4300 - 43) / 2);
        assert!(
            (mid - 2.5e-5).abs() < 2e-8,
            "half way through the cosine: {mid}"
        );
        assert!(s.lr(4299) < 1e-9 && s.lr(10_000) == 0.0);
        assert!(
            (1..4300).all(|t| t < 43 || s.lr(t) <= s.lr(t - 1)),
            "monotone decay"
        );
    }

    fn quadratic(v: &Var, target: &Tensor) -> Tensor {
        (v.as_tensor() - target)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
    }

    #[test]
    fn adamw_equals_candles_and_the_torch_formula() {
        let dev = Device::Cpu;
        let init = Tensor::new(&[1.0f64, -2.0, 0.5], &dev).unwrap();
        let target = Tensor::new(&[0.3f64, 0.1, -0.4], &dev).unwrap();
        let (ours_v, theirs_v) = (
            Var::from_tensor(&init).unwrap(),
            Var::from_tensor(&init).unwrap(),
        );
        let mut ours = AdamW::new(vec![ours_v.clone()], AdamWParams::default()).unwrap();
        let cp = candle_nn::optim::ParamsAdamW {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut theirs = candle_nn::optim::AdamW::new(vec![theirs_v.clone()], cp).unwrap();
        for _ in 0..5 {
            ours.step(&quadratic(&ours_v, &target).backward().unwrap(), 1e-2)
                .unwrap();
            theirs
                .step(&quadratic(&theirs_v, &target).backward().unwrap())
                .unwrap();
        }
        let d = (ours_v.as_tensor() - theirs_v.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap();
        assert!(d.to_scalar::<f64>().unwrap() < 1e-12);
        // First step by hand: m̂ = g, v̂ = g², so the step is lr·sign(g) after decay.
        let v = Var::from_tensor(&init).unwrap();
        let mut o = AdamW::new(vec![v.clone()], AdamWParams::default()).unwrap();
        o.step(&quadratic(&v, &target).backward().unwrap(), 1e-2)
            .unwrap();
        let got = v.as_tensor().to_vec1::<f64>().unwrap();
        for (i, (&p, &t)) in [1.0f64, -2.0, 0.5]
            .iter()
            .zip(&[0.3f64, 0.1, -0.4])
            .enumerate()
        {
            let g: f64 = 2.0 * (p - t);
            let want = p * (1.0 - 1e-2 * 0.1) - 1e-2 * g / (g.abs() + 1e-8);
            assert!((got[i] - want).abs() < 1e-12, "{i}: {} vs {want}", got[i]);
        }
    }

    /// The fused CPU update is the candle-op formula (which CUDA runs) bit
    /// for bit, in f32 over several steps with an lr scale.
    #[test]
    fn fused_cpu_update_equals_the_candle_op_update() {
        let dev = Device::Cpu;
        let p0 = Tensor::randn(0f32, 1.0, (70, 300), &dev).unwrap();
        let var = Var::from_tensor(&p0).unwrap();
        let params = AdamWParams::default();
        let mut opt = AdamW::new(vec![var.clone()], params.clone()).unwrap();
        opt.lr_scales[0] = 0.1;
        let (mut p, mut m, mut v) = (
            p0.clone(),
            p0.zeros_like().unwrap(),
            p0.zeros_like().unwrap(),
        );
        for step in 1..=4 {
            let g = Tensor::randn(0f32, 1.0, (70, 300), &dev).unwrap();
            opt.step_grads(&[Some(g.clone())], 1e-3).unwrap();
            // The candle-op path, written out.
            let (b1, b2) = (params.beta1, params.beta2);
            let lr = 1e-3 * 0.1;
            m = ((&m * b1).unwrap() + (&g * (1.0 - b1)).unwrap()).unwrap();
            v = ((&v * b2).unwrap() + (g.sqr().unwrap() * (1.0 - b2)).unwrap()).unwrap();
            let m_hat = (&m / (1.0 - b1.powi(step))).unwrap();
            let v_hat = (&v / (1.0 - b2.powi(step))).unwrap();
            let decayed = (&p * (1.0 - lr * params.weight_decay)).unwrap();
            let update = (m_hat / (v_hat.sqrt().unwrap() + params.eps).unwrap()).unwrap();
            p = (decayed - (update * lr).unwrap()).unwrap();
            for (ours, theirs) in [
                (var.as_tensor(), &p),
                (&opt.moments[0].0, &m),
                (&opt.moments[0].1, &v),
            ] {
                let d = diva_core::testing::max_abs_diff_tensors(ours, theirs);
                assert_eq!(d, 0.0, "step {step}: max diff {d}");
            }
        }
        assert_ne!(
            var.as_tensor().to_vec2::<f32>().unwrap(),
            p0.to_vec2::<f32>().unwrap()
        );
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::new(&[3.0f64], &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[4.0f64], &dev).unwrap()).unwrap();
        let loss = ((a.as_tensor() * 1.0).unwrap() + (b.as_tensor() * 1.0).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let loss = (loss.sqr().unwrap() * 0.5).unwrap(); // grads = (a+b)·1 = 7 each
        let mut g = loss.backward().unwrap();
        let norm = clip_grad_norm(&mut g, &[a.clone(), b.clone()], 1.0).unwrap();
        assert!((norm - (98.0f64).sqrt()).abs() < 1e-9);
        let ga = g.get(&a).unwrap().to_vec1::<f64>().unwrap()[0];
        let gb = g.get(&b).unwrap().to_vec1::<f64>().unwrap()[0];
        assert!(((ga * ga + gb * gb).sqrt() - 1.0).abs() < 1e-5);
        let norm2 = clip_grad_norm(&mut g, &[a, b], 10.0).unwrap();
        assert!(
            (norm2 - 1.0).abs() < 1e-5,
            "below the bound nothing changes"
        );
    }
}
