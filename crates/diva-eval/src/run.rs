//! `diva eval run`: every system answers every item of a task's manifest,
//! the replies are scored ([`crate::tasks`]), and the systems are compared
//! with the paired bootstrap ([`crate::bootstrap`]); [`crate::report`] writes
//! the results.
//!
//! Systems are a trained DiVA model (the student: audio → connector → LLM,
//! as `diva chat` runs it), another model (`--against`), the cascade
//! (Whisper's transcript → the same LLM) and the teacher (the LLM reading the
//! manifest's reference transcript). Every system gets the task's prompt:
//! its `system` message, and its `instruction` after the audio or the text.
//! Decoding is greedy.
//!
//! Resumable: each finished reply is appended to `DIR/items.jsonl` as soon
//! as it exists, keyed by (task, system id, item id, prompt version); a rerun
//! into the same directory reuses those and generates only the rest.
//!
//! VoiceBench's open-ended subsets are scored by an LLM judge
//! ([`crate::judge`]): its answers are appended to `items.jsonl` with the
//! reply (a later line of the same key supersedes an earlier one), so a rerun
//! asks only about replies it has no judgment of, by the same judge model.
//! Without a judge those items are left out of the judged metrics and listed
//! as unscored in the report.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use diva_core::generate::{Assistant, Part, SamplingParams};
use serde::{Deserialize, Serialize};

use crate::bootstrap::{self, BootstrapConfig, Estimate, PairedBootstrap};
use crate::judge::{Judge, Judgment};
use crate::report::{
    chart_png, find_font, markdown, write_atomic, BootstrapInfo, Labels, PromptInfo, Results,
};
use crate::tasks::{read_manifest_with, EvalItem, Prompt, Scorer, ScorerOptions, Task};

/// What a system's LLM is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The audio, through the connector.
    Student,
    /// Whisper's transcript of the audio.
    Cascade,
    /// The manifest's reference transcript (`text`).
    Teacher,
}

/// A system as the report names it.
#[derive(Debug, Clone, Serialize)]
pub struct SystemInfo {
    /// Short name (table columns, results.json keys): `diva`, `cascade`, …
    pub name: String,
    /// What keys its finished items (model paths, …).
    pub id: String,
    pub kind: Kind,
    /// One line for the report.
    pub description: String,
}

/// One reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub reply: String,
    /// The cascade's transcript.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    pub seconds: f64,
    /// VoiceBench: the judge's answers about this reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<Judgment>,
}

/// Something that answers items.
pub trait Respond {
    fn respond(&self, item: &EvalItem, system: &str, instruction: &str) -> Result<Response>;
}

/// A loaded [`Assistant`] answering as one [`Kind`].
pub struct AssistantSystem<'a> {
    pub assistant: &'a Assistant,
    pub kind: Kind,
    pub params: SamplingParams,
}

/// Greedy decoding with at most `max_tokens` new tokens.
pub fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        max_tokens,
        ..SamplingParams::default()
    }
}

fn with_instruction(text: &str, instruction: &str) -> String {
    if instruction.is_empty() {
        text.to_string()
    } else {
        format!("{}\n\n{instruction}", text.trim())
    }
}

impl Respond for AssistantSystem<'_> {
    fn respond(&self, item: &EvalItem, system: &str, instruction: &str) -> Result<Response> {
        let t0 = Instant::now();
        let s = self.assistant;
        let mut conv = if system.is_empty() {
            s.conversation()
        } else {
            s.conversation_with_system(system)?
        };
        let sink = |_: &str| Ok(());
        let pcm = || {
            diva_core::audio::load_pcm_16k(&item.audio)
                .with_context(|| format!("item `{}`: audio {}", item.id, item.audio.display()))
        };
        let (reply, transcript) = match self.kind {
            Kind::Student => {
                let pcm = pcm()?;
                let sep = format!("\n\n{instruction}");
                let mut parts = vec![Part::Audio(&pcm)];
                if !instruction.is_empty() {
                    parts.push(Part::Text(&sep));
                }
                let input = s.user_input(&parts)?;
                (s.reply_parts(&mut conv, &input, &self.params, sink)?, None)
            }
            Kind::Cascade => {
                let (t, _) = s.transcribe(&pcm()?)?;
                let text = with_instruction(&t, instruction);
                (s.reply_text(&mut conv, &text, &self.params, sink)?, Some(t))
            }
            Kind::Teacher => {
                let t = item.text.as_deref().filter(|t| !t.trim().is_empty());
                let t = t.with_context(|| {
                    format!(
                        "item `{}` has no `text`: the teacher reads the reference transcript, \
                         so give every item one (or drop --teacher)",
                        item.id
                    )
                })?;
                let text = with_instruction(t, instruction);
                (s.reply_text(&mut conv, &text, &self.params, sink)?, None)
            }
        };
        Ok(Response {
            reply: reply.generation.text.trim().to_string(),
            transcript,
            seconds: t0.elapsed().as_secs_f64(),
            judge: None,
        })
    }
}

