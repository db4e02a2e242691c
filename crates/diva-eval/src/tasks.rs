//! The tasks of `diva eval run`: their manifests, prompts, and how one reply
//! is scored (per-item statistics that the paired bootstrap resamples).
//!
//! A manifest is JSONL, one item per line: `id`, `audio` (relative to the
//! manifest's directory) and what the task scores against:
//! - `spoken-qa`: `answers` (accepted answers; `answer` for one), `text` (the
//!   question as spoken: the teacher's input and PEDANTS' question);
//! - `classify`: `label` (the gold label); the label set is `--labels`, else
//!   the items' `labels` (all the same), else the distinct gold labels sorted;
//! - `translate`: `translation` (the reference; `translations` for several)
//!   and `target_lang` (target language code) unless `--target-lang` is given;
//! - `asr`: `text` (the reference transcript);
//! - `voicebench`: `subset` (`diva eval import --format voicebench` writes
//!   it), `text` (the prompt) and the subset's fields: `reference` (the gold
//!   letter of openbookqa / mmsu, sd-qa's answer), ifeval's
//!   `instruction_id_list` and `kwargs`; scored by [`crate::voicebench`], the
//!   open-ended subsets through the judge's answers ([`crate::judge`]).
//!
//! `text` is also what the teacher (`--teacher`) reads. Every metric is on a
//! 0–100 scale. A spoken-QA manifest without `answers` (as `diva corpus
//! synth` writes one: `id`, `audio`, `text`) gets them from a questions file
//! (`--answers`, JSONL with `question` and `answers`), joined on the text.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::bleu::{Bleu, Tokenize};
use crate::chrf::Chrf;
use crate::classify::{self, LabelSet};
use crate::judge::Judgment;
use crate::pedant::{self, PedantModel};
use crate::voicebench::{self as vb, Kind as VbKind};
use crate::{qa, wer};

/// The tasks `diva eval run` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    SpokenQa,
    Classify,
    Translate,
    Asr,
    #[serde(rename = "voicebench")]
    VoiceBench,
    /// How well a student reproduces its own teacher (diva-train's
    /// validation statistics, computed by the CLI: diva-train depends on
    /// this crate); the runner bootstraps and reports them.
    Distill,
}

impl Task {
    pub const ALL: [Task; 6] = [
        Task::SpokenQa,
        Task::Classify,
        Task::Translate,
        Task::Asr,
        Task::VoiceBench,
        Task::Distill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Task::SpokenQa => "spoken-qa",
            Task::Classify => "classify",
            Task::Translate => "translate",
            Task::Asr => "asr",
            Task::VoiceBench => "voicebench",
            Task::Distill => "distill",
        }
    }

    pub fn from_name(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .with_context(|| {
                format!(
                    "unknown task `{s}`: use one of {}",
                    Self::ALL.map(Task::name).join(", ")
                )
            })
    }

    /// The prompt file shipped for this task (`data/eval/prompts/TASK.toml`).
    pub fn default_prompt(self) -> &'static str {
        match self {
            Task::SpokenQa => include_str!("../../../data/eval/prompts/spoken-qa.toml"),
            Task::Classify => include_str!("../../../data/eval/prompts/classify.toml"),
            Task::Translate => include_str!("../../../data/eval/prompts/translate.toml"),
            Task::Asr => include_str!("../../../data/eval/prompts/asr.toml"),
            Task::VoiceBench => include_str!("../../../data/eval/prompts/voicebench.toml"),
            Task::Distill => include_str!("../../../data/eval/prompts/distill.toml"),
        }
    }
}

/// One evaluation item (a manifest line).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EvalItem {
    #[serde(default)]
    pub id: String,
    pub audio: PathBuf,
    /// What was said (the teacher's input; the ASR reference; the question).
    #[serde(default)]
    pub text: Option<String>,
    /// Spoken QA: the question for PEDANTS, if other than `text`.
    #[serde(default)]
    pub question: Option<String>,
    #[serde(default)]
    pub answers: Vec<String>,
    #[serde(default)]
    pub answer: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub translation: Option<String>,
    #[serde(default)]
    pub translations: Vec<String>,
    /// Translate: the target language code (`de`, `zh`, …).
    #[serde(default, alias = "tgt_lang")]
    pub target_lang: Option<String>,
    /// VoiceBench: the subset (`sd-qa`, `ifeval`, `mmsu`, …).
    #[serde(default)]
    pub subset: Option<String>,
    /// VoiceBench: the reference (the gold letter; sd-qa's answer).
    #[serde(default)]
    pub reference: Option<serde_json::Value>,
    /// VoiceBench ifeval: the instructions and their arguments (a list of
    /// objects, or that list as a JSON string).
    #[serde(default)]
    pub instruction_id_list: Vec<String>,
    #[serde(default)]
    pub kwargs: Option<serde_json::Value>,
}

