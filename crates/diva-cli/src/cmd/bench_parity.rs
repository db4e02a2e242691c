//! `diva bench parity --device cuda --dtype bf16`: the DiVA parity fixture
//! (tests/fixtures/diva, from the official PyTorch logic) computed on a
//! device and dtype, and compared two ways:
//!
//! - with the same computation on the CPU in the same dtype (`--against
//!   cpu`, the default off the CPU): does the device compute the same
//!   function as the CPU path? This is the device check of the performance
//!   issue (relative L2 ≤ 1e-2);
//! - with the f32 PyTorch outputs stored in the fixture (`--against
//!   fixture`, the default on the CPU). In f32 the CPU path is within 1e-6.
//!   In bf16 rounding alone is about 1e-2 on this tiny random model: PyTorch's
//!   own bf16 lands at 0.80e-2 (eager attention) to 1.11e-2 (sdpa) on the
//!   logits, diva's CPU bf16 at 1.10e-2, so a bf16 run is held to the same-
//!   dtype CPU result, not to f32.
//!
//! Both comparisons are always reported when computed; `--against` picks the
//! one that decides the exit status.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, IndexOp, Tensor};
use diva_core::models::checkpoint::{self, DivaConfig};
use diva_core::models::llm::{load_llm, WeightMode};
use diva_core::models::whisper::WhisperWeights;
use diva_core::models::Exec;
use serde_json::{json, Map, Value};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  diva bench parity                            # f32 on the CPU against the PyTorch fixture
  diva bench parity --device cuda --dtype bf16 # bf16 on the GPU against the CPU's bf16")]
