//! CTranslate2's `model.bin`.
//!
//! Layout (little endian), as written by `ctranslate2.specs.ModelSpec.save`:
//! - `u32` binary version, then (version ≥ 2) a string spec name and `u32` revision;
//! - `u32` variable count, then per variable: string name, `u8` rank,
//!   `rank × u32` dims, `u8` dtype (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16),
//!   `u32` byte count, raw data;
//! - (version ≥ 3) `u32` alias count, then pairs of strings `alias → target`.
//!
//! Strings are a `u16` length followed by that many bytes, the last one a NUL.
//! We memory-map the file and copy each tensor once into candle.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::TensorMap;
use crate::{Error, Result};

/// What the header of a CTranslate2 model says.
#[derive(Debug, Clone)]
pub struct Ct2Header {
    pub version: u32,
    pub spec: String,
    pub revision: u32,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "file is truncated: needed {n} bytes at offset {} but it has {} bytes",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> std::result::Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec())
            .map_err(|_| format!("invalid UTF-8 in a name at offset {}", self.pos))
    }
}

fn dtype_of(code: u8) -> std::result::Result<DType, String> {
    Ok(match code {
        0 => DType::F32,
        // int8 weights come with a separate `…/weight_scale`; dequantisation is
        // the model's job, so we keep the raw values exactly (as f32).
        1 => DType::I64,
        2 => DType::I64,
        3 => DType::I64,
        4 => DType::F16,
        5 => DType::BF16,
        c => {
            return Err(format!(
                "unknown dtype code {c} (not a CTranslate2 model.bin of a supported version?)"
            ))
        }
    })
}

fn tensor_from_bytes(
    code: u8,
    dims: &[usize],
    data: &[u8],
    device: &Device,
) -> candle_core::Result<Tensor> {
    let n: usize = dims.iter().product();
    match code {
        0 => {
            let v: Vec<f32> = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Tensor::from_vec(v, n, device)?.reshape(dims)
        }
        4 => {
            let v: Vec<half::f16> = data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                .collect();
            Tensor::from_vec(v, n, device)?.reshape(dims)
        }
        5 => {
            let v: Vec<half::bf16> = data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]))
                .collect();
            Tensor::from_vec(v, n, device)?.reshape(dims)
        }
        1 => Tensor::from_vec(
            data.iter().map(|&b| b as i8 as i64).collect::<Vec<_>>(),
            n,
            device,
        )?
        .reshape(dims),
        2 => Tensor::from_vec(
            data.chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect::<Vec<_>>(),
            n,
            device,
        )?
        .reshape(dims),
        _ => Tensor::from_vec(
            data.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect::<Vec<_>>(),
            n,
            device,
        )?
        .reshape(dims),
    }
}

fn element_size(code: u8) -> usize {
    match code {
        0 | 3 => 4,
        1 => 1,
        _ => 2,
    }
}

/// Parse a CTranslate2 `model.bin` from memory. Aliases become extra entries
/// pointing at the same tensor.
pub fn parse(buf: &[u8], device: &Device) -> std::result::Result<(Ct2Header, TensorMap), String> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.u32()?;
    if !(1..=6).contains(&version) {
        return Err(format!(
            "unsupported binary version {version} (is this a CTranslate2 model.bin?)"
        ));
    }
    let (spec, revision) = if version >= 2 {
        (r.string()?, r.u32()?)
    } else {
        (String::new(), 1)
    };
    let count = r.u32()? as usize;
    let mut map = TensorMap::new();
    for _ in 0..count {
        let name = r.string()?;
        let rank = r.u8()? as usize;
        let dims: Vec<usize> = (0..rank)
            .map(|_| r.u32().map(|d| d as usize))
            .collect::<std::result::Result<_, _>>()?;
        // candle's strides multiply every dimension but the first, even in an empty
        // tensor: their product must fit too.
        if dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d.max(1)))
            .is_none()
        {
            return Err(format!(
                "variable {name}: shape {dims:?} is larger than any file can hold"
            ));
        }
        let code = if version >= 4 { r.u8()? } else { 0 };
        dtype_of(code)?;
        let nbytes = r.u32()? as usize;
        let expected = dims
            .iter()
            .try_fold(element_size(code), |n, &d| n.checked_mul(d));
        if expected != Some(nbytes) {
            let expected = expected.map_or("more than any file can hold".into(), |e| e.to_string());
            return Err(format!(
                "variable {name}: {nbytes} bytes for shape {dims:?}, expected {expected}"
            ));
        }
        let data = r
            .take(nbytes)
            .map_err(|e| format!("variable {name}: {e}"))?;
        let t = tensor_from_bytes(code, &dims, data, device)
            .map_err(|e| format!("variable {name}: {e}"))?;
        map.insert(name, t);
    }
    if version >= 3 && r.pos < buf.len() {
        let aliases = r.u32()? as usize;
        for _ in 0..aliases {
            let alias = r.string()?;
            let target = r.string()?;
            let t = map
                .get(&target)
                .cloned()
                .ok_or_else(|| format!("alias {alias} points at missing {target}"))?;
            map.insert(alias, t);
        }
    }
    Ok((
        Ct2Header {
            version,
            spec,
            revision,
        },
        map,
    ))
}

