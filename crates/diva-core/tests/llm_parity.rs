//! The LLM decoder against transformers: SmolLM2-135M-Instruct from its GGUF
//! (dequantized; as stored, against llama.cpp), and tiny random Llama (llama3 RoPE scaling, GQA, tied
//! embeddings) and Qwen2 (q/k/v biases) checkpoints, batched with padding.
//! Fixtures: tools/reference/make_llm_fixtures.py.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use common::{fixtures, load_fixture, real_model, rel_l2};
use diva_core::models::llm::{load_llm, Llm, WeightMode};
use diva_core::models::Exec;

fn ids(t: &Tensor) -> Tensor {
    t.to_dtype(DType::U32).unwrap()
}

/// The exact product, both ways: dequantized dense f32, and f32 arithmetic
/// on the stored blocks (`StoredF32`, what `--llm-weights auto|f32` loads
/// for a GGUF): hidden states and logits as transformers', and the same 20
/// greedy tokens as transformers' (the 8-bit path parts at the first).
#[test]
fn smollm2_gguf_matches_transformers() {
    let path = real_model("smollm2-135m-instruct").join("model.gguf");
    let fx = load_fixture("llm/smollm2_logits.safetensors");
    for mode in [WeightMode::Dense(DType::F32), WeightMode::StoredF32] {
        let llm = load_llm(&path, mode, &Device::Cpu).unwrap();
        for p in ["a", "b", "c"] {
            let (h, logits) = last_logits(&llm, &fx[&format!("ids_{p}")]);
            let eh = rel_l2(&h.squeeze(0).unwrap(), &fx[&format!("hidden_{p}")]);
            let el = rel_l2(&logits, &fx[&format!("last_logits_{p}")]);
            eprintln!("{mode:?} prompt {p}: hidden rel L2 {eh:.2e}, last logits rel L2 {el:.2e}");
            assert!(
                eh <= 1e-3 && el <= 1e-3,
                "{mode:?} {p}: hidden {eh}, logits {el}"
            );
        }
        let ids = ids(&fx["ids_a"]).to_vec1::<u32>().unwrap();
        let want = fx["greedy_a"].to_vec1::<i64>().unwrap();
        let got = greedy(&llm, &ids, want.len().min(20));
        assert_eq!(got, want[..got.len()], "{mode:?}: greedy reply");
    }
}