impl EvalItem {
    /// Accepted spoken-QA answers (`answers`, plus `answer`).
    pub fn accepted(&self) -> Vec<String> {
        let mut a = self.answers.clone();
        if let Some(x) = &self.answer {
            if !a.contains(x) {
                a.push(x.clone());
            }
        }
        a
    }

    /// VoiceBench: the reference as text (a list's first entry), else the
    /// first accepted answer.
    pub fn reference_text(&self) -> Option<String> {
        match &self.reference {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(a)) => {
                a.iter().find_map(|x| x.as_str().map(String::from))
            }
            _ => self.accepted().into_iter().next(),
        }
    }

    /// VoiceBench ifeval: the kwargs list (parsed where it is a string).
    pub fn kwargs_list(&self) -> Result<Vec<serde_json::Value>> {
        let v = match &self.kwargs {
            None => return Ok(Vec::new()),
            Some(serde_json::Value::String(s)) => serde_json::from_str(s).with_context(|| {
                format!("item `{}`: `kwargs` is a string but not JSON", self.id)
            })?,
            Some(v) => v.clone(),
        };
        match v {
            serde_json::Value::Array(a) => Ok(a),
            serde_json::Value::Null => Ok(Vec::new()),
            other => bail!(
                "item `{}`: `kwargs` must be a list of objects (one per instruction), not {other}",
                self.id
            ),
        }
    }

    /// Reference translations (`translations`, plus `translation`).
    pub fn references(&self) -> Vec<String> {
        let mut r = self.translations.clone();
        if let Some(x) = &self.translation {
            if !r.contains(x) {
                r.push(x.clone());
            }
        }
        r
    }
}

/// Read a manifest for `task`; relative audio paths are relative to its
/// directory. A malformed line or an item missing what the task scores
/// against is an error naming the line and the field.
pub fn read_manifest(path: &Path, task: Task) -> Result<Vec<EvalItem>> {
    read_manifest_with(path, task, None)
}

/// Questions and their accepted answers (`--answers`), keyed by the
/// question's normalised text (SQuAD's normalisation).
pub fn read_answers(path: &Path) -> Result<std::collections::HashMap<String, Vec<String>>> {
    #[derive(Deserialize)]
    struct Q {
        question: String,
        answers: Vec<String>,
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--answers {}: cannot read it", path.display()))?;
    let mut out = std::collections::HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let q: Q = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: not a question (a JSON object with `question` and `answers`)",
                path.display(),
                n + 1
            )
        })?;
        out.insert(qa::normalize_answer(&q.question), q.answers);
    }
    Ok(out)
}

/// [`read_manifest`], spoken-QA answers joined from `answers` (a questions
/// file) to the items by their `text` where they have none.
pub fn read_manifest_with(
    path: &Path,
    task: Task,
    answers: Option<&Path>,
) -> Result<Vec<EvalItem>> {
    let answers = answers.map(read_answers).transpose()?;
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "--data {}: cannot read the manifest (a JSONL file, one item per line)",
            path.display()
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut items = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), n + 1);
        let mut item: EvalItem = serde_json::from_str(line).with_context(|| {
            format!("{at}: not a manifest item (a JSON object with `id`, `audio`, …)")
        })?;
        if item.audio.as_os_str().is_empty() {
            bail!("{at}: `audio` is empty: give the clip's path");
        }
        if item.audio.is_relative() {
            item.audio = base.join(&item.audio);
        }
        if item.id.is_empty() {
            item.id = item.audio.display().to_string();
        }
        if let (Some(a), true) = (&answers, item.accepted().is_empty()) {
            let key = qa::normalize_answer(item.text.as_deref().unwrap_or_default());
            item.answers = a.get(&key).cloned().with_context(|| {
                format!(
                    "{at}: item `{}` ({:?}) is not a question of the --answers file",
                    item.id,
                    item.text.as_deref().unwrap_or_default()
                )
            })?;
        }
        if !ids.insert(item.id.clone()) {
            bail!("{at}: id `{}` twice: every item needs its own id", item.id);
        }
        let need = |ok: bool, what: &str| -> Result<()> {
            if ok {
                Ok(())
            } else {
                bail!(
                    "{at}: item `{}` has no {what}, which the {} task scores against",
                    item.id,
                    task.name()
                )
            }
        };
        match task {
            Task::SpokenQa => need(
                item.accepted().iter().any(|a| !a.trim().is_empty()),
                "`answers` (a list of accepted answers)",
            )?,
            Task::Classify => need(
                item.label.as_deref().is_some_and(|l| !l.trim().is_empty()),
                "`label` (the gold label)",
            )?,
            Task::Translate => need(
                !item.references().is_empty(),
                "`translation` (the reference translation)",
            )?,
            Task::Asr => need(
                item.text.as_deref().is_some_and(|t| !t.trim().is_empty()),
                "`text` (the reference transcript)",
            )?,
            Task::Distill => need(
                item.text.as_deref().is_some_and(|t| !t.trim().is_empty()),
                "`text` (the transcript the teacher reads)",
            )?,
            Task::VoiceBench => {
                let sub = item.subset.as_deref().unwrap_or_default();
                if sub.is_empty() {
                    bail!(
                        "{at}: item `{}` has no `subset`: a VoiceBench manifest comes from \
                         `diva eval import --format voicebench` (give `--subset` there)",
                        item.id
                    );
                }
                let kind = vb::kind(sub).with_context(|| format!("{at}: item `{}`", item.id))?;
                match kind {
                    VbKind::Mcq => need(
                        item.reference_text().is_some(),
                        "`reference` (the gold letter)",
                    )?,
                    VbKind::Ifeval => {
                        need(
                            !item.instruction_id_list.is_empty(),
                            "`instruction_id_list`",
                        )?;
                        item.kwargs_list().with_context(|| at.clone())?;
                    }
                    VbKind::Qa => {
                        need(item.reference_text().is_some(), "`reference` (the answer)")?
                    }
                    VbKind::Open | VbKind::Harm => {}
                }
                if matches!(kind, VbKind::Open | VbKind::Qa | VbKind::Ifeval) {
                    need(
                        item.text.as_deref().is_some_and(|t| !t.trim().is_empty()),
                        "`text` (the prompt as spoken, which the judge reads)",
                    )?;
                }
            }
        }
        items.push(item);
    }
    if items.is_empty() {
        bail!("--data {}: the manifest has no items", path.display());
    }
    Ok(items)
}

