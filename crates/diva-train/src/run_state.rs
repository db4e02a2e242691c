//! A training run on disk: step checkpoints that hold everything needed to
//! resume exactly (weights in the official layout, optimizer moments, step,
//! data position), written atomically and pruned to the last few.
//!
//! ```text
//! OUT/checkpoints/step-000100/  model.safetensors  config.json
//!                               optimizer.safetensors  trainer_state.json
//! OUT/model.safetensors, OUT/config.json   the latest weights (a DiVA model dir)
//! OUT/metrics.jsonl                        one JSON object per step / validation
//! ```
//! A checkpoint directory is assembled under a dot-prefixed temporary name and
//! renamed into place, so a run killed mid-save leaves the previous
//! checkpoint intact and never a half-written one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use diva_core::models::checkpoint::{self, DivaConfig};
use diva_core::models::connector::Connector;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data_order::DataPosition;
use crate::integrity;
use crate::optim::AdamW;

/// Counters and data position, next to the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    pub position: DataPosition,
    pub config: TrainConfig,
    /// Number of usable training examples; a changed dataset cannot resume.
    pub train_examples: usize,
}

pub fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

fn step_dir(out: &Path, step: usize) -> PathBuf {
    checkpoints_dir(out).join(format!("step-{step:06}"))
}

/// The DiVA config.json of a trained connector.
pub fn diva_config(cfg: &TrainConfig, step: usize) -> DivaConfig {
    let mut extra = serde_json::Map::new();
    extra.insert("model_type".into(), "diva".into());
    extra.insert("num_query_tokens".into(), cfg.num_queries.into());
    extra.insert(
        "diva_training".into(),
        serde_json::json!({ "step": step, "config": cfg }),
    );
    DivaConfig {
        reference_encoder: cfg.whisper.clone(),
        reference_decoder: cfg.llm.clone(),
        extra,
    }
}

/// Save a step checkpoint (atomically), refresh `OUT/model.safetensors`, and
/// keep only the newest `keep_last` step directories. A failure while writing
/// the new checkpoint (a full disk, say) removes its temporary directory and
/// leaves every earlier checkpoint as it was; the error names the directory
/// and, for a full disk, what to do.
pub fn save(
    out: &Path,
    connector: &Connector,
    token_table: Option<&Tensor>,
    optimizer: &AdamW,
    names: &[String],
    state: &TrainerState,
) -> Result<PathBuf> {
    let final_dir = step_dir(out, state.step);
    let tmp = checkpoints_dir(out).join(format!(".step-{:06}.tmp", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let written = write_step(&tmp, connector, token_table, optimizer, names, state);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        let kept = latest(out).map_or("no earlier checkpoint exists".into(), |d| {
            format!("the latest checkpoint, {}, is intact", d.display())
        });
        return Err(integrity::write_error(&final_dir, &e)).with_context(|| {
            format!("cannot save the checkpoint of step {} ({kept})", state.step)
        });
    }
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)?;
    }
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("cannot move checkpoint to {}", final_dir.display()))?;
    refresh(out, connector, token_table, state)?;
    Ok(final_dir)
}

/// The run directory itself is always the latest model, in the full official
/// layout like the step checkpoints (written atomically file by file); only
/// the newest `keep_last` step checkpoints are kept. Also run on resume, so a
/// run killed between a checkpoint and this refresh ends with the right model.
pub fn refresh(
    out: &Path,
    connector: &Connector,
    token_table: Option<&Tensor>,
    state: &TrainerState,
) -> Result<()> {
    let cfg = diva_config(&state.config, state.step);
    if let Err(e) = checkpoint::save(out, connector, &cfg, token_table) {
        // checkpoint::save's temporary file, which a failed write leaves.
        let _ = std::fs::remove_file(out.join(".model.safetensors.tmp"));
        return Err(integrity::write_error(
            &out.join("model.safetensors"),
            &e.into(),
        ));
    }
    prune(out, state.config.keep_last)
}

