//! The few pieces of Python's `str` and `re` semantics that the reference
//! metrics (sacrebleu, the SQuAD script, qa-metrics, scikit-learn) rely on,
//! so that the ports in this crate split, strip and match words exactly as
//! they do.
//!
//! - Whitespace (`str.split()`, `str.strip()`): Rust's `White_Space` set plus
//!   U+001C..U+001F, which Python also counts as whitespace.
//! - A word character of Python's `re` (`\w` in a `str` pattern): a letter
//!   (`\p{L}`), a number (`\p{N}`) or `_`. This differs from the `regex`
//!   crate's `\w` (UTS #18: also marks and connector punctuation), which is
//!   the definition of Python's third-party `regex` module instead; where a
//!   reference uses that module the port uses the crate's `\w` directly.

use std::sync::LazyLock;

use regex::Regex;

/// Python's `str.isspace()` for one character.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()`: runs of whitespace separate, none at the ends.
pub fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|w| !w.is_empty())
}

/// Python's `s.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Python's `s.rstrip()`.
pub fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

/// `' '.join(s.split())`.
pub fn collapse_spaces(s: &str) -> String {
    split(s).collect::<Vec<_>>().join(" ")
}

static RE_WORD_RUN: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern: compiling it cannot fail at run time once a test has
    // compiled it (the unit tests below do).
    Regex::new(r"[\p{L}\p{N}_]+").unwrap_or_else(|e| panic!("word-run pattern: {e}"))
});

/// Maximal runs of Python-`re` word characters, as (byte start, text).
pub fn re_word_runs(s: &str) -> impl Iterator<Item = (usize, &str)> {
    RE_WORD_RUN.find_iter(s).map(|m| (m.start(), m.as_str()))
}

/// `re.sub(r'\b(a|an|the)\b', ' ', s)` with Python `re`'s word boundaries (the
/// SQuAD script's and the `string.punctuation`-stripping normalisers'). A
/// match of the pattern is exactly a maximal word run equal to an article.
pub fn remove_articles_re(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (start, w) in re_word_runs(s) {
        if matches!(w, "a" | "an" | "the") {
            out.push_str(&s[last..start]);
            out.push(' ');
            last = start + w.len();
        }
    }
    out.push_str(&s[last..]);
    out
}

/// Python's `string.punctuation`.
pub fn is_ascii_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_pythons() {
        assert_eq!(
            split(" a\u{1c}b\tc\u{a0}d\u{3000}e \u{85}f ").collect::<Vec<_>>(),
            ["a", "b", "c", "d", "e", "f"]
        );
        // U+200B (zero width space) is not whitespace in either language.
        assert_eq!(split("a\u{200b}b").count(), 1);
        assert_eq!(strip("\u{1f} x \n"), "x");
        assert_eq!(rstrip(" x \u{1d}"), " x");
        assert_eq!(collapse_spaces("  a \n b  "), "a b");
        assert_eq!(split("").count(), 0);
    }

    #[test]
    fn word_runs_follow_python_re() {
        // U+0301 (a combining mark) is not a word character of Python's re,
        // U+00B2 (superscript two, No) is; `_` is.
        let runs: Vec<&str> = re_word_runs("a\u{301} x\u{b2} snake_case ok")
            .map(|r| r.1)
            .collect();
        assert_eq!(runs, ["a", "x\u{b2}", "snake_case", "ok"]);
    }

    #[test]
    fn articles_are_whole_words_only() {
        assert_eq!(
            remove_articles_re("the theory of an apple a"),
            "  theory of   apple  "
        );
        assert_eq!(remove_articles_re("a_b thea"), "a_b thea");
        // Python re: the combining mark is a boundary, so `a` goes.
        assert_eq!(remove_articles_re("a\u{301}"), " \u{301}");
        assert_eq!(remove_articles_re(""), "");
    }
}
