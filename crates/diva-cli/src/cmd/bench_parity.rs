//! `diva bench parity --device cuda --dtype bf16`: the DiVA parity fixture
//! (tests/fixtures/diva, from the official PyTorch logic) computed on a
//! device and dtype, compared with the f32 reference outputs. This is the
//! device check of the performance issue (bf16 bar: relative L2 ≤ 1e-2); on
//! CPU in f32 the test suite holds it to 1e-4.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, IndexOp, Tensor};
use diva_core::models::checkpoint::{self, DivaConfig};
use diva_core::models::llm::{load_llm, WeightMode};
use diva_core::models::whisper::WhisperWeights;
use diva_core::models::Exec;
use serde_json::json;

#[derive(clap::Args)]
pub struct ParityArgs {
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, value_enum, default_value = "f32")]
    dtype: crate::common::Precision,
    /// The fixture directory (default: tests/fixtures/diva of this checkout).
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Fail when any relative L2 exceeds this.
    #[arg(long, default_value_t = 1e-2)]
    max_rel_l2: f64,
}

fn rel_l2(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a
        .to_dtype(DType::F64)?
        .to_device(&candle_core::Device::Cpu)?;
    let b = b.to_dtype(DType::F64)?;
    let num = (&a - &b)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
    let den = b.sqr()?.sum_all()?.to_scalar::<f64>()?;
    Ok((num / den).sqrt())
}

pub fn run(a: ParityArgs) -> Result<std::process::ExitCode> {
    let device = diva_core::device::parse_device(&a.device)?;
    let dtype: DType = a.dtype.into();
    let root = a.fixture.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/diva")
    });
    let dir = root.join("checkpoint");
    let cfg = DivaConfig::read(&dir)?;
    let reference = |r: &str| {
        DivaConfig::local_reference(&dir, r).with_context(|| format!("fixture reference {r}"))
    };
    let whisper = WhisperWeights::load_dir(&reference(&cfg.reference_encoder)?)?;
    let llm = load_llm(
        &reference(&cfg.reference_decoder)?,
        WeightMode::Dense(dtype),
        &device,
    )?;
    let connector = checkpoint::load_connector(&dir, &whisper.config, dtype, &device)?;
    let fx = candle_core::safetensors::load(
        root.join("expected.safetensors"),
        &candle_core::Device::Cpu,
    )?;
    let ids = |k: &str| -> Result<Tensor> {
        let v: Vec<u32> = cfg.extra[k]
            .as_array()
            .context("fixture prompt ids")?
            .iter()
            .map(|v| v.as_u64().unwrap_or(0) as u32)
            .collect();
        Ok(Tensor::new(v, &device)?.unsqueeze(0)?)
    };
    let mel = fx["mel"].to_dtype(dtype)?.to_device(&device)?;
    let states = whisper.encoder(dtype, &device)?.forward(&mel)?;
    let virt = connector.forward(&states, Exec::Fused)?;
    let student = Tensor::cat(
        &[
            &llm.embed(&ids("prompt_prefix_ids")?)?,
            &virt.to_dtype(dtype)?,
            &llm.embed(&ids("prompt_suffix_ids")?)?,
        ],
        1,
    )?;
    let h = llm.forward_embeds(&student, None, None, Exec::Fused)?;
    let logits = llm.logits(&h.i((.., h.dim(1)? - 1))?)?;
    let report = json!({
        "device": a.device, "dtype": format!("{dtype:?}"),
        "encoder_rel_l2": rel_l2(&states, &fx["encoder_out"])?,
        "virtual_tokens_rel_l2": rel_l2(&virt, &fx["virtual_tokens"])?,
        "student_hidden_rel_l2": rel_l2(&h, &fx["student_hidden"])?,
        "logits_rel_l2": rel_l2(&logits, &fx["student_last_logits"])?,
    });
    eprintln!("{}", serde_json::to_string_pretty(&report)?);
    println!("{report}");
    let worst = [
        "encoder_rel_l2",
        "virtual_tokens_rel_l2",
        "student_hidden_rel_l2",
        "logits_rel_l2",
    ]
    .iter()
    .filter_map(|k| report[*k].as_f64())
    .fold(0.0, f64::max);
    Ok(if worst <= a.max_rel_l2 {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("FAIL: worst relative L2 {worst:.2e} > {:.0e}", a.max_rel_l2);
        std::process::ExitCode::FAILURE
    })
}
