//! Bounded allocation for untrusted files (issue 20): a small file whose header
//! claims a huge count, length or shape is refused with an error naming the
//! file and the problem, before anything of the claimed size is allocated (a
//! 100 GB claim would abort the process on allocation, not return). GGUF,
//! safetensors, CTranslate2 `model.bin` and WAV.
//!
//! The whole test binary runs on a counting global allocator: every case runs
//! under [`bounded`], which fails when the heap grew by more than a budget
//! while it ran, and the allocator refuses any single request above
//! [`REFUSE_ABOVE`] outright (the binary then aborts with "memory allocation
//! of N bytes failed", naming the size), so a reader that trusts a claimed size
//! fails here instead of swapping or being killed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use candle_core::Device;
use diva_core::audio::decode::{decode_bytes, decode_file};
use diva_core::weights::gguf::GgufFile;
use diva_core::weights::{ct2, safetensors_io};

/// Heap bytes in use, and the most in use since the last [`bounded`] began.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// No single allocation of a test here may ask for more than this.
const REFUSE_ABOVE: usize = 1 << 30;

/// How much a case's heap may grow: the files are at most a few KB, the
/// readers' own buffers (BufReader, symphonia's 64 KiB stream buffer, a
/// decoded packet) well under this, and so is capturing a backtrace when
/// `RUST_BACKTRACE=1` (candle's errors do: ~33 MB to resolve symbols once).
const BUDGET: usize = 64 << 20;

struct Counting;

