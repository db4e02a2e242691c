//! Hugging Face chat templates, rendered with minijinja the way transformers renders them
//! (`utils/chat_template_utils.py`, v5.24): a sandboxed Jinja2 environment with
//! `trim_blocks` and `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, a
//! `tojson` that is Python's `json.dumps(ensure_ascii=False)`, and Python's string/dict methods
//! (`.strip()`, `.split()`, `.startswith()`, `.items()`, …). The template sees `messages`,
//! `tools` and `documents` (none unless given), `add_generation_prompt`, `bos_token`,
//! `eos_token`, and any extra keyword arguments.

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};

#[cfg(test)]
use super::pycompat::py_number;
use super::pycompat::{py_str, strftime, tojson};
use crate::{Error, Result};

const TEMPLATE: &str = "chat_template";

/// The most work one render may do, in minijinja's fuel (about one unit per template
/// instruction). Real chat templates spend a few thousand units on a long conversation; a
/// template from an untrusted file that loops for ever stops here with an error (~0.1 s).
pub const RENDER_FUEL: u64 = 2_000_000;

/// The most text one render may produce: a prompt far longer than any context window.
pub const MAX_RENDER_BYTES: usize = 16 << 20;

/// One chat message. `content` is a string or a list of parts (`{"type": "text", "text": …}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: MessageContent,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// A content part: `{"type": "text", "text": "…"}` (other types carry no text).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: MessageContent::Text(content.into()),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template with the special tokens it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: Option<String>,
    eos: Option<String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

/// The message `raise_exception(msg)` was called with, carried as the render error's source.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Raised {}

impl ChatTemplate {
    /// Compiles `source`; `bos`/`eos` become `bos_token`/`eos_token` (left undefined when `None`).
    pub fn new(source: impl Into<String>, bos: Option<&str>, eos: Option<&str>) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_fuel(Some(RENDER_FUEL));
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(|out, state, value| {
            let s = match value.kind() {
                ValueKind::Seq | ValueKind::Map | ValueKind::Number => py_str(value),
                _ => return minijinja::escape_formatter(out, state, value),
            };
            out.write_str(&s).map_err(Into::into)
        });
        env.add_filter("tojson", tojson);
        env.add_filter("string", |v: Value| py_str(&v));
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, minijinja::Error> {
                Err(
                    minijinja::Error::new(ErrorKind::InvalidOperation, msg.clone())
                        .with_source(Raised(msg)),
                )
            },
        );
        env.add_function("strftime_now", |fmt: String| {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            strftime(&fmt, secs)
        });
        env.add_template_owned(TEMPLATE, source.into())
            .map_err(|e| Error::Config(format!("chat template does not compile: {e:#}")))?;
        Ok(Self {
            env,
            bos: bos.map(str::to_string),
            eos: eos.map(str::to_string),
        })
    }

    /// Renders `messages`; `extra` (a JSON object, or null) adds or overrides template variables
    /// (`tools`, `date_string`, …). Objects keep the key order `extra` serialises with, which
    /// `tojson` prints: a `serde_json::Value` (without serde_json's `preserve_order`) sorts its
    /// keys; a `minijinja::Value` parsed from JSON or a struct keeps theirs.
    pub fn render<E: Serialize + ?Sized>(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: &E,
    ) -> Result<String> {
        self.render_values(
            &Value::from_serialize(messages),
            add_generation_prompt,
            extra,
        )
    }

    /// Renders messages given as any serialisable list of objects (e.g. with `tool_calls`). As
    /// transformers does, keys whose value is null are dropped, and a reasoning field
    /// (`reasoning_content`, `thinking`, `reasoning`) is copied to `thinking` and
    /// `reasoning_content`.
    pub fn render_values<M: Serialize + ?Sized, E: Serialize + ?Sized>(
        &self,
        messages: &M,
        add_generation_prompt: bool,
        extra: &E,
    ) -> Result<String> {
        let messages = normalize_messages(Value::from_serialize(messages))?;
        let mut ctx: Vec<(String, Value)> = vec![
            ("messages".into(), messages),
            ("tools".into(), Value::from(())),
            ("documents".into(), Value::from(())),
            (
                "add_generation_prompt".into(),
                Value::from(add_generation_prompt),
            ),
        ];
        for (k, t) in [("bos_token", &self.bos), ("eos_token", &self.eos)] {
            if let Some(t) = t {
                ctx.push((k.into(), Value::from(t.as_str())));
            }
        }
        let extra = Value::from_serialize(extra);
        match extra.kind() {
            ValueKind::None | ValueKind::Undefined => {}
            ValueKind::Map => {
                for key in extra.try_iter().map_err(render_error)? {
                    let v = extra.get_item(&key).map_err(render_error)?;
                    let key = key
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| key.to_string());
                    ctx.retain(|(k, _)| *k != key);
                    ctx.push((key, v));
                }
            }
            _ => {
                return Err(Error::Config(
                    "chat template extra arguments must be a JSON object".into(),
                ))
            }
        }
        let tmpl = self.env.get_template(TEMPLATE).map_err(render_error)?;
        let mut out = Bounded(Vec::new());
        tmpl.render_captured_to(Value::from_iter(ctx), &mut out)
            .map_err(render_error)?;
        String::from_utf8(out.0)
            .map_err(|e| Error::Config(format!("chat template rendered invalid UTF-8: {e}")))
    }

    /// DiVA's prompt split: renders one user message whose content is `placeholder` with the
    /// generation prompt, and returns the text before and after it.
    pub fn split_at_user_placeholder(&self, placeholder: &str) -> Result<(String, String)> {
        if placeholder.is_empty() {
            return Err(Error::Config("prompt split placeholder is empty".into()));
        }
        let rendered = self.render(&[Message::user(placeholder)], true, &())?;
        let n = rendered.matches(placeholder).count();
        if n != 1 {
            return Err(Error::Config(format!(
                "chat template renders the placeholder {placeholder:?} {n} times, expected once: {rendered:?}"
            )));
        }
        // unwrap-ok: counted exactly once just above.
        let (prefix, suffix) = rendered.split_once(placeholder).expect("found once");
        Ok((prefix.to_string(), suffix.to_string()))
    }
}