/// `n` greedy tokens after `ids`, with the KV cache.
fn greedy(llm: &Llm, ids: &[u32], n: usize) -> Vec<i64> {
    let mut cache = llm.new_cache();
    let mut x = llm.embed_ids(ids).unwrap();
    let mut got = Vec::new();
    for _ in 0..n {
        let h = llm
            .forward_embeds(&x, None, Some(&mut cache), Exec::Fused)
            .unwrap();
        let t = h.dim(1).unwrap();
        let next = llm
            .logits(&h.i((.., t - 1..t)).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        got.push(next as i64);
        x = llm.embed_ids(&[next]).unwrap();
    }
    got
}

/// (final hidden states `[1, t, d]`, last-position logits `[vocab]`).
fn last_logits(llm: &Llm, ids_t: &Tensor) -> (Tensor, Tensor) {
    let ids = ids(ids_t).unsqueeze(0).unwrap();
    let h = llm
        .forward_embeds(&llm.embed(&ids).unwrap(), None, None, Exec::Fused)
        .unwrap();
    let t = ids.dim(1).unwrap();
    let logits = llm.logits(&h.i((.., t - 1..t)).unwrap()).unwrap();
    (h, logits.flatten_all().unwrap())
}

/// The GGUF as stored (Q4_1 projections, Q8_0 tied head, 8-bit activation
/// blocks on diva's integer kernels), held to llama.cpp on the same file:
/// logits as close to f32 (transformers) as llama.cpp's, and its greedy
/// reply as far as the two quantized arithmetics agree. The activation rounding is the
/// cost of the quantized path against f32 (docs/benchmarks.md).
#[test]
fn smollm2_as_stored_matches_llama_cpp() {
    let path = real_model("smollm2-135m-instruct").join("model.gguf");
    let fx = load_fixture("llm/smollm2_logits.safetensors");
    let lc = load_fixture("llm/smollm2_llama_cpp_logits.safetensors");
    let llm = load_llm(&path, WeightMode::Quantized, &Device::Cpu).unwrap();
    for p in ["a", "b", "c"] {
        let (_, logits) = last_logits(&llm, &fx[&format!("ids_{p}")]);
        let vs_llama = rel_l2(&logits, &lc[&format!("last_logits_{p}")]);
        let vs_f32 = rel_l2(&logits, &fx[&format!("last_logits_{p}")]);
        let llama_vs_f32 = rel_l2(
            &lc[&format!("last_logits_{p}")],
            &fx[&format!("last_logits_{p}")],
        );
        eprintln!(
            "as stored, prompt {p}: last logits rel L2 vs llama.cpp {vs_llama:.2e}, vs f32 {vs_f32:.2e} (llama.cpp vs f32 {llama_vs_f32:.2e})"
        );
        // llama.cpp's own path differs in places (an f16 KV cache, its
        // prompt GEMMs), so the two quantized runs are not one arithmetic
        // (on the long prompt c llama.cpp is the further from f32 of the
        // two); the bar is diva's error against the exact (f32) logits:
        // a few percent, and at most half again llama.cpp's.
        assert!(vs_f32 <= 5e-2, "{p}: {vs_f32} from f32");
        assert!(
            vs_f32 <= llama_vs_f32 * 1.5,
            "{p}: {vs_f32} from f32, llama.cpp {llama_vs_f32}"
        );
    }
    // Greedy: 20 tokens, KV cache, the same as llama.cpp's.
    let ids = ids(&fx["ids_a"]).to_vec1::<u32>().unwrap();
    let got = greedy(&llm, &ids, 20);
    // The two quantized runs agree on the first 9 tokens (f32 differs from
    // both at the first: a near tie on this raw-text prompt) and then part
    // where their arithmetic differs; a wrong kernel parts at once.
    let theirs = lc["greedy_a"].to_vec1::<i64>().unwrap();
    let same = got.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
    eprintln!("greedy: {same} of 20 tokens as llama.cpp's\n  diva {got:?}\n  llama.cpp {theirs:?}");
    assert!(
        same >= 8,
        "greedy parts from llama.cpp's after {same} tokens"
    );
    let f32_first = fx["greedy_a"].to_vec1::<i64>().unwrap()[0];
    assert_ne!(
        got[0], f32_first,
        "the fixture's near tie is gone: update the comment"
    );
}

fn check_tiny(name: &str) {
    let llm = load_llm(
        &fixtures().join(format!("llm/{name}/model")),
        WeightMode::Dense(DType::F32),
        &Device::Cpu,
    )
    .unwrap();
    let fx = load_fixture(&format!("llm/{name}/expected.safetensors"));
    for exec in [Exec::Fused, Exec::Autograd] {
        // One sequence.
        let x = llm.embed(&ids(&fx["ids_single"])).unwrap();
        let h = llm.forward_embeds(&x, None, None, exec).unwrap();
        let e = rel_l2(&h, &fx["hidden_single"]);
        let el = rel_l2(&llm.logits(&h).unwrap(), &fx["logits_single"]);
        assert!(
            e <= 1e-4 && el <= 1e-4,
            "{name} {exec:?} single: hidden {e}, logits {el}"
        );
        // A right-padded batch: compare the real positions only.
        let mask = &fx["attention_mask"];
        let x = llm.embed(&ids(&fx["ids"])).unwrap();
        let h = llm.forward_embeds(&x, Some(mask), None, exec).unwrap();
        let logits = llm.logits(&h).unwrap();
        let m = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
        let e = rel_l2(
            &h.broadcast_mul(&m).unwrap(),
            &fx["hidden"].broadcast_mul(&m).unwrap(),
        );
        let el = rel_l2(
            &logits.broadcast_mul(&m).unwrap(),
            &fx["logits"].broadcast_mul(&m).unwrap(),
        );
        eprintln!("{name} {exec:?}: batched hidden rel L2 {e:.2e}, logits {el:.2e}");
        assert!(
            e <= 1e-4 && el <= 1e-4,
            "{name} {exec:?} batch: hidden {e}, logits {el}"
        );
    }
    // Incremental decoding with the KV cache equals the full pass.
    let x = llm.embed(&ids(&fx["ids_single"])).unwrap();
    let mut cache = llm.new_cache();
    let mut rows = Vec::new();
    for t in 0..x.dim(1).unwrap() {
        rows.push(
            llm.forward_embeds(
                &x.i((.., t..t + 1)).unwrap(),
                None,
                Some(&mut cache),
                Exec::Fused,
            )
            .unwrap(),
        );
    }
    let e = rel_l2(&Tensor::cat(&rows, 1).unwrap(), &fx["hidden_single"]);
    assert!(e <= 1e-4, "{name} cached decode: {e}");
}

#[test]
fn tiny_llama_with_llama3_rope_and_gqa_matches_transformers() {
    check_tiny("llama_tiny");
}

#[test]
fn tiny_qwen2_with_biases_matches_transformers() {
    check_tiny("qwen2_tiny");
}

fn last_norm(llm: &Llm, x: &Tensor, exec: Exec) -> Tensor {
    let h = llm.forward_embeds(x, None, None, exec).unwrap();
    let t = h.dim(1).unwrap();
    h.i((0, t - 1))
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .sqrt()
        .unwrap()
}

/// ‖h_last‖ w.r.t. inputs_embeds in f64: autograd equals finite differences
/// and torch's gradient; the inference path (fused ops) carries no gradient,
/// which is why training must never use it.
#[test]
fn gradient_reaches_inputs_embeds_in_training_mode_only() {
    let llm = load_llm(
        &fixtures().join("llm/llama_tiny/model"),
        WeightMode::Dense(DType::F64),
        &Device::Cpu,
    )
    .unwrap();
    let fx = load_fixture("llm/llama_tiny/grad.safetensors");
    let x = Var::from_tensor(&fx["inputs_embeds"]).unwrap();
    let loss = last_norm(&llm, x.as_tensor(), Exec::Autograd);
    let torch_loss = fx["loss"].to_scalar::<f64>().unwrap();
    assert!((loss.to_scalar::<f64>().unwrap() - torch_loss).abs() / torch_loss < 1e-6);
    let grads = loss.backward().unwrap();
    let g = grads
        .get(&x)
        .expect("gradient reaches inputs_embeds")
        .clone();
    let e = rel_l2(&g, &fx["grad_inputs_embeds"]);
    eprintln!("grad vs torch: rel L2 {e:.2e}");
    assert!(e <= 1e-5, "grad vs torch {e}");

    // Central finite differences on a spread of coordinates.
    let base = fx["inputs_embeds"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let gflat = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let (mut num, mut den) = (0.0, 0.0);
    for idx in (0..base.len()).step_by(37) {
        let eps = 1e-5;
        let f = |d: f64| {
            let mut v = base.clone();
            v[idx] += d;
            let t = Tensor::from_vec(v, x.dims(), &Device::Cpu).unwrap();
            last_norm(&llm, &t, Exec::Autograd)
                .to_scalar::<f64>()
                .unwrap()
        };
        let fd = (f(eps) - f(-eps)) / (2.0 * eps);
        num += (fd - gflat[idx]).powi(2);
        den += fd.powi(2);
    }
    let fd_err = (num / den).sqrt();
    eprintln!("grad vs finite differences: rel L2 {fd_err:.2e}");
    assert!(fd_err <= 1e-5, "finite differences {fd_err}");

    // The fused inference path cuts the graph: no gradient at all.
    let xf = Var::from_tensor(&fx["inputs_embeds"].to_dtype(DType::F32).unwrap()).unwrap();
    let llm32 = load_llm(
        &fixtures().join("llm/llama_tiny/model"),
        WeightMode::Dense(DType::F32),
        &Device::Cpu,
    )
    .unwrap();
    let grads = last_norm(&llm32, xf.as_tensor(), Exec::Fused)
        .backward()
        .unwrap();
    assert!(
        grads.get(&xf).is_none(),
        "fused ops must not be on the training path"
    );
}

/// Q4_0, Q8_0, Q4_K and Q6_K weights stay quantized and run through candle's
/// quantized matmul (activations quantized on the fly, as llama.cpp does).
#[test]
fn quantized_projections_match_their_dequantized_weights() {
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use diva_core::models::linear::Linear;
    use diva_core::models::llm::layers::Proj;
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 0.05, (384, 512), &dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 7, 512), &dev).unwrap();
    for t in [
        GgmlDType::Q4_0,
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
        GgmlDType::Q6K,
    ] {
        let q = QTensor::quantize(&w, t).unwrap();
        let dense = Proj::Dense(Linear::new(q.dequantize(&dev).unwrap(), None));
        let quant = Proj::Quantized {
            weight: QMatMul::from_qtensor(q).unwrap(),
            bias: None,
        };
        let (a, b) = (quant.forward(&x).unwrap(), dense.forward(&x).unwrap());
        let e = rel_l2(&a, &b);
        // A view that starts mid-buffer (the last prompt row) must work too.
        let last = x.i((.., 6..7)).unwrap();
        let e_view = rel_l2(
            &quant.forward(&last).unwrap(),
            &dense.forward(&last).unwrap(),
        );
        eprintln!("{t:?}: quantized vs dequantized rel L2 {e:.2e} (view {e_view:.2e})");
        assert!(e < 2e-2 && e_view < 2e-2, "{t:?}: {e} / {e_view}");
    }
}

