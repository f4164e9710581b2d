//! Walks a container to its end marker. Some decoders fill the missing rows of a cut-off JPEG or
//! GIF with grey and report success; a dataset must never take such a file as a whole image.

use super::Format;
use crate::reason::{ReasonCode, Rejection};

enum Defect {
    Truncated(&'static str),
    Corrupt(&'static str),
}

pub(super) fn check_complete(data: &[u8], format: Format) -> Result<(), Rejection> {
    let result = match format {
        Format::Jpeg => jpeg(data),
        Format::Png => png(data),
        Format::Gif => gif(data),
        Format::Webp => webp(data),
        // The BMP and TIFF decoders read exact byte counts and fail on a short file themselves.
        Format::Bmp | Format::Tiff => Ok(()),
    };
    result.map_err(|defect| match defect {
        Defect::Truncated(what) => Rejection::new(
            ReasonCode::Truncated,
            format!(
                "the {format} file ends before its {what} ({} bytes arrived); the upload was cut short, upload it again",
                data.len()
            ),
        ),
        Defect::Corrupt(what) => {
            Rejection::new(ReasonCode::Corrupt, format!("the {format} structure is damaged ({what}); export the image again"))
        }
    })
}

fn be16(data: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?])))
}

/// Markers segment by segment; entropy-coded data is scanned for the next real marker (0xFF
/// followed by anything but a stuffed 0x00, a restart marker or fill). Ends at EOI.
fn jpeg(data: &[u8]) -> Result<(), Defect> {
    const END: Defect = Defect::Truncated("end-of-image marker");
    if data.len() < 4 {
        return Err(END);
    }
    let mut i = 2;
    loop {
        match data.get(i) {
            None => return Err(END),
            Some(0xFF) => {}
            Some(_) => return Err(Defect::Corrupt("a segment does not start with a marker")),
        }
        while data.get(i) == Some(&0xFF) {
            i += 1;
        }
        let marker = *data.get(i).ok_or(END)?;
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let len = be16(data, i).ok_or(END)?;
        if len < 2 {
            return Err(Defect::Corrupt("a segment length under 2"));
        }
        i += len;
        if i > data.len() {
            return Err(END);
        }
        if marker == 0xDA {
            // Start of scan: skip the entropy-coded data up to the next marker.
            loop {
                let at = memchr::memchr(0xFF, &data[i..]).ok_or(END)? + i;
                match *data.get(at + 1).ok_or(END)? {
                    0x00 | 0xD0..=0xD7 => i = at + 2,
                    0xFF => i = at + 1,
                    _ => {
                        i = at;
                        break;
                    }
                }
            }
        }
    }
}

/// What a progressive JPEG decode holds besides its output: every DCT coefficient of every
/// component (an `i16` per sample, at each component's own resolution, padded to whole blocks)
/// until the last scan. Zero for a sequential JPEG, which decodes a row of blocks at a time, and
/// for a file whose frame header cannot be found (the decoder rejects that itself).
pub(super) fn jpeg_coefficient_bytes(data: &[u8]) -> u64 {
    let mut i = 2;
    while data.get(i) == Some(&0xFF) {
        while data.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = data.get(i) else { return 0 };
        i += 1;
        if matches!(marker, 0x01 | 0xD0..=0xD8) {
            continue;
        }
        let Some(len) = be16(data, i) else { return 0 };
        if let 0xC0..=0xCF = marker {
            if matches!(marker, 0xC4 | 0xC8 | 0xCC) {
                // DHT, JPG and DAC share the range but are no frame headers.
                i += len;
                continue;
            }
            if !matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE) {
                return 0;
            }
            let frame = |at: usize| data.get(i + at).copied().map(u64::from);
            let (Some(h0), Some(h1), Some(w0), Some(w1), Some(count)) = (frame(3), frame(4), frame(5), frame(6), frame(7)) else {
                return 0;
            };
            let (height, width) = ((h0 << 8) | h1, (w0 << 8) | w1);
            let sampling: Vec<(u64, u64)> =
                (0..count as usize).filter_map(|c| frame(9 + 3 * c)).map(|hv| ((hv >> 4).max(1), (hv & 0x0F).max(1))).collect();
            let h_max = sampling.iter().map(|s| s.0).max().unwrap_or(1);
            let v_max = sampling.iter().map(|s| s.1).max().unwrap_or(1);
            // Blocks of 8x8 per component, rounded up to whole MCUs.
            let (mcus_x, mcus_y) = (width.div_ceil(8 * h_max), height.div_ceil(8 * v_max));
            return sampling.iter().map(|(h, v)| mcus_x * h * mcus_y * v * 64 * 2).sum();
        }
        if marker == 0xDA || marker == 0xD9 {
            return 0;
        }
        i += len;
    }
    0
}

