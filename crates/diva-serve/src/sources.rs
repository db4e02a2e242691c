//! Where an `audio_url` may point besides an inline `data:` URL: nowhere,
//! unless `diva serve --allow-audio-url PREFIX` names it (an SSRF guard: a
//! client must not make the server reach an address of its choosing).
//!
//! - `http://host[:port]/path/` and `https://…` prefixes: the URL must start
//!   with one (compared as text after the prefix is checked to end its host
//!   with `/`, so `http://clips.example` cannot admit
//!   `http://clips.example.evil.net`); redirects are not followed, the
//!   download is capped at the body limit and timed out. The URL is compared
//!   after its dot segments are resolved (`/clips/../x` is `/x`).
//! - `file:///dir/` prefixes: the file's canonical path (symlinks and `..`
//!   resolved) must lie under the directory's canonical path.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::ApiError;

#[derive(Debug, Clone)]
enum Allowed {
    Web(String),
    Dir(PathBuf),
}

/// The allow-list, with the download limits.
#[derive(Debug, Clone)]
pub struct AudioSources {
    allowed: Vec<Allowed>,
    max_bytes: usize,
    timeout: Duration,
}

impl Default for AudioSources {
    /// Inline audio only.
    fn default() -> Self {
        Self {
            allowed: Vec::new(),
            max_bytes: 25_000_000,
            timeout: Duration::from_secs(10),
        }
    }
}