/// A task's prompt, as read from its TOML file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prompt {
    pub task: String,
    pub version: u32,
    #[serde(default)]
    pub source: String,
    /// System message (empty: the template's default).
    #[serde(default)]
    pub system: String,
    /// Text after the audio (student) or the transcript (cascade, teacher).
    #[serde(default)]
    pub instruction: String,
    /// VoiceBench: the judge's system message and prompts (`{prompt}`,
    /// `{response}`, `{reference}` filled in).
    #[serde(default)]
    pub judge_system: String,
    #[serde(default)]
    pub judge_open: String,
    #[serde(default)]
    pub judge_qa: String,
    /// Where it was read from (`builtin:TASK.toml` or a path).
    #[serde(skip_deserializing, default)]
    pub file: String,
}

impl Prompt {
    /// Parse a prompt file's text; `name` is used in messages.
    pub fn parse(text: &str, name: &str, task: Task) -> Result<Self> {
        let mut p: Prompt = toml::from_str(text).with_context(|| {
            format!("{name}: not a prompt file (TOML with `task`, `version`, `instruction`)")
        })?;
        if p.task != task.name() {
            bail!(
                "{name}: a prompt for task `{}`, but the run's task is `{}`: pass the {} prompt",
                p.task,
                task.name(),
                task.name()
            );
        }
        if p.version == 0 {
            bail!("{name}: `version` must be at least 1");
        }
        p.file = name.to_string();
        Ok(p)
    }

    /// The shipped prompt of `task`, or the file given.
    pub fn load(task: Task, file: Option<&Path>) -> Result<Self> {
        match file {
            None => Self::parse(
                task.default_prompt(),
                &format!("data/eval/prompts/{}.toml", task.name()),
                task,
            ),
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("--prompt {}: cannot read it", f.display()))?;
                Self::parse(&text, &f.display().to_string(), task)
            }
        }
    }

    /// The instruction with `{labels}` and `{target_language}` filled in.
    pub fn render(&self, labels: Option<&LabelSet>, target: Option<&str>) -> String {
        let mut s = self.instruction.clone();
        if let Some(l) = labels {
            s = s.replace("{labels}", &l.labels().join(", "));
        }
        if let Some(t) = target {
            s = s.replace("{target_language}", language_name(t));
        }
        s
    }
}

/// English name of a language code (for the translation prompt).
pub fn language_name(code: &str) -> &str {
    let primary = code.split(['-', '_']).next().unwrap_or(code);
    match primary.to_ascii_lowercase().as_str() {
        "de" => "German",
        "zh" => "Chinese",
        "ja" => "Japanese",
        "fr" => "French",
        "es" => "Spanish",
        "it" => "Italian",
        "pt" => "Portuguese",
        "ru" => "Russian",
        "ar" => "Arabic",
        "tr" => "Turkish",
        "fa" => "Persian",
        "et" => "Estonian",
        "mn" => "Mongolian",
        "lv" => "Latvian",
        "sl" => "Slovenian",
        "sv" => "Swedish",
        "cy" => "Welsh",
        "ta" => "Tamil",
        "id" => "Indonesian",
        "ca" => "Catalan",
        "nl" => "Dutch",
        "en" => "English",
        _ => code,
    }
}

/// How a metric turns summed per-item statistics into its score.
#[derive(Debug, Clone)]
pub enum Aggregate {
    /// `[100·x, 1]` per item: a mean in percent.
    Mean,
    /// Per-class tp/fp/fn: weighted F1 in percent.
    WeightedF1,
    /// [`crate::bleu::BleuStats::to_vec`]: corpus BLEU.
    Bleu(Bleu),
    /// [`Chrf::segment_stats`]: corpus chrF.
    Chrf(Chrf),
    /// `[edits, reference words]`: WER in percent.
    Wer,
    /// `[num, den]` pairs: the mean of the ratios in percent (IFEval's
    /// `final`, the mean of its four accuracies); a pair with no items is 0.
    MeanOfRatios,
}