/// One line of `items.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub task: Task,
    pub system: String,
    pub item: String,
    pub prompt_version: u32,
    #[serde(flatten)]
    pub response: Response,
}

type Key = (String, String);

/// The finished items of a directory, for one task and prompt version.
pub struct Store {
    path: PathBuf,
    done: HashMap<Key, Response>,
    /// Lines that could not be read (a run killed mid-write).
    pub unreadable: usize,
}

impl Store {
    pub fn open(dir: &Path, task: Task, prompt_version: u32) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--out {}: cannot create the directory", dir.display()))?;
        let path = dir.join("items.jsonl");
        let mut done = HashMap::new();
        let mut unreadable = 0;
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Record>(line) {
                    Ok(r) if r.task == task && r.prompt_version == prompt_version => {
                        done.insert((r.system, r.item), r.response);
                    }
                    Ok(_) => {}
                    Err(_) => unreadable += 1,
                }
            }
        }
        Ok(Self {
            path,
            done,
            unreadable,
        })
    }

    pub fn get(&self, system: &str, item: &str) -> Option<&Response> {
        self.done.get(&(system.to_string(), item.to_string()))
    }

    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Append one finished item (flushed at once).
    pub fn append(&mut self, r: Record) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("{}: cannot append", self.path.display()))?;
        writeln!(f, "{}", serde_json::to_string(&r)?)
            .with_context(|| format!("{}: cannot append", self.path.display()))?;
        self.done.insert((r.system, r.item), r.response);
        Ok(())
    }
}

/// Progress of a run, for a progress bar.
pub enum Progress<'a> {
    /// Items to answer in all (every system), of which `reused` were finished.
    Start { total: usize, reused: usize },
    /// One more answered (or failed).
    Item { system: &'a str, item: &'a str },
}

/// Replies of every system, item by item.
pub struct Replies {
    /// `replies[s][i]`: system s's reply to item i, or the error.
    pub replies: Vec<Vec<std::result::Result<Response, String>>>,
    /// Items generated in this run / reused from items.jsonl.
    pub generated: usize,
    pub reused: usize,
}

/// Let every system answer every item (reusing finished ones).
pub fn generate(
    systems: &[(SystemInfo, &dyn Respond)],
    items: &[EvalItem],
    prompt: &Prompt,
    instruction: &str,
    task: Task,
    store: &mut Store,
    progress: &mut dyn FnMut(Progress),
) -> Result<Replies> {
    let reused = systems
        .iter()
        .map(|(s, _)| {
            items
                .iter()
                .filter(|i| store.get(&s.id, &i.id).is_some())
                .count()
        })
        .sum();
    progress(Progress::Start {
        total: systems.len() * items.len(),
        reused,
    });
    let mut out = Replies {
        replies: Vec::new(),
        generated: 0,
        reused,
    };
    for (info, sys) in systems {
        let mut row = Vec::with_capacity(items.len());
        for item in items {
            if let Some(r) = store.get(&info.id, &item.id) {
                row.push(Ok(r.clone()));
                continue;
            }
            let r = sys.respond(item, &prompt.system, instruction);
            progress(Progress::Item {
                system: &info.name,
                item: &item.id,
            });
            match r {
                Ok(resp) => {
                    store.append(Record {
                        task,
                        system: info.id.clone(),
                        item: item.id.clone(),
                        prompt_version: prompt.version,
                        response: resp.clone(),
                    })?;
                    out.generated += 1;
                    row.push(Ok(resp));
                }
                Err(e) => {
                    tracing::warn!("{} on {}: {e:#}", info.name, item.id);
                    row.push(Err(format!("{e:#}")));
                }
            }
        }
        out.replies.push(row);
    }
    Ok(out)
}

