//! The benchmarks' per-row peak heap: the counting allocator and gradient checkpointing's
//! peak as `sonora bench train-step --grad-checkpointing` reports it.

use burn::prelude::*;
use sonora_framework::perf::{CountingAlloc, bench_train_step, reset_peak_heap};

// The heap counters are process-wide: keep this binary to one test, so no other test's
// allocations land in its peaks.
#[global_allocator]
static GLOBAL: CountingAlloc<std::alloc::System> = CountingAlloc(std::alloc::System);

#[test]
fn the_peak_heap_is_per_benchmark_and_checkpointing_does_not_raise_it() {
    let device = Device::flex();
    // the quickstart model, whose activations outweigh its weights
    let c = sonora_framework::model::ModelConfig::from_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/model/quickstart.toml"
    )))
    .unwrap();
    // a bigger model first: its peak must not leak into the next row's
    let big = sonora_framework::model::ModelConfig {
        d_model: 192,
        ..c.clone()
    };
    let first = bench_train_step(&big, 2, 1, false, false, &device).unwrap();
    let plain = bench_train_step(&c, 2, 1, false, false, &device).unwrap();
    let ckpt = bench_train_step(&c, 2, 1, false, true, &device).unwrap();
    assert!(plain.peak_heap_mib > 0.0, "{plain:?}");
    assert!(
        first.peak_heap_mib > 1.3 * plain.peak_heap_mib,
        "{} vs {}",
        first.peak_heap_mib,
        plain.peak_heap_mib
    );
    // flex's fused attention, GELU and LayerNorm keep no [B, H, N, M] or decomposed
    // intermediates, which is what burn's balanced checkpointing used to drop (0.67x of
    // the peak with burn's ops, 0.98x with the kernels: README); it must not add to it
    assert!(
        ckpt.peak_heap_mib <= 1.01 * plain.peak_heap_mib,
        "checkpointing: {} MiB vs {} MiB",
        ckpt.peak_heap_mib,
        plain.peak_heap_mib
    );
    // the counter itself: a 64 MiB buffer shows, and a reset forgets it once freed
    reset_peak_heap();
    let v = vec![1u8; 64 << 20];
    let at = bench_peak();
    drop(v);
    reset_peak_heap();
    assert!(
        at >= 64.0 && bench_peak() < at - 60.0,
        "{at} then {}",
        bench_peak()
    );
}

/// The current peak in MiB, as a report would read it.
fn bench_peak() -> f64 {
    sonora_framework::perf::peak_heap_mib()
}