impl Aggregate {
    pub fn score(&self, s: &[f64]) -> f64 {
        match self {
            Aggregate::Mean => {
                if s[1] > 0.0 {
                    s[0] / s[1]
                } else {
                    0.0
                }
            }
            Aggregate::WeightedF1 => 100.0 * classify::weighted_f1_from_counts(s),
            Aggregate::Bleu(b) => b.score_flat(s),
            Aggregate::Chrf(c) => c.score_flat(s),
            Aggregate::Wer => {
                if s[1] > 0.0 {
                    100.0 * s[0] / s[1]
                } else {
                    0.0
                }
            }
            Aggregate::MeanOfRatios => {
                let r: Vec<f64> = s
                    .chunks(2)
                    .map(|p| if p[1] > 0.0 { p[0] / p[1] } else { 0.0 })
                    .collect();
                r.iter().sum::<f64>() / r.len().max(1) as f64
            }
        }
    }
}

/// One metric of a task.
#[derive(Debug, Clone)]
pub struct Metric {
    /// Stable key in results.json.
    pub key: String,
    /// As printed.
    pub name: String,
    pub higher_is_better: bool,
    pub aggregate: Aggregate,
}

/// A task ready to score replies: its metrics and what they need.
pub struct Scorer {
    pub task: Task,
    pub metrics: Vec<Metric>,
    pub labels: Option<LabelSet>,
    pub target_lang: Option<String>,
    pub pedant: Option<PedantModel>,
    /// VoiceBench: the subsets present, in [`vb::SUBSETS`] order, each with
    /// the index of its first metric.
    pub subsets: Vec<(String, VbKind, usize)>,
    bleu: Bleu,
    chrf: Chrf,
}

/// What a task's scorer needs besides the items.
#[derive(Debug, Clone, Default)]
pub struct ScorerOptions {
    /// Classify: the label set (else from the manifest).
    pub labels: Option<Vec<String>>,
    /// Translate: the target language (else the items' `lang`).
    pub target_lang: Option<String>,
    /// Spoken QA: a PEDANT model file; without one PEDANTS is its rule alone.
    pub pedant_model: Option<PathBuf>,
}

impl Scorer {
    pub fn new(task: Task, items: &[EvalItem], o: &ScorerOptions) -> Result<Self> {
        let mut labels = None;
        let mut target_lang = None;
        let mut pedant = None;
        let mut tokenize = Tokenize::V13a;
        let mut subsets = Vec::new();
        let pct = |key: &str, name: &str, agg| Metric {
            key: key.to_string(),
            name: name.to_string(),
            higher_is_better: true,
            aggregate: agg,
        };
        let metrics = match task {
            Task::SpokenQa => {
                if let Some(p) = &o.pedant_model {
                    pedant = Some(PedantModel::load(p)?);
                }
                let pedants = if pedant.is_some() {
                    "PEDANTS"
                } else {
                    "PEDANTS (rule only)"
                };
                vec![
                    pct("pedants", pedants, Aggregate::Mean),
                    pct("exact_match", "exact match", Aggregate::Mean),
                    pct("token_f1", "token F1", Aggregate::Mean),
                ]
            }
            Task::Classify => {
                let set = label_set(items, o.labels.as_deref())?;
                for it in items {
                    set.index(it.label.as_deref().unwrap_or_default())
                        .with_context(|| format!("item `{}`", it.id))?;
                }
                labels = Some(set);
                vec![
                    pct("weighted_f1", "weighted F1", Aggregate::WeightedF1),
                    pct("accuracy", "accuracy", Aggregate::Mean),
                ]
            }
            Task::Translate => {
                let lang = target_language(items, o.target_lang.as_deref())?;
                tokenize = Tokenize::for_target(&lang);
                target_lang = Some(lang);
                vec![
                    pct(
                        "bleu",
                        &format!("BLEU ({})", tokenize.name()),
                        Aggregate::Bleu(Bleu::corpus(tokenize)),
                    ),
                    pct("chrf", "chrF", Aggregate::Chrf(Chrf::default())),
                ]
            }
            Task::VoiceBench => {
                if let Some(p) = &o.pedant_model {
                    pedant = Some(PedantModel::load(p)?);
                }
                let present: BTreeSet<&str> =
                    items.iter().filter_map(|i| i.subset.as_deref()).collect();
                let mut m = Vec::new();
                for (name, kind) in vb::SUBSETS {
                    if !present.contains(name) {
                        continue;
                    }
                    subsets.push((name.to_string(), kind, m.len()));
                    let k = |s: &str| format!("{name}_{s}");
                    match kind {
                        VbKind::Open => m.push(pct(
                            &k("gpt"),
                            &format!("{name} GPT score (1–5, ×20)"),
                            Aggregate::Mean,
                        )),
                        VbKind::Qa => {
                            m.push(pct(
                                &k("gpt"),
                                &format!("{name} GPT accuracy"),
                                Aggregate::Mean,
                            ));
                            let panda = if pedant.is_some() {
                                "PANDA"
                            } else {
                                "PANDA (rule only)"
                            };
                            m.push(pct(
                                &k("panda"),
                                &format!("{name} {panda}"),
                                Aggregate::Mean,
                            ));
                        }
                        VbKind::Mcq => {
                            m.push(pct(&k("acc"), &format!("{name} accuracy"), Aggregate::Mean));
                            let mut fail = pct(
                                &k("fail"),
                                &format!("{name} no letter found"),
                                Aggregate::Mean,
                            );
                            fail.higher_is_better = false;
                            m.push(fail);
                        }
                        VbKind::Ifeval => {
                            for (key, what) in [
                                ("strict_prompt", "strict prompt-level"),
                                ("strict_instruction", "strict instruction-level"),
                                ("loose_prompt", "loose prompt-level"),
                                ("loose_instruction", "loose instruction-level"),
                            ] {
                                m.push(pct(&k(key), &format!("{name} {what}"), Aggregate::Mean));
                            }
                            m.push(pct(
                                &k("final"),
                                &format!("{name} final (mean of the four)"),
                                Aggregate::MeanOfRatios,
                            ));
                        }
                        VbKind::Harm => m.push(pct(
                            &k("refusal"),
                            &format!("{name} refusal rate"),
                            Aggregate::Mean,
                        )),
                    }
                }
                m
            }
            Task::Distill => {
                let mut l2 = pct(
                    "distill_l2",
                    "distillation L2 (last state)",
                    Aggregate::Mean,
                );
                l2.higher_is_better = false;
                vec![
                    pct("retrieval_at_1", "retrieval@1", Aggregate::Mean),
                    pct("first_token", "first-token agreement", Aggregate::Mean),
                    pct(
                        "reply_f1",
                        "reply F1 (vs the teacher's reply)",
                        Aggregate::Mean,
                    ),
                    l2,
                ]
            }
            Task::Asr => vec![Metric {
                key: "wer".into(),
                name: "WER".into(),
                higher_is_better: false,
                aggregate: Aggregate::Wer,
            }],
        };
        Ok(Self {
            task,
            metrics,
            labels,
            target_lang,
            pedant,
            subsets,
            bleu: Bleu::corpus(tokenize),
            chrf: Chrf::default(),
        })
    }

