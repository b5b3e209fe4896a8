//! `sonora bench allreduce`: all-reduce bandwidth of sonora's collective layer over MPI
//! against OpenMPI's own `MPI_Allreduce` called directly (the anchor), 1 MB to 256 MB.
//! Run under a launcher: `mpirun -np 2 sonora bench allreduce`.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use sonora_framework::distributed::{Collective, LaunchEnv, Mpi, ReduceOp};

/// Arguments of `sonora bench allreduce`.
#[derive(Args)]
pub struct BenchAllreduce {
    /// Buffer sizes in MB (f32 buffers of this many bytes).
    #[arg(long, num_args = 1.., default_values_t = [1usize, 4, 16, 64, 256])]
    pub sizes_mb: Vec<usize>,
    /// Timed repetitions per size (after one warm-up), median reported.
    #[arg(long, default_value_t = 7)]
    pub iters: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the benchmark; rank 0 prints.
pub fn run(a: BenchAllreduce) -> Result<()> {
    let env = LaunchEnv::detect();
    let mpi = Mpi::init(env.as_ref()).map_err(anyhow::Error::msg)?;
    let world = mpi.world();
    if world < 2 {
        bail!(
            "one process has nothing to reduce with; run it under a launcher: mpirun -np 2 sonora bench allreduce"
        );
    }
    let rank0 = mpi.rank() == 0;
    if rank0 {
        println!(
            "all-reduce (sum of f32) over {world} ranks: sonora's Collective against MPI_Allreduce (the anchor), median of {} runs",
            a.iters
        );
        println!(
            "{:>8} {:>14} {:>14} {:>10} {:>10}",
            "MB", "MPI GB/s", "layer GB/s", "ratio", "layer ms"
        );
    }
    for &mb in &a.sizes_mb {
        let n = mb * (1 << 20) / 4;
        let send: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 1e-3).collect();
        let mut recv = vec![0f32; n];
        let mut buf = send.clone();
        let (mut raw, mut layer) = (Vec::new(), Vec::new());
        for it in 0..=a.iters {
            mpi.barrier();
            let t0 = Instant::now();
            mpi.raw_all_reduce_sum(&send, &mut recv);
            let t_raw = t0.elapsed().as_secs_f64();
            buf.copy_from_slice(&send);
            mpi.barrier();
            let t0 = Instant::now();
            mpi.all_reduce_f32(&mut buf, ReduceOp::Sum);
            let t_layer = t0.elapsed().as_secs_f64();
            if it > 0 {
                raw.push(t_raw);
                layer.push(t_layer);
            }
        }
        if buf != recv {
            bail!("{mb} MB: the layer's sum differs from MPI_Allreduce's");
        }
        // the slowest rank's time is the collective's
        let mut t = [median(raw), median(layer)];
        mpi.all_reduce_f64(&mut t, ReduceOp::Max);
        if rank0 {
            let bytes = (n * 4) as f64;
            println!(
                "{:>8} {:>14.2} {:>14.2} {:>9.2}× {:>10.2}",
                mb,
                bytes / t[0] / 1e9,
                bytes / t[1] / 1e9,
                t[0] / t[1],
                t[1] * 1e3
            );
        }
    }
    if rank0 {
        println!(
            "(GB/s: buffer bytes over the slowest rank's median time; ratio: the layer's speed over MPI_Allreduce's)"
        );
    }
    Ok(())
}
