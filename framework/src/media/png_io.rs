//! PNG in and out as 8-bit RGB.

use std::io::Cursor;

use super::{MediaError, Result};

/// Encodes an `H×W×3` RGB image as PNG.
pub fn encode_png(rgb: &[u8], h: usize, w: usize) -> Result<Vec<u8>> {
    if rgb.len() != h * w * 3 || h == 0 || w == 0 {
        return Err(MediaError::Encode(format!(
            "PNG: {} bytes do not form a non-empty {h}x{w} RGB image",
            rgb.len()
        )));
    }
    let mut out = Vec::new();
    let err = |e: png::EncodingError| MediaError::Encode(format!("PNG: {e}"));
    let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// Decodes a PNG (any colour type or depth) into `(rgb, h, w)` with `H×W×3` bytes.
pub fn decode_png(bytes: &[u8]) -> Result<(Vec<u8>, usize, usize)> {
    let err = |e: png::DecodingError| MediaError::Decode(format!("PNG: {e}"));
    let mut dec = png::Decoder::new(Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().map_err(err)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| MediaError::Decode("PNG: image too large".into()))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(err)?;
    buf.truncate(info.buffer_size());
    let (w, h) = (info.width as usize, info.height as usize);
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        png::ColorType::Indexed => {
            return Err(MediaError::Unsupported("PNG: palette not expanded".into()));
        }
    };
    Ok((rgb, h, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_is_exact() {
        let (h, w) = (5, 7);
        let rgb: Vec<u8> = (0..h * w * 3).map(|i| (i * 37 % 256) as u8).collect();
        let (back, bh, bw) = decode_png(&encode_png(&rgb, h, w).unwrap()).unwrap();
        assert_eq!((bh, bw), (h, w));
        assert_eq!(back, rgb);
    }

    #[test]
    fn bad_png_is_an_error() {
        assert!(decode_png(b"\x89PNG garbage").is_err());
        assert!(encode_png(&[0; 10], 2, 2).is_err());
    }
}
