//! Classification tasks (emotion, sarcasm, humor): the label a free-text
//! reply gives, and accuracy and class-weighted F1 over the items.
//!
//! Label extraction: the reply and every label are reduced to words (maximal
//! runs of letters, numbers and marks, lower-cased), so case and
//! punctuation do not matter ("NOT-SARCASTIC!" reads as `not sarcastic`).
//! The label is the one whose words occur earliest in the reply as whole
//! words; where two start at the same word the longer wins, so `not
//! sarcastic` beats `sarcastic`. A reply naming no label ("unknown", "I
//! can't tell", "joyful" for `joy`) has no label and counts as wrong. This is
//! a literal reading of what the model said, with no notion of negation:
//! "not sad, angry" gives `sad` and "non-sarcastic" `sarcastic` (the prompt
//! offers `not sarcastic`, which is what a model that follows it says).
//!
//! Weighted F1 is scikit-learn's `f1_score(average="weighted")`: per-class
//! F1 over the classes present in the gold or predicted labels, averaged with
//! the classes' gold counts as weights. A reply without a label is a miss for
//! its gold class and a prediction of no class (scikit-learn, given a
//! placeholder label for it, gives the same number: the placeholder has no
//! gold items, hence weight 0). Both metrics also come as sufficient
//! statistics so the paired bootstrap can resample items.

use std::sync::LazyLock;

use anyhow::Context;
use regex::Regex;

static WORD: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern (the unit tests compile it), hence no error path.
    Regex::new(r"[\p{L}\p{N}\p{M}]+").unwrap_or_else(|e| panic!("word pattern: {e}"))
});