/// Chunk by chunk to IEND.
fn png(data: &[u8]) -> Result<(), Defect> {
    const END: Defect = Defect::Truncated("IEND chunk");
    let mut i = 8;
    loop {
        let header = data.get(i..i + 8).ok_or(END)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > 0x7FFF_FFFF {
            return Err(Defect::Corrupt("a chunk longer than 2^31 bytes"));
        }
        let end = i + 12 + len;
        if end > data.len() {
            return Err(END);
        }
        if &header[4..8] == b"IEND" {
            return Ok(());
        }
        i = end;
    }
}

/// Blocks to the trailer byte 0x3B.
fn gif(data: &[u8]) -> Result<(), Defect> {
    const END: Defect = Defect::Truncated("trailer");
    let packed = *data.get(10).ok_or(END)?;
    let mut i = 13 + global_table_len(packed);
    let skip_sub_blocks = |mut i: usize| -> Result<usize, Defect> {
        loop {
            let size = usize::from(*data.get(i).ok_or(END)?);
            i += 1 + size;
            if size == 0 {
                return Ok(i);
            }
        }
    };
    loop {
        match *data.get(i).ok_or(END)? {
            0x3B => return Ok(()),
            0x21 => i = skip_sub_blocks(i + 2)?,
            0x2C => {
                let packed = *data.get(i + 9).ok_or(END)?;
                // Descriptor (10 bytes), local colour table, LZW minimum code size (1 byte).
                i = skip_sub_blocks(i + 10 + global_table_len(packed) + 1)?;
            }
            _ => return Err(Defect::Corrupt("an unknown block type")),
        }
    }
}

fn global_table_len(packed: u8) -> usize {
    if packed & 0x80 != 0 {
        3 * (1 << ((packed & 0x07) + 1))
    } else {
        0
    }
}

/// The RIFF header states the file's length.
fn webp(data: &[u8]) -> Result<(), Defect> {
    let size = data.get(4..8).ok_or(Defect::Truncated("RIFF header"))?;
    let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
    if size < 4 {
        return Err(Defect::Corrupt("a RIFF size under 4"));
    }
    if data.len() < 8 + size {
        return Err(Defect::Truncated("last RIFF chunk"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG's start: SOI, an APP0 segment, then a frame header of `marker` for 4000x3000 with
    /// 4:2:0 chroma.
    fn frame(marker: u8) -> Vec<u8> {
        let mut data = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, marker, 0x00, 0x11, 0x08];
        data.extend_from_slice(&3000u16.to_be_bytes());
        data.extend_from_slice(&4000u16.to_be_bytes());
        data.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        data
    }

    #[test]
    fn a_progressive_jpeg_holds_its_coefficients_and_a_sequential_one_does_not() {
        // Luma: 250 x 188 MCUs of 2 x 2 blocks; each chroma plane one block per MCU; 128 bytes a block.
        assert_eq!(jpeg_coefficient_bytes(&frame(0xC2)), (250 * 188 * 4 + 2 * 250 * 188) * 128);
        assert_eq!(jpeg_coefficient_bytes(&frame(0xC0)), 0);
        assert_eq!(jpeg_coefficient_bytes(&frame(0xC2)[..14]), 0, "a cut header: the decoder says why");
    }
}
