//! DiVA checkpoints in the official layout (WillHeld/DiVA-llama-3-v0-8b):
//! `model.safetensors` with `query_tokens` `[N, d_whisper]`,
//! `projection.weight` stored `[d_whisper, d_llm]` (the transpose of torch's
//! Linear), `projection.bias`, and `connector.<WhisperDecoder key>`; and a
//! `config.json` naming `reference_encoder` and `reference_decoder` (hub ids,
//! absolute paths, or paths relative to the checkpoint directory).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::connector::Connector;
use super::linear::Linear;
use super::whisper::{WhisperConfig, WhisperDecoder};
use crate::weights::safetensors_io;
use crate::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DivaConfig {
    pub reference_encoder: String,
    pub reference_decoder: String,
    /// Everything else in config.json, kept on a round trip.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl DivaConfig {
    pub fn read(dir: &Path) -> Result<Self> {
        let p = dir.join("config.json");
        let text = std::fs::read_to_string(&p)
            .map_err(|e| Error::model(&p, format!("cannot read: {e}")))?;
        Self::from_json(&text, &p)
    }

    /// Parse a checkpoint's `config.json` text; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| {
            Error::model(
                path,
                format!("not a DiVA config (needs reference_encoder and reference_decoder): {e}"),
            )
        })
    }

    /// A reference as a local path if it is one (absolute, or relative to
    /// the checkpoint directory); `None` means it is a hub id.
    pub fn local_reference(dir: &Path, reference: &str) -> Option<PathBuf> {
        let p = Path::new(reference);
        let candidate = if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        };
        candidate.exists().then_some(candidate)
    }

    /// The reference encoder's and decoder's local paths: a local reference as is, a
    /// fetched short name from the diva cache, a hub id through hf-hub (the Hugging Face
    /// cache first). The decoder path is a `.gguf` file or an HF directory.
    pub fn resolve_references(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        let encoder = match Self::local_reference(dir, &self.reference_encoder) {
            Some(p) => p,
            None => crate::weights::cache::resolve_whisper(&self.reference_encoder)?,
        };
        let decoder = match Self::local_reference(dir, &self.reference_decoder) {
            Some(p) => p,
            None => crate::weights::cache::resolve_llm(&self.reference_decoder)?,
        };
        Ok((encoder, decoder))
    }
}

/// Load the connector of a checkpoint. `whisper` gives the decoder's shape
/// (head count, FFN width) from the reference encoder's model.
pub fn load_connector(
    dir: &Path,
    whisper: &WhisperConfig,
    dtype: DType,
    device: &Device,
) -> Result<Connector> {
    let file = dir.join("model.safetensors");
    let tensors = safetensors_io::load_file(&file, device)?;
    let get = |k: &str| {
        tensors
            .get(k)
            .cloned()
            .ok_or_else(|| Error::model(&file, format!("missing `{k}`: not a DiVA checkpoint")))
    };
    let queries = get("query_tokens")?;
    let proj_w = get("projection.weight")?; // [d_whisper, d_llm]
    let proj_b = get("projection.bias")?;
    let connector: HashMap<String, Tensor> = tensors
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("connector.")
                .map(|s| (s.to_string(), v.clone()))
        })
        .collect();
    if connector.is_empty() {
        return Err(Error::model(
            &file,
            "no `connector.*` tensors: not a DiVA checkpoint",
        ));
    }
    let d = whisper.d_model;
    if queries.dim(1)? != d || proj_w.dim(0)? != d {
        return Err(Error::model(
            &file,
            format!(
                "query_tokens {:?} / projection.weight {:?} do not match the reference encoder's width {d}",
                queries.dims(),
                proj_w.dims()
            ),
        ));
    }
    let decoder = WhisperDecoder::load(
        VarBuilder::from_tensors(connector, dtype, device),
        whisper,
        false,
    )
    .map_err(|e| {
        Error::model(
            &file,
            format!("connector weights do not fit the reference Whisper decoder: {e}"),
        )
    })?;
    let to = |t: Tensor| t.to_dtype(dtype);
    Ok(Connector {
        queries: to(queries)?,
        decoder,
        projection: Linear::new(to(proj_w.t()?.contiguous()?)?, Some(to(proj_b)?)),
        encoder_frames: encoder_frames(dir)?,
    })
}

/// `encoder_frames` of a checkpoint's config.json (diva's encoder-state
/// cropping); `None` when absent, as in the official checkpoints.
pub fn encoder_frames(dir: &Path) -> Result<Option<usize>> {
    if !dir.join("config.json").is_file() {
        return Ok(None);
    }
    let cfg = DivaConfig::read(dir)?;
    match cfg.extra.get("encoder_frames") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(f) if f >= 1 => Ok(Some(f as usize)),
            _ => Err(Error::model(
                dir.join("config.json"),
                format!("encoder_frames must be a positive integer, got {v}"),
            )),
        },
    }
}

