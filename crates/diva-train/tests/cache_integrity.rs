//! A truncated or corrupted cache file is detected and recomputed, never
//! silently trained on (issue 20): encoder states (one file per clip, on the
//! tiny random Whisper of `tests/fixtures/hf-whisper-random`) and teacher
//! targets (one file, entries checked one by one) carry a SHA-256 of their
//! values.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use diva_core::models::whisper::WhisperWeights;
use diva_core::testing::fixtures;
use diva_train::features::EncoderFeatures;
use diva_train::teacher_cache::{transcript_key, TeacherCache};

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn only_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

fn flip(p: &Path, at: usize) {
    let mut b = std::fs::read(p).unwrap();
    b[at] ^= 0x5a;
    std::fs::write(p, b).unwrap();
}

#[test]
fn a_corrupted_or_truncated_encoder_cache_entry_is_recomputed() {
    let whisper = WhisperWeights::load_dir(&fixtures().join("hf-whisper-random/model")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("encoder");
    // A copy of the clip: the cache key includes the path and mtime.
    let wav = dir.path().join("clip.wav");
    std::fs::copy(fixtures().join("audio/demo/cook-for-dinner.wav"), &wav).unwrap();
    let f = EncoderFeatures::new(
        &whisper,
        "random",
        Some(cache.clone()),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let fresh = values(&f.states(&wav).unwrap());
    let entry = only_file(&cache);
    let original = std::fs::read(&entry).unwrap();
    assert_eq!(
        values(&f.states(&wav).unwrap()),
        fresh,
        "read back from the cache"
    );

    // A flipped byte in the middle of the states: detected by the checksum.
    flip(&entry, original.len() / 2);
    assert_ne!(std::fs::read(&entry).unwrap(), original);
    assert_eq!(
        values(&f.states(&wav).unwrap()),
        fresh,
        "a corrupted entry was used"
    );
    assert_eq!(std::fs::read(&entry).unwrap(), original, "rewritten whole");

    // Cut in half (a kill or a full disk on an older diva): recomputed too.
    std::fs::write(&entry, &original[..original.len() / 2]).unwrap();
    assert_eq!(values(&f.states(&wav).unwrap()), fresh);
    assert_eq!(std::fs::read(&entry).unwrap(), original);
    assert_eq!(only_file(&cache), entry, "no temporary file left");
}

/// Where entry `name`'s bytes start in a safetensors file.
fn data_start(p: &Path, name: &str) -> usize {
    let b = std::fs::read(p).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    8 + n + header[name]["data_offsets"][0].as_u64().unwrap() as usize
}

#[test]
fn a_corrupted_teacher_target_is_dropped_and_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("teacher.safetensors");
    let target =
        |seed: f32| Tensor::from_vec(vec![seed, -seed, 0.5 * seed, 3.0], 4, &Device::Cpu).unwrap();
    let mut cache = TeacherCache::open(&path, "model").unwrap();
    cache.insert("first", target(1.0));
    cache.insert("second", target(2.0));
    cache.save().unwrap();
    let cache = TeacherCache::open(&path, "model").unwrap();
    assert_eq!(cache.len(), 2);
    assert_eq!(values(cache.get("first").unwrap()), values(&target(1.0)));

    // One byte of the first target's values flipped: that target is dropped,
    // the other kept.
    flip(&path, data_start(&path, &transcript_key("first")) + 2);
    let mut cache = TeacherCache::open(&path, "model").unwrap();
    assert!(cache.get("first").is_none(), "a corrupted target was kept");
    assert_eq!(values(cache.get("second").unwrap()), values(&target(2.0)));
    // Recomputed and saved: both verified again, the bad one not merged back.
    cache.insert("first", target(1.0));
    cache.save().unwrap();
    let cache = TeacherCache::open(&path, "model").unwrap();
    assert_eq!(cache.len(), 2);
    assert_eq!(values(cache.get("first").unwrap()), values(&target(1.0)));

    // A corrupted checksum is a mismatch too.
    flip(
        &path,
        data_start(&path, &format!("sha256.{}", transcript_key("second"))),
    );
    let cache = TeacherCache::open(&path, "model").unwrap();
    assert!(cache.get("second").is_none());
    assert!(cache.get("first").is_some());

    // A truncated file: every target is recomputed, not an error.
    let b = std::fs::read(&path).unwrap();
    std::fs::write(&path, &b[..b.len() - 3]).unwrap();
    let cache = TeacherCache::open(&path, "model").unwrap();
    assert!(cache.is_empty());

    // Another model's file is still refused.
    let mut cache = TeacherCache::open(&path, "model").unwrap();
    cache.insert("first", target(1.0));
    cache.save().unwrap();
    let e = TeacherCache::open(&path, "other")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`model`, not `other`"), "{e}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary file left");
}