impl AudioSources {
    /// Check each prefix (an error says which one and why).
    pub fn new(prefixes: &[String], max_bytes: usize, timeout: Duration) -> Result<Self, String> {
        let mut allowed = Vec::with_capacity(prefixes.len());
        for p in prefixes {
            if let Some(path) = p.strip_prefix("file://") {
                let dir = Path::new(path);
                if !dir.is_absolute() {
                    return Err(format!(
                        "--allow-audio-url {p}: a file URL names an absolute directory (file:///data/clips/)"
                    ));
                }
                let canon = dir
                    .canonicalize()
                    .map_err(|e| format!("--allow-audio-url {p}: {}: {e}", dir.display()))?;
                if !canon.is_dir() {
                    return Err(format!("--allow-audio-url {p}: not a directory"));
                }
                allowed.push(Allowed::Dir(canon));
            } else if let Some(rest) = p
                .strip_prefix("http://")
                .or_else(|| p.strip_prefix("https://"))
            {
                let host = rest.split('/').next().unwrap_or("");
                if host.is_empty() || host.contains('@') {
                    return Err(format!(
                        "--allow-audio-url {p}: name a host (http://clips.example.com/audio/), without user info"
                    ));
                }
                // The prefix must end the host, or it would admit any host
                // that begins with it; normalised as URLs are compared.
                let mut prefix = p.clone();
                if !rest.contains('/') {
                    prefix.push('/');
                }
                let prefix = url::Url::parse(&prefix)
                    .map_err(|e| format!("--allow-audio-url {p}: {e}"))?
                    .to_string();
                allowed.push(Allowed::Web(prefix));
            } else {
                return Err(format!(
                    "--allow-audio-url {p}: give an http://, https:// or file:/// prefix"
                ));
            }
        }
        Ok(Self {
            allowed,
            max_bytes,
            timeout,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    /// The bytes at `url` (not a `data:` URL) and a format hint from its
    /// extension or content type, if the allow-list admits it.
    pub fn fetch(&self, url: &str, at: &str) -> Result<(Option<String>, Vec<u8>), ApiError> {
        let bad = |m: String| ApiError::bad_request(format!("{at}: {m}"), Some("messages"));
        let scheme = url.split(':').next().unwrap_or("");
        let refused = || {
            bad(format!(
                "`{scheme}:` audio URLs are fetched only from the prefixes `diva serve --allow-audio-url` names{}; send the audio inline as a data: URL or input_audio",
                if self.is_empty() { " (none here)" } else { ", and this URL is not under one" }
            ))
        };
        if let Some(path) = url.strip_prefix("file://") {
            let canon = Path::new(path).canonicalize().map_err(|_| refused())?;
            if !self
                .allowed
                .iter()
                .any(|a| matches!(a, Allowed::Dir(d) if canon.starts_with(d)))
            {
                return Err(refused());
            }
            let len = std::fs::metadata(&canon).map(|m| m.len()).unwrap_or(0);
            if len as usize > self.max_bytes {
                return Err(self.too_large(url));
            }
            let bytes = std::fs::read(&canon)
                .map_err(|e| bad(format!("cannot read {}: {e}", canon.display())))?;
            return Ok((extension(path), bytes));
        }
        // Compare the URL as the fetch will send it: dot segments (also
        // percent-encoded ones) resolved, so `/clips/../secret` is `/secret`.
        let normal = match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.username().is_empty() => {
                u.to_string()
            }
            _ => return Err(refused()),
        };
        if !self
            .allowed
            .iter()
            .any(|a| matches!(a, Allowed::Web(p) if normal.starts_with(p.as_str())))
        {
            return Err(refused());
        }
        let url = normal.as_str();
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(self.timeout)
            .build();
        let resp = agent.get(url).call().map_err(|e| match e {
            ureq::Error::Status(code, _) => bad(format!("fetching {url}: HTTP {code}")),
            other => bad(format!("fetching {url}: {other}")),
        })?;
        if !(200..300).contains(&resp.status()) {
            return Err(bad(format!(
                "fetching {url}: HTTP {} (redirects are not followed: allow-list the final URL)",
                resp.status()
            )));
        }
        let mime = resp.content_type().to_string();
        let mut bytes = Vec::new();
        resp.into_reader()
            .take(self.max_bytes as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("fetching {url}: {e}")))?;
        if bytes.len() > self.max_bytes {
            return Err(self.too_large(url));
        }
        let format = mime
            .strip_prefix("audio/")
            .map(|s| s.to_string())
            .or_else(|| extension(url.split(['?', '#']).next().unwrap_or(url)));
        Ok((format, bytes))
    }
}

impl AudioSources {
    fn too_large(&self, url: &str) -> ApiError {
        ApiError {
            message: format!(
                "the audio at {url} is over the limit of {} MB (`diva serve --max-body-mb`)",
                self.max_bytes / 1_000_000
            ),
            ..ApiError::too_large(self.max_bytes)
        }
    }
}

fn extension(path: &str) -> Option<String> {
    Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked_and_end_the_host() {
        let s = AudioSources::new(
            &["http://clips.example".into()],
            100,
            Duration::from_secs(1),
        )
        .unwrap();
        for url in [
            "http://clips.example.evil.net/a.wav",
            "http://evil.net/x/../a.wav",
            "http://user@clips.example/a.wav",
        ] {
            let e = s.fetch(url, "m").unwrap_err();
            assert_eq!(e.status, 400, "{url}");
        }
        let deep = AudioSources::new(
            &["http://clips.example/audio/".into()],
            100,
            Duration::from_secs(1),
        )
        .unwrap();
        for url in [
            "http://clips.example/audio/../secret.wav",
            "http://clips.example/audio/%2e%2e/secret.wav",
        ] {
            let e = deep.fetch(url, "m").unwrap_err();
            assert!(e.message.contains("not under one"), "{url}: {}", e.message);
        }
        for bad in [
            "ftp://x/",
            "http:///x",
            "http://u@host/",
            "file://relative/dir",
        ] {
            assert!(
                AudioSources::new(&[bad.into()], 100, Duration::from_secs(1)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn files_must_lie_under_an_allowed_directory() {
        let root = tempfile::tempdir().unwrap();
        let ok = root.path().join("ok");
        std::fs::create_dir(&ok).unwrap();
        std::fs::write(ok.join("a.wav"), b"RIFF").unwrap();
        std::fs::write(root.path().join("secret.wav"), b"RIFF").unwrap();
        let s = AudioSources::new(
            &[format!("file://{}/", ok.display())],
            100,
            Duration::from_secs(1),
        )
        .unwrap();
        let (fmt, bytes) = s
            .fetch(&format!("file://{}/a.wav", ok.display()), "m")
            .unwrap();
        assert_eq!(
            (fmt.as_deref(), bytes.as_slice()),
            (Some("wav"), &b"RIFF"[..])
        );
        // `..` out of the directory, and a file outside it.
        for url in [
            format!("file://{}/../secret.wav", ok.display()),
            format!("file://{}/secret.wav", root.path().display()),
            "http://127.0.0.1:9/x.wav".to_string(),
        ] {
            let e = s.fetch(&url, "m").unwrap_err();
            assert_eq!(e.status, 400, "{url}");
        }
        // Nothing allowed: the message says so.
        let none = AudioSources::default()
            .fetch("http://169.254.169.254/x.wav", "m")
            .unwrap_err();
        assert!(none.message.contains("(none here)"), "{}", none.message);
    }
}