/// Words of a text: lower-cased maximal runs of letters, numbers and marks
/// (marks so that a decomposed accent stays inside its word).
fn words(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    WORD.find_iter(&lower)
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The label set of a task, as given in its prompt.
#[derive(Debug, Clone)]
pub struct LabelSet {
    labels: Vec<String>,
    words: Vec<Vec<String>>,
}

impl LabelSet {
    /// Labels as written (their order is the class index). Labels that reduce
    /// to no words, or to the same words, are an error.
    pub fn new<S: AsRef<str>>(labels: &[S]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !labels.is_empty(),
            "a classification task needs at least one label"
        );
        let mut ws: Vec<Vec<String>> = Vec::with_capacity(labels.len());
        for l in labels {
            let w = words(l.as_ref());
            anyhow::ensure!(
                !w.is_empty(),
                "label `{}` has no letters or digits: it could never be recognised in a reply",
                l.as_ref()
            );
            if let Some(j) = ws.iter().position(|x| *x == w) {
                anyhow::bail!(
                    "labels `{}` and `{}` are the same once case and punctuation are ignored: \
                     give distinct labels",
                    labels[j].as_ref(),
                    l.as_ref()
                );
            }
            ws.push(w);
        }
        Ok(Self {
            labels: labels.iter().map(|l| l.as_ref().to_string()).collect(),
            words: ws,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn name(&self, i: usize) -> Option<&str> {
        self.labels.get(i).map(String::as_str)
    }

    /// The class index of a gold label (compared as words, so `Not Sarcastic`
    /// is `not sarcastic`); an error naming the label set if it is not one.
    pub fn index(&self, gold: &str) -> anyhow::Result<usize> {
        let w = words(gold);
        self.words.iter().position(|x| *x == w).with_context(|| {
            format!(
                "gold label `{gold}` is not in the task's label set [{}]: fix the manifest or the label set",
                self.labels.join(", ")
            )
        })
    }

    /// The label the reply gives, if any (see the module comment).
    pub fn extract(&self, reply: &str) -> Option<usize> {
        let rw = words(reply);
        for start in 0..rw.len() {
            let mut best: Option<(usize, usize)> = None;
            for (i, lw) in self.words.iter().enumerate() {
                let fits = rw.len() - start >= lw.len() && rw[start..start + lw.len()] == lw[..];
                if fits && best.is_none_or(|(_, n)| lw.len() > n) {
                    best = Some((i, lw.len()));
                }
            }
            if let Some((i, _)) = best {
                return Some(i);
            }
        }
        None
    }
}

fn check_lengths(gold: &[usize], pred: &[Option<usize>], n_labels: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        gold.len() == pred.len(),
        "{} gold labels but {} predictions: score the same items",
        gold.len(),
        pred.len()
    );
    anyhow::ensure!(
        !gold.is_empty(),
        "no items to score: accuracy and F1 of nothing are undefined"
    );
    if let Some(&g) = gold.iter().find(|&&g| g >= n_labels) {
        anyhow::bail!("gold class {g} is outside the {n_labels} labels");
    }
    if let Some(p) = pred.iter().flatten().find(|&&p| p >= n_labels) {
        anyhow::bail!("predicted class {p} is outside the {n_labels} labels");
    }
    Ok(())
}

/// Fraction of items whose predicted label is the gold one (no label = wrong).
pub fn accuracy(gold: &[usize], pred: &[Option<usize>]) -> anyhow::Result<f64> {
    check_lengths(gold, pred, usize::MAX)?;
    let right = gold
        .iter()
        .zip(pred)
        .filter(|(g, p)| Some(**g) == **p)
        .count();
    Ok(right as f64 / gold.len() as f64)
}

/// One item's contribution to the per-class counts: `3 * n_labels` numbers,
/// true positives, false positives and false negatives per class.
pub fn item_counts(gold: usize, pred: Option<usize>, n_labels: usize) -> Vec<f64> {
    let mut s = vec![0.0; 3 * n_labels];
    if pred == Some(gold) {
        s[gold] += 1.0;
    } else {
        s[2 * n_labels + gold] += 1.0;
        if let Some(p) = pred {
            s[n_labels + p] += 1.0;
        }
    }
    s
}

/// Weighted F1 from summed [`item_counts`] (scikit-learn's definition).
pub fn weighted_f1_from_counts(counts: &[f64]) -> f64 {
    let k = counts.len() / 3;
    let (tp, rest) = counts.split_at(k);
    let (fp, fneg) = rest.split_at(k);
    let mut num = 0.0;
    let mut support = 0.0;
    for c in 0..k {
        let s = tp[c] + fneg[c];
        let den = 2.0 * tp[c] + fp[c] + fneg[c];
        if den > 0.0 {
            num += s * 2.0 * tp[c] / den;
        }
        support += s;
    }
    if support > 0.0 {
        num / support
    } else {
        0.0
    }
}

/// scikit-learn's `f1_score(gold, pred, average="weighted")`.
pub fn weighted_f1(gold: &[usize], pred: &[Option<usize>], n_labels: usize) -> anyhow::Result<f64> {
    check_lengths(gold, pred, n_labels)?;
    let mut sum = vec![0.0; 3 * n_labels];
    for (&g, &p) in gold.iter().zip(pred) {
        for (a, b) in sum.iter_mut().zip(item_counts(g, p, n_labels)) {
            *a += b;
        }
    }
    Ok(weighted_f1_from_counts(&sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(labels: &[&str]) -> LabelSet {
        LabelSet::new(labels).unwrap()
    }

    #[test]
    fn extraction_handles_tricky_replies() {
        let emo = set(&[
            "neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust",
        ]);
        let get = |r: &str| emo.extract(r).and_then(|i| emo.name(i));
        assert_eq!(get("JOY!"), Some("joy"));
        assert_eq!(get("The emotion is **Sadness**."), Some("sadness"));
        assert_eq!(get("Sadness? No: anger."), Some("sadness"));
        assert_eq!(get("fear/disgust"), Some("fear"));
        assert_eq!(get("Disgust, fear"), Some("disgust"));
        assert_eq!(get("I'd say... surprise (maybe fear)"), Some("surprise"));
        // Whole words only: none of these is a label.
        assert_eq!(get("joyful"), None);
        assert_eq!(get("fearless and angry"), None);
        assert_eq!(get("unknown"), None);
        assert_eq!(get("I can't tell."), None);
        assert_eq!(get(""), None);
        assert_eq!(get("neutralize"), None);
        // Hyphens separate words: neutral-ish says `neutral`.
        assert_eq!(get("neutral-ish?"), Some("neutral"));

        let sarc = set(&["sarcastic", "not sarcastic"]);
        let s = |r: &str| sarc.extract(r).and_then(|i| sarc.name(i));
        assert_eq!(s("Not sarcastic at all."), Some("not sarcastic"));
        assert_eq!(s("NOT-SARCASTIC"), Some("not sarcastic"));
        assert_eq!(s("It's sarcastic!"), Some("sarcastic"));
        assert_eq!(s("sarcastic? Not sarcastic."), Some("sarcastic"));
        assert_eq!(s("non-sarcastic"), Some("sarcastic"));
        assert_eq!(s("nonsarcastic"), None);
        assert_eq!(s("That's not really sarcastic"), Some("sarcastic"));

        // One label a prefix of another: the longer wins where both start.
        let mixed = set(&["happy", "happy and sad", "sad"]);
        assert_eq!(mixed.extract("Happy and sad, I think."), Some(1));
        assert_eq!(mixed.extract("happy, and sad"), Some(1));
        assert_eq!(mixed.extract("happy. Sad too"), Some(0));

        let iemo = set(&["neutral", "happy", "sad", "angry"]);
        assert_eq!(iemo.extract("unhappy"), None);
        assert_eq!(iemo.extract("SAD :("), Some(2));
        assert_eq!(iemo.extract("a sad, angry man"), Some(2));
        // Accents and decomposed accents stay inside words (no Unicode
        // normalisation: a decomposed è is another word than a precomposed one).
        let fr = set(&["colère", "joie"]);
        assert_eq!(fr.extract("C'est de la COLÈRE."), Some(0));
        assert_eq!(fr.extract("cole\u{300}re"), None);
        assert_eq!(fr.extract("joie\u{301}"), None);
    }

    #[test]
    fn label_sets_are_validated() {
        assert!(LabelSet::new::<&str>(&[]).is_err());
        assert!(LabelSet::new(&["happy", "Happy!"]).is_err());
        assert!(LabelSet::new(&["happy", "???"]).is_err());
        let s = set(&["Not Sarcastic", "sarcastic"]);
        assert_eq!(s.index("not sarcastic").unwrap(), 0);
        let e = s.index("ironic").unwrap_err().to_string();
        assert!(e.contains("ironic") && e.contains("Not Sarcastic"), "{e}");
    }

    #[test]
    fn weighted_f1_matches_hand_computation() {
        // gold a a b b c, pred a b b none a:
        // a: tp1 fp1 fn1 -> 0.5, support 2; b: tp1 fp1 fn1 -> 0.5, s 2; c: tp0 fn1 -> 0, s 1.
        let gold = [0, 0, 1, 1, 2];
        let pred = [Some(0), Some(1), Some(1), None, Some(0)];
        let f = weighted_f1(&gold, &pred, 3).unwrap();
        assert!((f - (0.5 * 2.0 + 0.5 * 2.0) / 5.0).abs() < 1e-12, "{f}");
        assert!((accuracy(&gold, &pred).unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(weighted_f1(&[0], &[Some(0)], 1).unwrap(), 1.0);
        assert_eq!(weighted_f1(&[0], &[None], 2).unwrap(), 0.0);
        assert!(weighted_f1(&[], &[], 2).is_err());
        assert!(accuracy(&[0, 1], &[None]).is_err());
        assert!(weighted_f1(&[3], &[None], 2).is_err());
    }
}
