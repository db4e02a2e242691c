//! Inference attention on CPU f32: the matmul–softmax–matmul path against the
//! blocked kernel (`ops::attention`), at the shapes diva runs.
//!
//! `cargo bench -p diva-core --bench attention` (RAYON_NUM_THREADS sets threads).

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use diva_core::ops::{attention, rowwise};

/// The former path: heads copied out, scores materialised, softmax, `P·V`,
/// heads merged back.
fn plain(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
    let (b, h, tq, d) = q.dims4().unwrap();
    let q = (q.contiguous().unwrap() * scale).unwrap();
    let s = q.matmul(&k.t().unwrap()).unwrap();
    let p = rowwise::softmax_last_dim(&s).unwrap();
    p.matmul(v)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((b, tq, h * d))
        .unwrap()
}

fn bench(c: &mut Criterion) {
    // As the `diva` binary does at start-up: keep freed buffers in the heap,
    // or every materialised score tensor is page-faulted in afresh.
    // SAFETY: allocator tunables only, before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
    let dev = Device::Cpu;
    // (name, batch, heads, queries, keys, head_dim)
    let shapes = [
        ("whisper-tiny encoder self-attention", 1, 6, 1500, 1500, 64),
        ("connector cross-attention, N=448", 1, 6, 448, 1500, 64),
        (
            "whisper-large encoder self-attention",
            1,
            20,
            1500,
            1500,
            64,
        ),
    ];
    for (name, b, h, tq, tk, d) in shapes {
        let q = Tensor::randn(0f32, 1.0, (b, tq, h, d), &dev)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, h, tk, d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, h, tk, d), &dev).unwrap();
        let scale = (d as f64).powf(-0.5);
        let mut g = c.benchmark_group(name);
        g.sample_size(20);
        g.bench_function("plain", |bch| bch.iter(|| plain(&q, &k, &v, scale)));
        g.bench_function("blocked", |bch| {
            bch.iter(|| attention::attention(&q, &k, &v, scale as f32, None).unwrap())
        });
        g.finish();
        let diff = diva_core::testing::max_abs_diff_tensors(
            &plain(&q, &k, &v, scale),
            &attention::attention(&q, &k, &v, scale as f32, None).unwrap(),
        );
        assert!(diff < 1e-4, "{name}: max diff {diff}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
