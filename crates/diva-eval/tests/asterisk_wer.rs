//! Transcription of real human speech (the Asterisk prompts) with tiny.en:
//! diva's WER on a fixed subset must be within 1.0 point of faster-whisper's
//! greedy output with the same model (fixture from
//! tools/reference/transcribe_faster_whisper.py). `diva eval asr` runs all clips.

use std::path::PathBuf;

use candle_core::Device;
use diva_core::generate::{TranscribeOptions, Transcriber};
use diva_core::weights::cache;
use diva_eval::{asr, manifest};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

#[test]
fn tiny_en_wer_on_asterisk_subset_is_within_one_point_of_faster_whisper() {
    let model = cache::models_dir().join("whisper-tiny.en");
    let data = cache::diva_home().join("data/asterisk/manifest.jsonl");
    assert!(
        cache::is_complete(&model),
        "run scripts/fetch-models (the test command does)"
    );
    assert!(
        data.is_file(),
        "run scripts/fetch-data (the test command does)"
    );
    let items = manifest::read(&data).unwrap();
    // A fixed, spread-out subset: every 8th prompt in id order.
    let mut subset: Vec<_> = items.into_iter().collect();
    subset.sort_by(|a, b| a.id.cmp(&b.id));
    let subset: Vec<_> = subset.into_iter().step_by(8).collect();
    assert!(subset.len() >= 60, "subset has {} items", subset.len());

    let fw = asr::read_reference_hyps(&fixtures().join("asterisk/faster_whisper_tiny_en.jsonl"))
        .unwrap();
    let tr = Transcriber::load(&model, &TranscribeOptions::default(), &Device::Cpu).unwrap();
    let report = asr::evaluate(&tr, &subset, Some(&fw), |_| {});
    let other = report.other_wer.unwrap();
    eprintln!(
        "asterisk subset: {} clips, {} words: diva WER {:.2}%, faster-whisper WER {:.2}%, identical {}",
        report.utterances, report.words, report.wer, other, report.identical_to_other
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.utterances, subset.len());
    assert!(
        report.wer <= other + 1.0,
        "diva {:.2} vs faster-whisper {:.2}",
        report.wer,
        other
    );
    // Sanity: this is real recognition, not an artefact of the comparison.
    assert!(report.wer < 25.0, "WER {:.2}", report.wer);
    assert!(
        report.identical_to_other * 10 >= report.utterances * 8,
        "only {} identical",
        report.identical_to_other
    );
}
