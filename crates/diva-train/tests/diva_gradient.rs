//! Gradients of the DiVA loss (distillation + alignment) w.r.t. the query
//! tokens, a connector weight and the projection, in f64: autograd equals the
//! official PyTorch logic's gradients (tools/reference/make_diva_fixture.py)
//! and central finite differences.

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use diva_core::models::connector::Connector;
use diva_core::models::llm::Llm;
use diva_core::models::Exec;
use diva_train::losses::{align_loss, distill_loss};

use diva_core::testing::{fixtures, rel_l2, tiny_diva, TinyDiva};

struct Setup {
    llm: Llm,
    states: Tensor,
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    transcript: Vec<u32>,
}

fn ids(v: &[u32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
}

/// The official single-example loss: student = prefix ⧺ virtual ⧺ suffix,
/// teacher = prefix ⧺ transcript ⧺ suffix, last positions compared.
fn total_loss(s: &Setup, c: &Connector) -> Tensor {
    let virt = c.forward(&s.states, Exec::Autograd).unwrap();
    let e = |v: &[u32]| s.llm.embed(&ids(v)).unwrap();
    let student = Tensor::cat(&[&e(&s.prefix), &virt, &e(&s.suffix)], 1).unwrap();
    let teacher = Tensor::cat(&[&e(&s.prefix), &e(&s.transcript), &e(&s.suffix)], 1).unwrap();
    let last = |x: &Tensor| {
        let h = s.llm.forward_embeds(x, None, None, Exec::Autograd).unwrap();
        let n = h.dim(1).unwrap();
        h.i((.., n - 1)).unwrap()
    };
    let teacher_last = last(&teacher).detach();
    let distill = distill_loss(&last(&student), &teacher_last)
        .unwrap()
        .sum_all()
        .unwrap();
    let align = align_loss(
        &virt.squeeze(0).unwrap(),
        &e(&s.transcript).squeeze(0).unwrap(),
    )
    .unwrap();
    (distill + align).unwrap()
}

#[test]
fn loss_gradients_match_pytorch_and_finite_differences() {
    let TinyDiva {
        config: cfg,
        whisper,
        llm,
        connector: mut c,
    } = tiny_diva(DType::F64);
    let exp =
        candle_core::safetensors::load(fixtures().join("diva/expected.safetensors"), &Device::Cpu)
            .unwrap();
    let grads_ref =
        candle_core::safetensors::load(fixtures().join("diva/grad.safetensors"), &Device::Cpu)
            .unwrap();
    let mel = exp["mel"].to_dtype(DType::F64).unwrap();
    let states = whisper
        .encoder(DType::F64, &Device::Cpu)
        .unwrap()
        .forward(&mel)
        .unwrap();
    let list = |k: &str| -> Vec<u32> {
        cfg.extra[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    };
    let s = Setup {
        llm,
        states,
        prefix: list("prompt_prefix_ids"),
        suffix: list("prompt_suffix_ids"),
        transcript: vec![20, 21, 22, 23, 24],
    };

    let queries = Var::from_tensor(&c.queries).unwrap();
    let q_proj = Var::from_tensor(&c.decoder.layers[0].self_attn.q_proj.weight).unwrap();
    let proj = Var::from_tensor(&c.projection.weight).unwrap();
    c.queries = queries.as_tensor().clone();
    c.decoder.layers[0].self_attn.q_proj.weight = q_proj.as_tensor().clone();
    c.projection.weight = proj.as_tensor().clone();

    let loss = total_loss(&s, &c);
    let torch_loss = grads_ref["total_loss"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[0];
    let ours = loss.to_scalar::<f64>().unwrap();
    assert!(
        (ours - torch_loss).abs() / torch_loss < 1e-7,
        "loss {ours} vs {torch_loss}"
    );
    let g = loss.backward().unwrap();
    let checks = [
        ("query_tokens", g.get(&queries).unwrap().clone()),
        (
            "connector.layers.0.self_attn.q_proj.weight",
            g.get(&q_proj).unwrap().clone(),
        ),
        // The checkpoint stores the projection transposed; so does its gradient.
        ("projection.weight", g.get(&proj).unwrap().t().unwrap()),
    ];
    for (name, grad) in &checks {
        let e = rel_l2(grad, &grads_ref[*name]);
        eprintln!("{name}: autograd vs PyTorch rel L2 {e:.2e}");
        assert!(e <= 1e-5, "{name}: {e}");
    }

    // Central differences on a spread of query-token coordinates.
    let base = c.queries.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let gq = checks[0].1.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let (mut num, mut den) = (0.0, 0.0);
    for idx in (0..base.len()).step_by(97) {
        let eps = 1e-6;
        let mut at = |d: f64| {
            let mut v = base.clone();
            v[idx] += d;
            c.queries = Tensor::from_vec(v, (16, 64), &Device::Cpu).unwrap();
            total_loss(&s, &c).to_scalar::<f64>().unwrap()
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * eps);
        num += (fd - gq[idx]).powi(2);
        den += fd.powi(2);
    }
    let e = (num / den).sqrt();
    eprintln!("query_tokens: autograd vs finite differences rel L2 {e:.2e}");
    assert!(e <= 1e-5, "finite differences {e}");
}
