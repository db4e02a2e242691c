//! Random weights at any shape, for benchmarks: the real loaders run against a
//! [`VarBuilder`] whose backend draws every requested tensor from N(0, 0.02²)
//! (norm scales from N(1, 0.02²)), so a random model has exactly the
//! structure, dtypes and memory layout of a real one. Used for the
//! `paper-shape` benchmark (Whisper large-v3 + Llama-3-8B), whose weights
//! cannot be downloaded on the benchmark machines.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use super::TensorMap;

/// Draws each requested tensor once and remembers it.
#[derive(Default)]
pub struct RandomBackend {
    drawn: Mutex<TensorMap>,
}

impl RandomBackend {
    /// Everything drawn so far, by name.
    pub fn drawn(&self) -> TensorMap {
        self.drawn.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl SimpleBackend for RandomBackend {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        if let Some(t) = self.drawn.lock().ok().and_then(|m| m.get(name).cloned()) {
            return t.to_dtype(dtype)?.to_device(dev);
        }
        // Norm scales near 1 keep activations at a realistic size.
        let mean = if name.contains("norm") && name.ends_with("weight") {
            1.0
        } else {
            0.0
        };
        let t = Tensor::randn(mean as f32, 0.02, s, dev)?.to_dtype(dtype)?;
        if let Ok(mut m) = self.drawn.lock() {
            m.insert(name.to_string(), t.clone());
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("random weights: `{name}` has no known shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// A var builder drawing random weights.
pub fn var_builder(dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::<RandomBackend>::default(), dtype, device.clone())
}

/// Run `build` against a random backend and return what it drew (f32, on
/// the CPU), e.g. to fill a [`TensorMap`] for loaders that take one.
///
/// The numbers are drawn on `draw_on` and then copied to the CPU: drawing
/// Whisper large-v3's 1.5 B parameters with candle's CPU sampler takes 25 s
/// on one core, against well under a second on a GPU plus the copy, and the
/// device benchmark pays that once per command out of a 15-minute budget.
pub fn draw<T>(
    draw_on: &Device,
    build: impl FnOnce(VarBuilder<'static>) -> Result<T>,
) -> Result<HashMap<String, Tensor>> {
    let backend = std::sync::Arc::new(RandomBackend::default());
    struct Shared(std::sync::Arc<RandomBackend>);
    impl SimpleBackend for Shared {
        fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
            self.0.get(s, name, h, dtype, dev)
        }
        fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
            self.0.get_unchecked(name, dtype, dev)
        }
        fn contains_tensor(&self, name: &str) -> bool {
            self.0.contains_tensor(name)
        }
    }
    let vb = VarBuilder::from_backend(
        Box::new(Shared(backend.clone())),
        DType::F32,
        draw_on.clone(),
    );
    build(vb)?;
    backend
        .drawn()
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_device(&Device::Cpu)?)))
        .collect()
}
