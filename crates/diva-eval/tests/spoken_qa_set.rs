//! The project's own spoken-QA questions (`data/spoken-qa/questions.jsonl`,
//! issue 19): enough of them, well formed, unique, and none of them a
//! sentence the connector trains on.

use std::collections::HashSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn questions_are_many_unique_answerable_and_held_out_of_training() {
    let text = std::fs::read_to_string(root().join("data/spoken-qa/questions.jsonl")).unwrap();
    let train = std::fs::read_to_string(root().join("data/text/starter-en.txt"))
        .unwrap()
        .to_lowercase();
    let (mut ids, mut questions) = (HashSet::new(), HashSet::new());
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        let id = v["id"].as_str().expect("id");
        let q = v["question"].as_str().expect("question");
        let answers = v["answers"].as_array().expect("answers");
        assert!(
            ["capital", "arithmetic", "knowledge"].contains(&v["category"].as_str().unwrap()),
            "{id}"
        );
        assert!(q.ends_with('?'), "{id}: {q}");
        assert!(!answers.is_empty(), "{id}: no answer");
        for a in answers {
            let a = a.as_str().expect("answer strings");
            assert!(
                !a.trim().is_empty() && a.split_whitespace().count() <= 5,
                "{id}: answer {a:?} is not short"
            );
        }
        assert!(ids.insert(id.to_string()), "{id} twice");
        assert!(questions.insert(q.to_lowercase()), "{q} twice");
        assert!(
            !train.contains(&q.to_lowercase()),
            "{id} is a training sentence: {q}"
        );
        n += 1;
    }
    assert!(n >= 300, "{n} questions; the benchmark needs at least 300");
}

/// Spot checks that the generated answers are the right ones.
#[test]
fn generated_answers_are_right() {
    let text = std::fs::read_to_string(root().join("data/spoken-qa/questions.jsonl")).unwrap();
    let find = |q: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.contains(q))
            .unwrap_or_else(|| panic!("{q}"));
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(find("What is 7 plus 8?"), ["15", "fifteen"]);
    assert_eq!(
        find("What is 31 plus 18?"),
        ["49", "forty-nine", "forty nine"]
    );
    assert_eq!(
        find("What is 72 minus 36?"),
        ["36", "thirty-six", "thirty six"]
    );
    assert_eq!(find("What is 4 times 25?"), ["100", "one hundred"]);
    assert_eq!(find("What is 99 divided by 11?"), ["9", "nine"]);
    assert_eq!(find("What is the capital of Australia?"), ["Canberra"]);
}
