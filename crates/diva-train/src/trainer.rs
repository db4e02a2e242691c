//! `diva train`: the DiVA recipe end to end.
//!
//! 1. Load the frozen Whisper and LLM; split the LLM's chat template.
//! 2. Prepare the data once: transcript ids, encoder states (cached in f16),
//!    teacher targets (cached), and with the response KL the teacher's
//!    replies (cached); bad items are counted and skipped.
//! 3. Optimise the queries, connector and projection with AdamW (warmup +
//!    cosine, clipping, gradient accumulation), checkpointing every K steps
//!    and validating every V steps; a stop request (Ctrl-C) saves first.
//!    The loop body is the six steps of `docs/training.md`; [`batch_losses`]
//!    holds steps 2–5.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, IndexOp, Tensor};
use diva_core::models::connector::Connector;
use diva_core::models::Exec;
use serde_json::json;

use crate::config::TrainConfig;
use crate::data_order::{DataOrder, DataPosition};
use crate::optim::{accumulate, clip_grads, AdamW, AdamWParams, Schedule};
use crate::response::{ReplyBatch, ReplyCache, ReplySpec, TeacherReply};
use crate::run_state::{self, TrainerState};
use crate::setup::Example;
use crate::student::{self, LossWeights};
use crate::validate::{self, Student, ValOptions, ValReport};
use crate::virtual_transcript::NearestToken;

pub struct TrainOptions {
    pub config: TrainConfig,
    pub train: PathBuf,
    pub val: Option<PathBuf>,
    pub out: PathBuf,
    /// Continue from the newest checkpoint in `out`.
    pub resume: bool,
    /// Shared encoder/teacher caches (default `$DIVA_HOME/cache`).
    pub cache_dir: Option<PathBuf>,
    /// Set (e.g. by Ctrl-C) to stop after the current step, saving first.
    pub stop: Arc<AtomicBool>,
    pub device: Device,
    /// Compute dtype of the frozen encoder and LLM; trainable weights and
    /// optimizer state stay f32 (master weights).
    pub dtype: DType,
}

#[derive(Debug)]
pub struct TrainSummary {
    pub steps: usize,
    pub stopped_early: bool,
    pub samples_per_second: f64,
    pub validation: Option<ValReport>,
    pub train_examples: usize,
    pub skipped: usize,
}

pub use crate::session::Session;

/// One line, written with a single `write` so that a run killed meanwhile
/// leaves the line whole or absent, never half of it.
fn append_metrics(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.write_all(format!("{value}\n").as_bytes())
        .map_err(|e| crate::integrity::write_error(path, &e.into()))?;
    Ok(())
}

/// On resume from the checkpoint of step `step`: `metrics.jsonl` as an
/// uninterrupted run would have it then (the records of later steps, which
/// the resumed run writes again, and a line cut short by a kill on an older
/// diva, are dropped). Returns whether it holds a validation record of `step`.
fn rewind_metrics(path: &Path, step: usize) -> Result<bool> {
    let Ok(body) = std::fs::read_to_string(path) else {
        return Ok(false);
    };
    let mut kept = String::with_capacity(body.len());
    let mut validated = false;
    for line in body.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let at = v.get("step").and_then(|s| s.as_u64());
        if at.is_some_and(|s| s > step as u64) {
            continue;
        }
        validated |= at == Some(step as u64) && v.get("val").is_some();
        kept.push_str(line);
    }
    if kept.len() != body.len() {
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, &kept)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| crate::integrity::write_error(path, &e.into()))?;
    }
    Ok(validated)
}

/// Learning-rate multipliers: decoder blocks get `decoder_lr_scale`; the
/// queries and the projection the base rate.
fn lr_scales(names: &[String], cfg: &TrainConfig) -> Vec<f64> {
    names
        .iter()
        .map(|n| {
            if n.starts_with("connector.") {
                cfg.decoder_lr_scale
            } else {
                1.0
            }
        })
        .collect()
}

