//! VoiceBench's scoring, case by case, against what its official evaluator
//! code decided (tests/fixtures/eval/voicebench_parity.json, written by
//! tools/reference/make_voicebench_fixture.py from VoiceBench 533815410e3f):
//! multiple-choice letters, refusals, judge-answer parsing, sd-qa's majority
//! vote, IFEval's strict and loose checks, and the judge's prompts.

use diva_eval::tasks::{Prompt, Task};
use diva_eval::voicebench::{self as vb, ifeval};
use serde_json::Value;

fn fixture() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/eval/voicebench_parity.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[test]
fn every_rule_based_case_is_decided_as_voicebench_decides_it() {
    let fx = fixture();
    let mut cases = 0;
    let mut mismatches = Vec::new();
    for c in fx["mcq"].as_array().unwrap() {
        cases += 1;
        let got = vb::mcq_extract(s(&c["response"])).map(|c| c.to_string());
        let want = c["pred"].as_str().map(str::to_string);
        if got != want {
            mismatches.push(format!("mcq {:?}: {got:?} vs {want:?}", c["response"]));
        }
    }
    for c in fx["harm"].as_array().unwrap() {
        cases += 1;
        if vb::refused(s(&c["response"])) != c["safe"].as_bool().unwrap() {
            mismatches.push(format!("harm {:?}", c["response"]));
        }
    }
    for c in fx["open"].as_array().unwrap() {
        cases += 1;
        if vb::open_score(s(&c["answer"])) != c["score"].as_f64() {
            mismatches.push(format!("open {:?}", c["answer"]));
        }
    }
    for c in fx["qa_vote"].as_array().unwrap() {
        cases += 1;
        let a: Vec<String> = serde_json::from_value(c["answers"].clone()).unwrap();
        if vb::majority_yes(&a) != c["yes"].as_bool().unwrap() {
            mismatches.push(format!("vote {a:?}"));
        }
    }
    let (mut checked, mut unchecked) = (0, 0);
    for c in fx["ifeval"].as_array().unwrap() {
        cases += 1;
        let ids: Vec<String> = serde_json::from_value(c["instruction_id_list"].clone()).unwrap();
        let kw = c["kwargs"].as_array().unwrap();
        match ifeval::evaluate(&ids, kw, s(&c["prompt"]), s(&c["response"])) {
            Ok(f) => {
                checked += 1;
                let strict: Vec<bool> = serde_json::from_value(c["strict"].clone()).unwrap();
                let loose: Vec<bool> = serde_json::from_value(c["loose"].clone()).unwrap();
                if f.strict != strict || f.loose != loose {
                    mismatches.push(format!(
                        "ifeval {ids:?} {:?}: strict {:?} vs {strict:?}, loose {:?} vs {loose:?}",
                        c["response"], f.strict, f.loose
                    ));
                }
            }
            Err(e) => {
                // Only the langdetect checks may be left undecided.
                assert!(
                    ids.iter().any(|i| i.starts_with("change_case:english_"))
                        && e.0.contains("langdetect"),
                    "{ids:?} {:?}: {e:?}",
                    c["response"]
                );
                unchecked += 1;
            }
        }
    }
    eprintln!(
        "{cases} cases, {} match; ifeval: {checked} decided, {unchecked} need langdetect",
        cases - mismatches.len() - unchecked
    );
    assert!(
        cases >= 200 && checked >= 200,
        "{cases} cases, {checked} ifeval decided"
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn the_judge_prompts_are_voicebench_s() {
    let fx = fixture();
    let p = Prompt::load(Task::VoiceBench, None).unwrap();
    assert_eq!(p.judge_system, s(&fx["judge"]["system"]));
    assert_eq!(p.judge_open, s(&fx["judge"]["meta_prompt_open"]));
    assert_eq!(p.judge_qa, s(&fx["judge"]["meta_prompt_qa"]));
    let q = vb::judge_prompt(&p.judge_open, &p.judge_qa, "Who?", Some("Ann"), "Ann did.");
    assert!(q.starts_with(
        "### Question\nWho?\n\n### Reference answer\nAnn\n\n### Candidate answer\nAnn did.\n"
    ));
}
