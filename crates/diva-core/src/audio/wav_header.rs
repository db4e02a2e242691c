//! The RIFF/WAVE header: its interesting fields (found by walking the chunks as far as the
//! bytes we kept reach), and rewriting sizes that promise more than the file holds so the
//! frames that are there can be decoded.

use std::io::{Read, Seek, SeekFrom};

use symphonia::core::io::MediaSource;

/// The interesting fields of a RIFF/WAVE header, found by walking its chunks (only as far
/// as the bytes we kept reach).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct WavInfo {
    pub riff_len: u32,
    pub format_tag: Option<u16>,
    pub sample_rate: Option<u32>,
    pub data_len: Option<u32>,
    /// Where the data chunk's payload starts.
    pub data_offset: Option<u64>,
    pub block_align: Option<u16>,
}

impl WavInfo {
    pub fn sniff(head: &[u8]) -> Option<WavInfo> {
        if head.len() < 12 || &head[..4] != b"RIFF" || &head[8..12] != b"WAVE" {
            return None;
        }
        let u32_at = |pos: usize| -> Option<u32> {
            Some(u32::from_le_bytes(head.get(pos..pos + 4)?.try_into().ok()?))
        };
        let mut info = WavInfo {
            riff_len: u32_at(4)?,
            ..Default::default()
        };
        let mut pos = 12usize;
        while let Some(len) = u32_at(pos + 4) {
            match &head[pos..pos + 4] {
                b"fmt " => {
                    info.format_tag = head
                        .get(pos + 8..pos + 10)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]));
                    info.sample_rate = u32_at(pos + 12);
                    info.block_align = head
                        .get(pos + 20..pos + 22)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]));
                }
                b"data" => {
                    info.data_len = Some(len);
                    info.data_offset = Some(pos as u64 + 8);
                    break;
                }
                _ => {}
            }
            // Chunks are padded to an even length.
            let Some(next) = (len as usize)
                .checked_add(len as usize & 1)
                .and_then(|l| l.checked_add(pos + 8))
            else {
                break;
            };
            pos = next;
        }
        Some(info)
    }

    /// Streaming writers (ffmpeg or sox writing to a pipe) cannot seek back to fill in the
    /// sizes and leave `0xFFFFFFFF` there: the length is unknown, not a promise.
    pub fn length_unknown(&self) -> bool {
        self.riff_len == u32::MAX || self.data_len == Some(u32::MAX)
    }

    /// The frames the data chunk's size promises.
    pub fn promised_frames(&self) -> Option<u64> {
        let align = u64::from(self.block_align.filter(|&a| a > 0)?);
        Some(u64::from(self.data_len?) / align)
    }

    /// Header fields to rewrite so the sizes fit a file of `file_len` bytes: the data
    /// chunk's size (whole frames) and the RIFF size. Empty when the header fits.
    /// symphonia refuses a data chunk that runs past its RIFF parent, so without this a
    /// file cut mid-write, or one whose header reserved 4 GB, would not open at all.
    pub fn size_patches(&self, file_len: u64) -> Vec<(u64, [u8; 4])> {
        let (Some(len), Some(offset)) = (self.data_len, self.data_offset) else {
            return Vec::new();
        };
        if offset + u64::from(len) <= file_len {
            return Vec::new();
        }
        let align = u64::from(self.block_align.filter(|&a| a > 0).unwrap_or(1));
        let present = file_len.saturating_sub(offset) / align * align;
        let mut patches = vec![(offset - 4, (present as u32).to_le_bytes())];
        if u64::from(self.riff_len) + 8 > file_len {
            patches.push((4, (file_len.saturating_sub(8) as u32).to_le_bytes()));
        }
        patches
    }
}

/// Chunks walked at most by [`oversized_list`] before giving up (a real file has a few).
const MAX_CHUNKS_WALKED: usize = 4096;

