//! CPU kernels where candle's generic ones are the bottleneck. Inference only:
//! none of these carry a gradient (training uses `Exec::Autograd` ops).

pub mod fast_exp;
pub mod gelu;
pub mod softmax;
