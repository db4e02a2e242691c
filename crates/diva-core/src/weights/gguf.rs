//! GGUF files: metadata and (quantized) tensors, with errors naming the file.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};
use candle_core::quantized::QTensor;
use candle_core::Device;

use crate::{Error, Result};

/// llama.cpp's names for ggml types candle cannot read, for error messages.
fn ggml_type_name(code: u32) -> &'static str {
    match code {
        4 | 5 => "Q4_2/Q4_3 (removed from llama.cpp)",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "an unknown type",
    }
}

pub struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
}

/// Read a GGUF header, metadata and tensor infos from `reader` (the tensors are read
/// lazily); `path` names the file in errors. Every count and length the header claims is
/// checked against the bytes left in `reader` before anything of that size is allocated
/// (candle's reader does that); a panic inside candle's reader (e.g. on a
/// `general.alignment` of 0) is caught and reported as a damaged file.
pub fn read_content<R: Read + Seek>(reader: &mut R, path: &Path) -> Result<Content> {
    let read = catch_unwind(AssertUnwindSafe(|| Content::read(reader)));
    let read = read.map_err(|panic| {
        Error::model(
            path,
            format!(
                "not a valid GGUF file (its header crashed the reader: {}); re-download or re-convert it",
                panic_message(panic.as_ref())
            ),
        )
    })?;
    let content = read.map_err(|e| {
        let msg = e.to_string();
        let code = msg.strip_prefix("unknown dtype for tensor ").and_then(|n| {
            n.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<u32>().ok()
        });
        match code {
            Some(code) => Error::model(
                path,
                format!(
                    "uses quantization type {} (ggml type {code}), which diva does not support; re-quantize to Q4_0, Q4_1, Q8_0, Q4_K or Q6_K",
                    ggml_type_name(code)
                ),
            ),
            None => Error::model(path, format!("not a valid GGUF file ({msg})")),
        }
    })?;
    Ok(content)
}

/// The text of a caught panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

impl GgufFile {
    /// Read the header and metadata (tensors are read lazily).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::model(path, format!("cannot open: {e}")))?;
        let mut reader = BufReader::new(file);
        let content = read_content(&mut reader, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| Error::model(&self.path, format!("metadata key `{key}` is missing")))
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.to_u64()
            .or_else(|_| v.to_u32().map(u64::from))
            .or_else(|_| v.to_i32().map(|x| x as u64))
            .map_err(|e| Error::model(&self.path, format!("metadata `{key}`: {e}")))
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        v.to_f32()
            .map(f64::from)
            .or_else(|_| v.to_f64())
            .map_err(|e| Error::model(&self.path, format!("metadata `{key}`: {e}")))
    }

    pub fn string(&self, key: &str) -> Result<String> {
        self.require(key)?
            .to_string()
            .cloned()
            .map_err(|e| Error::model(&self.path, format!("metadata `{key}`: {e}")))
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Read one tensor, still quantized.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        let file = File::open(&self.path)
            .map_err(|e| Error::model(&self.path, format!("cannot open: {e}")))?;
        let mut reader = BufReader::new(file);
        self.tensor_from(&mut reader, name, device)
    }

    /// [`GgufFile::tensor`] from `reader`, the file's bytes (e.g. in memory). The tensor's
    /// shape, type and offset are checked against the bytes `reader` holds before its data
    /// is allocated: a shape whose element count overflows, or data past the end of the
    /// file, is an error naming the tensor.
    pub fn tensor_from<R: Read + Seek>(
        &self,
        reader: &mut R,
        name: &str,
        device: &Device,
    ) -> Result<QTensor> {
        let damaged = |problem: String| {
            Error::model(
                &self.path,
                format!("tensor `{name}`: {problem} (file truncated or damaged?)"),
            )
        };
        if let Some(info) = self.content.tensor_infos.get(name) {
            let file_len = reader
                .seek(SeekFrom::End(0))
                .map_err(|e| damaged(format!("cannot read: {e}")))?;
            check_tensor_fits(info, self.content.tensor_data_offset, file_len).map_err(damaged)?;
        }
        let read = catch_unwind(AssertUnwindSafe(|| {
            self.content.tensor(reader, name, device)
        }));
        match read {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(damaged(e.to_string())),
            Err(panic) => Err(damaged(format!(
                "its data crashed the reader ({})",
                panic_message(panic.as_ref())
            ))),
        }
    }
}

/// The bytes `info` says its tensor holds, if they fit in a file of `file_len` bytes whose
/// tensor data starts at `data_offset`; else what is wrong.
fn check_tensor_fits(
    info: &TensorInfo,
    data_offset: u64,
    file_len: u64,
) -> std::result::Result<u64, String> {
    let dims = info.shape.dims();
    let elems = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .ok_or_else(|| format!("shape {dims:?} has more elements than any file can hold"))?;
    if elems == 0 {
        // candle's reader views an empty buffer as blocks, which is undefined behaviour.
        return Err(format!("shape {dims:?} has no elements"));
    }
    let block = info.ggml_dtype.block_size() as u64;
    if block == 0 || !elems.is_multiple_of(block) {
        return Err(format!(
            "shape {dims:?} ({elems} elements) is not a whole number of {:?} blocks of {block}",
            info.ggml_dtype
        ));
    }
    let bytes = (elems / block)
        .checked_mul(info.ggml_dtype.type_size() as u64)
        .ok_or_else(|| format!("shape {dims:?} needs more bytes than any file can hold"))?;
    let start = data_offset.saturating_add(info.offset);
    let remaining = file_len.saturating_sub(start);
    if bytes > remaining {
        return Err(format!(
            "needs {bytes} bytes at offset {start}, but the file has only {remaining} bytes from there"
        ));
    }
    Ok(bytes)
}