impl Counting {
    fn grew(size: usize) {
        let live = LIVE.fetch_add(size, Relaxed) + size;
        PEAK.fetch_max(live, Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator with the caller's
// layout and pointer unchanged; the counters are atomics and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > REFUSE_ABOVE {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `alloc`'s contract for `layout`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > REFUSE_ABOVE {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was returned by `System` for `layout` (see `alloc`).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > REFUSE_ABOVE {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` was returned by `System` for `layout`; the caller
        // upholds `realloc`'s contract for `new_size`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            Self::grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One case at a time (the heap counters are process-wide).
static SERIAL: Mutex<()> = Mutex::new(());

/// Run `f`, failing if the heap grew by more than [`BUDGET`] meanwhile.
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let out = f();
    let grew = PEAK.load(Relaxed).saturating_sub(base);
    assert!(
        grew <= BUDGET,
        "{what}: the heap grew by {grew} bytes (budget {BUDGET})"
    );
    out
}

/// The error `f` returns, asserting there is one and that it names `file`
/// and contains each of `words` (the problem), within the heap budget.
fn refused<T, E: std::fmt::Display>(
    what: &str,
    file: &str,
    words: &[&str],
    f: impl FnOnce() -> Result<T, E>,
) -> String {
    let Err(e) = bounded(what, f) else {
        panic!("{what}: a hostile header was accepted")
    };
    let e = e.to_string();
    assert!(
        e.contains(file),
        "{what}: the error does not name {file}: {e}"
    );
    for w in words {
        assert!(e.contains(w), "{what}: the error does not say `{w}`: {e}");
    }
    e
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

// ---------------------------------------------------------------------------------------
// GGUF
// ---------------------------------------------------------------------------------------

/// A GGUF v3 file written field by field, so any count or length can lie.
#[derive(Default)]
struct Gguf(Vec<u8>);

impl Gguf {
    fn header(tensors: u64, metadata: u64) -> Self {
        let mut g = Gguf::default();
        g.0.extend_from_slice(b"GGUF");
        g.u32(3).u64(tensors).u64(metadata);
        g
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A string whose length field says `len` (the bytes are `s`).
    fn string(&mut self, len: u64, s: &str) -> &mut Self {
        self.u64(len);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// A tensor info: name `t`, `dims`, F32, at `offset`.
    fn tensor(&mut self, dims: &[u64], offset: u64) -> &mut Self {
        self.string(1, "t").u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(0).u64(offset)
    }
    /// Pad to 32-byte alignment and append `data` zero bytes.
    fn data(&mut self, data: usize) -> Vec<u8> {
        while !self.0.len().is_multiple_of(32) {
            self.0.push(0);
        }
        self.0.extend(std::iter::repeat_n(0u8, data));
        std::mem::take(&mut self.0)
    }
}

/// One tensor `t` of `dims` at offset 0 with `data` bytes of data; the name's
/// length field says `name_len` (default 1, the truth).
fn gguf(dims: &[u64], name_len: Option<u64>, data: usize) -> Vec<u8> {
    let mut g = Gguf::header(1, 0);
    g.string(name_len.unwrap_or(1), "t").u32(dims.len() as u32);
    for &d in dims {
        g.u64(d);
    }
    g.u32(0).u64(0);
    g.data(data)
}

#[test]
fn a_small_gguf_claiming_a_huge_tensor_or_string_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // Sanity: the same layout with an honest claim loads.
    let ok = write(dir.path(), "ok.gguf", &gguf(&[4, 2], None, 32));
    let t = bounded("honest gguf", || {
        GgufFile::open(&ok)
            .unwrap()
            .tensor("t", &Device::Cpu)
            .unwrap()
    });
    assert_eq!(t.shape().dims(), &[2, 4]);

    // 2^17 × 2^17 f32 = 64 GiB, and 250,000 × 100,000 f32 = 100 GB, claimed by
    // ~100-byte files.
    for (name, dims) in [
        ("huge.gguf", [1u64 << 17, 1 << 17]),
        ("100gb.gguf", [250_000, 100_000]),
    ] {
        let p = write(dir.path(), name, &gguf(&dims, None, 32));
        let e = refused(name, name, &["tensor `t`", "bytes"], || {
            GgufFile::open(&p).and_then(|g| g.tensor("t", &Device::Cpu))
        });
        assert!(e.contains("file has only"), "{e}");
    }

    // Dimensions whose product overflows 64 bits.
    let wrap = write(
        dir.path(),
        "wrap.gguf",
        &gguf(&[u64::MAX / 2, 4, 4], None, 32),
    );
    refused("overflowing shape", "wrap.gguf", &["more elements"], || {
        GgufFile::open(&wrap).and_then(|g| g.tensor("t", &Device::Cpu))
    });

    // A tensor name claiming 2^62 bytes.
    let name = write(dir.path(), "name.gguf", &gguf(&[4], Some(1 << 62), 32));
    refused("2^62-byte name", "name.gguf", &["string length"], || {
        GgufFile::open(&name)
    });
}

/// The header's counts and every metadata length (key, string value, array
/// length, nested arrays) are checked against the bytes the file has left.
#[test]
fn a_gguf_header_whose_counts_and_lengths_exceed_the_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let kv = |key: &str, ty: u32| {
        let mut g = Gguf::header(0, 1);
        g.string(key.len() as u64, key).u32(ty);
        g
    };
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "tensor_count",
            Gguf::header(1 << 29, 0).data(64),
            &["header declares 536870912 tensors"],
        ),
        (
            "metadata_count",
            Gguf::header(0, 1 << 29).data(64),
            &["536870912 metadata entries"],
        ),
        (
            "tensor_count_past_cap",
            Gguf::header(u64::MAX, 0).data(64),
            &["tensor_count 18446744073709551615 exceeds max"],
        ),
        (
            "metadata_count_past_cap",
            Gguf::header(0, 1 << 40).data(64),
            &["metadata_kv_count 1099511627776 exceeds max"],
        ),
        (
            "key_length",
            Gguf::header(0, 1).string(1 << 29, "general.name").data(64),
            &["string length 536870912 exceeds remaining file bytes"],
        ),
        (
            "string_value",
            kv("general.name", 8).string(1 << 29, "x").data(64),
            &["string length 536870912 exceeds remaining file bytes"],
        ),
        (
            "string_past_cap",
            kv("general.name", 8).string(1 << 40, "x").data(64),
            &["string length 1099511627776 exceeds max"],
        ),
        (
            "u64_array",
            kv("tokenizer.ggml.scores", 9).u32(10).u64(1 << 29).data(64),
            &["array of 536870912 elements"],
        ),
        (
            "string_array",
            kv("tokenizer.ggml.tokens", 9).u32(8).u64(1 << 29).data(64),
            &["array of 536870912 elements"],
        ),
        (
            "array_length_past_cap",
            kv("tokenizer.ggml.tokens", 9).u32(8).u64(1 << 40).data(64),
            &["array length 1099511627776"],
        ),
        (
            // An array of 1,000 arrays, each claiming 2^28 strings.
            "nested_arrays",
            {
                let mut g = kv("x", 9);
                g.u32(9).u64(1000);
                for _ in 0..1000 {
                    g.u32(8).u64(1 << 28);
                }
                g.data(0)
            },
            &["array of 268435456 elements"],
        ),
        (
            "tensor_rank",
            {
                let mut g = Gguf::header(1, 0);
                g.string(1, "t").u32(u32::MAX);
                g.data(64)
            },
            &["4294967295 dimensions"],
        ),
    ];
    for (what, bytes, words) in cases {
        assert!(bytes.len() < 17_000, "{what}: {} bytes", bytes.len());
        let name = format!("{what}.gguf");
        let p = write(dir.path(), &name, &bytes);
        refused(what, &name, words, || GgufFile::open(&p));
    }

    // A tensor whose offset points 2^63 bytes past the data section.
    let mut g = Gguf::header(1, 0);
    g.tensor(&[4], 1 << 63);
    let p = write(dir.path(), "offset.gguf", &g.data(16));
    refused(
        "tensor offset",
        "offset.gguf",
        &["tensor `t`", "file has only"],
        || GgufFile::open(&p).and_then(|g| g.tensor("t", &Device::Cpu)),
    );
}

// ---------------------------------------------------------------------------------------
// safetensors
// ---------------------------------------------------------------------------------------

fn st(header: &str, data: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend(std::iter::repeat_n(0u8, data));
    b
}

/// safetensors: the header length, offsets past the end of the file, a shape
/// whose bytes differ from its byte range, reversed and overflowing ranges.
/// Each is an error naming the file, from a file on disk and from memory.
#[test]
fn a_safetensors_header_claiming_more_than_the_file_is_an_error() {
    use safetensors_io::{load_bytes, load_file};
    let dir = tempfile::tempdir().unwrap();
    let ok = st(
        r#"{"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#,
        16,
    );
    let p = write(dir.path(), "ok.safetensors", &ok);
    let m = bounded("honest safetensors", || {
        load_file(&p, &Device::Cpu).unwrap()
    });
    assert_eq!(m["t"].dims(), &[2, 2]);

    let mut long = (1u64 << 60).to_le_bytes().to_vec();
    long.extend_from_slice(b"{}");
    // 50 MB: under the format's 100 MB header cap, far past this file.
    let mut fifty = (50u64 << 20).to_le_bytes().to_vec();
    fifty.extend_from_slice(b"{}");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("header_2e60", long),
        ("header_50mb", fifty),
        (
            // 2^20 × 2^20 f32 = 4 TiB claimed, 16 bytes present.
            "tensor_4tib",
            st(
                r#"{"t":{"dtype":"F32","shape":[1048576,1048576],"data_offsets":[0,4398046511104]}}"#,
                16,
            ),
        ),
        (
            "offsets_past_eof",
            st(
                r#"{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                8,
            ),
        ),
        (
            // 4 f32 = 16 bytes, but the range holds 8.
            "shape_vs_range",
            st(
                r#"{"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}}"#,
                16,
            ),
        ),
        (
            "reversed_range",
            st(
                r#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
                16,
            ),
        ),
        (
            "overflowing_shape",
            st(
                r#"{"t":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,16]}}"#,
                16,
            ),
        ),
        (
            "offset_u64_max",
            st(
                r#"{"t":{"dtype":"U8","shape":[16],"data_offsets":[18446744073709551599,18446744073709551615]}}"#,
                16,
            ),
        ),
    ];
    for (what, bytes) in cases {
        let name = format!("{what}.safetensors");
        let p = write(dir.path(), &name, &bytes);
        refused(what, &name, &["not a valid safetensors file"], || {
            load_file(&p, &Device::Cpu)
        });
        refused(what, &name, &["not a valid safetensors file"], || {
            load_bytes(&bytes, Path::new(&name), &Device::Cpu)
        });
    }
}

