//! Reading a whole dataset back in tests. Included by tests with `#[path]`.

use std::path::Path;

use sonora_datasets::{ClipRecord, Dataset};

/// Every record of the dataset at `ds`, in clip-id order (panics on any unreadable row).
pub fn records(ds: &Path) -> Vec<ClipRecord> {
    let d = Dataset::open(ds).unwrap();
    let mut out = Vec::new();
    for s in d.shards(None) {
        let r = d.open_shard(&s).unwrap();
        for g in 0..r.num_row_groups() {
            out.extend(
                r.read_records(g, None)
                    .unwrap()
                    .into_iter()
                    .map(|x| x.unwrap()),
            );
        }
    }
    out.sort_by(|a, b| a.clip_id.cmp(&b.clip_id));
    out
}
