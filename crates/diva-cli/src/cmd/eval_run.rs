//! `diva eval run`: a task's manifest answered by a DiVA model and the
//! systems it is compared with, scored, bootstrapped and reported. Argument
//! handling, model loading and the progress bar; the rest is
//! `diva_eval::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use diva_core::generate::{Assistant, ConnectorSource};
use diva_core::weights::cache;
use diva_eval::bootstrap::BootstrapConfig;
use diva_eval::run::{self, AssistantSystem, Kind, Progress, Respond, RunSpec, SystemInfo};
use diva_eval::tasks::{ScorerOptions, Task};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cmd::chat::ModelArgs;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum TaskArg {
    /// Spoken questions: PEDANTS, exact match, token F1 against `answers`.
    SpokenQa,
    /// Emotion / sarcasm / humor: weighted F1 and accuracy against `label`.
    Classify,
    /// Speech translation: BLEU and chrF against `translation`.
    Translate,
    /// Prompted transcription: WER against `text`.
    Asr,
    /// VoiceBench: its subsets' official scoring (multiple choice, IFEval,
    /// refusals; an LLM judge for the open-ended ones).
    Voicebench,
    /// A student against its own teacher: retrieval@1, first-token
    /// agreement, reply F1, distillation L2 (`diva eval-distill`'s metrics).
    Distill,
}

impl From<TaskArg> for Task {
    fn from(t: TaskArg) -> Self {
        match t {
            TaskArg::SpokenQa => Task::SpokenQa,
            TaskArg::Classify => Task::Classify,
            TaskArg::Translate => Task::Translate,
            TaskArg::Asr => Task::Asr,
            TaskArg::Voicebench => Task::VoiceBench,
            TaskArg::Distill => Task::Distill,
        }
    }
}

#[derive(clap::Args)]
#[command(after_help = "Examples:
  diva eval run --task spoken-qa --data qa/manifest.jsonl --cascade --teacher --out runs/eval-qa
  diva eval run --task classify --data meld/manifest.jsonl --model runs/tiny --against models/diva-tiny --out runs/eval-meld
  diva eval run --task translate --data covost-de/manifest.jsonl --target-lang de --cascade --limit 200 --out runs/eval-de
  diva eval run --task asr --data corpus/val.jsonl --cascade --max-tokens 64 --out runs/eval-asr
  diva eval run --task spoken-qa --data ~/.cache/diva/corpora/spoken-qa-v1/manifest.jsonl \\
      --answers data/spoken-qa/questions.jsonl --cascade --teacher --out runs/sqa-v1
  diva eval run --task distill --data corpus/val.jsonl --model runs/tiny --against models/diva-tiny --out runs/distill
  diva eval run --task voicebench --data vb/manifest.jsonl --cascade \\
      --judge-url https://api.openai.com --judge-model gpt-4o-mini --out runs/vb