/// The real model re-quantized to Q8_0 / Q4_0 stays close to the reference.
#[test]
fn smollm2_requantized_stays_close() {
    use candle_core::quantized::GgmlDType;
    let path = real_model("smollm2-135m-instruct").join("model.gguf");
    let fx = load_fixture("llm/smollm2_logits.safetensors");
    let ids = ids(&fx["ids_a"]).unsqueeze(0).unwrap();
    let expected_first = fx["greedy_a"].to_vec1::<i64>().unwrap()[0] as u32;
    // Q4_0 re-quantizes weights that were already 4-bit (Q4_1), so its error
    // compounds twice; the argmax still lands on the reference token.
    for (t, tol) in [(GgmlDType::Q8_0, 0.1), (GgmlDType::Q4_0, 0.6)] {
        let llm = load_llm(&path, WeightMode::Requantized(t), &Device::Cpu).unwrap();
        let h = llm
            .forward_embeds(&llm.embed(&ids).unwrap(), None, None, Exec::Fused)
            .unwrap();
        let e = rel_l2(&h.squeeze(0).unwrap(), &fx["hidden_a"]);
        let n = ids.dim(1).unwrap();
        let logits = llm
            .logits(&h.i((.., n - 1..n)).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        eprintln!(
            "{t:?}: hidden rel L2 {e:.3e}, top-3 {:?} (reference first token {expected_first})",
            &order[..3]
        );
        assert!(e <= tol, "{t:?}: hidden rel L2 {e}");
        assert!(
            order[..5].contains(&(expected_first as usize)),
            "{t:?}: reference token not in top 5"
        );
    }
    // K-quants need rows that are a multiple of 256; SmolLM2's are 576.
    let e = load_llm(&path, WeightMode::Requantized(GgmlDType::Q4K), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("multiple of 256"), "{e}");
}