pub fn train(opts: TrainOptions) -> Result<TrainSummary> {
    let cfg = opts.config.clone();
    cfg.validate()?;
    let resume_from = resume_point(&opts)?;

    // Set-up: frozen models, examples with their cached encoder states and
    // teacher targets, the teacher's replies when the response KL is on.
    let mut session = Session::open(
        &cfg.whisper,
        &cfg.llm,
        opts.cache_dir.as_deref(),
        cfg.cache_encoder,
        &opts.device,
        opts.dtype,
    )?;
    let share = cfg.max_unusable_share;
    let (train_set, skipped) =
        session.examples(&opts.train, cfg.num_queries, None, share, "train")?;
    let val_set = match &opts.val {
        Some(v) => Some(
            session
                .examples(v, cfg.num_queries, Some(cfg.val_limit), share, "val")?
                .0,
        ),
        None => None,
    };
    tracing::info!(
        "{} training examples ({skipped} skipped), {} validation",
        train_set.len(),
        val_set.as_ref().map_or(0, Vec::len)
    );
    let replies = (cfg.response_kl_weight > 0.0)
        .then(|| session.reply_cache(&train_set, reply_spec(&cfg)))
        .transpose()?;
    let token_table = (cfg.align_ce_weight > 0.0)
        .then(|| NearestToken::new(&session.frozen.llm))
        .transpose()?;

    let mut student = Trainable::new(&cfg, &session, &opts.device)?;
    let mut start = 0;
    let mut position = DataPosition::default();
    if let Some(dir) = &resume_from {
        (start, position) = student.restore(dir, &cfg, &session, train_set.len(), &opts.device)?;
        tracing::info!("resumed from {} at step {start}", dir.display());
        // A kill between saving this checkpoint and refreshing the run
        // directory's model (or pruning) is finished now.
        let state = TrainerState {
            step: start,
            position,
            config: cfg.clone(),
            train_examples: train_set.len(),
        };
        run_state::refresh(
            &opts.out,
            &student.connector,
            student.token_table.as_ref(),
            &state,
        )?;
    }

    let metrics_path = opts.out.join("metrics.jsonl");
    if resume_from.is_none() && metrics_path.exists() {
        // No checkpoint: the records of an attempt killed before its first one.
        tracing::warn!(
            "{}: starting over (no checkpoint to resume from)",
            metrics_path.display()
        );
        std::fs::remove_file(&metrics_path)
            .with_context(|| format!("cannot remove {}", metrics_path.display()))?;
    }
    let schedule = Schedule {
        peak_lr: cfg.lr,
        warmup_steps: cfg.warmup_steps(),
        total_steps: cfg.steps,
    };
    let val_opts = ValOptions {
        pool: cfg.retrieval_pool,
        reply_clips: cfg.val_reply_clips,
        replies: diva_core::generate::SamplingParams {
            max_tokens: cfg.max_new_tokens,
            ..Default::default()
        },
        batch: cfg.micro_batch,
    };
    let mut last_val = None;
    // A resumed run redoes the validation of its checkpoint's step if a kill
    // interrupted it (the checkpoint is saved first).
    let val_due = |step: usize| {
        step == 0 || step == cfg.steps || (cfg.val_every > 0 && step.is_multiple_of(cfg.val_every))
    };
    let validated = match &resume_from {
        Some(_) => rewind_metrics(&metrics_path, start)?,
        None => false,
    };
    if val_due(start) && !validated {
        last_val = validate_now(
            &student.connector,
            &mut session,
            val_set.as_deref(),
            &val_opts,
            &metrics_path,
            start,
        )?;
    }

    let mut order = DataOrder::new(train_set.len(), cfg.seed, position);
    let accum = cfg.accumulation();
    let bar = crate::progress::bar((cfg.steps - start) as u64, "training");
    let t_run = Instant::now();
    let mut samples = 0usize;
    let mut stopped_early = false;
    let mut step = start;
    while step < cfg.steps {
        let t_step = Instant::now();
        let lr = schedule.lr(step);
        let weights = loss_weights(&cfg, step);
        let mut grads: Vec<Option<Tensor>> = vec![None; student.vars.len()];
        let mut sums = LossSums::default();
        for _ in 0..accum {
            // Steps 1–5: a micro batch, its encoder states, the student, the losses.
            let idx = order.next_batch(cfg.micro_batch);
            let batch: Vec<&Example> = idx.iter().map(|&i| &train_set[i]).collect();
            let l = batch_losses(
                &student.connector,
                &session,
                &batch,
                replies.as_ref(),
                token_table.as_ref(),
                weights,
            )?;
            // Step 6a: backward, accumulated over the micro batches.
            let g = (&l.total / accum as f64)?.backward()?;
            accumulate(&mut grads, &g, &student.vars)?;
            sums.add(&l)?;
        }
        // Step 6b: clip, AdamW.
        let grad_norm = clip_grads(&mut grads, cfg.clip_grad_norm)?;
        student.optimizer.step_grads(&grads, lr)?;
        step += 1;
        samples += cfg.batch_size;

        let loss = sums.total / accum as f64;
        if !loss.is_finite() {
            bail!("loss became {loss} at step {step}: lower the learning rate (now {lr:.2e})");
        }
        let sps = samples as f64 / t_run.elapsed().as_secs_f64();
        let mut line = json!({
            "step": step, "lr": lr, "loss": loss, "grad_norm": grad_norm,
            "epoch": order.position.epoch, "samples_per_s": sps,
            "step_seconds": t_step.elapsed().as_secs_f64(),
        });
        sums.write_means(&mut line, accum);
        append_metrics(&metrics_path, &line)?;
        let summary = sums.summary(accum);
        bar.set_message(format!(
            "training | loss {loss:.3} ({summary}) | lr {lr:.2e} | {sps:.2} samples/s"
        ));
        bar.inc(1);
        if bar.is_hidden() && (step % 10 == 0 || step == start + 1) {
            // No terminal for the bar (nohup, CI): a log line instead.
            tracing::info!(
                "step {step}/{}: loss {loss:.3} ({summary}) lr {lr:.2e} {sps:.2} samples/s",
                cfg.steps
            );
        }

        let stop = opts.stop.load(Ordering::SeqCst);
        if step % cfg.checkpoint_every == 0 || step == cfg.steps || stop {
            let state = TrainerState {
                step,
                position: order.position,
                config: cfg.clone(),
                train_examples: train_set.len(),
            };
            let dir = student.save(&opts.out, &state)?;
            tracing::info!("checkpoint {}", dir.display());
        }
        if (cfg.val_every > 0 && step % cfg.val_every == 0) || step == cfg.steps {
            bar.suspend(|| -> Result<()> {
                last_val = validate_now(
                    &student.connector,
                    &mut session,
                    val_set.as_deref(),
                    &val_opts,
                    &metrics_path,
                    step,
                )?;
                Ok(())
            })?;
        }
        if stop && step < cfg.steps {
            stopped_early = true;
            bar.abandon_with_message(format!("stopped at step {step}; checkpoint saved"));
            break;
        }
    }
    bar.finish();
    Ok(TrainSummary {
        steps: step,
        stopped_early,
        samples_per_second: samples as f64 / t_run.elapsed().as_secs_f64().max(1e-9),
        validation: last_val,
        train_examples: train_set.len(),
        skipped,
    })
}

