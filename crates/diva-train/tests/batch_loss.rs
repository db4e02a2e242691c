//! The batched DiVA loss with padding against the official PyTorch logic
//! (tools/reference/make_diva_fixture.py): per-example distillation and
//! alignment losses and their mean, on a batch of two clips with transcripts
//! of different lengths (teacher inputs right-padded); and finite differences
//! of the full batched loss w.r.t. the query tokens.

use candle_core::{DType, Device, Tensor};
use diva_core::models::connector::Connector;
use diva_core::models::llm::Llm;
use diva_core::models::Exec;
use diva_train::losses::batch_loss;

use diva_core::testing::{fixtures, tiny_diva, TinyDiva};

struct Batch {
    llm: Llm,
    states: Tensor,
    prefix: Tensor,
    suffix: Tensor,
    teacher: Tensor,
    mask: Tensor,
    transcripts: Vec<Tensor>,
}

fn setup(dtype: DType) -> (Batch, Connector, std::collections::HashMap<String, Tensor>) {
    let tiny = tiny_diva(dtype);
    let states = tiny.batch_states(dtype);
    let TinyDiva { llm, connector, .. } = tiny;
    let fx =
        candle_core::safetensors::load(fixtures().join("diva/expected.safetensors"), &Device::Cpu)
            .unwrap();
    let ids = |v: &[u32]| {
        llm.embed(&Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap())
            .unwrap()
    };
    let (prefix, suffix) = (ids(&[1, 5, 6, 7]), ids(&[8, 9, 10]));
    let teacher = llm
        .embed(&fx["batch_teacher_ids"].to_dtype(DType::U32).unwrap())
        .unwrap();
    let transcripts = vec![
        ids(&[20, 21, 22, 23, 24]).squeeze(0).unwrap(),
        ids(&[30, 31, 32]).squeeze(0).unwrap(),
    ];
    let b = Batch {
        states,
        prefix,
        suffix,
        teacher,
        mask: fx["batch_teacher_mask"].clone(),
        transcripts,
        llm,
    };
    (b, connector, fx)
}

fn loss(b: &Batch, c: &Connector) -> diva_train::losses::BatchLoss {
    let virt = c.forward(&b.states, Exec::Autograd).unwrap();
    let n = virt.dim(0).unwrap();
    let d = b.prefix.dim(2).unwrap();
    let pre = b
        .prefix
        .broadcast_as((n, b.prefix.dim(1).unwrap(), d))
        .unwrap();
    let suf = b
        .suffix
        .broadcast_as((n, b.suffix.dim(1).unwrap(), d))
        .unwrap();
    let student = Tensor::cat(&[&pre, &virt, &suf], 1).unwrap();
    batch_loss(
        &b.llm,
        &student,
        &b.teacher,
        &b.mask,
        &virt,
        &b.transcripts,
        Exec::Autograd,
    )
    .unwrap()
}

use diva_core::testing::max_abs_diff_tensors as max_diff;

#[test]
fn batched_loss_with_padding_equals_pytorch() {
    let (b, c, fx) = setup(DType::F32);
    let l = loss(&b, &c);
    let (dd, da, dt) = (
        max_diff(&l.distill, &fx["batch_distill_loss"]),
        max_diff(&l.align, &fx["batch_align_loss"]),
        max_diff(&l.total, &fx["batch_total_loss"]),
    );
    eprintln!("batch loss vs PyTorch: distill {dd:.1e}, align {da:.1e}, total {dt:.1e}");
    assert!(dd <= 1e-5 && da <= 1e-5 && dt <= 1e-5, "{dd} {da} {dt}");
}

#[test]
fn batched_loss_gradient_matches_finite_differences() {
    let (b, mut c, _) = setup(DType::F64);
    let q = candle_core::Var::from_tensor(&c.queries).unwrap();
    c.queries = q.as_tensor().clone();
    let grads = loss(&b, &c).total.backward().unwrap();
    let g = grads
        .get(&q)
        .expect("gradient reaches the queries")
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let base = c.queries.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let (mut num, mut den) = (0.0, 0.0);
    for idx in (0..base.len()).step_by(101) {
        let eps = 1e-6;
        let mut at = |d: f64| {
            let mut v = base.clone();
            v[idx] += d;
            c.queries = Tensor::from_vec(v, (16, 64), &Device::Cpu).unwrap();
            loss(&b, &c).total.to_scalar::<f64>().unwrap()
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * eps);
        num += (fd - g[idx]).powi(2);
        den += fd.powi(2);
    }
    let e = (num / den).sqrt();
    eprintln!("batched loss: autograd vs finite differences rel L2 {e:.2e}");
    assert!(e <= 1e-5, "{e}");
}