/// The system-prompt markers the DiVA reference code derives from the prompt prefix: the first
/// non-blank line plus "\n", and "\n" plus the last non-blank line plus "\n".
pub fn system_markers(prefix: &str) -> Option<(String, String)> {
    let mut lines = prefix.split('\n').filter(|l| !l.trim().is_empty());
    let first = lines.next()?;
    let last = lines.next_back().unwrap_or(first);
    Some((format!("{first}\n"), format!("\n{last}\n")))
}

/// A render's output, refused past [`MAX_RENDER_BYTES`].
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDER_BYTES {
            return Err(std::io::Error::other("chat template output too long"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn render_error(e: minijinja::Error) -> Error {
    match e.kind() {
        ErrorKind::OutOfFuel => {
            return Error::Config(format!(
                "chat template does too much work: it stopped after {RENDER_FUEL} steps \
                 (a loop that never ends?); fix or replace the template"
            ))
        }
        ErrorKind::WriteFailure => {
            return Error::Config(format!(
                "chat template output is longer than {} MiB; fix or replace the template",
                MAX_RENDER_BYTES >> 20
            ))
        }
        _ => {}
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(Raised(msg)) = s.downcast_ref::<Raised>() {
            return Error::Config(format!("chat template raised an exception: {msg}"));
        }
        source = s.source();
    }
    Error::Config(format!("chat template failed: {e:#}"))
}

/// transformers' message clean-up: drop null-valued keys, alias reasoning fields.
fn normalize_messages(messages: Value) -> Result<Value> {
    if messages.kind() != ValueKind::Seq {
        return Err(Error::Config("chat messages must be a list".into()));
    }
    if messages.len() == Some(0) {
        return Err(Error::Config(
            "cannot apply a chat template to an empty conversation".into(),
        ));
    }
    let mut out = Vec::new();
    for m in messages.try_iter().map_err(render_error)? {
        if m.kind() != ValueKind::Map {
            return Err(Error::Config(format!("chat message {m} is not an object")));
        }
        let mut entries: Vec<(Value, Value)> = Vec::new();
        for k in m.try_iter().map_err(render_error)? {
            let v = m.get_item(&k).map_err(render_error)?;
            if !v.is_none() {
                entries.push((k, v));
            }
        }
        let get = |entries: &[(Value, Value)], key: &str| {
            entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v.clone())
        };
        let reasoning = ["reasoning_content", "thinking", "reasoning"]
            .iter()
            .find_map(|k| get(&entries, k));
        if let Some(r) = reasoning {
            // {"thinking": r, **message, "reasoning_content": r}
            if get(&entries, "thinking").is_none() {
                entries.insert(0, (Value::from("thinking"), r.clone()));
            }
            match entries
                .iter_mut()
                .find(|(k, _)| k.as_str() == Some("reasoning_content"))
            {
                Some(e) => e.1 = r,
                None => entries.push((Value::from("reasoning_content"), r)),
            }
        }
        out.push(Value::from_iter(entries));
    }
    Ok(Value::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_known_dates() {
        // 2024-07-26 13:05:09 UTC, a Friday
        let t = 1_721_999_109;
        assert_eq!(strftime("%d %b %Y", t), "26 Jul 2024");
        assert_eq!(strftime("%d %B %Y", t), "26 July 2024");
        assert_eq!(strftime("%Y-%m-%d %H:%M:%S", t), "2024-07-26 13:05:09");
        assert_eq!(
            strftime("%a %A %I%p %j %y %%", t),
            "Fri Friday 01PM 208 24 %"
        );
        assert_eq!(strftime("%d %b %Y", 0), "01 Jan 1970");
        assert_eq!(strftime("%Y-%m-%d", 951_782_400), "2000-02-29");
        assert_eq!(strftime("%Y-%m-%d", -86_400), "1969-12-31");
    }

    #[test]
    fn python_number_repr() {
        let f = |x: f64| py_number(&Value::from(x), false);
        assert_eq!(f(1.0), "1.0");
        assert_eq!(f(0.5), "0.5");
        assert_eq!(f(1e16), "1e+16");
        assert_eq!(f(1.5e-5), "1.5e-05");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(123456789.25), "123456789.25");
        assert_eq!(py_number(&Value::from(f64::NAN), true), "NaN");
        assert_eq!(py_number(&Value::from(7), true), "7");
    }

    #[test]
    fn python_reprs() {
        let v = Value::from_serialize(serde_json::json!(["a", "it's", 1, 2.5, null, true]));
        assert_eq!(py_str(&v), r#"['a', "it's", 1, 2.5, None, True]"#);
    }
}
