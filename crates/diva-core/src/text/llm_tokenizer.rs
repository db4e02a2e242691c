//! The LLM's tokenizer, its special tokens and its chat template, from a GGUF file or from a
//! Hugging Face model directory.

use std::path::Path;

use candle_core::quantized::gguf_file::Content;

use super::chat_template::ChatTemplate;
use super::gguf_tokenizer::{tokenizer_from_gguf, Meta};
use super::tiktoken::{tokenizer_from_tiktoken, TiktokenSpec};
use crate::{Error, Result};

/// Tokens that end a turn in the chat formats we know; the ones the vocabulary has join `eos`
/// as stop tokens.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
];

#[derive(Clone)]
pub struct LlmTokenizer {
    tokenizer: tokenizers::Tokenizer,
    /// Beginning-of-sequence token, when the model has one.
    pub bos: Option<(String, u32)>,
    /// End-of-sequence token.
    pub eos: (String, u32),
    /// Ids that end generation: `eos`, the end-of-turn tokens the vocabulary has, and (from a
    /// HF directory) `generation_config.json`'s `eos_token_id`s. Sorted, no duplicates.
    pub stop_ids: Vec<u32>,
    /// The Jinja chat template, when the model ships one.
    pub chat_template: Option<String>,
    /// Whether `encode(.., add_special = true)` prepends `bos`.
    pub add_bos: bool,
}

impl std::fmt::Debug for LlmTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("stop_ids", &self.stop_ids)
            .field("add_bos", &self.add_bos)
            .field(
                "chat_template",
                &self.chat_template.as_ref().map(|t| t.len()),
            )
            .finish()
    }
}

impl LlmTokenizer {
    /// The tokenizer of an LLM path as `weights::cache::resolve_llm` returns
    /// it: a `.gguf` file (metadata) or an HF directory.
    pub fn from_path(path: &Path) -> Result<Self> {
        if path.is_file() {
            Self::from_gguf(path)
        } else {
            Self::from_hf_dir(path)
        }
    }

    /// From a GGUF file's metadata (the tensors are not read).
    pub fn from_gguf(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let content = crate::weights::gguf::read_content(&mut std::io::BufReader::new(file), path)?;
        Self::from_gguf_content(&content, path)
    }