/// Load a CTranslate2 `model.bin`, with errors naming the file.
pub fn load(path: &Path, device: &Device) -> Result<(Ct2Header, TensorMap)> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::model(path, format!("cannot open: {e}")))?;
    // SAFETY: the map is read-only and only lives during parsing; a file
    // truncated underneath us is an accepted (documented) risk of mmap.
    let mmap = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| Error::model(path, format!("cannot map: {e}")))?;
    if mmap.is_empty() {
        return Err(Error::model(
            path,
            "file is empty; re-run `diva models fetch`",
        ));
    }
    parse(&mmap, device).map_err(|p| {
        Error::model(
            path,
            format!("{p}; re-run `diva models fetch` to restore it"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend(((s.len() + 1) as u16).to_le_bytes());
        out.extend(s.as_bytes());
        out.push(0);
    }

    /// A two-variable model with one alias, written by hand in CT2's layout.
    fn tiny_model() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(6u32.to_le_bytes());
        string(&mut b, "TestSpec");
        b.extend(3u32.to_le_bytes());
        b.extend(2u32.to_le_bytes());
        string(&mut b, "a/weight");
        b.push(2);
        b.extend(2u32.to_le_bytes());
        b.extend(3u32.to_le_bytes());
        b.push(4); // f16
        b.extend(12u32.to_le_bytes());
        for v in [1.0f32, -2.0, 0.5, 3.0, 0.0, 65504.0] {
            b.extend(half::f16::from_f32(v).to_le_bytes());
        }
        string(&mut b, "a/bias");
        b.push(1);
        b.extend(2u32.to_le_bytes());
        b.push(0); // f32
        b.extend(8u32.to_le_bytes());
        b.extend(0.25f32.to_le_bytes());
        b.extend((-1.5f32).to_le_bytes());
        b.extend(1u32.to_le_bytes());
        string(&mut b, "b/weight");
        string(&mut b, "a/weight");
        b
    }

    #[test]
    fn parses_header_variables_and_aliases() {
        let (h, m) = parse(&tiny_model(), &Device::Cpu).unwrap();
        assert_eq!((h.version, h.spec.as_str(), h.revision), (6, "TestSpec", 3));
        let w = m["a/weight"]
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(w, vec![vec![1.0, -2.0, 0.5], vec![3.0, 0.0, 65504.0]]);
        assert_eq!(m["a/bias"].to_vec1::<f32>().unwrap(), vec![0.25, -1.5]);
        assert_eq!(m["b/weight"].dims(), &[2, 3]);
    }

    /// Bounded allocation: claims far beyond the file (2^32 − 1 variables,
    /// a 4 GB tensor, a rank of 255 and dimensions whose product overflows)
    /// are errors, found without allocating what they claim.
    #[test]
    fn hostile_counts_and_sizes_are_errors() {
        let full = tiny_model();
        let patch = |at: usize, bytes: &[u8]| {
            let mut b = full.clone();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            b
        };
        // Offsets in `tiny_model`: variable count at 19, the first
        // variable's rank at 34, its dims at 35..43, its byte count at 44.
        assert_eq!(&full[19..23], &2u32.to_le_bytes());
        assert_eq!(&full[44..48], &12u32.to_le_bytes());
        for (what, b) in [
            ("count", patch(19, &u32::MAX.to_le_bytes())),
            ("nbytes", patch(44, &u32::MAX.to_le_bytes())),
            ("rank", patch(34, &[255])),
            ("dims", patch(35, &[0xff; 8])),
        ] {
            let t0 = std::time::Instant::now();
            assert!(parse(&b, &Device::Cpu).is_err(), "{what}: must not parse");
            assert!(
                t0.elapsed().as_secs() < 5,
                "{what}: took {:?}",
                t0.elapsed()
            );
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = tiny_model();
        // The alias table (count + two 11-byte strings) is optional as a
        // whole, so the one cut that parses is right before it.
        let without_aliases = full.len() - (4 + 2 * 11);
        for cut in 0..full.len() {
            let r = parse(&full[..cut], &Device::Cpu);
            assert_eq!(
                r.is_ok(),
                cut == without_aliases,
                "cut at {cut}: {:?}",
                r.err()
            );
        }
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        let e = parse(b"PK\x03\x04 this is a zip", &Device::Cpu).unwrap_err();
        assert!(e.contains("unsupported binary version"), "{e}");
    }
}