/// The first LIST chunk before the data chunk of the RIFF/WAVE file in `src` (`file_len`
/// bytes) whose size claims more bytes than the file has after its header, as
/// `(offset, claimed size)`. symphonia allocates each entry of a LIST/INFO chunk at its
/// claimed size before reading it, bounded only by the LIST's own size: a few-byte file
/// claiming a 4 GB title would allocate 4 GB. Walks the chunk headers from the start
/// (seeking over the payloads), and leaves `src` at offset 0.
pub(crate) fn oversized_list<S: Read + Seek>(
    src: &mut S,
    file_len: u64,
) -> std::io::Result<Option<(u64, u32)>> {
    let mut pos = 12u64;
    let mut found = None;
    for _ in 0..MAX_CHUNKS_WALKED {
        let mut header = [0u8; 8];
        src.seek(SeekFrom::Start(pos))?;
        if src.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let after = file_len.saturating_sub(pos + 8);
        match &header[..4] {
            b"data" => break,
            b"LIST" if u64::from(len) > after => {
                found = Some((pos, len));
                break;
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos += 8 + u64::from(len) + u64::from(len & 1);
        if pos >= file_len {
            break;
        }
    }
    src.seek(SeekFrom::Start(0))?;
    Ok(found)
}

/// A media source with a few header bytes rewritten (see [`WavInfo::size_patches`]).
pub(crate) struct Patched {
    inner: Box<dyn MediaSource>,
    pos: u64,
    patches: Vec<(u64, [u8; 4])>,
}

impl Patched {
    pub fn new(inner: Box<dyn MediaSource>, patches: Vec<(u64, [u8; 4])>) -> Self {
        Self {
            inner,
            pos: 0,
            patches,
        }
    }
}

impl Read for Patched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (at, bytes) in &self.patches {
            for (i, b) in bytes.iter().enumerate() {
                let p = at + i as u64;
                if p >= self.pos && p < self.pos + n as u64 {
                    buf[(p - self.pos) as usize] = *b;
                }
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Patched {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.inner.seek(to)?;
        Ok(self.pos)
    }
}

impl MediaSource for Patched {
    fn is_seekable(&self) -> bool {
        self.inner.is_seekable()
    }
    fn byte_len(&self) -> Option<u64> {
        self.inner.byte_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_sniffer_walks_chunks() {
        let mut h = b"RIFF\x10\0\0\0WAVE".to_vec();
        h.extend_from_slice(b"JUNK\x03\0\0\0abc\0");
        h.extend_from_slice(b"fmt \x10\0\0\0\x55\0\x01\0\x80\x3e\0\0");
        let info = WavInfo::sniff(&h).unwrap();
        assert_eq!(info.format_tag, Some(0x0055));
        assert_eq!(info.sample_rate, Some(16_000));
        assert_eq!(info.data_len, None);
        // A chunk length running past the end (or overflowing) just stops the walk.
        let info = WavInfo::sniff(b"RIFF\xff\xff\xff\xffWAVEjunk\xff\xff\xff\xff").unwrap();
        assert!(info.length_unknown());
        assert_eq!(info.format_tag, None);
        assert_eq!(WavInfo::sniff(b"RIFF"), None);
        assert_eq!(
            WavInfo::sniff(b"RIFF\0\0\0\0WAVEfm"),
            Some(WavInfo::default())
        );
    }

    #[test]
    fn a_list_chunk_claiming_more_than_the_file_is_found() {
        let mut h = b"RIFF\xff\xff\xff\xffWAVE".to_vec();
        h.extend_from_slice(b"JUNK\x03\0\0\0abc\0");
        h.extend_from_slice(b"LIST\x0c\0\0\0INFOINAM\x00\0\0\0");
        let honest = h.clone();
        h.extend_from_slice(b"LIST\xf0\xff\xff\xffINFO");
        let len = h.len() as u64;
        let mut c = std::io::Cursor::new(h);
        assert_eq!(
            oversized_list(&mut c, len).unwrap(),
            Some((44, 0xffff_fff0))
        );
        assert_eq!(c.position(), 0);
        let mut with_data = honest.clone();
        with_data.extend_from_slice(b"data\xff\xff\xff\xffLIST\xf0\xff\xff\xff");
        let len = with_data.len() as u64;
        // Nothing after the data chunk is looked at (symphonia stops there too).
        assert_eq!(
            oversized_list(&mut std::io::Cursor::new(with_data), len).unwrap(),
            None
        );
        let len = honest.len() as u64;
        assert_eq!(
            oversized_list(&mut std::io::Cursor::new(honest), len).unwrap(),
            None
        );
    }

    #[test]
    fn sizes_past_the_end_of_the_file_are_clamped_to_whole_frames() {
        let mut h = b"RIFF\xfe\xff\xff\xffWAVE".to_vec();
        h.extend_from_slice(b"fmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0");
        h.extend_from_slice(b"data\xfe\xff\xff\xff");
        let info = WavInfo::sniff(&h).unwrap();
        assert_eq!((info.data_offset, info.block_align), (Some(44), Some(2)));
        assert_eq!(info.promised_frames(), Some(0x7fff_ffff));
        // 44 header bytes + 1001 data bytes: 500 whole frames.
        let p = info.size_patches(44 + 1001);
        assert_eq!(
            p,
            vec![(40, 1000u32.to_le_bytes()), (4, 1037u32.to_le_bytes())]
        );
        let mut src = Patched::new(Box::new(std::io::Cursor::new(h.clone())), p);
        let mut got = Vec::new();
        src.read_to_end(&mut got).unwrap();
        assert_eq!(&got[4..8], &1037u32.to_le_bytes());
        assert_eq!(&got[40..44], &1000u32.to_le_bytes());
        assert_eq!(&got[8..40], &h[8..40]);
        assert!(info.size_patches(44 + 0xffff_fffe).is_empty());
    }
}