/// Ask the judge about every reply that needs it and has no judgment by
/// this judge model and prompt version yet; each answer is appended to the
/// store at once. Returns the number of questions asked.
#[allow(clippy::too_many_arguments)]
pub fn judge_replies(
    scorer: &Scorer,
    judge: &dyn Judge,
    systems: &[SystemInfo],
    items: &[EvalItem],
    prompt: &Prompt,
    task: Task,
    replies: &mut Replies,
    store: &mut Store,
    progress: &mut dyn FnMut(Progress),
) -> Result<usize> {
    let fresh = |r: &Response| {
        r.judge
            .as_ref()
            .is_some_and(|j| j.model == judge.model() && j.prompt_version == prompt.version)
    };
    let todo: Vec<(usize, usize)> = (0..systems.len())
        .flat_map(|s| (0..items.len()).map(move |i| (s, i)))
        .filter(|&(s, i)| {
            scorer.needs_judge(&items[i]) && replies.replies[s][i].as_ref().is_ok_and(|r| !fresh(r))
        })
        .collect();
    if todo.is_empty() {
        return Ok(0);
    }
    progress(Progress::Start {
        total: todo.len(),
        reused: 0,
    });
    for &(s, i) in &todo {
        let Ok(r) = &mut replies.replies[s][i] else {
            continue;
        };
        let (system, user) = scorer.judge_request(prompt, &items[i], &r.reply);
        let answers = judge
            .ask(&system, &user)
            .with_context(|| format!("judging {} on item `{}`", systems[s].name, items[i].id))?;
        r.judge = Some(Judgment {
            model: judge.model().to_string(),
            prompt_version: prompt.version,
            answers,
        });
        store.append(Record {
            task,
            system: systems[s].id.clone(),
            item: items[i].id.clone(),
            prompt_version: prompt.version,
            response: r.clone(),
        })?;
        progress(Progress::Item {
            system: &systems[s].name,
            item: &items[i].id,
        });
    }
    Ok(todo.len())
}

/// A metric's numbers for one system.
#[derive(Debug, Clone, Serialize)]
pub struct SystemScore {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    pub std: f64,
}

impl From<Estimate> for SystemScore {
    fn from(e: Estimate) -> Self {
        Self {
            value: e.observed,
            lo: e.lo,
            hi: e.hi,
            std: e.std,
        }
    }
}

/// One system against the first one (the model under evaluation), on one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub metric: String,
    /// The first system.
    pub system: String,
    pub against: String,
    /// `system − against`.
    pub diff: f64,
    pub lo: f64,
    pub hi: f64,
    pub p_value: f64,
    pub p_value_sacrebleu: f64,
}

/// One metric over all systems.
#[derive(Debug, Clone, Serialize)]
pub struct MetricResult {
    pub key: String,
    pub name: String,
    pub higher_is_better: bool,
    /// By system name.
    pub systems: BTreeMap<String, SystemScore>,
}

/// A per-item row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ItemRow {
    pub id: String,
    /// By system name.
    pub replies: BTreeMap<String, String>,
    pub notes: BTreeMap<String, String>,
}

/// Scores, intervals and comparisons of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scored_items: usize,
    /// Items some system could not answer (left out for every system, so the
    /// comparison stays paired): `id: error`.
    pub failed: Vec<String>,
    pub metrics: Vec<MetricResult>,
    pub comparisons: Vec<Comparison>,
    pub rows: Vec<ItemRow>,
    /// Replies some metric could not score (`item: system: why`), e.g.
    /// VoiceBench's open-ended items without a judge.
    pub unscored: Vec<String>,
}

