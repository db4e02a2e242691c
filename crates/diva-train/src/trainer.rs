//! `diva train`: the DiVA recipe end to end.
//!
//! 1. Load the frozen Whisper and LLM; split the LLM's chat template.
//! 2. Prepare the data once: transcript ids, encoder states (cached in f16),
//!    teacher targets (cached); bad items are counted and skipped.
//! 3. Optimise the queries, connector and projection with AdamW (warmup +
//!    cosine, clipping, gradient accumulation), checkpointing every K steps
//!    and validating every V steps; a stop request (Ctrl-C) saves first.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use diva_core::models::connector::Connector;
use diva_core::models::Exec;
use serde_json::json;

use crate::config::TrainConfig;
use crate::data_order::{DataOrder, DataPosition};
use crate::optim::{accumulate, clip_grads, AdamW, AdamWParams, Schedule};
use crate::run_state::{self, TrainerState};
use crate::setup::Example;
use crate::student::{self, LossWeights};
use crate::validate::{self, Student, ValOptions, ValReport};

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

fn append_metrics(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    writeln!(f, "{value}")?;
    Ok(())
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
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create output directory {}", opts.out.display()))?;
    let resume_from = if opts.resume {
        Some(run_state::latest(&opts.out).with_context(|| {
            format!(
                "--resume: no checkpoint in {}",
                run_state::checkpoints_dir(&opts.out).display()
            )
        })?)
    } else {
        if run_state::latest(&opts.out).is_some() {
            bail!(
                "{} already holds a run's checkpoints: pass --resume to continue it, or choose another --out",
                opts.out.display()
            );
        }
        None
    };

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

    let frozen = &session.frozen;
    let mut connector = Connector::init(
        &frozen.whisper,
        cfg.num_queries,
        frozen.llm.hidden_size(),
        cfg.seed,
        DType::F32,
        &opts.device,
    )?;
    if cfg.projection_init == "lstsq" {
        crate::projection_init::least_squares(&mut connector, frozen)?;
    }
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
    optimizer.lr_scales = lr_scales(&names, &cfg);
    let token_table = frozen
        .whisper
        .tensors
        .get("decoder.embed_tokens.weight")
        .cloned();

    let mut start = 0;
    let mut position = DataPosition::default();
    if let Some(dir) = &resume_from {
        let state = run_state::restore(
            dir,
            &named,
            &mut optimizer,
            &frozen.whisper.config,
            &opts.device,
        )?;
        if let Some(m) = cfg.resume_mismatch(&state.config) {
            bail!(
                "cannot resume {}: the run was started with different {m}",
                dir.display()
            );
        }
        if state.train_examples != train_set.len() {
            bail!(
                "cannot resume {}: the run had {} training examples, the data now gives {}",
                dir.display(),
                state.train_examples,
                train_set.len()
            );
        }
        start = state.step;
        position = state.position;
        tracing::info!("resumed from {} at step {start}", dir.display());
    }

    let metrics_path = opts.out.join("metrics.jsonl");
    let schedule = Schedule {
        peak_lr: cfg.lr,
        warmup_steps: cfg.warmup_steps(),
        total_steps: cfg.steps,
    };
    let weights = LossWeights {
        distill: cfg.distill_weight,
        align: cfg.align_weight,
        kl: cfg.kl_weight,
        kl_temperature: cfg.kl_temperature,
        ..LossWeights::default()
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
    if start == 0 {
        last_val = validate_now(
            &connector,
            &mut session,
            val_set.as_deref(),
            &val_opts,
            &metrics_path,
            0,
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
        let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
        let (mut loss_sum, mut distill_sum, mut align_sum, mut kl_sum) = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..accum {
            let frozen = &session.frozen;
            let idx = order.next_batch(cfg.micro_batch);
            let batch: Vec<&Example> = idx.iter().map(|&i| &train_set[i]).collect();
            let states = Tensor::stack(
                &batch
                    .iter()
                    .map(|e| session.features.states(&e.item.audio))
                    .collect::<Result<Vec<_>>>()?,
                0,
            )?;
            let teacher = Tensor::stack(
                &batch.iter().map(|e| e.teacher.clone()).collect::<Vec<_>>(),
                0,
            )?;
            let transcripts = batch
                .iter()
                .map(|e| frozen.transcript_embeds(&e.ids))
                .collect::<Result<Vec<_>>>()?;
            let out = student::forward(
                &connector,
                &frozen.llm,
                &frozen.prompt,
                &states,
                Exec::Autograd,
            )?;
            let l = student::losses(&frozen.llm, &out, &teacher, &transcripts, weights)?;
            let g = (&l.total / accum as f64)?.backward()?;
            accumulate(&mut grads, &g, &vars)?;
            let mean = |t: &Tensor| -> Result<f64> { Ok(t.mean_all()?.to_scalar::<f32>()? as f64) };
            loss_sum += l.total.to_scalar::<f32>()? as f64;
            distill_sum += mean(&l.distill)?;
            align_sum += mean(&l.align)?;
            if let Some(k) = &l.kl {
                kl_sum += mean(k)?;
            }
        }
        let grad_norm = clip_grads(&mut grads, cfg.clip_grad_norm)?;
        optimizer.step_grads(&grads, lr)?;
        step += 1;
        samples += cfg.batch_size;
        let a = accum as f64;
        let loss = loss_sum / a;
        if !loss.is_finite() {
            bail!("loss became {loss} at step {step}: lower the learning rate (now {lr:.2e})");
        }
        let sps = samples as f64 / t_run.elapsed().as_secs_f64();
        let mut line = json!({
            "step": step, "lr": lr, "loss": loss, "distill": distill_sum / a,
            "align": align_sum / a, "grad_norm": grad_norm,
            "epoch": order.position.epoch, "samples_per_s": sps,
            "step_seconds": t_step.elapsed().as_secs_f64(),
        });
        if cfg.kl_weight > 0.0 {
            line["kl"] = json!(kl_sum / a);
        }
        append_metrics(&metrics_path, &line)?;
        bar.set_message(format!(
            "training | loss {loss:.3} (distill {:.3}, align {:.3}) | lr {lr:.2e} | {sps:.2} samples/s",
            distill_sum / a,
            align_sum / a
        ));
        bar.inc(1);
        if bar.is_hidden() && (step % 10 == 0 || step == start + 1) {
            // No terminal for the bar (nohup, CI): a log line instead.
            tracing::info!(
                "step {step}/{}: loss {loss:.3} (distill {:.3}, align {:.3}) lr {lr:.2e} {sps:.2} samples/s",
                cfg.steps,
                distill_sum / a,
                align_sum / a
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
            let dir = run_state::save(
                &opts.out,
                &connector,
                token_table.as_ref(),
                &optimizer,
                &names,
                &state,
            )?;
            tracing::info!("checkpoint {}", dir.display());
        }
        if (cfg.val_every > 0 && step % cfg.val_every == 0) || step == cfg.steps {
            bar.suspend(|| -> Result<()> {
                last_val = validate_now(
                    &connector,
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
