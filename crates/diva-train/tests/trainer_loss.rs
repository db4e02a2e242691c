//! The trainer's loss path — teacher targets computed once per transcript
//! without padding (as the teacher cache does), student through
//! `student::forward` + `student::losses` — equals the official padded batch
//! loss from PyTorch (tools/reference/make_diva_fixture.py), and its gradient
//! w.r.t. the queries matches finite differences.

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use diva_core::models::connector::Connector;
use diva_core::models::llm::Llm;
use diva_core::models::Exec;
use diva_core::testing::{load_fixture, tiny_diva, TinyDiva};
use diva_train::student::{self, LossWeights, PromptEmbeds};

const PREFIX: [u32; 4] = [1, 5, 6, 7];
const SUFFIX: [u32; 3] = [8, 9, 10];
const TRANSCRIPTS: [&[u32]; 2] = [&[20, 21, 22, 23, 24], &[30, 31, 32]];

fn embed(llm: &Llm, v: &[u32]) -> Tensor {
    llm.embed(&Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap())
        .unwrap()
}

/// What the teacher cache stores: the last position of the unpadded prompt.
fn teacher_targets(llm: &Llm) -> Tensor {
    let rows: Vec<Tensor> = TRANSCRIPTS
        .iter()
        .map(|t| {
            let x = Tensor::cat(
                &[embed(llm, &PREFIX), embed(llm, t), embed(llm, &SUFFIX)],
                1,
            )
            .unwrap();
            let h = llm.forward_embeds(&x, None, None, Exec::Fused).unwrap();
            h.i((0, h.dim(1).unwrap() - 1)).unwrap()
        })
        .collect();
    Tensor::stack(&rows, 0).unwrap()
}

struct Case {
    llm: Llm,
    prompt: PromptEmbeds,
    states: Tensor,
    teacher: Tensor,
    transcripts: Vec<Tensor>,
}

fn case(dtype: DType) -> (Case, Connector) {
    let tiny = tiny_diva(dtype);
    let states = tiny.batch_states(dtype);
    let TinyDiva { llm, connector, .. } = tiny;
    let prompt = PromptEmbeds::from_ids(&llm, &PREFIX, &SUFFIX, false).unwrap();
    let transcripts = TRANSCRIPTS
        .iter()
        .map(|t| embed(&llm, t).squeeze(0).unwrap())
        .collect();
    let teacher = teacher_targets(&llm);
    (
        Case {
            llm,
            prompt,
            states,
            teacher,
            transcripts,
        },
        connector,
    )
}

fn losses(c: &Case, conn: &Connector) -> student::Losses {
    let out = student::forward(conn, &c.llm, &c.prompt, &c.states, Exec::Autograd).unwrap();
    student::losses(
        &c.llm,
        &out,
        &c.teacher,
        &c.transcripts,
        LossWeights::default(),
    )
    .unwrap()
}

use diva_core::testing::max_abs_diff_tensors as max_diff;

#[test]
fn cached_teacher_losses_equal_the_official_padded_batch() {
    let (c, conn) = case(DType::F32);
    let l = losses(&c, &conn);
    let fx = load_fixture("diva/expected.safetensors");
    let (dd, da, dt) = (
        max_diff(&l.distill, &fx["batch_distill_loss"]),
        max_diff(&l.align, &fx["batch_align_loss"]),
        max_diff(&l.total, &fx["batch_total_loss"]),
    );
    eprintln!(
        "trainer loss vs PyTorch padded batch: distill {dd:.1e} align {da:.1e} total {dt:.1e}"
    );
    assert!(dd <= 1e-5 && da <= 1e-5 && dt <= 1e-5, "{dd} {da} {dt}");
}

