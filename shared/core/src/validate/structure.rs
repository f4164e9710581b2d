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
