//! The container of encoded audio bytes, for naming files extracted from
//! datasets (parquet exports carry the bytes and, sometimes, a path): shared
//! by the training importer (`diva data import`) and the evaluation importer
//! (`diva eval import`).

/// The file extension (no dot) for encoded audio, from its magic bytes: `wav`, `flac`, `mp3`,
/// `ogg`, `m4a`, `webm`, or `bin` when unknown.
pub fn sniff_ext(b: &[u8]) -> &'static str {
    if b.starts_with(b"RIFF") {
        "wav"
    } else if b.starts_with(b"fLaC") {
        "flac"
    } else if b.starts_with(b"OggS") {
        "ogg"
    // An ID3 tag, or an MPEG audio frame sync (11 set bits) whose layer field is not 00
    // (which is ADTS AAC).
    } else if b.starts_with(b"ID3")
        || (b.len() >= 2 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0 && b[1] & 0x06 != 0)
    {
        "mp3"
    } else if b.len() >= 8 && &b[4..8] == b"ftyp" {
        "m4a"
    } else if b.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        "webm"
    } else {
        "bin"
    }
}

/// The extension of a path or an HF `audio.path` value (`clips/a.MP3` → `mp3`), if it looks
/// like one: 1–5 ASCII letters or digits after a non-empty stem.
pub fn ext_from_path(path: &str) -> Option<String> {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    let (stem, ext) = name.rsplit_once('.')?;
    let ok = !stem.is_empty()
        && (1..=5).contains(&ext.len())
        && ext.bytes().all(|c| c.is_ascii_alphanumeric());
    ok.then(|| ext.to_ascii_lowercase())
}

/// `name` made safe as a file stem for an extracted clip: anything but ASCII letters, digits,
/// `-`, `_` and `.` becomes `_`, and a leading `.` too (no hidden files).
pub fn safe_stem(name: &str) -> String {
    let mut s: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_from_paths_and_bytes() {
        assert_eq!(ext_from_path("clips/a.MP3").as_deref(), Some("mp3"));
        assert_eq!(ext_from_path(r"C:\x\b.flac").as_deref(), Some("flac"));
        assert_eq!(ext_from_path("noext"), None);
        assert_eq!(ext_from_path(".hidden"), None);
        assert_eq!(ext_from_path("a.b c"), None);
        assert_eq!(sniff_ext(b"RIFF\x24\0\0\0WAVEfmt "), "wav");
        assert_eq!(sniff_ext(b"fLaC\0\0\0\x22"), "flac");
        assert_eq!(sniff_ext(&[0xFF, 0xFB, 0x90]), "mp3");
        // ADTS AAC has the sync but layer 00: not MP3.
        assert_eq!(sniff_ext(&[0xFF, 0xF1, 0x50]), "bin");
        assert_eq!(sniff_ext(b"\0\0\0\x20ftypM4A "), "m4a");
    }
}