#[test]
fn trainer_loss_gradient_matches_finite_differences() {
    let (c, mut conn) = case(DType::F64);
    let vars = conn.make_trainable().unwrap();
    let (_, q) = vars.iter().find(|(n, _)| n == "query_tokens").unwrap();
    let grads = losses(&c, &conn).total.backward().unwrap();
    let g = grads
        .get(q.as_tensor())
        .expect("gradient reaches the queries")
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let base = q
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let (mut num, mut den) = (0.0, 0.0);
    for idx in (0..base.len()).step_by(97) {
        let eps = 1e-6;
        let at = |d: f64| {
            let mut v = base.clone();
            v[idx] += d;
            q.set(&Tensor::from_vec(v, q.shape(), &Device::Cpu).unwrap())
                .unwrap();
            losses(&c, &conn).total.to_scalar::<f64>().unwrap()
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * eps);
        num += (fd - g[idx]).powi(2);
        den += fd.powi(2);
    }
    q.set(&Tensor::from_vec(base, q.shape(), &Device::Cpu).unwrap())
        .unwrap();
    let e = (num / den).sqrt();
    eprintln!("trainer loss: autograd vs finite differences rel L2 {e:.2e}");
    assert!(e <= 1e-5, "{e}");
    // Every trainable tensor receives a gradient (nothing is cut off).
    for (name, v) in &vars {
        if name == "connector.embed_positions.weight" {
            continue; // only rows 0..N are used; the rest rightly get zeros
        }
        assert!(grads.get(v.as_tensor()).is_some(), "no gradient for {name}");
    }
    let _ = Var::from_tensor(&c.teacher); // the teacher side stays a constant
}

#[test]
fn the_cached_prefix_computes_the_same_student() {
    let (c, conn) = case(DType::F32);
    let cached = PromptEmbeds::from_ids(&c.llm, &PREFIX, &SUFFIX, true).unwrap();
    assert!(cached.prefix_kv.is_some());
    let a = student::forward(&conn, &c.llm, &c.prompt, &c.states, Exec::Autograd).unwrap();
    let b = student::forward(&conn, &c.llm, &cached, &c.states, Exec::Autograd).unwrap();
    let e = diva_core::testing::rel_l2(&b.last_hidden, &a.last_hidden);
    eprintln!("prefix cache vs full prompt: rel L2 {e:.1e}");
    assert!(e < 1e-5, "{e}");
}

/// Two micro-batches of one, each loss scaled by ½ (what the trainer does
/// with `batch_size = 2 × micro_batch`), accumulate to the full batch's
/// gradient.
#[test]
fn gradient_accumulation_equals_the_full_batch() {
    let (c, mut conn) = case(DType::F64);
    let vars = conn.make_trainable().unwrap();
    let vs: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let full = losses(&c, &conn).total.backward().unwrap();
    let mut acc: Vec<Option<Tensor>> = vec![None; vs.len()];
    for i in 0..2 {
        let part = Case {
            llm: c.llm.clone(),
            prompt: PromptEmbeds::from_ids(&c.llm, &PREFIX, &SUFFIX, false).unwrap(),
            states: c.states.narrow(0, i, 1).unwrap(),
            teacher: c.teacher.narrow(0, i, 1).unwrap(),
            transcripts: vec![c.transcripts[i].clone()],
        };
        let g = (losses(&part, &conn).total * 0.5)
            .unwrap()
            .backward()
            .unwrap();
        diva_train::optim::accumulate(&mut acc, &g, &vs).unwrap();
    }
    for ((name, v), a) in vars.iter().zip(&acc) {
        let (Some(want), Some(got)) = (full.get(v.as_tensor()), a) else {
            assert!(full.get(v.as_tensor()).is_none() && a.is_none(), "{name}");
            continue;
        };
        let d = max_diff(got, want);
        assert!(d < 1e-10, "{name}: accumulated gradient differs by {d}");
    }
}

/// The optional first-token KL (Ultravox-style): zero when the student's
/// state is the teacher's, positive otherwise, and differentiable.
#[test]
fn first_token_kl_is_a_proper_divergence() {
    let (c, mut conn) = case(DType::F64);
    let vars = conn.make_trainable().unwrap();
    let same = student::first_token_kl(&c.llm, &c.teacher, &c.teacher, 2.0).unwrap();
    assert!(
        same.abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
            < 1e-12
    );
    let out = student::forward(&conn, &c.llm, &c.prompt, &c.states, Exec::Autograd).unwrap();
    let w = LossWeights {
        kl: 1.0,
        kl_temperature: 2.0,
        ..LossWeights::default()
    };
    let l = student::losses(&c.llm, &out, &c.teacher, &c.transcripts, w).unwrap();
    let kl = l.kl.expect("KL is computed when its weight is positive");
    assert!(kl.to_vec1::<f64>().unwrap().iter().all(|v| *v > 0.0));
    let g = kl.sum_all().unwrap().backward().unwrap();
    let (_, q) = vars.iter().find(|(n, _)| n == "query_tokens").unwrap();
    assert!(
        g.get(q.as_tensor()).is_some(),
        "KL gradient reaches the queries"
    );
}