    /// From GGUF metadata already read; `path` is only used in error messages.
    pub fn from_gguf_content(content: &Content, path: &Path) -> Result<Self> {
        let tokenizer = tokenizer_from_gguf(content, path)?;
        let md = Meta { content, path };
        let token = |key: &str| -> Result<Option<(String, u32)>> {
            let Some(id) = md.uint(key)? else {
                return Ok(None);
            };
            let t = tokenizer
                .id_to_token(id)
                .ok_or_else(|| md.err(format!("{key} = {id} is outside the vocabulary")))?;
            Ok(Some((t, id)))
        };
        let bos = token("tokenizer.ggml.bos_token_id")?;
        let eos = token("tokenizer.ggml.eos_token_id")?
            .ok_or_else(|| md.err("no tokenizer.ggml.eos_token_id in the metadata"))?;
        let add_bos = md.bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false) && bos.is_some();
        let chat_template = md.string("tokenizer.chat_template")?.map(str::to_string);
        let stop_ids = stop_ids(&tokenizer, eos.1, &[]);
        Ok(Self {
            tokenizer,
            bos,
            eos,
            stop_ids,
            chat_template,
            add_bos,
        })
    }

    /// From a Hugging Face model directory: `tokenizer.json`, plus `tokenizer_config.json`
    /// (special tokens, chat template, `add_bos_token`), `chat_template.jinja` and
    /// `generation_config.json` (`eos_token_id`) when present.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let tj = dir.join("tokenizer.json");
        if !tj.is_file() {
            return Err(Error::model(
                dir,
                format!("no tokenizer.json in {}", dir.display()),
            ));
        }
        let tokenizer_json = std::fs::read(&tj)
            .map_err(|e| Error::io(format!("cannot read {}", tj.display()), e))?;
        Self::from_hf_files(dir, &tokenizer_json, |name| {
            let path = dir.join(name);
            if !path.is_file() {
                return Ok(None);
            }
            std::fs::read_to_string(&path)
                .map(Some)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
        })
    }

    /// [`LlmTokenizer::from_hf_dir`] on files already read: `tokenizer_json` is the text of
    /// `tokenizer.json`; `read(name)` gives the text of the directory's other files
    /// (`tokenizer_config.json`, …), `None` when there is no such file. `dir` names the
    /// files in errors.
    pub fn from_hf_files(
        dir: &Path,
        tokenizer_json: &[u8],
        read: impl Fn(&str) -> Result<Option<String>>,
    ) -> Result<Self> {
        let tj = dir.join("tokenizer.json");
        // tokenizers panics on some malformed files (an `expect` in its decoder's
        // deserializer): that is a bad file too, not a crash.
        let parsed = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(tokenizer_json))
            .map_err(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Error::model(
                    &tj,
                    format!("not a valid tokenizer.json (it crashed the parser: {what}); re-download it"),
                )
            })?;
        let tokenizer =
            parsed.map_err(|e| Error::model(&tj, format!("not a valid tokenizer.json: {e}")))?;
        let json = |name: &str| -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
            match read(name)? {
                Some(text) => parse_json_object(&text, &dir.join(name)).map(Some),
                None => Ok(None),
            }
        };
        let config = json("tokenizer_config.json")?.unwrap_or_default();
        let generation = json("generation_config.json")?.unwrap_or_default();
        let cfg_path = dir.join("tokenizer_config.json");

        let named = |key: &str| -> Result<Option<(String, u32)>> {
            let Some(t) = special_token_content(config.get(key)) else {
                return Ok(None);
            };
            let id = tokenizer.token_to_id(&t).ok_or_else(|| {
                Error::model(&cfg_path, format!("{key} `{t}` is not in tokenizer.json"))
            })?;
            Ok(Some((t, id)))
        };
        let gen_eos: Vec<u32> = match generation.get("eos_token_id") {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|i| i as u32).into_iter().collect()
            }
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_u64().map(|i| i as u32))
                .collect(),
            _ => Vec::new(),
        };
        let bos = named("bos_token")?;
        let eos = match named("eos_token")? {
            Some(e) => e,
            None => {
                let id = *gen_eos.first().ok_or_else(|| {
                    Error::model(
                        dir,
                        "no eos_token in tokenizer_config.json nor eos_token_id in generation_config.json",
                    )
                })?;
                let t = tokenizer.id_to_token(id).ok_or_else(|| {
                    Error::model(dir, format!("eos_token_id {id} is outside the vocabulary"))
                })?;
                (t, id)
            }
        };
        let add_bos = match config.get("add_bos_token").and_then(|v| v.as_bool()) {
            Some(b) => b && bos.is_some(),
            // Otherwise whatever tokenizer.json's post-processor does.
            None => bos.as_ref().is_some_and(|(_, id)| {
                tokenizer
                    .encode_fast("a", true)
                    .map(|e| e.get_ids().first() == Some(id))
                    .unwrap_or(false)
            }),
        };
        let chat_template = match config.get("chat_template") {
            Some(t) => template_from_config(t).map_err(|e| Error::model(&cfg_path, e))?,
            None => None,
        };
        let chat_template = match chat_template {
            Some(t) => Some(t),
            None => {
                if let Some(jinja) = read("chat_template.jinja")? {
                    Some(jinja)
                } else {
                    match json("chat_template.json")? {
                        Some(j) => j
                            .get("chat_template")
                            .map(template_from_config)
                            .transpose()
                            .map_err(|e| Error::model(dir.join("chat_template.json"), e))?
                            .flatten(),
                        None => None,
                    }
                }
            }
        };
        let stop_ids = stop_ids(&tokenizer, eos.1, &gen_eos);
        Ok(Self {
            tokenizer,
            bos,
            eos,
            stop_ids,
            chat_template,
            add_bos,
        })
    }

    /// From a tiktoken rank file (`qwen.tiktoken`) and what its model family adds to it
    /// (`TiktokenSpec::qwen2_instruct()`); such files carry no chat template, so pass the model's.
    pub fn from_tiktoken(
        path: &Path,
        spec: &TiktokenSpec,
        chat_template: Option<String>,
    ) -> Result<Self> {
        let tokenizer = tokenizer_from_tiktoken(path, spec)?;
        let eos_id = tokenizer.token_to_id(&spec.eos).ok_or_else(|| {
            Error::Config(format!(
                "eos token {} is not a special token of the spec",
                spec.eos
            ))
        })?;
        let stop_ids = stop_ids(&tokenizer, eos_id, &[]);
        Ok(Self {
            tokenizer,
            bos: None,
            eos: (spec.eos.clone(), eos_id),
            stop_ids,
            chat_template,
            add_bos: false,
        })
    }

    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`) are matched
    /// whole; `add_special` adds what the tokenizer's post-processor adds (`bos` when `add_bos`).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode_fast(text, add_special)
            .map_err(|e| Error::Config(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`. An incomplete UTF-8 sequence at the end decodes to U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.tokenizer
            .decode(ids, skip_special)
            .map_err(|e| Error::Config(format!("cannot decode token ids {ids:?}: {e}")))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    /// Vocabulary size including added tokens (transformers' `len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Whether `id` ends generation.
    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.binary_search(&id).is_ok()
    }

    /// Whether `id` is a special (control) token, as `decode(.., skip_special = true)` sees it.
    pub fn is_special(&self, id: u32) -> bool {
        self.tokenizer
            .get_added_vocabulary()
            .simple_id_to_token(id)
            .is_some_and(|t| self.tokenizer.get_added_vocabulary().is_special_token(&t))
    }

    /// The model's chat template, compiled, with its bos/eos tokens.
    pub fn chat(&self) -> Result<ChatTemplate> {
        let source = self.chat_template.as_deref().ok_or_else(|| {
            Error::Config("the model ships no chat template (tokenizer.chat_template)".into())
        })?;
        ChatTemplate::new(
            source,
            self.bos.as_ref().map(|(t, _)| t.as_str()),
            Some(self.eos.0.as_str()),
        )
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }
}

