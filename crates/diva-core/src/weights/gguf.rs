//! GGUF files: metadata and (quantized) tensors, with errors naming the file.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
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

impl GgufFile {
    /// Read the header and metadata (tensors are read lazily).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::model(path, format!("cannot open: {e}")))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| {
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
        self.content.tensor(&mut reader, name, device).map_err(|e| {
            Error::model(
                &self.path,
                format!("tensor `{name}`: {e} (file truncated or damaged?)"),
            )
        })
    }
}