// ---------------------------------------------------------------------------------------
// CTranslate2 model.bin
// ---------------------------------------------------------------------------------------

/// A version-6 model.bin written field by field.
#[derive(Default)]
struct Ct2(Vec<u8>);

impl Ct2 {
    fn new(variables: u32) -> Self {
        let mut c = Ct2::default();
        c.u32(6).string("TestSpec").u32(1).u32(variables);
        c
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn string(&mut self, s: &str) -> &mut Self {
        self.0
            .extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    /// A variable: `name`, `dims`, dtype `code`, a byte count of `nbytes`,
    /// then `data` zero bytes.
    fn var(&mut self, name: &str, dims: &[u32], code: u8, nbytes: u32, data: usize) -> &mut Self {
        self.string(name);
        self.0.push(dims.len() as u8);
        for &d in dims {
            self.u32(d);
        }
        self.0.push(code);
        self.u32(nbytes);
        self.0.extend(std::iter::repeat_n(0u8, data));
        self
    }
}

/// CTranslate2: variable and alias counts, name lengths, ranks, dims and byte
/// counts beyond the file are errors naming the file and the variable.
#[test]
fn a_ct2_model_claiming_more_than_the_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut ok = Ct2::new(1);
    ok.var("w", &[2, 2], 0, 16, 16).u32(0);
    let p = write(dir.path(), "ok.bin", &ok.0);
    let (_, m) = bounded("honest ct2", || ct2::load(&p, &Device::Cpu).unwrap());
    assert_eq!(m["w"].dims(), &[2, 2]);

    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("variables", Ct2::new(u32::MAX).0, &["truncated"]),
        (
            // A 65,535-byte name in a 30-byte file.
            "name_length",
            {
                let mut c = Ct2::new(1);
                c.0.extend_from_slice(&u16::MAX.to_le_bytes());
                c.0.extend_from_slice(b"w\0");
                c.0
            },
            &["truncated", "needed 65535 bytes"],
        ),
        (
            // 100,000 × 250,000 f32 (100 GB), its byte count capped by u32.
            "dims_100gb",
            Ct2::new(1)
                .var("w", &[100_000, 250_000], 0, u32::MAX, 16)
                .0
                .clone(),
            &["variable w", "expected 100000000000"],
        ),
        (
            // 4 GB of int8, consistent with its shape, 16 bytes present.
            "data_4gb",
            Ct2::new(1).var("w", &[u32::MAX], 1, u32::MAX, 16).0.clone(),
            &["variable w", "truncated", "needed 4294967295 bytes"],
        ),
        (
            "rank_255",
            Ct2::new(1).var("w", &[u32::MAX; 255], 0, 16, 16).0.clone(),
            &["variable w", "larger than any file can hold"],
        ),
        (
            "overflowing_dims",
            Ct2::new(1)
                .var("w", &[u32::MAX, u32::MAX, u32::MAX], 0, 16, 16)
                .0
                .clone(),
            &["variable w", "larger than any file can hold"],
        ),
        (
            "aliases",
            {
                let mut c = Ct2::new(1);
                c.var("w", &[2], 0, 8, 8).u32(u32::MAX);
                c.0
            },
            &["truncated"],
        ),
    ];
    for (what, bytes, words) in cases {
        assert!(bytes.len() < 2_000, "{what}: {} bytes", bytes.len());
        let name = format!("{what}.bin");
        let p = write(dir.path(), &name, &bytes);
        let e = refused(what, &name, words, || ct2::load(&p, &Device::Cpu));
        assert!(e.contains("re-run `diva models fetch`"), "{what}: {e}");
    }
}

