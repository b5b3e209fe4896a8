//! The epoch plan: which clips this rank reads, in which order.
//!
//! Order is a pure function of `(seed, epoch, rank, world, block)`: row groups are
//! permuted, rows are permuted within each row group, the global sequence is shuffled
//! again within windows of `shuffle_window` clips, and then dealt to the ranks in blocks
//! of `block` clips (a rank's batch size), round robin: rank `r` reads blocks `r`,
//! `r + world`, `r + 2·world`, … (disjoint and complete). So the global order does not
//! depend on the world size, and step `k`'s batches over all ranks are exactly the batch
//! one rank with `world × block` clips would read at step `k`. Reading stays close to
//! sequential while batches still mix row groups.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// One clip's address: shard index (in manifest order), row group, row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClipRef {
    /// Index into the loader's shard list.
    pub shard: u32,
    /// Row group within the shard.
    pub row_group: u32,
    /// Row within the row group.
    pub row: u32,
}

/// Rows per row group of every shard, in manifest order.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// `groups[shard][g]` = rows in row group `g` of `shard`.
    pub groups: Vec<Vec<u32>>,
}

impl Layout {
    /// Total clips.
    pub fn total(&self) -> u64 {
        self.groups.iter().flatten().map(|&n| n as u64).sum()
    }
}

/// SplitMix64 finaliser: mixes several words into one seed.
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        let mut z = h ^ p.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    }
    h
}

/// Parameters of an epoch plan.
#[derive(Clone, Copy, Debug)]
pub struct PlanParams {
    /// Shuffle seed.
    pub seed: u64,
    /// Epoch number (0-based).
    pub epoch: u64,
    /// This rank.
    pub rank: u32,
    /// Number of ranks.
    pub world: u32,
    /// Shuffle at all.
    pub shuffle: bool,
    /// Clips per local shuffle window.
    pub shuffle_window: usize,
    /// Give every rank the same count by dropping the last, incomplete round of blocks
    /// (`N % (world × block)` clips; nothing in a world of one).
    pub even_ranks: bool,
    /// Clips dealt to a rank at a time (its batch size; at least 1).
    pub block: usize,
}

/// This rank's ordered clips for one epoch.
pub fn epoch_plan(layout: &Layout, p: &PlanParams) -> Vec<ClipRef> {
    let mut groups: Vec<(u32, u32, u32)> = layout
        .groups
        .iter()
        .enumerate()
        .flat_map(|(s, gs)| {
            gs.iter()
                .enumerate()
                .map(move |(g, &n)| (s as u32, g as u32, n))
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[p.seed, p.epoch, 1]));
    if p.shuffle {
        groups.shuffle(&mut rng);
    }
    let mut all = Vec::with_capacity(layout.total() as usize);
    for (s, g, n) in groups {
        let start = all.len();
        all.extend((0..n).map(|row| ClipRef {
            shard: s,
            row_group: g,
            row,
        }));
        if p.shuffle {
            all[start..].shuffle(&mut rng);
        }
    }
    // the window shuffle is global (rank 0's seed, as a world of one always had), so the
    // order before dealing is the same for every world size
    if p.shuffle && p.shuffle_window > 1 {
        for (w, chunk) in all.chunks_mut(p.shuffle_window).enumerate() {
            let mut r = ChaCha8Rng::seed_from_u64(mix_seed(&[p.seed, p.epoch, 0, w as u64, 2]));
            chunk.shuffle(&mut r);
        }
    }
    let world = p.world.max(1) as usize;
    if world == 1 {
        return all;
    }
    let block = p.block.max(1);
    let round = world * block;
    let n = if p.even_ranks {
        all.len() - all.len() % round
    } else {
        all.len()
    };
    let rank = p.rank as usize;
    all[..n]
        .chunks(block)
        .enumerate()
        .filter(|(k, _)| k % world == rank)
        .flat_map(|(_, c)| c.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn layout() -> Layout {
        Layout {
            groups: vec![vec![4, 4, 3], vec![4, 2], vec![5]],
        }
    }

    fn params(rank: u32, world: u32, epoch: u64) -> PlanParams {
        PlanParams {
            seed: 7,
            epoch,
            rank,
            world,
            shuffle: true,
            shuffle_window: 5,
            even_ranks: false,
            block: 1,
        }
    }

    #[test]
    fn ranks_are_disjoint_and_complete() {
        for world in 1..=4 {
            let mut seen = HashSet::new();
            let mut count = 0;
            for rank in 0..world {
                let plan = epoch_plan(&layout(), &params(rank, world, 3));
                count += plan.len();
                seen.extend(plan);
            }
            assert_eq!(count, 22, "world {world}");
            assert_eq!(seen.len(), 22, "world {world}");
        }
    }

    #[test]
    fn ranks_deal_the_one_rank_order_in_blocks() {
        // 2 ranks × blocks of 3 read, step by step, what 1 rank reads in batches of 6
        let one = epoch_plan(&layout(), &params(0, 1, 4));
        let r: Vec<Vec<ClipRef>> = (0..2)
            .map(|rank| {
                epoch_plan(
                    &layout(),
                    &PlanParams {
                        block: 3,
                        even_ranks: true,
                        ..params(rank, 2, 4)
                    },
                )
            })
            .collect();
        assert_eq!(r[0].len(), 9);
        assert_eq!(r[1].len(), 9);
        for k in 0..3 {
            let joint: Vec<ClipRef> = r[0][3 * k..3 * k + 3]
                .iter()
                .chain(&r[1][3 * k..3 * k + 3])
                .copied()
                .collect();
            assert_eq!(joint, one[6 * k..6 * k + 6], "step {k}");
        }
    }

    #[test]
    fn order_depends_on_seed_and_epoch_only() {
        let a = epoch_plan(&layout(), &params(0, 2, 1));
        assert_eq!(a, epoch_plan(&layout(), &params(0, 2, 1)));
        assert_ne!(a, epoch_plan(&layout(), &params(0, 2, 2)));
    }

    #[test]
    fn even_ranks_drops_remainder() {
        let p = PlanParams {
            even_ranks: true,
            ..params(2, 3, 0)
        };
        assert_eq!(epoch_plan(&layout(), &p).len(), 7);
    }
}