pub struct ParityArgs {
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Compute dtype of the whole pipeline.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: crate::common::Precision,
    /// The fixture directory (default: ./tests/fixtures/diva, else that of
    /// the checkout this binary was built from).
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// What decides pass/fail: the same computation on the CPU in the same
    /// dtype, or the fixture's f32 PyTorch outputs (default: cpu when
    /// --device is not cpu, else fixture).
    #[arg(long, value_enum)]
    against: Option<Against>,
    /// Fail when any relative L2 against the chosen reference exceeds this.
    #[arg(long, default_value_t = 1e-2)]
    max_rel_l2: f64,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Against {
    Cpu,
    Fixture,
}

/// The four checked outputs, in pipeline order, by their fixture names.
const OUTPUTS: [(&str, &str); 4] = [
    ("encoder", "encoder_out"),
    ("virtual_tokens", "virtual_tokens"),
    ("student_hidden", "student_hidden"),
    ("logits", "student_last_logits"),
];

fn rel_l2(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a
        .to_dtype(DType::F64)?
        .to_device(&candle_core::Device::Cpu)?;
    let b = b.to_dtype(DType::F64)?;
    let num = (&a - &b)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
    let den = b.sqr()?.sum_all()?.to_scalar::<f64>()?;
    Ok((num / den).sqrt())
}

/// The fixture's pipeline on `device` in `dtype`: encoder states, virtual
/// tokens, the student's final hidden states and its last-position logits.
fn compute(root: &Path, device: &Device, dtype: DType) -> Result<[Tensor; 4]> {
    let dir = root.join("checkpoint");
    let cfg = DivaConfig::read(&dir)?;
    let reference = |r: &str| {
        DivaConfig::local_reference(&dir, r).with_context(|| format!("fixture reference {r}"))
    };
    let whisper = WhisperWeights::load_dir(&reference(&cfg.reference_encoder)?)?;
    let llm = load_llm(
        &reference(&cfg.reference_decoder)?,
        WeightMode::Dense(dtype),
        device,
    )?;
    let connector = checkpoint::load_connector(&dir, &whisper.config, dtype, device)?;
    let mel = candle_core::safetensors::load(root.join("expected.safetensors"), &Device::Cpu)?
        .remove("mel")
        .context("the fixture's expected.safetensors has no `mel`")?;
    let ids = |k: &str| -> Result<Tensor> {
        let v: Vec<u32> = cfg
            .extra
            .get(k)
            .and_then(|v| v.as_array())
            .with_context(|| format!("fixture config.json has no `{k}` list"))?
            .iter()
            .map(|v| v.as_u64().unwrap_or(0) as u32)
            .collect();
        Ok(Tensor::new(v, device)?.unsqueeze(0)?)
    };
    let mel = mel.to_dtype(dtype)?.to_device(device)?;
    let states = whisper.encoder(dtype, device)?.forward(&mel)?;
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
    Ok([states, virt, h, logits])
}

/// `{<name>_rel_l2: …}` of `got` against `want`, with the worst value.
fn compare(
    got: &[Tensor; 4],
    want: &[Tensor; 4],
    prefix: &str,
) -> Result<(Map<String, Value>, f64)> {
    let mut report = Map::new();
    let mut worst = 0f64;
    for ((name, _), (g, w)) in OUTPUTS.iter().zip(got.iter().zip(want)) {
        let r = rel_l2(g, w)?;
        worst = worst.max(r);
        report.insert(format!("{prefix}{name}_rel_l2"), json!(r));
    }
    Ok((report, worst))
}

/// `tests/fixtures/diva` under the working directory (a checkout, or the
/// tree carried to a device machine), else in the checkout this binary was
/// built from.
fn default_fixture() -> Result<PathBuf> {
    let here = PathBuf::from("tests/fixtures/diva");
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/diva");
    [here, built]
        .into_iter()
        .find(|p| p.join("checkpoint").is_dir())
        .context(
            "no DiVA parity fixture in ./tests/fixtures/diva or in the checkout diva was built \
             from: run from a diva checkout or pass --fixture DIR",
        )
}

pub fn run(a: ParityArgs) -> Result<std::process::ExitCode> {
    let device = diva_core::device::parse_device(&a.device)?;
    let dtype: DType = a.dtype.into();
    let root = match a.fixture {
        Some(dir) => dir,
        None => default_fixture()?,
    };
    let on_cpu = matches!(device, Device::Cpu);
    let against = a.against.unwrap_or(if on_cpu {
        Against::Fixture
    } else {
        Against::Cpu
    });

    let got = compute(&root, &device, dtype)?;
    let expected_path = root.join("expected.safetensors");
    let mut fx = candle_core::safetensors::load(&expected_path, &Device::Cpu)?;
    let fixture: Vec<Tensor> = OUTPUTS
        .iter()
        .map(|(_, key)| {
            fx.remove(*key)
                .with_context(|| format!("{} has no `{key}`", expected_path.display()))
        })
        .collect::<Result<_>>()?;
    let fixture: [Tensor; 4] = fixture
        .try_into()
        .map_err(|_| anyhow::anyhow!("four fixture outputs"))?;

    let mut report = Map::new();
    report.insert("device".into(), json!(a.device));
    report.insert("dtype".into(), json!(format!("{dtype:?}")));
    report.insert(
        "against".into(),
        json!(format!("{against:?}").to_lowercase()),
    );
    let (vs_fixture, worst_fixture) = compare(&got, &fixture, "")?;
    report.extend(vs_fixture);
    // The same function on the CPU, same dtype, reported whenever the run is
    // elsewhere; on the CPU itself `--against cpu` recomputes it, which checks
    // that the pipeline is deterministic.
    let worst_cpu = if against == Against::Cpu || !on_cpu {
        let cpu = compute(&root, &Device::Cpu, dtype)?;
        let (vs_cpu, worst) = compare(&got, &cpu, "cpu_same_dtype_")?;
        report.extend(vs_cpu);
        Some(worst)
    } else {
        None
    };
    let worst = match against {
        Against::Cpu => worst_cpu.unwrap_or(worst_fixture),
        Against::Fixture => worst_fixture,
    };
    report.insert("worst_rel_l2".into(), json!(worst));
    report.insert("max_rel_l2".into(), json!(a.max_rel_l2));
    let report = Value::Object(report);
    eprintln!("{}", serde_json::to_string_pretty(&report)?);
    println!("{report}");
    Ok(if worst <= a.max_rel_l2 {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!(
            "FAIL: worst relative L2 against the {} reference {worst:.2e} > {:.0e}",
            format!("{against:?}").to_lowercase(),
            a.max_rel_l2
        );
        std::process::ExitCode::FAILURE
    })
}
