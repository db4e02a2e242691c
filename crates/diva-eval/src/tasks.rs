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
//! - `asr`: `text` (the reference transcript).
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
use crate::pedant::{self, PedantModel};
use crate::{qa, wer};

/// The tasks `diva eval run` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    SpokenQa,
    Classify,
    Translate,
    Asr,
}

impl Task {
    pub const ALL: [Task; 4] = [Task::SpokenQa, Task::Classify, Task::Translate, Task::Asr];

    pub fn name(self) -> &'static str {
        match self {
            Task::SpokenQa => "spoken-qa",
            Task::Classify => "classify",
            Task::Translate => "translate",
            Task::Asr => "asr",
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
        }
    }
}

/// One metric of a task.
#[derive(Debug, Clone)]
pub struct Metric {
    /// Stable key in results.json.
    pub key: &'static str,
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
        let pct = |key, name: &str, agg| Metric {
            key,
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
            Task::Asr => vec![Metric {
                key: "wer",
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
        let mean = |x: f64| vec![100.0 * x, 1.0];
        let (stats, note) = match self.task {
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
        Ok(ItemScore { stats, note })
    }
}

/// One reply's statistics per metric.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemScore {
    pub stats: Vec<Vec<f64>>,
    pub note: Option<String>,
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
            assert!(p.version >= 1 && !p.instruction.is_empty(), "{t:?}");
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
