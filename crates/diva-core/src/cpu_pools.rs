//! One CPU thread pool instead of two.
//!
//! candle 0.11's CPU backend runs two pools sized to the cores: rayon's, for
//! GEMMs (and diva's kernels), and its own "barrier pool" for elementwise ops
//! on ≥ 64k elements and for the quantized matmul kernels. A barrier-pool
//! worker spins for 25,000 iterations after each op before it sleeps, so on a
//! dense model it keeps taking a core from the GEMM that follows: in perf, 13%
//! of a 2-thread training step was that spin. Running candle's elementwise ops
//! on the calling thread instead (`CANDLE_NUM_THREADS=1`, which sizes the
//! barrier pool to zero workers; GEMMs keep every core) measured, 2 threads,
//! five interleaved rounds: training +16% samples/s (LLM forward −22%), dense
//! f32 prompt processing +50%, time to first token 0–10% lower
//! (docs/benchmarks.md). Quantized kernels run *only* on the barrier pool
//! (Q8_0 decode 50 → 32–45 tok/s without it), so this is for dense models.

/// Run candle's elementwise ops on the calling thread, unless the user set
/// `CANDLE_NUM_THREADS` themselves.
///
/// Call it before the first candle op (the pool is sized once, on first use)
/// and while the process is single-threaded: it sets an environment variable.
pub fn use_one_pool_for_dense_models() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// [`use_one_pool_for_dense_models`] unless loading the LLM at `path` in
/// `mode` keeps quantized projections (whose kernels need candle's pool).
/// Same conditions: before the first candle op, single-threaded.
pub fn use_one_pool_unless_quantized(
    path: &std::path::Path,
    mode: crate::models::llm::WeightMode,
) -> crate::Result<()> {
    if !crate::models::llm::keeps_quantized_weights(path, mode)? {
        use_one_pool_for_dense_models();
    }
    Ok(())
}

/// Runs `f` on a worker of rayon's pool (the one the GEMMs and diva's
/// kernels use) and returns its result. From outside the pool every
/// parallel op wakes the pool and puts the caller to sleep until it is
/// done (10–20 µs each; SmolLM2 runs 211 products a token, so 2–4 ms of a
/// 17 ms token); from a worker the caller takes part in the work instead.
/// `diva serve`'s model thread, `diva chat`'s replies and `diva bench llm`
/// decode this way.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}