/// `--resume`: the newest checkpoint in `out` (an error if there is none);
/// otherwise `out` must not hold a run already.
fn resume_point(opts: &TrainOptions) -> Result<Option<PathBuf>> {
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create output directory {}", opts.out.display()))?;
    if opts.resume {
        return Ok(Some(run_state::latest(&opts.out).with_context(|| {
            format!(
                "--resume: no checkpoint in {}",
                run_state::checkpoints_dir(&opts.out).display()
            )
        })?));
    }
    if run_state::latest(&opts.out).is_some() {
        bail!(
            "{} already holds a run's checkpoints: pass --resume to continue it, or choose another --out",
            opts.out.display()
        );
    }
    Ok(None)
}

/// What trains: the connector (queries, decoder blocks, projection) and its
/// AdamW state.
struct Trainable {
    connector: Connector,
    named: Vec<(String, candle_core::Var)>,
    names: Vec<String>,
    vars: Vec<candle_core::Var>,
    optimizer: AdamW,
    /// Whisper's token table, saved with checkpoints (the official layout).
    token_table: Option<Tensor>,
}

impl Trainable {
    fn new(cfg: &TrainConfig, session: &Session, device: &Device) -> Result<Self> {
        let frozen = &session.frozen;
        let mut connector = Connector::init(
            &frozen.whisper,
            cfg.num_queries,
            frozen.llm.hidden_size(),
            cfg.seed,
            DType::F32,
            device,
        )?;
        if cfg.projection_init == "lstsq" {
            crate::projection_init::least_squares(&mut connector, frozen)?;
        }
        connector.encoder_frames = (cfg.encoder_frames > 0).then_some(cfg.encoder_frames);
        let named = connector.make_trainable()?;
        let names: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
        let vars: Vec<candle_core::Var> = named.iter().map(|(_, v)| v.clone()).collect();
        let mut optimizer = AdamW::new(
            vars.clone(),
            AdamWParams {
                weight_decay: cfg.weight_decay,
                ..AdamWParams::default()
            },
        )?;
        optimizer.lr_scales = lr_scales(&names, cfg);
        let token_table = frozen
            .whisper
            .tensors
            .get("decoder.embed_tokens.weight")
            .cloned();
        Ok(Self {
            connector,
            named,
            names,
            vars,
            optimizer,
            token_table,
        })
    }