// ---------------------------------------------------------------------------------------
// WAV
// ---------------------------------------------------------------------------------------

/// A 16-bit PCM WAV written chunk by chunk: `fmt` fields and chunk sizes as given.
fn wav(fmt_len: u32, channels: u16, data_len: u32, data: usize, extra: &[u8]) -> Vec<u8> {
    let rate = 16_000u32;
    let align = channels.wrapping_mul(2);
    let mut b = b"RIFF".to_vec();
    b.extend_from_slice(&u32::MAX.wrapping_sub(8).to_le_bytes());
    b.extend_from_slice(b"WAVE");
    b.extend_from_slice(extra);
    b.extend_from_slice(b"fmt ");
    b.extend_from_slice(&fmt_len.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
    b.extend_from_slice(&align.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    // A quiet ramp, not silence.
    b.extend((0..data).map(|i| (i % 7) as u8));
    b
}

/// WAV: a data chunk, fmt chunk, RIFF or LIST/INFO chunk claiming 4 GB, and
/// 65,535 channels, in files of a few KB. A data chunk that promises more than
/// the file has decodes what is there (a recorder killed mid-write); every
/// other claim is an error naming the file, and nothing allocates what the
/// header claims (symphonia allocates a LIST/INFO entry's claimed size up
/// front, so diva checks those sizes against the file first).
#[test]
fn a_wav_header_claiming_more_than_the_file_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let honest = wav(16, 1, 2000, 2000, &[]);
    let audio = bounded("honest wav", || {
        decode_bytes(honest.clone(), Some("wav"), Path::new("ok.wav")).unwrap()
    });
    assert_eq!((audio.frames(), audio.sample_rate), (1000, 16_000));

    // A data chunk claiming 4 GB: the 1,000 frames present, with a warning.
    let big_data = wav(16, 1, u32::MAX - 1, 2000, &[]);
    let p = write(dir.path(), "data_4gb.wav", &big_data);
    let audio = bounded("data chunk 4 GB", || decode_file(&p).unwrap());
    assert_eq!(audio.frames(), 1000);

    // An INFO entry claiming ~4 GB inside a LIST claiming ~4 GB.
    let mut list = b"LIST".to_vec();
    list.extend_from_slice(&(u32::MAX - 64).to_le_bytes());
    list.extend_from_slice(b"INFO");
    list.extend_from_slice(b"INAM");
    list.extend_from_slice(&(u32::MAX - 128).to_le_bytes());
    list.extend_from_slice(b"a title");
    // And an unknown chunk claiming 4 GB before the fmt chunk.
    let mut junk = b"junk".to_vec();
    junk.extend_from_slice(&(u32::MAX - 16).to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("fmt_4gb", wav(u32::MAX - 16, 1, 2000, 2000, &[]), &[]),
        ("channels_65535", wav(16, u16::MAX, 2000, 2000, &[]), &[]),
        ("channels_0", wav(16, 0, 2000, 2000, &[]), &[]),
        (
            "list_info_4gb",
            wav(16, 1, 2000, 2000, &list),
            &["LIST", "bytes"],
        ),
        ("junk_4gb", wav(16, 1, 2000, 2000, &junk), &[]),
    ];
    for (what, bytes, words) in cases {
        let name = format!("{what}.wav");
        let p = write(dir.path(), &name, &bytes);
        refused(what, &name, words, || decode_file(&p));
        refused(what, &name, words, || {
            decode_bytes(bytes.clone(), Some("wav"), Path::new(&name))
        });
    }
}