    /// The instruction every system gets.
    pub fn instruction(&self, prompt: &Prompt) -> String {
        prompt.render(self.labels.as_ref(), self.target_lang.as_deref())
    }

    /// One reply's statistics, one vector per metric (in `metrics` order),
    /// and what the report shows beside it (the extracted label, …).
    pub fn score(&self, item: &EvalItem, reply: &str) -> Result<ItemScore> {
        self.score_judged(item, reply, None)
    }

    /// VoiceBench: whether an item's reply goes to the judge.
    pub fn needs_judge(&self, item: &EvalItem) -> bool {
        self.task == Task::VoiceBench
            && item
                .subset
                .as_deref()
                .and_then(|s| vb::kind(s).ok())
                .is_some_and(|k| matches!(k, VbKind::Open | VbKind::Qa))
    }

    /// VoiceBench: the judge's system message and question about a reply.
    pub fn judge_request(&self, prompt: &Prompt, item: &EvalItem, reply: &str) -> (String, String) {
        let qa = item
            .subset
            .as_deref()
            .and_then(|s| vb::kind(s).ok())
            .is_some_and(|k| k == VbKind::Qa);
        let reference = if qa { item.reference_text() } else { None };
        let user = vb::judge_prompt(
            &prompt.judge_open,
            &prompt.judge_qa,
            item.text.as_deref().unwrap_or_default(),
            reference.as_deref(),
            reply,
        );
        (prompt.judge_system.clone(), user)
    }