The manifest is JSONL: `id`, `audio` and what the task scores against
(`answers`; `label`; `translation` + `target_lang`; `text`; VoiceBench: `subset`
and its fields, as `diva eval import --format voicebench` writes them), `text`
also being the reference transcript the teacher reads. VoiceBench's open-ended
subsets need --judge-url; without it they are listed as unscored. A rerun into the same --out reuses
finished replies (DIR/items.jsonl) and writes results.json, report.md and
scores.png again.")]
pub struct Args {
    /// The task.
    #[arg(long, value_enum)]
    task: TaskArg,
    /// JSONL manifest of the items.
    #[arg(long)]
    data: PathBuf,
    /// Output directory: items.jsonl (finished replies), results.json,
    /// report.md, scores.png.
    #[arg(long)]
    out: PathBuf,
    /// Compare with another DiVA model directory (same flags otherwise).
    #[arg(long, value_name = "MODEL")]
    against: Option<PathBuf>,
    /// Also the teacher: the LLM reading the manifest's reference transcript
    /// (`text`).
    #[arg(long)]
    teacher: bool,
    /// The task's prompt file (default: the shipped data/eval/prompts/TASK.toml).
    #[arg(long)]
    prompt: Option<PathBuf>,
    /// Spoken QA: take the items' answers from this questions file (JSONL
    /// with `question`, `answers`), joined on the item's `text`: for a
    /// `diva corpus synth` manifest of data/spoken-qa/questions.jsonl.
    #[arg(long)]
    answers: Option<PathBuf>,
    /// Classify: the label set, comma-separated (default: the manifest's).
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<String>>,
    /// Translate: the target language code (default: the items' `lang`).
    #[arg(long)]
    target_lang: Option<String>,
    /// Spoken QA: a PEDANT model in diva's format (tools/reference/
    /// make_eval_metric_fixtures.py --export-pedant); default
    /// $DIVA_HOME/eval/pedant.safetensors if present, else PEDANTS' rule alone.
    #[arg(long)]
    pedant_model: Option<PathBuf>,
    /// Maximum number of new tokens per reply (decoding is greedy).
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Use only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    /// CPU threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Bootstrap resamples for the intervals and p-values.
    #[arg(long, default_value_t = 10_000)]
    rounds: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Items shown reply by reply in report.md.
    #[arg(long, default_value_t = 10)]
    examples: usize,
    /// VoiceBench: the judge, an OpenAI-compatible endpoint (a base URL or
    /// its /v1/chat/completions) for the open-ended subsets and sd-qa.
    #[arg(long, value_name = "URL")]
    judge_url: Option<String>,
    /// VoiceBench: the judge model (VoiceBench uses gpt-4o-mini).
    #[arg(long, default_value = "gpt-4o-mini", requires = "judge_url")]
    judge_model: String,
    /// VoiceBench: the environment variable holding the judge's API key
    /// (unset or empty: no Authorization header, as for a local server).
    #[arg(long, value_name = "VAR", default_value = "OPENAI_API_KEY")]
    judge_key_env: String,
    /// VoiceBench: seconds to wait for one judge answer.
    #[arg(long, default_value_t = 120)]
    judge_timeout: u64,
    /// VoiceBench: retries of a judge request after a connection error, a
    /// 429 or a 5xx (pausing 2 s, 4 s, …).
    #[arg(long, default_value_t = 3)]
    judge_retries: u32,
    /// VoiceBench: answers per question (the request's `n`; VoiceBench: 3).
    #[arg(long, default_value_t = 3)]
    judge_samples: u32,
    /// Distill: retrieval@1 pool size.
    #[arg(long, default_value_t = 100)]
    pool: usize,
    /// Distill: clips whose replies are compared for reply F1 (0 skips it).
    #[arg(long, default_value_t = 100)]
    reply_clips: usize,
    #[command(flatten)]
    models: ModelArgs,
}

fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = "diva".into();
    }
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn dir_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.models.cascade && a.against.is_some() {
        // Both are fine together, but say what runs.
        tracing::info!("systems: the model, --against and the cascade");
    }
    if a.rounds == 0 {
        bail!("--rounds 0: the bootstrap needs at least 1 resample (10,000 is usual)");
    }
    crate::common::set_threads(a.threads)?;
    if let Some(m) = &a.against {
        if !m.is_dir() {
            bail!(
                "--against {}: not a directory (a DiVA model directory)",
                m.display()
            );
        }
    }
    let pedant_model = a.pedant_model.clone().or_else(|| {
        let p = cache::diva_home().join("eval/pedant.safetensors");
        p.is_file().then_some(p)
    });
    if let Some(p) = &a.pedant_model {
        if !p.is_file() {
            bail!(
                "--pedant-model {}: file not found (export one with \
                 tools/reference/make_eval_metric_fixtures.py --export-pedant)",
                p.display()
            );
        }
    }
    let task: Task = a.task.into();
    if a.judge_url.is_some() && task != Task::VoiceBench {
        bail!("--judge-url: only --task voicebench asks a judge");
    }
    if a.judge_samples == 0 {
        bail!("--judge-samples 0: ask for at least 1 answer per question (VoiceBench: 3)");
    }
    let judge = match &a.judge_url {
        Some(url) => {
            let key = std::env::var(&a.judge_key_env)
                .ok()
                .filter(|k| !k.trim().is_empty());
            if key.is_none() {
                tracing::warn!(
                    "${} is unset: asking the judge without an API key (fine for a local server)",
                    a.judge_key_env
                );
            }
            Some(diva_eval::judge::HttpJudge::new(
                diva_eval::judge::JudgeConfig {
                    url: url.clone(),
                    model: a.judge_model.clone(),
                    key,
                    timeout: std::time::Duration::from_secs(a.judge_timeout.max(1)),
                    retries: a.judge_retries,
                    samples: a.judge_samples,
                },
            )?)
        }
        None => None,
    };
    // Everything that can be refused is refused before a model loads.
    let prepared = run::prepare(RunSpec {
        task,
        data: a.data.clone(),
        out: a.out.clone(),
        prompt: a.prompt.clone(),
        answers: a.answers.clone(),
        scorer: ScorerOptions {
            labels: a.labels.clone(),
            target_lang: a.target_lang.clone(),
            pedant_model,
        },
        limit: a.limit,
        max_tokens: a.max_tokens,
        bootstrap: BootstrapConfig {
            resamples: a.rounds,
            seed: a.seed,
            confidence: 0.95,
        },
        command: command_line(),
        examples: a.examples,
        judge: a
            .judge_url
            .as_ref()
            .map(|u| (diva_eval::judge::completions_url(u), a.judge_model.clone())),
    })?;
    if task == Task::VoiceBench && judge.is_none() {
        if let Some(i) = prepared
            .items
            .iter()
            .find(|i| prepared.scorer.needs_judge(i))
        {
            tracing::warn!(
                "item `{}` (subset {}) and the others of the open-ended subsets and sd-qa need a \
                 judge: without --judge-url their judged metrics are left out and the report \
                 lists them as unscored",
                i.id,
                i.subset.as_deref().unwrap_or_default()
            );
        }
    }
    if task == Task::Distill {
        return run_distill(&a, &prepared);
    }
    if a.teacher {
        if let Some(i) = prepared
            .items
            .iter()
            .find(|i| i.text.as_deref().is_none_or(|t| t.trim().is_empty()))
        {
            bail!(
                "--teacher reads each item's reference transcript, but item `{}` of {} has no \
                 `text`: add it, or drop --teacher",
                i.id,
                a.data.display()
            );
        }
    }

    // The model under evaluation; its session also serves the cascade and
    // the teacher (the same Whisper and LLM).
    let mut student_args = a.models.clone();
    student_args.cascade = false;
    let opts = crate::cmd::chat::options(&student_args, a.models.cascade, None)?;
    let student = Assistant::load(&opts)?;
    let llm_name = opts.llm.display().to_string();
    let whisper_name = opts.whisper.display().to_string();
    let (name, what, key) = match &opts.connector {
        ConnectorSource::Checkpoint(d) => (
            "diva".to_string(),
            format!("DiVA model {} (audio → connector → LLM)", d.display()),
            format!("model={}", d.display()),
        ),
        ConnectorSource::Untrained { num_queries } => (
            "untrained".to_string(),
            format!("untrained connector, {num_queries} queries"),
            format!("untrained={num_queries}"),
        ),
        ConnectorSource::Cascade => unreachable!("the student is never the cascade"),
    };
    let params = run::greedy(a.max_tokens);
    let mut infos = vec![SystemInfo {
        name,
        id: format!("student|{key}|whisper={whisper_name}|llm={llm_name}"),
        kind: Kind::Student,
        description: what,
    }];
    let mut runners: Vec<AssistantSystem> = vec![AssistantSystem {
        assistant: &student,
        kind: Kind::Student,
        params: params.clone(),
    }];
    let other = match &a.against {
        Some(m) => {
            let mut o = a.models.clone();
            o.model = Some(m.clone());
            o.cascade = false;
            o.untrained = false;
            let oo = crate::cmd::chat::options(&o, false, None)?;
            Some((Assistant::load(&oo)?, oo, m.clone()))
        }
        None => None,
    };
    if let Some((s, oo, m)) = &other {
        let mut name = dir_name(m);
        if name == infos[0].name || name == "cascade" || name == "teacher" {
            name = format!("{name}-2");
        }
        infos.push(SystemInfo {
            name,
            id: format!(
                "student|model={}|whisper={}|llm={}",
                m.display(),
                oo.whisper.display(),
                oo.llm.display()
            ),
            kind: Kind::Student,
            description: format!("DiVA model {} (--against)", m.display()),
        });
        runners.push(AssistantSystem {
            assistant: s,
            kind: Kind::Student,
            params: params.clone(),
        });
    }
    if a.models.cascade {
        infos.push(SystemInfo {
            name: "cascade".into(),
            id: format!("cascade|whisper={whisper_name}|llm={llm_name}"),
            kind: Kind::Cascade,
            description: format!(
                "cascade: Whisper ({}) transcript → LLM ({})",
                dir_name(&opts.whisper),
                dir_name(&opts.llm)
            ),
        });
        runners.push(AssistantSystem {
            assistant: &student,
            kind: Kind::Cascade,
            params: params.clone(),
        });
    }
    if a.teacher {
        infos.push(SystemInfo {
            name: "teacher".into(),
            id: format!("teacher|llm={llm_name}"),
            kind: Kind::Teacher,
            description: format!(
                "teacher: LLM ({}) reading the reference transcript",
                dir_name(&opts.llm)
            ),
        });
        runners.push(AssistantSystem {
            assistant: &student,
            kind: Kind::Teacher,
            params: params.clone(),
        });
    }
    let systems: Vec<(SystemInfo, &dyn Respond)> = infos
        .iter()
        .cloned()
        .zip(runners.iter().map(|r| r as &dyn Respond))
        .collect();

    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} {elapsed_precise} eta {eta} {msg}",
    )?);
    let judge_dyn = judge.as_ref().map(|j| j as &dyn diva_eval::judge::Judge);
    let outcome = run::execute(&prepared, &systems, judge_dyn, &mut |p| match p {
        Progress::Start { total, reused } => {
            bar.set_length(total as u64);
            bar.set_position(reused as u64);
            bar.reset_eta();
            if reused > 0 {
                bar.println(format!(
                    "{reused} of {total} replies reused from items.jsonl"
                ));
            }
        }
        Progress::Item { system, item } => {
            bar.set_message(format!("{system}: {item}"));
            bar.inc(1);
        }
    })?;
    bar.finish_and_clear();
    let r = &outcome.results;
    eprintln!(
        "{} items scored ({} left out), {} replies generated, {} reused, {:.1} s",
        r.scored_items,
        r.failed.len(),
        r.generated,
        r.reused,
        r.elapsed_s
    );
    crate::outln!("{}", diva_eval::report::metrics_table(r))?;
    for c in &r.comparisons {
        crate::outln!(
            "{} − {} on {}: {:+.2} [95% CI {:+.2}, {:+.2}], p = {:.4}",
            c.system,
            c.against,
            c.metric,
            c.diff,
            c.lo,
            c.hi,
            c.p_value
        )?;
    }
    crate::outln!(
        "wrote {}, {}, {}",
        outcome.results_json.display(),
        outcome.report_md.display(),
        outcome.chart.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `--task distill`: diva-train's validation statistics clip by clip for the
/// model, `--against` and `--cascade` (the same teacher, the same clips),
/// bootstrapped and reported by diva-eval. Each system's statistics are
/// cached in items.jsonl (the clip's numbers as `reply`), so a rerun computes
/// only the systems it has not finished.
fn run_distill(a: &Args, p: &run::Prepared) -> Result<ExitCode> {
    use candle_core::{DType, Device};
    use diva_core::models::checkpoint::{self, DivaConfig};
    use diva_train::validate::{evaluate, Student, ValOptions};
    if a.teacher {
        bail!("--teacher: distill compares students with their teacher already; drop --teacher");
    }
    let t0 = std::time::Instant::now();
    let model = match (&a.models.model, a.models.untrained) {
        (Some(m), _) => m.clone(),
        (None, false) => crate::cmd::models::default_model().ok_or_else(|| {
            anyhow::anyhow!("no shipped model and $DIVA_MODEL is unset: pass --model DIR")
        })?,
        (None, true) => bail!("--task distill scores trained models: pass --model DIR"),
    };
    let refs = |dir: &std::path::Path| -> Result<(String, String)> {
        let cfg = DivaConfig::read(dir)?;
        let r = |x: &str| {
            DivaConfig::local_reference(dir, x)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| x.to_string())
        };
        Ok((r(&cfg.reference_encoder), r(&cfg.reference_decoder)))
    };
    let (whisper, llm) = refs(&model)?;
    let mut models = vec![(dir_name(&model), model.clone())];
    if let Some(o) = &a.against {
        if refs(o)? != (whisper.clone(), llm.clone()) {
            bail!(
                "--against {}: another Whisper or LLM than {}: distillation compares students of \
                 one teacher",
                o.display(),
                model.display()
            );
        }
        let mut n = dir_name(o);
        if n == models[0].0 {
            n = format!("{n}-2");
        }
        models.push((n, o.clone()));
    }
    let device = Device::Cpu;
    let mut session =
        diva_train::session::Session::open(&whisper, &llm, None, true, &device, DType::F32)?;
    let (examples, skipped) = session.examples(
        &a.data,
        usize::MAX,
        a.limit,
        diva_train::config::DEFAULT_MAX_UNUSABLE_SHARE,
        "eval",
    )?;
    let ids: Vec<String> = examples
        .iter()
        .map(|e| {
            e.item
                .id
                .clone()
                .unwrap_or_else(|| e.item.audio.display().to_string())
        })
        .collect();
    let opts = ValOptions {
        pool: a.pool,
        reply_clips: a.reply_clips,
        replies: run::greedy(32.min(a.max_tokens)),
        batch: 8,
    };
    let mut infos = Vec::new();
    for (name, dir) in &models {
        infos.push(SystemInfo {
            name: name.clone(),
            id: format!(
                "distill|model={}|pool={}|replies={}",
                dir.display(),
                a.pool,
                a.reply_clips
            ),
            kind: Kind::Student,
            description: format!("DiVA model {}", dir.display()),
        });
    }
    if a.models.cascade {
        infos.push(SystemInfo {
            name: "cascade".into(),
            id: format!(
                "distill|cascade|whisper={whisper}|llm={llm}|pool={}|replies={}",
                a.pool, a.reply_clips
            ),
            kind: Kind::Cascade,
            description: "cascade: Whisper's transcript → the LLM".into(),
        });
    }
    let mut store = run::Store::open(&p.spec.out, Task::Distill, p.prompt.version)?;
    let (mut generated, mut reused) = (0, 0);
    let mut stats = Vec::new();
    for (s, info) in infos.iter().enumerate() {
        let cached: Option<Vec<Vec<Vec<f64>>>> = ids
            .iter()
            .map(|i| {
                store
                    .get(&info.id, i)
                    .and_then(|r| serde_json::from_str(&r.reply).ok())
            })
            .collect();
        if let Some(c) = cached {
            reused += ids.len();
            stats.push(c);
            continue;
        }
        eprintln!("{}: validating {} clips", info.name, examples.len());
        let frozen = &session.frozen;
        let report = if info.kind == Kind::Cascade {
            let tr = diva_core::generate::Transcriber::from_weights(
                &frozen.whisper,
                &diva_core::generate::TranscribeOptions::default(),
                &device,
            )?;
            evaluate(
                frozen,
                &session.features,
                &Student::Cascade(&tr),
                &examples,
                &opts,
                &mut session.replies,
            )?
        } else {
            let c = checkpoint::load_connector(
                &models[s].1,
                &frozen.whisper.config,
                DType::F32,
                &device,
            )?;
            evaluate(
                frozen,
                &session.features,
                &Student::Connector(&c),
                &examples,
                &opts,
                &mut session.replies,
            )?
        };
        let pct = |x: Option<f64>| x.map_or(vec![0.0, 0.0], |v| vec![100.0 * v, 1.0]);
        let rows: Vec<Vec<Vec<f64>>> = report
            .per_clip
            .iter()
            .map(|c| {
                vec![
                    pct(c.retrieved.map(|h| f64::from(u8::from(h)))),
                    pct(Some(f64::from(u8::from(c.first_token)))),
                    pct(c.reply_f1),
                    vec![c.distill, 1.0],
                ]
            })
            .collect();
        for (id, row) in ids.iter().zip(&rows) {
            store.append(run::Record {
                task: Task::Distill,
                system: info.id.clone(),
                item: id.clone(),
                prompt_version: p.prompt.version,
                response: run::Response {
                    reply: serde_json::to_string(row)?,
                    transcript: None,
                    seconds: 0.0,
                    judge: None,
                },
            })?;
        }
        generated += rows.len();
        stats.push(rows);
    }
    // stats[s][item][metric] → [s][metric][item].
    let by_metric: Vec<Vec<Vec<Vec<f64>>>> = stats
        .iter()
        .map(|rows| {
            (0..p.scorer.metrics.len())
                .map(|m| rows.iter().map(|r| r[m].clone()).collect())
                .collect()
        })
        .collect();
    let failed = if skipped > 0 {
        vec![format!(
            "{skipped} manifest entries unusable for validation (skipped)"
        )]
    } else {
        Vec::new()
    };
    let outcome =
        run::execute_precomputed(p, &infos, &ids, &by_metric, failed, generated, reused, t0)?;
    let r = &outcome.results;
    eprintln!(
        "{} clips scored, {} statistics computed, {} reused, {:.1} s",
        r.scored_items, r.generated, r.reused, r.elapsed_s
    );
    crate::outln!("{}", diva_eval::report::metrics_table(r))?;
    for c in &r.comparisons {
        crate::outln!(
            "{} − {} on {}: {:+.2} [95% CI {:+.2}, {:+.2}], p = {:.4}",
            c.system,
            c.against,
            c.metric,
            c.diff,
            c.lo,
            c.hi,
            c.p_value
        )?;
    }
    crate::outln!(
        "wrote {}, {}, {}",
        outcome.results_json.display(),
        outcome.report_md.display(),
        outcome.chart.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