    /// Weights and AdamW moments from checkpoint `dir`; the step and data
    /// position to continue from. Refuses a run whose shape-defining config
    /// or data changed.
    fn restore(
        &mut self,
        dir: &Path,
        cfg: &TrainConfig,
        session: &Session,
        train_examples: usize,
        device: &Device,
    ) -> Result<(usize, DataPosition)> {
        let state = run_state::restore(
            dir,
            &self.named,
            &mut self.optimizer,
            &session.frozen.whisper.config,
            device,
        )?;
        if let Some(m) = cfg.resume_mismatch(&state.config) {
            bail!(
                "cannot resume {}: the run was started with different {m}",
                dir.display()
            );
        }
        if state.train_examples != train_examples {
            bail!(
                "cannot resume {}: the run had {} training examples, the data now gives {train_examples}",
                dir.display(),
                state.train_examples
            );
        }
        Ok((state.step, state.position))
    }

    fn save(&self, out: &Path, state: &TrainerState) -> Result<PathBuf> {
        run_state::save(
            out,
            &self.connector,
            self.token_table.as_ref(),
            &self.optimizer,
            &self.names,
            state,
        )
    }
}

/// The loss weights of optimizer step `step` (0-based): alignment alone
/// during the first `align_only_steps`, the configured sum afterwards.
pub fn loss_weights(cfg: &TrainConfig, step: usize) -> LossWeights {
    if step < cfg.align_only_steps {
        // Both alignment targets need no LLM forward.
        return LossWeights {
            distill: 0.0,
            align: 1.0,
            align_ce: cfg.align_ce_weight,
            align_ce_temperature: cfg.align_ce_temperature,
            ..LossWeights::default()
        };
    }
    LossWeights {
        distill: cfg.distill_weight,
        align: cfg.align_weight,
        kl: cfg.kl_weight,
        kl_temperature: cfg.kl_temperature,
        contrastive: cfg.contrastive_weight,
        contrastive_temperature: cfg.contrastive_temperature,
        response_kl: cfg.response_kl_weight,
        response_kl_temperature: cfg.response_kl_temperature,
        align_ce: cfg.align_ce_weight,
        align_ce_temperature: cfg.align_ce_temperature,
    }
}

/// The reply-cache settings of a config.
pub fn reply_spec(cfg: &TrainConfig) -> ReplySpec {
    ReplySpec {
        max_tokens: cfg.response_tokens,
        top_k: cfg.response_top_k,
        temperature: cfg.response_kl_temperature,
    }
}

/// Steps 2–5 for one micro batch: encoder states (cached), the student
/// (teacher-forced on the cached replies when the response KL is on), and
/// the weighted losses. With only the alignment loss weighted, the LLM is
/// not run at all.
fn batch_losses(
    connector: &Connector,
    session: &Session,
    batch: &[&Example],
    replies: Option<&ReplyCache>,
    token_table: Option<&NearestToken>,
    w: LossWeights,
) -> Result<student::Losses> {
    let (l, virtual_tokens) = student_losses(connector, session, batch, replies, w)?;
    match token_table.filter(|_| w.align_ce > 0.0) {
        Some(table) => with_align_ce(l, &virtual_tokens, batch, table, w),
        None => Ok(l),
    }
}

