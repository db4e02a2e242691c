//! ASR evaluation: transcribe a manifest and score it, optionally beside a
//! reference system's hypotheses for the same items (a JSONL with `id`, `hyp`).

use std::collections::HashMap;
use std::path::Path;

use diva_core::generate::Transcriber;
use serde::{Deserialize, Serialize};

use crate::manifest::Item;
use crate::wer::WerCounter;

#[derive(Debug, Clone, Deserialize)]
pub struct RefHyp {
    pub id: String,
    pub hyp: String,
}

/// Read another system's hypotheses keyed by id.
pub fn read_reference_hyps(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str::<RefHyp>(l)
                .map(|r| (r.id, r.hyp))
                .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemResult {
    pub id: String,
    pub reference: String,
    pub hyp: String,
    pub other_hyp: Option<String>,
    pub edits: usize,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct AsrReport {
    pub utterances: usize,
    pub words: usize,
    pub wer: f64,
    /// WER of the other system on the same items, if given.
    pub other_wer: Option<f64>,
    /// Items whose normalised hypothesis equals the other system's.
    pub identical_to_other: usize,
    pub failed: Vec<String>,
    pub items: Vec<ItemResult>,
}

/// Transcribe `items` and score them; `on_item` is called after each (progress).
pub fn evaluate(
    tr: &Transcriber,
    items: &[Item],
    other: Option<&HashMap<String, String>>,
    mut on_item: impl FnMut(&ItemResult),
) -> AsrReport {
    let mut ours = WerCounter::default();
    let mut theirs = WerCounter::default();
    let mut report = AsrReport::default();
    for item in items {
        let hyp = match tr.transcribe_file(&item.audio) {
            Ok(t) => t.text,
            Err(e) => {
                tracing::warn!("{}: {e}", item.id);
                report.failed.push(format!("{}: {e}", item.id));
                continue;
            }
        };
        let edits = ours.add(&item.text, &hyp);
        let other_hyp = other.and_then(|o| o.get(&item.id).cloned());
        if let Some(o) = &other_hyp {
            theirs.add(&item.text, o);
            if crate::wer::normalize(o) == crate::wer::normalize(&hyp) {
                report.identical_to_other += 1;
            }
        }
        let r = ItemResult {
            id: item.id.clone(),
            reference: item.text.clone(),
            hyp,
            other_hyp,
            edits,
        };
        on_item(&r);
        report.items.push(r);
    }
    report.utterances = ours.utterances;
    report.words = ours.words;
    report.wer = ours.wer();
    report.other_wer = other.map(|_| theirs.wer());
    report
}
