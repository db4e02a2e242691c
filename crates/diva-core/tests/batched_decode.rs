//! Continuous batching's decode step (`Llm::forward_rows`, `TextGenerator::
//! feed_rows`) against sequences decoded one at a time: the same hidden
//! states and the same greedy replies, for sequences of different lengths
//! that join the batch at different steps and leave it when they end. Both
//! weight paths: SmolLM2's GGUF as loaded for inference (Q4_1 dequantized)
//! and re-quantized to Q8_0 (quantized kernels).

mod common;

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use common::{max_abs_diff, real_model};
use diva_core::generate::{Decoder, SamplingParams, TextGenerator};
use diva_core::models::llm::{load_llm, KvCache, Llm, WeightMode};
use diva_core::models::Exec;
use diva_core::text::{LlmTokenizer, Message};

fn prompts(tok: &LlmTokenizer) -> Vec<Vec<u32>> {
    let template = tok.chat().unwrap();
    [
        "What is the capital of France?",
        "Name three colours.",
        "Write one sentence about the sea, please, and keep it short.",
        "Hi",
    ]
    .iter()
    .map(|q| {
        let text = template.render(&[Message::user(*q)], true, &()).unwrap();
        tok.encode(&text, false).unwrap()
    })
    .collect()
}

fn prefill(llm: &Llm, ids: &[u32]) -> KvCache {
    let mut cache = llm.new_cache();
    llm.forward_embeds(
        &llm.embed_ids(ids).unwrap(),
        None,
        Some(&mut cache),
        Exec::Fused,
    )
    .unwrap();
    cache
}

fn check(mode: WeightMode) {
    let path = real_model("smollm2-135m-instruct").join("model.gguf");
    let llm = load_llm(&path, mode, &Device::Cpu).unwrap();
    let tok = LlmTokenizer::from_path(&path).unwrap();
    let prompts = prompts(&tok);

    // One step: rows of different cache lengths equal each sequence alone.
    let next = [504u32, 28, 9, 1100];
    let mut alone = Vec::new();
    for (p, &id) in prompts.iter().zip(&next) {
        let mut c = prefill(&llm, p);
        let h = llm
            .forward_embeds(
                &llm.embed_ids(&[id]).unwrap(),
                None,
                Some(&mut c),
                Exec::Fused,
            )
            .unwrap();
        alone.push(h.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
    let mut caches: Vec<KvCache> = prompts.iter().map(|p| prefill(&llm, p)).collect();
    let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
    let h = llm.forward_rows(&next, &mut refs).unwrap();
    assert_eq!(h.dims(), &[4, 1, llm.hidden_size()]);
    for (i, want) in alone.iter().enumerate() {
        let got = h
            .get(i)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let d = max_abs_diff(&got, want);
        eprintln!("{mode:?} row {i}: max |Δ hidden| {d:.2e}");
        assert!(d < 1e-3, "{mode:?} row {i}: batched hidden differs by {d}");
        assert_eq!(caches[i].len(), prompts[i].len() + 1);
    }

    // Whole greedy replies: each alone, then all through one batch where
    // sequence i joins at step i and each leaves at its own end.
    let gen = TextGenerator::new(&llm, &tok);
    let params = SamplingParams {
        max_tokens: 24,
        temperature: 0.0,
        ..SamplingParams::default()
    };
    let want: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let mut c = llm.new_cache();
            gen.generate_ids(p, &mut c, &params, |_| {}).unwrap().ids
        })
        .collect();
    let mut running: Vec<(usize, KvCache, Decoder, String)> = Vec::new();
    let mut got: Vec<Option<(Vec<u32>, String)>> = vec![None; prompts.len()];
    let mut step = 0;
    while got.iter().any(Option::is_none) {
        if step < prompts.len() {
            let mut c = llm.new_cache();
            let ids = Tensor::new(prompts[step].as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let d = gen
                .start(&llm.embed(&ids).unwrap(), &mut c, &params)
                .unwrap();
            running.push((step, c, d, String::new()));
        }
        step += 1;
        let mut ids = Vec::new();
        let mut i = 0;
        while i < running.len() {
            let (_, c, d, text) = &mut running[i];
            let len = c.len();
            match d.next(len, |t| {
                text.push_str(t);
                Ok(())
            }) {
                Ok(Some(id)) => {
                    ids.push(id);
                    i += 1;
                }
                Ok(None) => {
                    let (k, _, d, mut text) = running.remove(i);
                    let g = d
                        .finish(|t| {
                            text.push_str(t);
                            Ok(())
                        })
                        .unwrap();
                    assert_eq!(g.text, text, "streamed text = the generation's text");
                    got[k] = Some((g.ids, text));
                }
                Err(e) => panic!("{e}"),
            }
        }
        if running.is_empty() {
            continue;
        }
        let (mut caches, mut decoders): (Vec<&mut KvCache>, Vec<&mut Decoder>) =
            running.iter_mut().map(|(_, c, d, _)| (c, d)).unzip();
        gen.feed_rows(&ids, &mut caches, &mut decoders).unwrap();
    }
    for (i, w) in want.iter().enumerate() {
        let (ids, text) = got[i].as_ref().unwrap();
        eprintln!("{mode:?} prompt {i}: {text:?}");
        assert_eq!(ids, w, "{mode:?} prompt {i}: batched greedy reply differs");
        assert!(!w.is_empty());
    }
}

#[test]
fn batched_decode_equals_one_at_a_time() {
    check(WeightMode::Quantized);
}

#[test]
fn batched_decode_equals_one_at_a_time_with_quantized_kernels() {
    check(WeightMode::Requantized(GgmlDType::Q8_0));
}
