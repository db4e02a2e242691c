//! The content-transfer levers (issue 16) against their references:
//! - the response KL equals Ultravox's `Response_KL` (`F.kl_div(log_softmax(s/τ),
//!   log_softmax(t/τ), batchmean, log_target=True)`) and the contrastive loss
//!   PyTorch's InfoNCE, values and gradients
//!   (tools/reference/make_lever_losses_fixture.py);
//! - the trainer's total loss with both levers on, teacher-forced on cached
//!   replies, has the gradient finite differences give;
//! - the staged schedule trains the alignment loss alone, without the LLM.

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use diva_core::models::connector::Connector;
use diva_core::models::llm::Llm;
use diva_core::models::Exec;
use diva_core::testing::{load_fixture, max_abs_diff_tensors as max_diff, tiny_diva, TinyDiva};
use diva_train::config::TrainConfig;
use diva_train::losses::{contrastive_loss, log_softmax};
use diva_train::response::{response_kl, top_k, ReplyBatch, TeacherReply};
use diva_train::student::{self, LossWeights, PromptEmbeds};
use diva_train::trainer::loss_weights;

const PREFIX: [u32; 4] = [1, 5, 6, 7];
const SUFFIX: [u32; 3] = [8, 9, 10];
const TRANSCRIPTS: [&[u32]; 2] = [&[20, 21, 22, 23, 24], &[30, 31, 32]];
/// Teacher replies of different lengths (the batch pads the shorter one).
const REPLIES: [&[u32]; 2] = [&[40, 41, 42, 43], &[50, 51]];
const TAU: f64 = 2.0;

