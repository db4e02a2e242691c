//! Distillation metrics that do not reward a generic reply.
//!
//! A student that answers every clip with the teacher's most common opening
//! scores well on naive agreement, so each metric comes with the baseline a
//! content-free student would reach:
//! - retrieval@1 (is a clip's student state nearest its own teacher state?)
//!   against chance `1/pool`;
//! - first-token agreement against the majority share of the teacher's first
//!   tokens;
//! - reply token-F1 against the F1 with a different clip's teacher reply.

use std::collections::HashMap;

/// Squared L2 distance.
fn dist2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (*x - *y) as f64;
            d * d
        })
        .sum()
}

/// Retrieval@1 within consecutive pools of `pool` clips (a final partial pool
/// of fewer than 2 clips is dropped; chance in a pool of n is 1/n). Returns
/// `(accuracy, number of clips scored)`.
pub fn retrieval_at_1(student: &[Vec<f32>], teacher: &[Vec<f32>], pool: usize) -> (f64, usize) {
    let per = retrieval_hits(student, teacher, pool);
    let scored = per.iter().flatten().count();
    let hits = per.iter().flatten().filter(|&&h| h).count();
    (hits as f64 / scored.max(1) as f64, scored)
}

/// [`retrieval_at_1`] clip by clip: whether each clip's student state is
/// nearest its own teacher state in its pool; None for a clip in no scored
/// pool (a last pool of one clip). `diva eval run --task distill`
/// bootstraps these.
pub fn retrieval_hits(
    student: &[Vec<f32>],
    teacher: &[Vec<f32>],
    pool: usize,
) -> Vec<Option<bool>> {
    assert_eq!(student.len(), teacher.len());
    let mut out = vec![None; student.len()];
    for start in (0..student.len()).step_by(pool.max(2)) {
        let end = (start + pool.max(2)).min(student.len());
        if end - start < 2 {
            break;
        }
        for i in start..end {
            let own = dist2(&student[i], &teacher[i]);
            // Ties count against the clip: a constant student must not score.
            let beaten = (start..end).any(|j| j != i && dist2(&student[i], &teacher[j]) <= own);
            out[i] = Some(!beaten);
        }
    }
    out
}

/// Mean L2 distance from each student state to the *other* clips' teacher
/// states in its pool: the distillation loss a content-free student would
/// have. The own-clip distance must fall below it for retrieval to work.
pub fn mismatched_distance(student: &[Vec<f32>], teacher: &[Vec<f32>], pool: usize) -> f64 {
    let pool = pool.max(2);
    let (mut sum, mut n) = (0.0, 0usize);
    for start in (0..student.len()).step_by(pool) {
        let end = (start + pool).min(student.len());
        for (i, s) in student.iter().enumerate().take(end).skip(start) {
            for (j, t) in teacher.iter().enumerate().take(end).skip(start) {
                if i != j {
                    sum += dist2(s, t).sqrt();
                    n += 1;
                }
            }
        }
    }
    sum / n.max(1) as f64
}

/// The share of clips whose student first token equals the teacher's, and the
/// share of the teacher's most common first token (the score of a student
/// that always says it).
pub fn first_token_agreement(student: &[u32], teacher: &[u32]) -> (f64, f64) {
    assert_eq!(student.len(), teacher.len());
    let n = teacher.len().max(1) as f64;
    let agree = student.iter().zip(teacher).filter(|(a, b)| a == b).count() as f64 / n;
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for t in teacher {
        *counts.entry(*t).or_default() += 1;
    }
    let majority = counts.values().copied().max().unwrap_or(0) as f64 / n;
    (agree, majority)
}

/// SQuAD-style normalisation: lower case, punctuation dropped, articles
/// dropped, whitespace split.
pub fn normalise_words(s: &str) -> Vec<String> {
    let cleaned: String = s
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .map(str::to_string)
        .collect()
}

/// Bag-of-words F1 between two replies (1 when both are empty).
pub fn token_f1(prediction: &str, reference: &str) -> f64 {
    let p = normalise_words(prediction);
    let r = normalise_words(reference);
    if p.is_empty() || r.is_empty() {
        return f64::from(u8::from(p.is_empty() && r.is_empty()));
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for w in &r {
        *counts.entry(w).or_default() += 1;
    }
    let mut common = 0;
    for w in &p {
        if let Some(c) = counts.get_mut(w.as_str()) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Mean F1 of each student reply against its own teacher reply, and against
/// the teacher reply of the next clip whose transcript differs (mismatched).
pub fn reply_f1(student: &[String], teacher: &[String], transcripts: &[String]) -> (f64, f64) {
    assert_eq!(student.len(), teacher.len());
    let n = student.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let matched = student
        .iter()
        .zip(teacher)
        .map(|(s, t)| token_f1(s, t))
        .sum::<f64>()
        / n as f64;
    let mut mismatched = 0.0;
    for i in 0..n {
        let j = (1..n)
            .map(|k| (i + k) % n)
            .find(|&j| transcripts[j] != transcripts[i])
            .unwrap_or((i + 1) % n);
        mismatched += token_f1(&student[i], &teacher[j]);
    }
    (matched, mismatched / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrieval_rewards_content_not_a_constant() {
        let teacher: Vec<Vec<f32>> = (0..10).map(|i| vec![i as f32, 0.0]).collect();
        let perfect = teacher.clone();
        assert_eq!(retrieval_at_1(&perfect, &teacher, 100), (1.0, 10));
        let constant = vec![vec![4.5f32, 0.0]; 10];
        // Equidistant from clips 4 and 5: ties count as misses.
        assert_eq!(retrieval_at_1(&constant, &teacher, 100).0, 0.0);
        // Pools of 5: clip 7's student near teacher 2 (other pool) still hits.
        let mut shifted = perfect.clone();
        shifted[7] = vec![2.0, 0.0];
        assert_eq!(retrieval_at_1(&shifted, &teacher, 5), (0.9, 10));
        assert_eq!(retrieval_at_1(&shifted, &teacher, 100), (0.9, 10));
    }

    #[test]
    fn agreement_comes_with_its_majority_baseline() {
        let teacher = [1, 1, 1, 2];
        assert_eq!(first_token_agreement(&[1, 1, 1, 1], &teacher), (0.75, 0.75));
        assert_eq!(first_token_agreement(&[1, 1, 1, 2], &teacher), (1.0, 0.75));
    }

    #[test]
    fn f1_is_squad_style_and_mismatch_is_the_baseline() {
        assert_eq!(token_f1("The cat sat.", "a cat sat"), 1.0);
        assert!((token_f1("cat sat on mat", "cat") - 0.4).abs() < 1e-12);
        assert_eq!(token_f1("dog", "cat"), 0.0);
        let s = vec!["paris is nice".to_string(), "seven".to_string()];
        let t = vec![
            "paris is the capital".to_string(),
            "it is seven".to_string(),
        ];
        let tr = vec!["q1".to_string(), "q2".to_string()];
        let (m, mm) = reply_f1(&s, &t, &tr);
        assert!(m > mm, "{m} {mm}");
        let generic = vec!["sure i can help".to_string(); 2];
        let same = vec!["sure i can help".to_string(); 2];
        let (m, mm) = reply_f1(&generic, &same, &tr);
        assert_eq!(m, mm, "a generic reply gains nothing over mismatched");
    }
}