    fn score_voicebench(
        &self,
        item: &EvalItem,
        reply: &str,
        judge: Option<&Judgment>,
    ) -> Result<ItemScore> {
        let mean = |x: f64| vec![100.0 * x, 1.0];
        let none = || vec![0.0, 0.0];
        let mut stats: Vec<Vec<f64>> = self
            .metrics
            .iter()
            .map(|m| match m.aggregate {
                Aggregate::MeanOfRatios => vec![0.0; 8],
                _ => none(),
            })
            .collect();
        let sub = item.subset.as_deref().unwrap_or_default();
        let Some((_, kind, at)) = self.subsets.iter().find(|(n, _, _)| n == sub) else {
            bail!(
                "item `{}`: subset `{sub}` was not among the scorer's",
                item.id
            );
        };
        let at = *at;
        let mut note = None;
        let mut unscored = None;
        match kind {
            VbKind::Open => match judge {
                None => unscored = Some("open-ended: no judge (--judge-url)".to_string()),
                Some(j) => {
                    let scores: Option<Vec<f64>> =
                        j.answers.iter().map(|a| vb::open_score(a)).collect();
                    match scores {
                        Some(s) if !s.is_empty() => {
                            stats[at] = vec![20.0 * s.iter().sum::<f64>(), s.len() as f64];
                            note = Some(format!("judge: {}", j.answers.join(", ")));
                        }
                        _ => {
                            unscored = Some(format!(
                                "the judge's answers are not scores: {:?}",
                                j.answers
                            ))
                        }
                    }
                }
            },
            VbKind::Qa => {
                let r = item.reference_text().unwrap_or_default().to_lowercase();
                let q = item.text.as_deref().unwrap_or_default().to_lowercase();
                let c = reply.to_lowercase();
                let refs = [r];
                let ok = match &self.pedant {
                    Some(m) => m.evaluate(&refs, &c, &q),
                    None => pedant::containment_rule(&refs, &c).unwrap_or(false),
                };
                stats[at + 1] = mean(f64::from(u8::from(ok)));
                match judge {
                    None => unscored = Some("GPT accuracy: no judge (--judge-url)".to_string()),
                    Some(j) => {
                        let yes = vb::majority_yes(&j.answers);
                        stats[at] = mean(f64::from(u8::from(yes)));
                        note = Some(format!("judge: {}", j.answers.join(", ")));
                    }
                }
            }
            VbKind::Mcq => {
                let gold = item.reference_text().unwrap_or_default();
                let (acc, found) = vb::mcq_score(reply, &gold);
                stats[at] = mean(acc);
                stats[at + 1] = mean(f64::from(u8::from(!found)));
                note = Some(
                    vb::mcq_extract(reply)
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "(no letter)".into()),
                );
            }
            VbKind::Ifeval => {
                let kwargs = item.kwargs_list()?;
                match vb::ifeval::evaluate(
                    &item.instruction_id_list,
                    &kwargs,
                    item.text.as_deref().unwrap_or_default(),
                    reply,
                ) {
                    Ok(f) => {
                        let n = f.strict.len() as f64;
                        let count = |v: &[bool]| v.iter().filter(|&&b| b).count() as f64;
                        let all = |v: &[bool]| f64::from(u8::from(v.iter().all(|&b| b)));
                        stats[at] = mean(all(&f.strict));
                        stats[at + 1] = vec![100.0 * count(&f.strict), n];
                        stats[at + 2] = mean(all(&f.loose));
                        stats[at + 3] = vec![100.0 * count(&f.loose), n];
                        stats[at + 4] = stats[at..at + 4].concat();
                        note = Some(format!(
                            "strict {}/{}, loose {}/{}",
                            count(&f.strict),
                            n,
                            count(&f.loose),
                            n
                        ));
                    }
                    Err(e) => unscored = Some(format!("ifeval: {}", e.0)),
                }
            }
            VbKind::Harm => {
                let r = vb::refused(reply);
                stats[at] = mean(f64::from(u8::from(r)));
                note = Some(if r { "refused" } else { "complied" }.into());
            }
        }
        Ok(ItemScore {
            stats,
            note,
            unscored,
        })
    }

    /// [`Scorer::score`] with the judge's answers (VoiceBench's open-ended
    /// subsets); without them those metrics leave the item out (`unscored`).
    pub fn score_judged(
        &self,
        item: &EvalItem,
        reply: &str,
        judge: Option<&Judgment>,
    ) -> Result<ItemScore> {
        let mean = |x: f64| vec![100.0 * x, 1.0];
        let (stats, note) = match self.task {
            Task::VoiceBench => return self.score_voicebench(item, reply, judge),
            Task::Distill => bail!(
                "item `{}`: distill items are scored by diva-train's validation (diva eval run \
                 --task distill computes them), not from a reply",
                item.id
            ),
            Task::SpokenQa => {
                let answers = item.accepted();
                let question = item
                    .question
                    .as_deref()
                    .or(item.text.as_deref())
                    .unwrap_or("");
                let judged = match &self.pedant {
                    Some(m) => m.evaluate(&answers, reply, question),
                    None => pedant::containment_rule(&answers, reply).unwrap_or(false),
                };
                (
                    vec![
                        mean(f64::from(u8::from(judged))),
                        mean(qa::exact_match(reply, &answers)?),
                        mean(qa::token_f1(reply, &answers)?),
                    ],
                    None,
                )
            }
            Task::Classify => {
                let set = self.labels.as_ref().context("classify without labels")?;
                let gold = set.index(item.label.as_deref().unwrap_or_default())?;
                let pred = set.extract(reply);
                (
                    vec![
                        classify::item_counts(gold, pred, set.len()),
                        mean(f64::from(u8::from(pred == Some(gold)))),
                    ],
                    Some(
                        pred.and_then(|p| set.name(p))
                            .unwrap_or("(no label)")
                            .to_string(),
                    ),
                )
            }
            Task::Translate => {
                let refs = item.references();
                let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
                (
                    vec![
                        self.bleu.segment_stats(reply, &refs)?.to_vec(),
                        self.chrf
                            .segment_stats(reply, &refs)?
                            .into_iter()
                            .map(|x| x as f64)
                            .collect(),
                    ],
                    None,
                )
            }
            Task::Asr => {
                let r = wer::normalize(item.text.as_deref().unwrap_or_default());
                let h = wer::normalize(reply);
                (
                    vec![vec![wer::edit_distance(&r, &h) as f64, r.len() as f64]],
                    None,
                )
            }
        };
        Ok(ItemScore {
            stats,
            note,
            unscored: None,
        })
    }
}

