//! Block-matching motion estimation on luma frames: forward motion-compensated prediction
//! and symmetric (midpoint) frame interpolation, the optical-flow stand-ins of the
//! consistency suite.
//!
//! Each frame is cut into `BLOCK`×`BLOCK` blocks; a block's displacement is searched in
//! ±`RADIUS` px, coarse (2 px steps) then fine (±1 px). Blocks that already match at zero
//! displacement (static background) skip the search.

use sonora_framework::Frames;

/// Block edge, px.
pub const BLOCK: usize = 8;
/// Search radius, px (fast falls at 8 fps move ~20 px a frame).
pub const RADIUS: i64 = 20;
/// Mean absolute difference (grey levels) under which a block counts as matched at rest.
const STILL: f32 = 1.0;

/// One frame as luma (BT.601), row-major `h×w`.
#[derive(Clone, Debug)]
pub struct Luma {
    /// Pixels, 0–255.
    pub px: Vec<f32>,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl Luma {
    /// Frame `k` of `frames` as luma.
    pub fn of(frames: &Frames, k: usize) -> Self {
        let px = frames
            .frame(k)
            .chunks_exact(3)
            .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
            .collect();
        Self {
            px,
            h: frames.h,
            w: frames.w,
        }
    }

    /// The pixel at `(y, x)`, clamped to the frame.
    fn at(&self, y: i64, x: i64) -> f32 {
        let y = y.clamp(0, self.h as i64 - 1) as usize;
        let x = x.clamp(0, self.w as i64 - 1) as usize;
        self.px[y * self.w + x]
    }
}

/// Block origins `(y, x)` covering an `h×w` frame (edge blocks may be clipped).
fn blocks(h: usize, w: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..h)
        .step_by(BLOCK)
        .flat_map(move |y| (0..w).step_by(BLOCK).map(move |x| (y, x)))
}

/// Pixels of the block at `(by, bx)`.
fn block_px(h: usize, w: usize, by: usize, bx: usize) -> impl Iterator<Item = (i64, i64)> {
    (by..(by + BLOCK).min(h))
        .flat_map(move |y| (bx..(bx + BLOCK).min(w)).map(move |x| (y as i64, x as i64)))
}

/// Searches the displacement minimising `cost(dy, dx)`: zero first (kept when below
/// `still`), then a 2 px grid over ±RADIUS, then ±1 px around the best.
fn search(still: f32, cost: impl Fn(i64, i64) -> f32) -> ((i64, i64), f32) {
    let zero = cost(0, 0);
    if zero <= still {
        return ((0, 0), zero);
    }
    let mut best = ((0, 0), zero);
    for dy in (-RADIUS..=RADIUS).step_by(2) {
        for dx in (-RADIUS..=RADIUS).step_by(2) {
            let c = cost(dy, dx);
            if c < best.1 {
                best = ((dy, dx), c);
            }
        }
    }
    let (cy, cx) = best.0;
    for dy in cy - 1..=cy + 1 {
        for dx in cx - 1..=cx + 1 {
            let c = cost(dy, dx);
            if c < best.1 {
                best = ((dy, dx), c);
            }
        }
    }
    best
}

/// Per block of `cur`: its displacement from `prev` (px, `(dy, dx)`) and the mean absolute
/// error of predicting it from `prev` moved by that displacement.
pub fn forward_flow(prev: &Luma, cur: &Luma) -> Vec<((i64, i64), f32)> {
    let (h, w) = (cur.h, cur.w);
    blocks(h, w)
        .map(|(by, bx)| {
            let n = block_px(h, w, by, bx).count() as f32;
            let cost = |dy: i64, dx: i64| {
                block_px(h, w, by, bx)
                    .map(|(y, x)| (cur.at(y, x) - prev.at(y - dy, x - dx)).abs())
                    .sum::<f32>()
                    / n
            };
            search(STILL, cost)
        })
        .collect()
}

/// Mean absolute error (grey levels) of the best motion-compensated reconstruction of
/// `cur`: per block, the better of the symmetric interpolation between `prev` and `next`
/// (blocks meeting halfway) and the forward prediction from `prev`.
pub fn interpolation_error(prev: &Luma, cur: &Luma, next: &Luma) -> f32 {
    let (h, w) = (cur.h, cur.w);
    let fwd = forward_flow(prev, cur);
    let mut total = 0.0;
    for ((by, bx), (_, fwd_err)) in blocks(h, w).zip(fwd) {
        let n = block_px(h, w, by, bx).count() as f32;
        // the displacement under which prev and next agree about this block
        let agree = |dy: i64, dx: i64| {
            block_px(h, w, by, bx)
                .map(|(y, x)| (prev.at(y - dy, x - dx) - next.at(y + dy, x + dx)).abs())
                .sum::<f32>()
                / n
        };
        let ((dy, dx), _) = search(STILL, agree);
        let interp = block_px(h, w, by, bx)
            .map(|(y, x)| {
                (cur.at(y, x) - 0.5 * (prev.at(y - dy, x - dx) + next.at(y + dy, x + dx))).abs()
            })
            .sum::<f32>()
            / n;
        total += interp.min(fwd_err) * n;
    }
    total / (h * w) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 48×48 frame with a bright 6×6 square at `(y, x)`.
    fn square(y: usize, x: usize) -> Luma {
        let (h, w) = (48, 48);
        let mut px = vec![40.0; h * w];
        for yy in y..y + 6 {
            for xx in x..x + 6 {
                px[yy * w + xx] = 200.0;
            }
        }
        Luma { px, h, w }
    }

    #[test]
    fn forward_flow_finds_the_displacement() {
        let (a, b) = (square(10, 10), square(17, 5));
        let flow = forward_flow(&a, &b);
        let moved = flow
            .iter()
            .filter(|(d, _)| *d != (0, 0))
            .collect::<Vec<_>>();
        assert!(
            moved.iter().any(|(d, e)| *d == (7, -5) && *e < 0.5),
            "{moved:?}"
        );
        assert!(flow.iter().all(|(_, e)| *e < 0.5));
    }

    #[test]
    fn interpolation_is_exact_for_uniform_motion_and_not_for_a_jump() {
        let smooth = interpolation_error(&square(10, 10), &square(14, 14), &square(18, 18));
        let jump = interpolation_error(&square(10, 10), &square(40, 2), &square(18, 18));
        assert!(smooth < 0.05, "{smooth}");
        assert!(jump > 10.0 * smooth.max(0.05), "{jump} vs {smooth}");
    }
}