fn ids(v: &[u32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
}

/// The exact cached teacher side, computed the slow way: the teacher's
/// full prompt with the reply appended, log-probabilities at τ over the
/// whole vocabulary at each reply token's position.
fn teacher_reply(llm: &Llm, transcript: &[u32], reply: &[u32]) -> (Tensor, TeacherReply) {
    let seq: Vec<u32> = [&PREFIX[..], transcript, &SUFFIX[..], reply].concat();
    let h = llm
        .forward_embeds(&llm.embed(&ids(&seq)).unwrap(), None, None, Exec::Fused)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let last = seq.len() - reply.len() - 1;
    let logits = llm
        .lm_head
        .forward(&h.narrow(0, last + 1, reply.len()).unwrap())
        .unwrap();
    let logp = log_softmax(&(&logits / TAU).unwrap()).unwrap();
    let vocab = logp.dim(1).unwrap();
    let (mut top_ids, mut top_logp) = (Vec::new(), Vec::new());
    for row in logp.to_vec2::<f64>().unwrap() {
        let row: Vec<f32> = row.iter().map(|&x| x as f32).collect();
        let (i, p) = top_k(&row, vocab);
        top_ids.extend(i);
        top_logp.extend(p);
    }
    let r = reply.len();
    (
        h.i(last).unwrap(),
        TeacherReply {
            ids: reply.to_vec(),
            top_ids: Tensor::from_vec(top_ids, (r, vocab), &Device::Cpu).unwrap(),
            top_logp: Tensor::from_vec(top_logp, (r, vocab), &Device::Cpu).unwrap(),
        },
    )
}

struct Case {
    llm: Llm,
    prompt: PromptEmbeds,
    states: Tensor,
    teacher: Tensor,
    transcripts: Vec<Tensor>,
    replies: ReplyBatch,
}

fn case() -> (Case, Connector) {
    let tiny = tiny_diva(DType::F64);
    let states = tiny.batch_states(DType::F64);
    let TinyDiva { llm, connector, .. } = tiny;
    let prompt = PromptEmbeds::from_ids(&llm, &PREFIX, &SUFFIX, false).unwrap();
    let (teacher, replies): (Vec<Tensor>, Vec<TeacherReply>) = TRANSCRIPTS
        .iter()
        .zip(REPLIES)
        .map(|(t, r)| teacher_reply(&llm, t, r))
        .unzip();
    let transcripts = TRANSCRIPTS
        .iter()
        .map(|t| llm.embed(&ids(t)).unwrap().squeeze(0).unwrap())
        .collect();
    let refs: Vec<&TeacherReply> = replies.iter().collect();
    let replies = ReplyBatch::new(&refs, &Device::Cpu).unwrap();
    (
        Case {
            teacher: Tensor::stack(&teacher, 0).unwrap(),
            llm,
            prompt,
            states,
            transcripts,
            replies,
        },
        connector,
    )
}

fn levers() -> LossWeights {
    LossWeights {
        contrastive: 0.5,
        contrastive_temperature: 0.1,
        response_kl: 1.0,
        response_kl_temperature: TAU,
        ..LossWeights::default()
    }
}

fn losses(c: &Case, conn: &Connector, w: LossWeights) -> student::Losses {
    let out = student::forward_with_reply(
        conn,
        &c.llm,
        &c.prompt,
        &c.states,
        Some(&c.replies.ids),
        Exec::Autograd,
    )
    .unwrap();
    student::losses_with_replies(
        &c.llm,
        &out,
        &c.teacher,
        &c.transcripts,
        Some(&c.replies),
        w,
    )
    .unwrap()
}

#[test]
fn response_kl_matches_ultravox_in_pytorch() {
    let fx = load_fixture("levers/expected.safetensors");
    let tau = fx["kl_tau"].to_vec1::<f64>().unwrap()[0];
    let s = Var::from_tensor(&fx["kl_student_logits"]).unwrap();
    let t = &fx["kl_teacher_logits"];
    // The full vocabulary cached: the truncated KL is the exact one.
    let logp = log_softmax(&(t / tau).unwrap()).unwrap();
    let vocab = logp.dim(1).unwrap();
    let (mut top_ids, mut top_logp) = (Vec::new(), Vec::new());
    for row in logp.to_vec2::<f64>().unwrap() {
        let (i, _) = top_k(&row.iter().map(|&x| x as f32).collect::<Vec<_>>(), vocab);
        top_logp.extend(i.iter().map(|&j| row[j as usize]));
        top_ids.extend(i);
    }
    let rows = logp.dim(0).unwrap();
    let top_ids = Tensor::from_vec(top_ids, (rows, vocab), &Device::Cpu).unwrap();
    let top_logp = Tensor::from_vec(top_logp, (rows, vocab), &Device::Cpu).unwrap();
    let kl = response_kl(s.as_tensor(), &top_ids, &top_logp, tau).unwrap();
    let want = fx["kl_loss"].to_vec1::<f64>().unwrap()[0];
    let got = kl.to_scalar::<f64>().unwrap();
    assert!(
        (got - want).abs() <= 1e-12 * want.abs().max(1.0),
        "{got} vs PyTorch {want}"
    );
    let g = kl.backward().unwrap();
    let d = max_diff(g.get(s.as_tensor()).unwrap(), &fx["kl_grad_student"]);
    assert!(d <= 1e-12, "gradient differs from PyTorch's by {d}");
}

#[test]
fn contrastive_loss_matches_pytorch_infonce() {
    let fx = load_fixture("levers/expected.safetensors");
    let tau = fx["con_tau"].to_vec1::<f64>().unwrap()[0];
    let s = Var::from_tensor(&fx["con_student"]).unwrap();
    let c = contrastive_loss(s.as_tensor(), &fx["con_teacher"], tau).unwrap();
    let d = max_diff(&c, &fx["con_loss"]);
    assert!(d <= 1e-12, "per-example loss differs from PyTorch's by {d}");
    let g = c.sum_all().unwrap().backward().unwrap();
    let d = max_diff(
        g.get(s.as_tensor()).unwrap(),
        &fx["con_grad_student_of_sum"],
    );
    assert!(d <= 1e-10, "gradient differs from PyTorch's by {d}");
}

#[test]
fn levers_total_loss_gradient_matches_finite_differences() {
    let (c, mut conn) = case();
    let vars = conn.make_trainable().unwrap();
    let w = levers();
    let l = losses(&c, &conn, w);
    let rkl = l
        .response_kl
        .as_ref()
        .expect("response KL is on")
        .to_scalar::<f64>()
        .unwrap();
    assert!(rkl > 0.0 && rkl.is_finite(), "{rkl}");
    assert!(l.contrastive.is_some());
    let grads = l.total.backward().unwrap();
    for (name, v) in &vars {
        if name == "connector.embed_positions.weight" {
            continue; // only rows 0..N are used
        }
        assert!(grads.get(v.as_tensor()).is_some(), "no gradient for {name}");
    }
    // Finite differences on the queries and on the projection bias: the
    // response KL and the contrastive term both reach every trainable part.
    for target in ["query_tokens", "projection.bias"] {
        let (_, q) = vars.iter().find(|(n, _)| n == target).unwrap();
        let g = grads
            .get(q.as_tensor())
            .unwrap()
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
        for idx in (0..base.len()).step_by(base.len() / 24 + 1) {
            let eps = 1e-6;
            let at = |d: f64| {
                let mut v = base.clone();
                v[idx] += d;
                q.set(&Tensor::from_vec(v, q.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                losses(&c, &conn, w).total.to_scalar::<f64>().unwrap()
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            num += (fd - g[idx]).powi(2);
            den += fd.powi(2);
        }
        q.set(&Tensor::from_vec(base, q.shape(), &Device::Cpu).unwrap())
            .unwrap();
        let e = (num / den).sqrt();
        eprintln!("{target}: levers' loss autograd vs finite differences rel L2 {e:.2e}");
        assert!(e <= 1e-5, "{target}: {e}");
    }
}

/// The response KL scores only real reply rows: the padding after the
/// shorter reply changes nothing, and it is what the same example alone gives.
#[test]
fn response_kl_ignores_the_padding_of_shorter_replies() {
    let (c, conn) = case();
    let w = LossWeights {
        response_kl: 1.0,
        response_kl_temperature: TAU,
        ..LossWeights::default()
    };
    let both = losses(&c, &conn, w)
        .response_kl
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    // Each example alone: the batch value is the mean over all 6 rows.
    let mut weighted = 0.0;
    for i in 0..2 {
        let (_, r) = teacher_reply(&c.llm, TRANSCRIPTS[i], REPLIES[i]);
        let one = ReplyBatch::new(&[&r], &Device::Cpu).unwrap();
        let out = student::forward_with_reply(
            &conn,
            &c.llm,
            &c.prompt,
            &c.states.narrow(0, i, 1).unwrap(),
            Some(&one.ids),
            Exec::Autograd,
        )
        .unwrap();
        let l = student::losses_with_replies(
            &c.llm,
            &out,
            &c.teacher.narrow(0, i, 1).unwrap(),
            &c.transcripts[i..i + 1],
            Some(&one),
            w,
        )
        .unwrap();
        weighted += l.response_kl.unwrap().to_scalar::<f64>().unwrap() * REPLIES[i].len() as f64;
    }
    let rows = (REPLIES[0].len() + REPLIES[1].len()) as f64;
    assert!(
        (both - weighted / rows).abs() < 1e-10,
        "{both} vs {}",
        weighted / rows
    );
}

#[test]
fn the_staged_schedule_starts_with_alignment_alone() {
    let cfg = TrainConfig {
        align_only_steps: 3,
        response_kl_weight: 2.0,
        ..TrainConfig::preset("tiny").unwrap()
    };
    let early = loss_weights(&cfg, 2);
    assert_eq!(
        (early.distill, early.align, early.response_kl, early.kl),
        (0.0, 1.0, 0.0, 0.0)
    );
    let late = loss_weights(&cfg, 3);
    assert_eq!(
        (late.distill, late.align, late.response_kl),
        (1.0, 1.0, 2.0)
    );
    // The alignment-only losses equal the full path's alignment term.
    let (c, conn) = case();
    let vt = conn.forward(&c.states, Exec::Autograd).unwrap();
    let a = student::align_only_losses(&vt, &c.transcripts, 1.0).unwrap();
    let full = losses(&c, &conn, LossWeights::default());
    assert!(max_diff(&a.align, &full.align) < 1e-12);
    assert!(
        (a.total.to_scalar::<f64>().unwrap()
            - a.align.mean_all().unwrap().to_scalar::<f64>().unwrap())
        .abs()
            < 1e-12
    );
    // The official recipe never enters the first stage.
    let paper = TrainConfig::preset("paper").unwrap();
    assert_eq!(loss_weights(&paper, 0).distill, 1.0);
}

#[test]
fn per_token_alignment_matches_pytorch_cross_entropy_over_distances() {
    let fx = load_fixture("levers/expected.safetensors");
    let tau = fx["ace_tau"].to_vec1::<f64>().unwrap()[0];
    let v = Var::from_tensor(&fx["ace_virtual"]).unwrap();
    let e = &fx["ace_table"];
    let ids = fx["ace_ids"].to_vec1::<u32>().unwrap();
    let table_t = e.t().unwrap().contiguous().unwrap();
    let half = (e.sqr().unwrap().sum(1).unwrap().unsqueeze(0).unwrap() * 0.5).unwrap();
    let l = diva_train::losses::align_ce_loss(v.as_tensor(), &ids, &table_t, &half, tau).unwrap();
    let want = fx["ace_loss"].to_vec1::<f64>().unwrap()[0];
    let got = l.to_scalar::<f64>().unwrap();
    assert!((got - want).abs() <= 1e-12, "{got} vs PyTorch {want}");
    let g = l.backward().unwrap();
    let d = max_diff(g.get(v.as_tensor()).unwrap(), &fx["ace_grad_virtual"]);
    assert!(d <= 1e-12, "gradient differs from PyTorch's by {d}");
}

/// Through the connector: the per-token target's gradient on the queries
/// matches finite differences, with the tiny LLM's own token table.
#[test]
fn per_token_alignment_gradient_reaches_the_connector() {
    let (c, mut conn) = case();
    let vars = conn.make_trainable().unwrap();
    let table = diva_train::virtual_transcript::NearestToken::new(&c.llm).unwrap();
    // f64 copies of the table (NearestToken keeps f32 for inference).
    let e = c.llm.embed_tokens.clone();
    let table_t = e.t().unwrap().contiguous().unwrap();
    let half = (e.sqr().unwrap().sum(1).unwrap().unsqueeze(0).unwrap() * 0.5).unwrap();
    assert_eq!(table.table_t.dims(), table_t.dims());
    let loss = |conn: &Connector| -> Tensor {
        let vt = conn.forward(&c.states, Exec::Autograd).unwrap();
        let per: Vec<Tensor> = TRANSCRIPTS
            .iter()
            .enumerate()
            .map(|(i, t)| {
                diva_train::losses::align_ce_loss(&vt.i(i).unwrap(), t, &table_t, &half, 1.0)
                    .unwrap()
            })
            .collect();
        Tensor::stack(&per, 0).unwrap().mean_all().unwrap()
    };
    let (_, q) = vars.iter().find(|(n, _)| n == "query_tokens").unwrap();
    let g = loss(&conn).backward().unwrap();
    let g = g
        .get(q.as_tensor())
        .unwrap()
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
    for idx in (0..base.len()).step_by(base.len() / 24 + 1) {
        let at = |d: f64| {
            let mut v = base.clone();
            v[idx] += d;
            q.set(&Tensor::from_vec(v, q.shape(), &Device::Cpu).unwrap())
                .unwrap();
            loss(&conn).to_scalar::<f64>().unwrap()
        };
        let fd = (at(1e-6) - at(-1e-6)) / 2e-6;
        num += (fd - g[idx]).powi(2);
        den += fd.powi(2);
    }
    q.set(&Tensor::from_vec(base, q.shape(), &Device::Cpu).unwrap())
        .unwrap();
    let e = (num / den).sqrt();
    assert!(
        e <= 1e-5,
        "per-token alignment: autograd vs finite differences rel L2 {e}"
    );
}
