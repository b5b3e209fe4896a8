//! Frame geometry: resize (SIMD convolution via `fast_image_resize`) and crop.

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::{MediaError, Result};
use crate::clip::Frames;

/// Resizes one `H×W×3` RGB image to `h×w` (bilinear; area-like when shrinking).
pub fn resize_rgb(rgb: &[u8], src_h: usize, src_w: usize, h: usize, w: usize) -> Result<Vec<u8>> {
    if h == 0 || w == 0 || src_h == 0 || src_w == 0 {
        return Err(MediaError::Invalid(format!(
            "resize {src_h}x{src_w} -> {h}x{w}: sizes must be positive"
        )));
    }
    if rgb.len() != src_h * src_w * 3 {
        return Err(MediaError::Invalid(format!(
            "resize: {} bytes is not {src_h}x{src_w}x3",
            rgb.len()
        )));
    }
    if (h, w) == (src_h, src_w) {
        return Ok(rgb.to_vec());
    }
    let src = Image::from_vec_u8(src_w as u32, src_h as u32, rgb.to_vec(), PixelType::U8x3)
        .map_err(|e| MediaError::Invalid(format!("resize: {e}")))?;
    let mut dst = Image::new(w as u32, h as u32, PixelType::U8x3);
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(&src, &mut dst, &opts)
        .map_err(|e| MediaError::Invalid(format!("resize: {e}")))?;
    Ok(dst.into_vec())
}

/// Resizes every frame: `T×H×W×3 → T×h×w×3`.
pub fn resize_frames(f: &Frames, h: usize, w: usize) -> Result<Frames> {
    if (f.h, f.w) == (h, w) {
        return Ok(f.clone());
    }
    let mut data = Vec::with_capacity(f.t * h * w * 3);
    for k in 0..f.t {
        data.extend_from_slice(&resize_rgb(f.frame(k), f.h, f.w, h, w)?);
    }
    Ok(Frames { data, t: f.t, h, w })
}

/// Crops the window `[top, top+h) × [left, left+w)` of every frame: `T×H×W×3 → T×h×w×3`.
pub fn crop_frames(f: &Frames, top: usize, left: usize, h: usize, w: usize) -> Result<Frames> {
    if top + h > f.h || left + w > f.w || h == 0 || w == 0 {
        return Err(MediaError::Invalid(format!(
            "crop {h}x{w} at ({top}, {left}) does not fit in {}x{} frames",
            f.h, f.w
        )));
    }
    let mut data = Vec::with_capacity(f.t * h * w * 3);
    for k in 0..f.t {
        let frame = f.frame(k);
        for y in top..top + h {
            let row = (y * f.w + left) * 3;
            data.extend_from_slice(&frame[row..row + w * 3]);
        }
    }
    Ok(Frames { data, t: f.t, h, w })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_flat_colour_and_shape() {
        let mut f = Frames::zeros(2, 10, 20);
        f.data
            .chunks_mut(3)
            .for_each(|p| p.copy_from_slice(&[200, 100, 50]));
        let r = resize_frames(&f, 5, 8).unwrap();
        assert_eq!((r.t, r.h, r.w, r.data.len()), (2, 5, 8, 2 * 5 * 8 * 3));
        assert!(r.data.chunks(3).all(|p| p == [200, 100, 50]));
    }

    #[test]
    fn crop_takes_the_window() {
        let mut f = Frames::zeros(1, 4, 4);
        for (i, p) in f.data.chunks_mut(3).enumerate() {
            p[0] = i as u8;
        }
        let c = crop_frames(&f, 1, 2, 2, 2).unwrap();
        let reds: Vec<u8> = c.data.chunks(3).map(|p| p[0]).collect();
        assert_eq!(reds, vec![6, 7, 10, 11]);
        assert!(crop_frames(&f, 3, 0, 2, 2).is_err());
    }
}
