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

/// A manifest line nested 200,000 deep is a clear error naming the line or
/// is read, never a stack overflow (issue 20).
#[test]
fn a_deeply_nested_manifest_line_is_an_error() {
    let dir = std::env::temp_dir().join(format!("diva-deep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("m.jsonl");
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    std::fs::write(
        &p,
        format!(
            "{{\"audio\": \"a.wav\", \"text\": \"x\"}}\n{{\"audio\": {deep}, \"text\": \"y\"}}\n"
        ),
    )
    .unwrap();
    let e = diva_eval::manifest::read(&p).unwrap_err();
    assert!(e.contains(":2: bad manifest line"), "{e}");
    // Deep nesting where a string is expected fails at the first `[`; deep
    // nesting in an unknown field is skipped without recursion.
    let skip = format!("{{\"audio\": \"a.wav\", \"text\": \"x\", \"extra\": {deep}}}\n");
    std::fs::write(&p, skip).unwrap();
    assert_eq!(diva_eval::manifest::read(&p).unwrap().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
