//! Bounded allocation for untrusted model files (issue 20): a small file whose
//! header claims a huge string or tensor is refused with an error naming the
//! file, before anything of the claimed size is allocated (a 100 GB claim
//! would abort the process on allocation, not return). GGUF here; the WAV
//! header's claims are covered in `audio_decode.rs` (`hostile_inputs_never_panic`).

use std::path::Path;

use candle_core::Device;
use diva_core::weights::gguf::GgufFile;

/// A GGUF v3 file: no metadata, one tensor `t` of `dims` (F32) at offset 0,
/// then `data` bytes of tensor data after 32-byte alignment.
fn gguf(dims: &[u64], name_len: Option<u64>, data: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // tensors
    b.extend_from_slice(&0u64.to_le_bytes()); // metadata entries
    b.extend_from_slice(&name_len.unwrap_or(1).to_le_bytes());
    b.push(b't');
    b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&0u32.to_le_bytes()); // F32
    b.extend_from_slice(&0u64.to_le_bytes()); // offset
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend(std::iter::repeat_n(0u8, data));
    b
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_small_gguf_claiming_a_huge_tensor_or_string_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // Sanity: the same layout with an honest claim loads.
    let ok = write(dir.path(), "ok.gguf", &gguf(&[4, 2], None, 32));
    let t = GgufFile::open(&ok)
        .unwrap()
        .tensor("t", &Device::Cpu)
        .unwrap();
    assert_eq!(t.shape().dims(), &[2, 4]);

    // 2^17 × 2^17 f32 = 64 GiB claimed by a ~100-byte file.
    let huge = write(
        dir.path(),
        "huge.gguf",
        &gguf(&[1 << 17, 1 << 17], None, 32),
    );
    let e = GgufFile::open(&huge)
        .and_then(|g| g.tensor("t", &Device::Cpu))
        .unwrap_err()
        .to_string();
    assert!(e.contains("huge.gguf"), "{e}");
    assert!(e.contains("bytes"), "{e}");

    // Dimensions whose product overflows 64 bits.
    let wrap = write(
        dir.path(),
        "wrap.gguf",
        &gguf(&[u64::MAX / 2, 4, 4], None, 32),
    );
    let r = GgufFile::open(&wrap).and_then(|g| g.tensor("t", &Device::Cpu));
    assert!(r.is_err(), "an overflowing shape must not load");

    // A tensor name claiming 2^62 bytes.
    let name = write(dir.path(), "name.gguf", &gguf(&[4], Some(1 << 62), 32));
    let Err(e) = GgufFile::open(&name) else {
        panic!("a 2^62-byte name must be refused")
    };
    let e = e.to_string();
    assert!(e.contains("name.gguf"), "{e}");
}

/// safetensors: an 8-byte header length of 2^60, and a header whose tensor
/// claims 2^40 f32 elements in a 16-byte buffer, are errors naming the file.
#[test]
fn a_safetensors_header_claiming_more_than_the_file_is_an_error() {
    use diva_core::weights::safetensors_io::load_file;
    let dir = tempfile::tempdir().unwrap();
    let st = |header: &str, data: usize| {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend(std::iter::repeat_n(0u8, data));
        b
    };
    let ok = write(
        dir.path(),
        "ok.safetensors",
        &st(
            r#"{"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#,
            16,
        ),
    );
    assert_eq!(load_file(&ok, &Device::Cpu).unwrap()["t"].dims(), &[2, 2]);

    let mut long = (1u64 << 60).to_le_bytes().to_vec();
    long.extend_from_slice(b"{}");
    let p = write(dir.path(), "long.safetensors", &long);
    let Err(e) = load_file(&p, &Device::Cpu) else {
        panic!("a 2^60-byte header must be refused")
    };
    let e = e.to_string();
    assert!(e.contains("long.safetensors"), "{e}");

    let big = write(
        dir.path(),
        "big.safetensors",
        &st(
            r#"{"t":{"dtype":"F32","shape":[1048576,1048576],"data_offsets":[0,4398046511104]}}"#,
            16,
        ),
    );
    let Err(e) = load_file(&big, &Device::Cpu) else {
        panic!("a 16 TiB tensor in 16 bytes must be refused")
    };
    let e = e.to_string();
    assert!(e.contains("big.safetensors"), "{e}");
}