/// The per-token alignment term, added to the losses (per example `[b]`).
fn with_align_ce(
    mut l: student::Losses,
    virtual_tokens: &Tensor,
    batch: &[&Example],
    table: &NearestToken,
    w: LossWeights,
) -> Result<student::Losses> {
    let ce = batch
        .iter()
        .enumerate()
        .map(|(i, e)| {
            crate::losses::align_ce_loss(
                &virtual_tokens.i(i)?,
                &e.ids,
                &table.table_t,
                &table.half_sq_norms,
                w.align_ce_temperature,
            )
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let ce = Tensor::stack(&ce, 0)?;
    l.total = (&l.total + (ce.mean_all()? * w.align_ce)?)?;
    l.align_ce = Some(ce);
    Ok(l)
}

/// The student's losses and its virtual tokens `[b, N, d]`.
fn student_losses(
    connector: &Connector,
    session: &Session,
    batch: &[&Example],
    replies: Option<&ReplyCache>,
    w: LossWeights,
) -> Result<(student::Losses, Tensor)> {
    let frozen = &session.frozen;
    let states = Tensor::stack(
        &batch
            .iter()
            .map(|e| session.features.states(&e.item.audio))
            .collect::<Result<Vec<_>>>()?,
        0,
    )?;
    let transcripts = batch
        .iter()
        .map(|e| frozen.transcript_embeds(&e.ids))
        .collect::<Result<Vec<_>>>()?;
    if w.distill == 0.0 && w.kl == 0.0 && w.contrastive == 0.0 && w.response_kl == 0.0 {
        let virtual_tokens = connector.forward(&states, Exec::Autograd)?;
        let l = student::align_only_losses(&virtual_tokens, &transcripts, w.align)?;
        return Ok((l, virtual_tokens));
    }
    let teacher = Tensor::stack(
        &batch.iter().map(|e| e.teacher.clone()).collect::<Vec<_>>(),
        0,
    )?;
    let reply_batch = match replies.filter(|_| w.response_kl > 0.0) {
        Some(cache) => {
            let r: Vec<&TeacherReply> = batch
                .iter()
                .map(|e| {
                    cache
                        .get(&e.item.text)
                        .with_context(|| format!("no cached teacher reply for {:?}", e.item.text))
                })
                .collect::<Result<_>>()?;
            Some(ReplyBatch::new(&r, &frozen.device)?)
        }
        None => None,
    };
    let out = student::forward_with_reply(
        connector,
        &frozen.llm,
        &frozen.prompt,
        &states,
        reply_batch.as_ref().map(|r| &r.ids),
        Exec::Autograd,
    )?;
    let l = student::losses_with_replies(
        &frozen.llm,
        &out,
        &teacher,
        &transcripts,
        reply_batch.as_ref(),
        w,
    )?;
    Ok((l, out.virtual_tokens))
}

/// Loss sums over a step's micro batches (batch means each), for the
/// metrics line and the progress message.
#[derive(Default)]
struct LossSums {
    total: f64,
    distill: f64,
    align: f64,
    kl: Option<f64>,
    contrastive: Option<f64>,
    response_kl: Option<f64>,
    align_ce: Option<f64>,
}

impl LossSums {
    fn add(&mut self, l: &student::Losses) -> Result<()> {
        let mean = |t: &Tensor| -> Result<f64> { Ok(t.mean_all()?.to_scalar::<f32>()? as f64) };
        self.total += l.total.to_scalar::<f32>()? as f64;
        self.distill += mean(&l.distill)?;
        self.align += mean(&l.align)?;
        for (slot, t) in [
            (&mut self.kl, &l.kl),
            (&mut self.contrastive, &l.contrastive),
            (&mut self.response_kl, &l.response_kl),
            (&mut self.align_ce, &l.align_ce),
        ] {
            if let Some(t) = t {
                *slot.get_or_insert(0.0) += mean(t)?;
            }
        }
        Ok(())
    }

    fn write_means(&self, line: &mut serde_json::Value, accum: usize) {
        let a = accum as f64;
        line["distill"] = json!(self.distill / a);
        line["align"] = json!(self.align / a);
        for (k, v) in [
            ("kl", self.kl),
            ("contrastive", self.contrastive),
            ("response_kl", self.response_kl),
            ("align_ce", self.align_ce),
        ] {
            if let Some(v) = v {
                line[k] = json!(v / a);
            }
        }
    }

    fn summary(&self, accum: usize) -> String {
        let a = accum as f64;
        let mut s = format!(
            "distill {:.3}, align {:.3}",
            self.distill / a,
            self.align / a
        );
        // Every lever's term, in the order `write_means` logs them.
        for (name, v) in [
            ("first-token KL", self.kl),
            ("contrastive", self.contrastive),
            ("response KL", self.response_kl),
            ("align CE", self.align_ce),
        ] {
            if let Some(v) = v {
                s.push_str(&format!(", {name} {:.3}", v / a));
            }
        }
        s
    }
}

fn validate_now(
    connector: &Connector,
    session: &mut Session,
    val_set: Option<&[Example]>,
    opts: &ValOptions,
    metrics_path: &Path,
    step: usize,
) -> Result<Option<ValReport>> {
    let Some(v) = val_set.filter(|v| v.len() >= 2) else {
        return Ok(None);
    };
    let r = validate::evaluate(
        &session.frozen,
        &session.features,
        &Student::Connector(connector),
        v,
        opts,
        &mut session.replies,
    )?;
    tracing::info!("val @ step {step}: {}", r.summary());
    append_metrics(metrics_path, &json!({ "step": step, "val": r }))?;
    Ok(Some(r))
}