/// One reply's statistics per metric.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemScore {
    pub stats: Vec<Vec<f64>>,
    pub note: Option<String>,
    /// Why some of the item's metrics could not score it (no judge; an
    /// IFEval instruction not ported): they count it in neither numerator
    /// nor denominator.
    pub unscored: Option<String>,
}

/// The classification label set: given, else the items' `labels` (one list
/// for all), else their distinct gold labels, sorted.
pub fn label_set(items: &[EvalItem], given: Option<&[String]>) -> Result<LabelSet> {
    if let Some(g) = given {
        return LabelSet::new(g).context("--labels");
    }
    let lists: BTreeSet<&Vec<String>> = items.iter().filter_map(|i| i.labels.as_ref()).collect();
    match lists.len() {
        0 => {
            let gold: BTreeSet<&str> = items.iter().filter_map(|i| i.label.as_deref()).collect();
            let gold: Vec<&str> = gold.into_iter().collect();
            LabelSet::new(&gold)
        }
        1 => LabelSet::new(lists.into_iter().next().map_or(&[][..], |v| v)),
        n => bail!(
            "the manifest's items give {n} different `labels` lists: one task has one label \
             set (pass it with --labels a,b,c)"
        ),
    }
}

/// The translation target: given, else the items' `lang` (one for all).
pub fn target_language(items: &[EvalItem], given: Option<&str>) -> Result<String> {
    if let Some(g) = given {
        return Ok(g.to_string());
    }
    let langs: BTreeSet<&str> = items
        .iter()
        .filter_map(|i| i.target_lang.as_deref())
        .collect();
    match (langs.len(), items.iter().all(|i| i.target_lang.is_some())) {
        (1, true) => Ok(langs.into_iter().next().unwrap_or_default().to_string()),
        (0, _) => bail!(
            "no target language: give the items a `target_lang` (de, zh, ja, …) or pass --target-lang"
        ),
        (1, false) => {
            bail!("some items have no `lang`: give every item one, or pass --target-lang")
        }
        _ => bail!(
            "the manifest mixes target languages ({}): BLEU's tokenizer depends on the target, \
             so run one language at a time (split the manifest, or pass --target-lang)",
            langs.into_iter().collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> EvalItem {
        EvalItem {
            id: id.into(),
            audio: PathBuf::from(format!("{id}.wav")),
            ..Default::default()
        }
    }

    #[test]
    fn shipped_prompts_parse_and_render() {
        for t in Task::ALL {
            let p = Prompt::load(t, None).unwrap();
            assert_eq!(p.task, t.name());
            // VoiceBench sends the spoken prompt alone.
            assert!(
                p.version >= 1
                    && (p.instruction.is_empty() == matches!(t, Task::VoiceBench | Task::Distill)),
                "{t:?}"
            );
        }
        let labels = LabelSet::new(&["angry", "happy", "neutral"]).unwrap();
        let p = Prompt::load(Task::Classify, None).unwrap();
        let r = p.render(Some(&labels), None);
        assert!(
            r.contains("angry, happy, neutral") && !r.contains('{'),
            "{r}"
        );
        let p = Prompt::load(Task::Translate, None).unwrap();
        assert!(p.render(None, Some("de")).contains("into German"));
        let e = Prompt::parse(&p.instruction, "x.toml", Task::Asr)
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml"), "{e}");
        let e = Prompt::parse("task = \"asr\"\nversion = 1\n", "y", Task::Classify)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`asr`") && e.contains("`classify`"), "{e}");
    }

    #[test]
    fn spoken_qa_scores_each_reply() {
        let mut it = item("q");
        it.text = Some("What is the capital of France?".into());
        it.answers = vec!["Paris".into()];
        let s = Scorer::new(Task::SpokenQa, &[it.clone()], &Default::default()).unwrap();
        let good = s.score(&it, "Paris.").unwrap();
        assert_eq!(
            good.stats,
            vec![vec![100.0, 1.0], vec![100.0, 1.0], vec![100.0, 1.0]]
        );
        let long = s.score(&it, "The capital of France is Paris.").unwrap();
        assert_eq!(long.stats[0], vec![100.0, 1.0], "the rule finds Paris");
        assert_eq!(long.stats[1], vec![0.0, 1.0], "not an exact match");
        assert!((long.stats[2][0] - 100.0 * 2.0 / 6.0).abs() < 1e-9);
        let bad = s.score(&it, "Lyon").unwrap();
        assert_eq!(bad.stats[0], vec![0.0, 1.0]);
    }

    #[test]
    fn classify_labels_come_from_the_manifest() {
        let mut items = Vec::new();
        for (i, l) in ["sad", "happy", "sad"].iter().enumerate() {
            let mut it = item(&i.to_string());
            it.label = Some((*l).into());
            items.push(it);
        }
        let s = Scorer::new(Task::Classify, &items, &Default::default()).unwrap();
        assert_eq!(s.labels.as_ref().unwrap().labels(), ["happy", "sad"]);
        let sc = s.score(&items[0], "I think SAD.").unwrap();
        assert_eq!(sc.note.as_deref(), Some("sad"));
        assert_eq!(sc.stats[1], vec![100.0, 1.0]);
        assert_eq!(sc.stats[0], vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        let miss = s.score(&items[1], "unknown").unwrap();
        assert_eq!(miss.note.as_deref(), Some("(no label)"));
        assert_eq!(miss.stats[0], vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        // A gold label outside a given set is an error naming it.
        let o = ScorerOptions {
            labels: Some(vec!["angry".into(), "sad".into()]),
            ..Default::default()
        };
        let e = Scorer::new(Task::Classify, &items, &o).err().unwrap();
        assert!(format!("{e:#}").contains("`happy`"), "{e:#}");
    }

    #[test]
    fn translation_needs_one_target_language() {
        let mut a = item("a");
        a.translation = Some("Das ist ein kleines Haus.".into());
        a.target_lang = Some("de".into());
        let mut b = a.clone();
        b.id = "b".into();
        b.target_lang = Some("zh".into());
        let e = Scorer::new(Task::Translate, &[a.clone(), b], &Default::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("de, zh"), "{e}");
        let s = Scorer::new(Task::Translate, &[a.clone()], &Default::default()).unwrap();
        assert_eq!(s.metrics[0].name, "BLEU (13a)");
        let sc = s.score(&a, "Das ist ein kleines Haus.").unwrap();
        assert!((s.metrics[0].aggregate.score(&sc.stats[0]) - 100.0).abs() < 1e-9);
        assert!((s.metrics[1].aggregate.score(&sc.stats[1]) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn asr_counts_edits_over_reference_words() {
        let mut a = item("a");
        a.text = Some("the cat sat".into());
        let s = Scorer::new(Task::Asr, &[a.clone()], &Default::default()).unwrap();
        let sc = s.score(&a, "The cat sat down.").unwrap();
        assert_eq!(sc.stats, vec![vec![1.0, 3.0]]);
        assert!((s.metrics[0].aggregate.score(&sc.stats[0]) - 100.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn answers_join_a_synth_manifest_by_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("manifest.jsonl");
        let q = dir.path().join("questions.jsonl");
        std::fs::write(
            &m,
            "{\"audio\":\"wavs/0.wav\",\"text\":\"What is 7 plus 8?\",\"id\":\"000000\",\"lang\":\"en\"}\n",
        )
        .unwrap();
        std::fs::write(
            &q,
            "{\"id\": \"sqa-1\", \"question\": \"what is 7 plus 8\", \"answers\": [\"15\", \"fifteen\"]}\n",
        )
        .unwrap();
        let items = read_manifest_with(&m, Task::SpokenQa, Some(&q)).unwrap();
        assert_eq!(items[0].answers, ["15", "fifteen"]);
        assert_eq!(
            items[0].target_lang, None,
            "a synth manifest's `lang` is the source"
        );
        std::fs::write(
            &q,
            "{\"question\": \"What is 2 plus 2?\", \"answers\": [\"4\"]}\n",
        )
        .unwrap();
        let e = read_manifest_with(&m, Task::SpokenQa, Some(&q))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("manifest.jsonl:1") && e.contains("7 plus 8"),
            "{e}"
        );
    }

    #[test]
    fn manifests_missing_what_the_task_needs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.jsonl");
        std::fs::write(
            &p,
            "{\"id\": \"x\", \"audio\": \"x.wav\", \"text\": \"hi\"}\n",
        )
        .unwrap();
        let e = read_manifest(&p, Task::SpokenQa).unwrap_err().to_string();
        assert!(e.contains("m.jsonl:1") && e.contains("`answers`"), "{e}");
        let items = read_manifest(&p, Task::Asr).unwrap();
        assert_eq!(items[0].audio, dir.path().join("x.wav"));
        std::fs::write(&p, "{\"id\": \"x\", \"audio\": \"x.wav\"}\n{\"id\": \"x\", \"audio\": \"y.wav\"}\nnot json\n").unwrap();
        let e = read_manifest(&p, Task::Translate).unwrap_err().to_string();
        assert!(e.contains(":1") && e.contains("`translation`"), "{e}");
        let e = format!("{:#}", read_manifest(&p, Task::Classify).unwrap_err());
        assert!(e.contains(":1") && e.contains("`label`"), "{e}");
    }
}
