//! Per-token timesteps factored into each example's few distinct values.
//!
//! Every token carries its own timestep, but a clip has only a handful of distinct ones:
//! the noise level of the generated tokens and 0 for the given ones (first frame, given
//! video, references). The AdaLN conditioning depends on the token only through its
//! timestep, so the timestep embedding and each block's modulation are computed once per
//! distinct value (`[B, K, ·]`) and spread to the tokens by a one-hot matmul
//! (`[B, N, K] · [B, K, ·]`). With K = 2 that replaces a `d → 6d` linear on every token
//! (a quarter of a block's FLOPs) by one on two rows; the result is the same, since a
//! one-hot row picks its value exactly.

use burn::prelude::*;

/// Most distinct timesteps per example for which [`TimeLevels`] is used; beyond it the
/// per-token path is cheaper.
pub const MAX_TIME_LEVELS: usize = 8;

/// Each example's distinct timesteps and which one every token has.
#[derive(Clone, Debug)]
pub struct TimeLevels {
    /// Distinct timesteps `[B, K]`; a row with fewer than K repeats its first value.
    pub values: Tensor<2>,
    /// One-hot assignment of tokens to values `[B, N, K]`.
    pub assign: Tensor<3>,
}

impl TimeLevels {
    /// Factors per-token timesteps `t: [B, N]`; `None` when some example has more than
    /// [`MAX_TIME_LEVELS`] distinct values (then condition every token on its own).
    ///
    /// This reads `t` back from the device; callers that built `t` on the host use
    /// [`Self::from_host`] instead (no device → host copy, which is a stall on a GPU).
    pub fn factor(t: &Tensor<2>) -> Option<Self> {
        let [b, n] = t.dims();
        let host = t.to_data().convert::<f32>().try_to_vec::<f32>().ok()?;
        Self::from_host(&host, b, n, &t.device())
    }

    /// [`Self::factor`] of host timesteps `t` (`[b, n]` row-major) for `device`.
    pub fn from_host(host: &[f32], b: usize, n: usize, device: &Device) -> Option<Self> {
        if host.len() != b * n {
            return None;
        }
        // distinct values per row, in order of first appearance (exact bit equality)
        let mut rows: Vec<Vec<f32>> = Vec::with_capacity(b);
        let mut index = vec![0usize; b * n];
        for (i, row) in host.chunks(n.max(1)).enumerate().take(b) {
            let mut values: Vec<f32> = Vec::new();
            for (j, &x) in row.iter().enumerate() {
                let k = match values.iter().position(|v| v.to_bits() == x.to_bits()) {
                    Some(k) => k,
                    None if values.len() == MAX_TIME_LEVELS => return None,
                    None => {
                        values.push(x);
                        values.len() - 1
                    }
                };
                index[i * n + j] = k;
            }
            rows.push(values);
        }
        let k = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let values: Vec<f32> = rows
            .iter()
            .flat_map(|r| (0..k).map(|j| *r.get(j).or(r.first()).unwrap_or(&0.0)))
            .collect();
        let mut assign = vec![0f32; b * n * k];
        for (p, &j) in index.iter().enumerate() {
            assign[p * k + j] = 1.0;
        }
        Some(Self {
            values: Tensor::from_data(TensorData::new(values, [b, k]), device),
            assign: Tensor::from_data(TensorData::new(assign, [b, n, k]), device),
        })
    }

    /// Per-value rows `[B, K, D]` → per-token rows `[B, N, D]`.
    pub fn spread(&self, x: Tensor<3>) -> Tensor<3> {
        self.assign.clone().matmul(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_each_row_into_its_distinct_values() {
        let dev = Device::flex();
        // example 0: given first token, the rest at 0.7; example 1: all at 0.25
        let t = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 0.7, 0.7, 0.7, 0.25, 0.25, 0.25, 0.25], [2, 4]),
            &dev,
        );
        let lv = TimeLevels::factor(&t).expect("two levels");
        assert_eq!(lv.values.dims(), [2, 2]);
        let values = lv.values.to_data().try_to_vec::<f32>().unwrap();
        assert_eq!(values, vec![0.0, 0.7, 0.25, 0.25]);
        // spreading the values back gives the per-token timesteps
        let back = lv
            .spread(lv.values.clone().unsqueeze_dim::<3>(2))
            .reshape([2, 4])
            .to_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(back, t.to_data().try_to_vec::<f32>().unwrap());
    }

    #[test]
    fn too_many_levels_fall_back_to_per_token() {
        let dev = Device::flex();
        let n = MAX_TIME_LEVELS + 1;
        let ts: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
        let t = Tensor::<2>::from_data(TensorData::new(ts, [1, n]), &dev);
        assert!(TimeLevels::factor(&t).is_none());
        let t = t.narrow(1, 0, MAX_TIME_LEVELS);
        assert!(TimeLevels::factor(&t).is_some());
    }
}
