//! Word error rate with a simple, documented normaliser.
//!
//! Normalisation (the same in `tools/reference/wer.py`): lower case; every
//! character that is not a letter, digit, apostrophe or whitespace becomes a
//! space; apostrophes at the start or end of a word are stripped; split on
//! whitespace. No number or spelling normalisation: both systems are scored
//! against the same references, so the comparison stays fair.

/// Normalise a sentence into words.
pub fn normalize(text: &str) -> Vec<String> {
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word-level Levenshtein distance (substitutions + insertions + deletions).
pub fn edit_distance(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    let mut cur = vec![0; hypothesis.len() + 1];
    for (i, r) in reference.iter().enumerate() {
        cur[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev[j] + usize::from(r != h);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[hypothesis.len()]
}

/// Accumulates corpus-level WER: total edits / total reference words.
#[derive(Debug, Default, Clone, Copy)]
pub struct WerCounter {
    pub edits: usize,
    pub words: usize,
    pub utterances: usize,
}

impl WerCounter {
    pub fn add(&mut self, reference: &str, hypothesis: &str) -> usize {
        let (r, h) = (normalize(reference), normalize(hypothesis));
        let e = edit_distance(&r, &h);
        self.edits += e;
        self.words += r.len();
        self.utterances += 1;
        e
    }

    /// WER in percent.
    pub fn wer(&self) -> f64 {
        if self.words == 0 {
            return 0.0;
        }
        100.0 * self.edits as f64 / self.words as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normaliser_strips_case_and_punctuation() {
        assert_eq!(
            normalize("Hello, World! It's  'quoted' 42."),
            vec!["hello", "world", "it's", "quoted", "42"]
        );
        assert_eq!(normalize("Press #-key..."), vec!["press", "key"]);
    }

    #[test]
    fn edit_distance_counts_each_kind_of_error() {
        let w = |s: &str| normalize(s);
        assert_eq!(edit_distance(&w("a b c"), &w("a b c")), 0);
        assert_eq!(edit_distance(&w("a b c"), &w("a x c")), 1); // substitution
        assert_eq!(edit_distance(&w("a b c"), &w("a c")), 1); // deletion
        assert_eq!(edit_distance(&w("a b c"), &w("a b c d")), 1); // insertion
        assert_eq!(edit_distance(&w("a b c"), &w("")), 3);
    }

    #[test]
    fn corpus_wer_weights_by_reference_length() {
        let mut c = WerCounter::default();
        c.add("one two three four", "one two three four");
        c.add("five", "six");
        assert!((c.wer() - 20.0).abs() < 1e-9);
    }
}
