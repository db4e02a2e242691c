//! Hugging Face chat templates, rendered with minijinja the way transformers renders them
//! (`utils/chat_template_utils.py`, v5.24): a sandboxed Jinja2 environment with
//! `trim_blocks` and `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, a
//! `tojson` that is Python's `json.dumps(ensure_ascii=False)`, and Python's string/dict methods
//! (`.strip()`, `.split()`, `.startswith()`, `.items()`, …). The template sees `messages`,
//! `tools` and `documents` (none unless given), `add_generation_prompt`, `bos_token`,
//! `eos_token`, and any extra keyword arguments.

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const TEMPLATE: &str = "chat_template";

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
        tmpl.render(Value::from_iter(ctx)).map_err(render_error)
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

fn render_error(e: minijinja::Error) -> Error {
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

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(n.max(0) as usize)),
            (None, Some(s)) => Some(s.to_string()),
            _ => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ))
            }
        },
    };
    let (item_sep, key_sep) = match separators.filter(|s| !s.is_none()) {
        Some(s) => {
            let parts: Vec<String> = s
                .try_iter()?
                .map(|p| p.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .filter(|p: &Vec<String>| p.len() == 2)
                .ok_or_else(|| {
                    minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be two strings",
                    )
                })?;
            (parts[0].clone(), parts[1].clone())
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let opts = JsonOpts {
        ensure_ascii: ensure_ascii.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    json_dump(&value, &opts, 0, &mut out)?;
    Ok(Value::from(out))
}

struct JsonOpts {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

fn json_dump(
    v: &Value,
    o: &JsonOpts,
    level: usize,
    out: &mut String,
) -> std::result::Result<(), minijinja::Error> {
    let not_serializable = |what: &str| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: object of type {what} is not JSON serializable"),
        )
    };
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &o.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&py_number(v, true)),
        ValueKind::String => json_string(v.as_str().unwrap_or_default(), o.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, level + 1);
                json_dump(item, o, level + 1, out)?;
            }
            newline(out, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            let key_str = |k: &Value| -> std::result::Result<String, minijinja::Error> {
                Ok(match k.kind() {
                    ValueKind::String => k.as_str().unwrap_or_default().to_string(),
                    ValueKind::None => "null".into(),
                    ValueKind::Bool => (if k.is_true() { "true" } else { "false" }).into(),
                    ValueKind::Number => py_number(k, true),
                    _ => return Err(not_serializable("dict key")),
                })
            };
            if o.sort_keys {
                keys.sort_by_key(|k| key_str(k).unwrap_or_default());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, level + 1);
                json_string(&key_str(k)?, o.ensure_ascii, out);
                out.push_str(&o.key_sep);
                json_dump(&v.get_item(k)?, o, level + 1, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        ValueKind::Undefined => return Err(not_serializable("Undefined")),
        other => return Err(not_serializable(&other.to_string())),
    }
    Ok(())
}

/// A JSON string literal as Python's `json` module writes it.
fn json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `str(x)`: lists and dicts as their repr, floats as Python prints them.
fn py_str(v: &Value) -> String {
    match v.kind() {
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        _ => py_repr(v),
    }
}

/// Python's `repr(x)` for the JSON-like values templates see.
fn py_repr(v: &Value) -> String {
    match v.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::None => "None".into(),
        ValueKind::Bool => (if v.is_true() { "True" } else { "False" }).into(),
        ValueKind::Number => py_number(v, false),
        ValueKind::String => py_str_repr(v.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            let items: Vec<String> = v
                .try_iter()
                .map(|it| it.map(|x| py_repr(&x)).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Map => {
            let items: Vec<String> = v
                .try_iter()
                .map(|it| {
                    it.map(|k| {
                        let val = v.get_item(&k).unwrap_or_default();
                        format!("{}: {}", py_repr(&k), py_repr(&val))
                    })
                    .collect()
                })
                .unwrap_or_default();
            format!("{{{}}}", items.join(", "))
        }
        _ => v.to_string(),
    }
}

fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// A number as Python prints it (`repr(float)`: shortest round trip, exponent from 1e16 and
/// below 1e-4). `json` writes non-finite floats as `NaN`/`Infinity`, `repr` as `nan`/`inf`.
fn py_number(v: &Value, json: bool) -> String {
    if v.is_integer() {
        return v.to_string();
    }
    let Ok(f) = f64::try_from(v.clone()) else {
        return v.to_string();
    };
    if f.is_nan() {
        return (if json { "NaN" } else { "nan" }).into();
    }
    if f.is_infinite() {
        let s = if json { "Infinity" } else { "inf" };
        return if f < 0.0 { format!("-{s}") } else { s.into() };
    }
    let a = f.abs();
    if a == 0.0 || (1e-4..1e16).contains(&a) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let s = format!("{f:e}"); // e.g. "1.5e-5", "1e16"
        let (mantissa, exp) = s.split_once('e').expect("exponent");
        let exp: i32 = exp.parse().expect("integer exponent");
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

/// `strftime` for a UTC unix time, with the directives chat templates use: %d %e %m %y %Y %b %B
/// %a %A %H %I %M %S %p %j %%. Others are copied through.
pub fn strftime(fmt: &str, unix_secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:2}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('Y') => out.push_str(&y.to_string()),
            Some('b') => out.push_str(&MONTHS[m as usize - 1][..3]),
            Some('B') => out.push_str(MONTHS[m as usize - 1]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('H') => out.push_str(&format!("{hh:02}")),
            Some('I') => out.push_str(&format!("{:02}", (hh + 11) % 12 + 1)),
            Some('M') => out.push_str(&format!("{mm:02}")),
            Some('S') => out.push_str(&format!("{ss:02}")),
            Some('p') => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