/// The official tensors of a connector. `token_table` is the Whisper
/// decoder's `embed_tokens.weight`: the official loader is a strict
/// `load_state_dict`, so full checkpoints must carry it although it is never
/// used in compute; compact ones (diva's own) may leave it out.
pub fn connector_tensors(
    c: &Connector,
    token_table: Option<&Tensor>,
) -> Result<HashMap<String, Tensor>> {
    let mut t = HashMap::new();
    let f32 = |x: &Tensor| {
        x.to_dtype(DType::F32)
            .and_then(|x| x.to_device(&Device::Cpu))
    };
    t.insert("query_tokens".to_string(), f32(&c.queries)?);
    t.insert(
        "projection.weight".to_string(),
        f32(&c.projection.weight.t()?.contiguous()?)?,
    );
    if let Some(b) = &c.projection.bias {
        t.insert("projection.bias".to_string(), f32(b)?);
    }
    let d = &c.decoder;
    t.insert(
        "connector.embed_positions.weight".into(),
        f32(&d.embed_positions)?,
    );
    t.insert(
        "connector.layer_norm.weight".into(),
        f32(&d.layer_norm.weight)?,
    );
    t.insert("connector.layer_norm.bias".into(), f32(&d.layer_norm.bias)?);
    if let Some(tt) = token_table {
        t.insert("connector.embed_tokens.weight".into(), f32(tt)?);
    }
    for (i, l) in d.layers.iter().enumerate() {
        let p = format!("connector.layers.{i}");
        for (name, a) in [
            ("self_attn", &l.self_attn),
            ("encoder_attn", &l.encoder_attn),
        ] {
            for (proj, lin) in [
                ("q_proj", &a.q_proj),
                ("k_proj", &a.k_proj),
                ("v_proj", &a.v_proj),
                ("out_proj", &a.out_proj),
            ] {
                t.insert(format!("{p}.{name}.{proj}.weight"), f32(&lin.weight)?);
                if let Some(b) = &lin.bias {
                    t.insert(format!("{p}.{name}.{proj}.bias"), f32(b)?);
                }
            }
        }
        for (name, ln) in [
            ("self_attn_layer_norm", &l.self_attn_layer_norm),
            ("encoder_attn_layer_norm", &l.encoder_attn_layer_norm),
            ("final_layer_norm", &l.final_layer_norm),
        ] {
            t.insert(format!("{p}.{name}.weight"), f32(&ln.weight)?);
            t.insert(format!("{p}.{name}.bias"), f32(&ln.bias)?);
        }
        for (name, lin) in [("fc1", &l.mlp.fc1), ("fc2", &l.mlp.fc2)] {
            t.insert(format!("{p}.{name}.weight"), f32(&lin.weight)?);
            if let Some(b) = &lin.bias {
                t.insert(format!("{p}.{name}.bias"), f32(b)?);
            }
        }
    }
    Ok(t)
}

/// Write `model.safetensors` + `config.json` into `dir` atomically: each file
/// goes to a temporary name first and is renamed into place, so an
/// interrupted save never leaves a half-written checkpoint.
pub fn save(
    dir: &Path,
    c: &Connector,
    config: &DivaConfig,
    token_table: Option<&Tensor>,
) -> Result<()> {
    save_as(dir, c, config, token_table, DType::F32)
}

/// [`save`] with tensors stored in `dtype` (f16 halves a shipped model).
pub fn save_as(
    dir: &Path,
    c: &Connector,
    config: &DivaConfig,
    token_table: Option<&Tensor>,
    dtype: DType,
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let tensors = connector_tensors(c, token_table)?
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_dtype(dtype)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    let tmp = dir.join(".model.safetensors.tmp");
    candle_core::safetensors::save(&tensors, &tmp)?;
    let cfg_tmp = dir.join(".config.json.tmp");
    // The connector's cropping is part of what the weights mean: written from
    // the connector itself, so config and weights cannot disagree.
    let mut config = config.clone();
    match c.encoder_frames {
        Some(f) => config.extra.insert("encoder_frames".into(), f.into()),
        None => config.extra.remove("encoder_frames"),
    };
    let json = serde_json::to_string_pretty(&config).map_err(|e| Error::Config(e.to_string()))?;
    std::fs::write(&cfg_tmp, json)
        .map_err(|e| Error::io(format!("cannot write {}", cfg_tmp.display()), e))?;
    std::fs::rename(&tmp, dir.join("model.safetensors"))
        .map_err(|e| Error::io("cannot move checkpoint into place", e))?;
    std::fs::rename(&cfg_tmp, dir.join("config.json"))
        .map_err(|e| Error::io("cannot move config into place", e))?;
    Ok(())
}