fn stop_ids(tok: &tokenizers::Tokenizer, eos: u32, extra: &[u32]) -> Vec<u32> {
    let mut ids = vec![eos];
    ids.extend_from_slice(extra);
    ids.extend(END_OF_TURN.iter().filter_map(|t| tok.token_to_id(t)));
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A special token in tokenizer_config.json: a string, or an `AddedToken` object.
fn special_token_content(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// `chat_template` is a string or a list of `{"name", "template"}` (we take "default").
fn template_from_config(v: &serde_json::Value) -> std::result::Result<Option<String>, String> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s.clone())),
        serde_json::Value::Array(list) => {
            let named = |name: &str| {
                list.iter().find_map(|t| {
                    (t.get("name")?.as_str()? == name)
                        .then(|| t.get("template")?.as_str().map(str::to_string))
                        .flatten()
                })
            };
            match named("default") {
                Some(t) => Ok(Some(t)),
                None => {
                    let names: Vec<&str> = list
                        .iter()
                        .filter_map(|t| t.get("name")?.as_str())
                        .collect();
                    Err(format!(
                        "chat_template has no template named \"default\" (has: {})",
                        names.join(", ")
                    ))
                }
            }
        }
        _ => Err("chat_template is neither a string nor a list of {name, template}".into()),
    }
}

fn parse_json_object(
    text: &str,
    path: &Path,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::model(path, "not a JSON object")),
        Err(e) => Err(Error::model(path, format!("invalid JSON: {e}"))),
    }
}