/// Score every reply and bootstrap every metric: each system's interval,
/// and each later system against the first (paired, same resamples).
pub fn summarise(
    scorer: &Scorer,
    systems: &[SystemInfo],
    items: &[EvalItem],
    replies: &Replies,
    cfg: BootstrapConfig,
) -> Result<Summary> {
    let mut failed = Vec::new();
    let mut kept = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let errs: Vec<String> = systems
            .iter()
            .zip(&replies.replies)
            .filter_map(|(s, row)| row[i].as_ref().err().map(|e| format!("{}: {e}", s.name)))
            .collect();
        if errs.is_empty() {
            kept.push(i);
        } else {
            failed.push(format!("{}: {}", item.id, errs.join("; ")));
        }
    }
    anyhow::ensure!(
        !kept.is_empty(),
        "no item was answered by every system ({} failed; the first: {}): see the errors above",
        failed.len(),
        failed.first().map_or("", String::as_str)
    );
    let n_metrics = scorer.metrics.len();
    // stats[s][m][k]: system s, metric m, kept item k.
    let mut stats = vec![vec![Vec::with_capacity(kept.len()); n_metrics]; systems.len()];
    let mut rows = Vec::with_capacity(kept.len());
    let mut unscored = Vec::new();
    for &i in &kept {
        let mut row = ItemRow {
            id: items[i].id.clone(),
            replies: BTreeMap::new(),
            notes: BTreeMap::new(),
        };
        for (s, sys) in systems.iter().enumerate() {
            let Ok(r) = &replies.replies[s][i] else {
                continue;
            };
            let sc = scorer.score_judged(&items[i], &r.reply, r.judge.as_ref())?;
            if let Some(u) = &sc.unscored {
                unscored.push(format!("{}: {}: {u}", items[i].id, sys.name));
            }
            for (m, st) in sc.stats.into_iter().enumerate() {
                stats[s][m].push(st);
            }
            row.replies.insert(sys.name.clone(), r.reply.clone());
            if let Some(n) = sc.note {
                row.notes.insert(sys.name.clone(), n);
            }
        }
        rows.push(row);
    }
    let (metrics, comparisons) = bootstrap_metrics(&scorer.metrics, systems, &stats, cfg)?;
    Ok(Summary {
        scored_items: kept.len(),
        failed,
        metrics,
        comparisons,
        rows,
        unscored,
    })
}

/// Every metric's interval per system and the first system against each
/// other one, from per-item statistics `stats[system][metric][item]`.
pub fn bootstrap_metrics(
    metric_list: &[crate::tasks::Metric],
    systems: &[SystemInfo],
    stats: &[Vec<Vec<Vec<f64>>>],
    cfg: BootstrapConfig,
) -> Result<(Vec<MetricResult>, Vec<Comparison>)> {
    let mut metrics = Vec::new();
    let mut comparisons = Vec::new();
    for (m, metric) in metric_list.iter().enumerate() {
        let f = |s: &[f64]| metric.aggregate.score(s);
        let mut per = BTreeMap::new();
        for (s, sys) in systems.iter().enumerate() {
            let b = bootstrap::paired_bootstrap(&stats[s][m], &stats[s][m], f, cfg)?;
            per.insert(sys.name.clone(), SystemScore::from(b.a));
        }
        for (s, sys) in systems.iter().enumerate().skip(1) {
            // A = the other system, B = the first: diff is first − other.
            let b: PairedBootstrap =
                bootstrap::paired_bootstrap(&stats[s][m], &stats[0][m], f, cfg)?;
            comparisons.push(Comparison {
                metric: metric.key.to_string(),
                system: systems[0].name.clone(),
                against: sys.name.clone(),
                diff: b.diff.observed,
                lo: b.diff.lo,
                hi: b.diff.hi,
                p_value: b.p_value,
                p_value_sacrebleu: b.p_value_sacrebleu,
            });
        }
        metrics.push(MetricResult {
            key: metric.key.to_string(),
            name: metric.name.clone(),
            higher_is_better: metric.higher_is_better,
            systems: per,
        });
    }
    Ok((metrics, comparisons))
}

/// Report a task whose per-item statistics were computed outside this crate
/// (`distill`: diva-train's validation, which depends on this crate):
/// `stats[system][metric][item]` in the scorer's metric order, `ids` the
/// items scored; the same results.json, report.md and scores.png as
/// [`execute`].
#[allow(clippy::too_many_arguments)]
pub fn execute_precomputed(
    p: &Prepared,
    systems: &[SystemInfo],
    ids: &[String],
    stats: &[Vec<Vec<Vec<f64>>>],
    failed: Vec<String>,
    generated: usize,
    reused: usize,
    started: Instant,
) -> Result<Outcome> {
    anyhow::ensure!(!systems.is_empty() && !ids.is_empty(), "nothing to report");
    let (metrics, comparisons) =
        bootstrap_metrics(&p.scorer.metrics, systems, stats, p.spec.bootstrap)?;
    let summary = Summary {
        scored_items: ids.len(),
        failed,
        metrics,
        comparisons,
        rows: Vec::new(),
        unscored: Vec::new(),
    };
    write_outputs(p, systems.to_vec(), summary, generated, reused, 0, started)
}