fn write_step(
    tmp: &Path,
    connector: &Connector,
    token_table: Option<&Tensor>,
    optimizer: &AdamW,
    names: &[String],
    state: &TrainerState,
) -> Result<()> {
    std::fs::create_dir_all(tmp)
        .with_context(|| format!("cannot create checkpoint directory {}", tmp.display()))?;
    let cfg = diva_config(&state.config, state.step);
    checkpoint::save(tmp, connector, &cfg, token_table)?;
    let mut moments = HashMap::new();
    for (name, (m, v)) in names.iter().zip(&optimizer.moments) {
        moments.insert(format!("m.{name}"), m.to_device(&Device::Cpu)?);
        moments.insert(format!("v.{name}"), v.to_device(&Device::Cpu)?);
    }
    moments.insert(
        "adam_step".into(),
        Tensor::new(&[optimizer.step as u32], &Device::Cpu)?,
    );
    candle_core::safetensors::save(&moments, tmp.join("optimizer.safetensors"))?;
    std::fs::write(
        tmp.join("trainer_state.json"),
        serde_json::to_string_pretty(state)?,
    )?;
    Ok(())
}

fn step_dirs(out: &Path) -> Vec<(usize, PathBuf)> {
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(checkpoints_dir(out))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    let step = name.strip_prefix("step-")?.parse().ok()?;
                    e.path()
                        .join("trainer_state.json")
                        .is_file()
                        .then(|| (step, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn prune(out: &Path, keep: usize) -> Result<()> {
    let dirs = step_dirs(out);
    for (_, d) in dirs.iter().take(dirs.len().saturating_sub(keep)) {
        std::fs::remove_dir_all(d)
            .with_context(|| format!("cannot remove old checkpoint {}", d.display()))?;
    }
    Ok(())
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(out: &Path) -> Option<PathBuf> {
    step_dirs(out).pop().map(|(_, d)| d)
}

/// Restore a checkpoint: connector weights are loaded into `vars` (by name),
/// optimizer moments into `optimizer`. Returns the saved trainer state.
pub fn restore(
    dir: &Path,
    vars: &[(String, Var)],
    optimizer: &mut AdamW,
    whisper: &diva_core::models::whisper::WhisperConfig,
    device: &Device,
) -> Result<TrainerState> {
    let state: TrainerState = serde_json::from_str(
        &std::fs::read_to_string(dir.join("trainer_state.json"))
            .with_context(|| format!("cannot read {}/trainer_state.json", dir.display()))?,
    )
    .with_context(|| format!("{}/trainer_state.json is corrupt", dir.display()))?;
    let mut saved = checkpoint::load_connector(dir, whisper, candle_core::DType::F32, device)?;
    let saved_params: HashMap<String, Tensor> = saved
        .params_mut()
        .into_iter()
        .map(|(n, t)| (n, t.clone()))
        .collect();
    for (name, var) in vars {
        let t = saved_params
            .get(name)
            .with_context(|| format!("checkpoint {} lacks `{name}`", dir.display()))?;
        if t.dims() != var.dims() {
            bail!(
                "checkpoint {}: `{name}` is {:?}, the model expects {:?}",
                dir.display(),
                t.dims(),
                var.dims()
            );
        }
        var.set(t)?;
    }
    let moments = candle_core::safetensors::load(dir.join("optimizer.safetensors"), device)
        .with_context(|| format!("{}/optimizer.safetensors is unreadable", dir.display()))?;
    for (i, (name, _)) in vars.iter().enumerate() {
        let get = |k: String| {
            moments
                .get(&k)
                .cloned()
                .with_context(|| format!("optimizer state lacks `{k}`"))
        };
        optimizer.moments[i] = (get(format!("m.{name}"))?, get(format!("v.{name}"))?);
    }
    optimizer.step = moments
        .get("adam_step")
        .context("optimizer state lacks `adam_step`")?
        .to_vec1::<u32>()?[0] as usize;
    Ok(state)
}