/// What a run is asked to do (everything but the systems).
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub task: Task,
    pub data: PathBuf,
    pub out: PathBuf,
    /// A prompt file other than the shipped one.
    pub prompt: Option<PathBuf>,
    /// Spoken QA: a questions file to take the items' answers from.
    pub answers: Option<PathBuf>,
    pub scorer: ScorerOptions,
    pub limit: Option<usize>,
    pub max_tokens: usize,
    pub bootstrap: BootstrapConfig,
    /// The command line, for the report.
    pub command: String,
    /// Items shown reply by reply in report.md.
    pub examples: usize,
    /// VoiceBench: the judge's endpoint and model, for the report.
    pub judge: Option<(String, String)>,
}

/// A run's input, checked before any model loads.
pub struct Prepared {
    pub spec: RunSpec,
    pub items: Vec<EvalItem>,
    pub prompt: Prompt,
    pub scorer: Scorer,
    pub instruction: String,
}

/// Read and check the manifest, the prompt and the task's options.
pub fn prepare(spec: RunSpec) -> Result<Prepared> {
    if spec.max_tokens == 0 {
        anyhow::bail!("--max-tokens 0: a reply needs at least 1 new token");
    }
    if spec.limit == Some(0) {
        anyhow::bail!("--limit 0: evaluate at least 1 item");
    }
    let prompt = Prompt::load(spec.task, spec.prompt.as_deref())?;
    let mut items = read_manifest_with(&spec.data, spec.task, spec.answers.as_deref())?;
    if let Some(n) = spec.limit {
        items.truncate(n);
    }
    let scorer = Scorer::new(spec.task, &items, &spec.scorer)?;
    let instruction = scorer.instruction(&prompt);
    if spec.out.is_file() {
        anyhow::bail!(
            "--out {}: a file; give a directory (created if missing)",
            spec.out.display()
        );
    }
    Ok(Prepared {
        spec,
        items,
        prompt,
        scorer,
        instruction,
    })
}

/// What a run wrote.
pub struct Outcome {
    pub results: Results,
    pub summary: Summary,
    pub results_json: PathBuf,
    pub report_md: PathBuf,
    pub chart: PathBuf,
    pub chart_labels: Labels,
}

/// Run the systems on the prepared task and write results.json, report.md
/// and scores.png into the output directory.
pub fn execute(
    p: &Prepared,
    systems: &[(SystemInfo, &dyn Respond)],
    judge: Option<&dyn Judge>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome> {
    anyhow::ensure!(!systems.is_empty(), "no system to evaluate");
    let t0 = Instant::now();
    let mut store = Store::open(&p.spec.out, p.spec.task, p.prompt.version)?;
    if store.unreadable > 0 {
        tracing::warn!(
            "{}: {} unreadable line(s) skipped (a run stopped mid-write); those items run again",
            p.spec.out.join("items.jsonl").display(),
            store.unreadable
        );
    }
    let mut replies = generate(
        systems,
        &p.items,
        &p.prompt,
        &p.instruction,
        p.spec.task,
        &mut store,
        progress,
    )?;
    let infos: Vec<SystemInfo> = systems.iter().map(|(s, _)| s.clone()).collect();
    let judged = match judge {
        Some(j) => judge_replies(
            &p.scorer,
            j,
            &infos,
            &p.items,
            &p.prompt,
            p.spec.task,
            &mut replies,
            &mut store,
            progress,
        )?,
        None => 0,
    };
    let summary = summarise(&p.scorer, &infos, &p.items, &replies, p.spec.bootstrap)?;
    write_outputs(
        p,
        infos,
        summary,
        replies.generated,
        replies.reused,
        judged,
        t0,
    )
}

/// Write results.json, report.md and scores.png of a summarised run.
fn write_outputs(
    p: &Prepared,
    infos: Vec<SystemInfo>,
    summary: Summary,
    generated: usize,
    reused: usize,
    judged: usize,
    t0: Instant,
) -> Result<Outcome> {
    let results = Results {
        schema: "diva-eval-run/1",
        task: p.spec.task.name().to_string(),
        data: p.spec.data.display().to_string(),
        command: p.spec.command.clone(),
        items: p.items.len(),
        scored_items: summary.scored_items,
        max_tokens: p.spec.max_tokens,
        prompt: PromptInfo::new(&p.prompt, &p.instruction),
        labels: p.scorer.labels.as_ref().map(|l| l.labels().to_vec()),
        target_lang: p.scorer.target_lang.clone(),
        systems: infos,
        bootstrap: BootstrapInfo {
            resamples: p.spec.bootstrap.resamples,
            seed: p.spec.bootstrap.seed,
            confidence: p.spec.bootstrap.confidence,
            method: "paired bootstrap (Koehn 2004), percentile intervals",
        },
        metrics: summary.metrics.clone(),
        comparisons: summary.comparisons.clone(),
        failed: summary.failed.clone(),
        unscored: summary.unscored.clone(),
        judge: p
            .spec
            .judge
            .as_ref()
            .map(|(url, model)| crate::report::JudgeInfo {
                url: url.clone(),
                model: model.clone(),
                asked: judged,
            }),
        generated,
        reused,
        elapsed_s: t0.elapsed().as_secs_f64(),
    };
    let dir = &p.spec.out;
    let chart = dir.join("scores.png");
    let (png, chart_labels) = chart_png(&results, find_font().as_deref())?;
    write_atomic(&chart, &png)?;
    if chart_labels == Labels::NoFont {
        tracing::warn!(
            "no font for the chart's text (set DIVA_PLOT_FONT=FILE.ttf): {} has bars and whiskers only",
            chart.display()
        );
    }
    let results_json = dir.join("results.json");
    write_atomic(
        &results_json,
        (serde_json::to_string_pretty(&results)? + "\n").as_bytes(),
    )?;
    let report_md = dir.join("report.md");
    write_atomic(
        &report_md,
        markdown(&results, &summary, Some("scores.png"), p.spec.examples).as_bytes(),
    )?;
    Ok(Outcome {
        results,
        summary,
        results_json,
        report_md,
        chart,
        chart_labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Answers from a table, counting calls.
    struct Canned {
        answers: HashMap<String, String>,
        calls: Cell<usize>,
    }

    impl Respond for Canned {
        fn respond(&self, item: &EvalItem, _: &str, instruction: &str) -> Result<Response> {
            assert!(instruction.contains("few words"), "{instruction}");
            self.calls.set(self.calls.get() + 1);
            match self.answers.get(&item.id) {
                Some(a) => Ok(Response {
                    reply: a.clone(),
                    transcript: None,
                    seconds: 0.0,
                    judge: None,
                }),
                None => anyhow::bail!("no audio"),
            }
        }
    }

    fn items(n: usize) -> Vec<EvalItem> {
        (0..n)
            .map(|i| EvalItem {
                id: format!("q{i}"),
                audio: PathBuf::from("x.wav"),
                text: Some(format!("What is {i} plus 0?")),
                answers: vec![i.to_string()],
                ..Default::default()
            })
            .collect()
    }

    fn info(name: &str) -> SystemInfo {
        SystemInfo {
            name: name.into(),
            id: format!("id-{name}"),
            kind: Kind::Student,
            description: name.into(),
        }
    }

    #[test]
    fn runs_resume_and_scores_are_paired() {
        let dir = tempfile::tempdir().unwrap();
        let items = items(20);
        let prompt = Prompt::load(Task::SpokenQa, None).unwrap();
        let scorer = Scorer::new(Task::SpokenQa, &items, &Default::default()).unwrap();
        let instr = scorer.instruction(&prompt);
        // A is right on even items, B on every item but q3 (which A cannot answer at all).
        let a = Canned {
            answers: (0..20)
                .filter(|&i| i != 3)
                .map(|i| {
                    (
                        format!("q{i}"),
                        if i % 2 == 0 {
                            i.to_string()
                        } else {
                            "no".into()
                        },
                    )
                })
                .collect(),
            calls: Cell::new(0),
        };
        let b = Canned {
            answers: (0..20)
                .map(|i| (format!("q{i}"), format!("It is {i}.")))
                .collect(),
            calls: Cell::new(0),
        };
        let systems = [info("a"), info("b")];
        let run = |store: &mut Store| {
            let mut seen = Vec::new();
            let r = generate(
                &[
                    (systems[0].clone(), &a as &dyn Respond),
                    (systems[1].clone(), &b),
                ],
                &items,
                &prompt,
                &instr,
                Task::SpokenQa,
                store,
                &mut |p| {
                    if let Progress::Start { total, reused } = p {
                        seen.push((total, reused));
                    }
                },
            )
            .unwrap();
            (r, seen)
        };
        let mut store = Store::open(dir.path(), Task::SpokenQa, prompt.version).unwrap();
        let (r1, seen) = run(&mut store);
        assert_eq!(seen, [(40, 0)]);
        assert_eq!((r1.generated, r1.reused), (39, 0));
        assert_eq!((a.calls.get(), b.calls.get()), (20, 20));
        // A rerun reuses the 39 finished items and retries only the failed one.
        let mut store = Store::open(dir.path(), Task::SpokenQa, prompt.version).unwrap();
        assert_eq!(store.len(), 39);
        let (r2, seen) = run(&mut store);
        assert_eq!(seen, [(40, 39)]);
        assert_eq!((r2.generated, r2.reused), (0, 39));
        assert_eq!((a.calls.get(), b.calls.get()), (21, 20));
        // Another prompt version reuses nothing.
        assert!(Store::open(dir.path(), Task::SpokenQa, prompt.version + 1)
            .unwrap()
            .is_empty());

        let cfg = BootstrapConfig {
            resamples: 2000,
            seed: 3,
            confidence: 0.95,
        };
        let s = summarise(&scorer, &systems, &items, &r2, cfg).unwrap();
        assert_eq!(s.scored_items, 19);
        assert_eq!(s.failed.len(), 1);
        assert!(s.failed[0].starts_with("q3: a: no audio"), "{:?}", s.failed);
        let em = s.metrics.iter().find(|m| m.key == "exact_match").unwrap();
        // A: 10 of the 19 kept items (the even ones) exactly; B: none ("It is 4.").
        assert!((em.systems["a"].value - 100.0 * 10.0 / 19.0).abs() < 1e-9);
        assert_eq!(em.systems["b"].value, 0.0);
        let ped = s.metrics.iter().find(|m| m.key == "pedants").unwrap();
        assert_eq!(ped.systems["b"].value, 100.0, "the rule finds every answer");
        assert_eq!((ped.systems["b"].lo, ped.systems["b"].hi), (100.0, 100.0));
        let a_ped = &ped.systems["a"];
        assert!(
            a_ped.lo < a_ped.value && a_ped.value < a_ped.hi,
            "{a_ped:?}"
        );
        let c = s
            .comparisons
            .iter()
            .find(|c| c.metric == "pedants")
            .unwrap();
        assert_eq!((c.system.as_str(), c.against.as_str()), ("a", "b"));
        assert!((c.diff - (100.0 * 10.0 / 19.0 - 100.0)).abs() < 1e-9);
        assert!(c.hi < 0.0 && c.p_value < 0.01, "{c:?}");
        // The same numbers as the bootstrap module on the same statistics.
        let sa: Vec<f64> = (0..20)
            .filter(|&i| i != 3)
            .map(|i| f64::from(u8::from(i % 2 == 0)))
            .collect();
        let direct = bootstrap::paired_bootstrap_mean(&[1.0; 19], &sa, cfg).unwrap();
        assert!(
            (direct.diff.lo * 100.0 - c.lo).abs() < 1e-9,
            "{direct:?} {c:?}"
        );
        assert!((direct.p_value - c.p_value).abs() < 1e-12);
        assert_eq!(s.rows.len(), 19);
        assert_eq!(s.rows[0].replies["b"], "It is 0.");
    }

    #[test]
    fn a_truncated_line_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), Task::Asr, 1).unwrap();
        store
            .append(Record {
                task: Task::Asr,
                system: "s".into(),
                item: "i".into(),
                prompt_version: 1,
                response: Response {
                    reply: "hello".into(),
                    transcript: Some("hello".into()),
                    seconds: 1.5,
                    judge: None,
                },
            })
            .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("items.jsonl"))
            .unwrap();
        write!(f, "{{\"task\": \"asr\", \"sys").unwrap();
        let store = Store::open(dir.path(), Task::Asr, 1).unwrap();
        assert_eq!(store.unreadable, 1);
        assert_eq!(store.get("s", "i").unwrap().reply, "hello");
        assert!(Store::open(dir.path(), Task::Classify, 1)
            .unwrap()
            .is_empty());
    }
}
