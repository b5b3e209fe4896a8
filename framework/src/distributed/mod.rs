//! Collectives for data-parallel training: all-reduce, broadcast and barrier between the
//! processes a launcher started (`mpirun`, `srun`), behind one small trait.
//!
//! Implementations: [`Single`] (one process, no dependency), [`Mpi`] (cargo feature `mpi`, on
//! by default: the `mpi` crate over the system's OpenMPI) and `Nccl` (cargo feature `nccl`:
//! device buffers reduced in place on the GPUs, bootstrapped over MPI). Rank, world size and local
//! rank come from the launcher's environment ([`launch::LaunchEnv`]); a launch that
//! disagrees with the recipe stops with the same message on every rank.

pub mod launch;
#[cfg(feature = "mpi")]
mod mpi_backend;
#[cfg(feature = "nccl")]
mod nccl_backend;
mod single;

use burn::prelude::*;

pub use launch::LaunchEnv;
#[cfg(feature = "mpi")]
pub use mpi_backend::Mpi;
#[cfg(feature = "nccl")]
pub use nccl_backend::Nccl;
pub use single::Single;

/// How values from every rank are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Elementwise sum.
    Sum,
    /// Elementwise mean (sum / world size).
    Mean,
    /// Elementwise maximum.
    Max,
    /// Elementwise minimum.
    Min,
}

/// The collectives data-parallel training needs. Every rank must make the same calls in
/// the same order with buffers of the same length (as with MPI itself).
pub trait Collective {
    /// This process's rank, `0..world()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world(&self) -> usize;
    /// Rank among the processes on this node (what a GPU backend would pick its device by;
    /// reported, not used, by the CPU backends).
    fn local_rank(&self) -> usize;
    /// `single`, `mpi`, …
    fn backend(&self) -> &'static str;
    /// Combines `buf` across ranks in place.
    fn all_reduce_f32(&self, buf: &mut [f32], op: ReduceOp);
    /// Combines `buf` across ranks in place.
    fn all_reduce_f64(&self, buf: &mut [f64], op: ReduceOp);
    /// Replaces `buf` on every rank with `root`'s (any length: sizes travel first).
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize);
    /// Replaces `buf` on every rank with `root`'s (same length on every rank).
    fn broadcast_f32(&self, buf: &mut [f32], root: usize);
    /// Returns once every rank has called it.
    fn barrier(&self);
    /// Ends every rank of the job now with `code` (after a rank-local error that the other
    /// ranks, waiting in a collective, would otherwise never learn of).
    fn abort(&self, code: i32) -> !;

    /// Combines bf16 values across ranks in place (reduced in f32, rounded back once).
    fn all_reduce_bf16(&self, buf: &mut [half::bf16], op: ReduceOp) {
        let mut wide: Vec<f32> = buf.iter().map(|x| x.to_f32()).collect();
        self.all_reduce_f32(&mut wide, op);
        for (d, s) in buf.iter_mut().zip(wide) {
            *d = half::bf16::from_f32(s);
        }
    }

    /// Combines a flat tensor across ranks: on its device where the backend can (NCCL, CUDA
    /// tensors, in place), else through host memory and [`Collective::all_reduce_f32`].
    fn all_reduce_tensor(&self, t: Tensor<1>, op: ReduceOp) -> Tensor<1> {
        host_all_reduce_tensor(self, t, op)
    }

    /// Whether `flag` is true on any rank.
    fn any(&self, flag: bool) -> bool {
        let mut v = [f64::from(u8::from(flag))];
        self.all_reduce_f64(&mut v, ReduceOp::Max);
        v[0] > 0.0
    }
}

/// [`Collective::all_reduce_tensor`] through host memory: read, reduce, write back.
pub fn host_all_reduce_tensor<C: Collective + ?Sized>(
    comm: &C,
    t: Tensor<1>,
    op: ReduceOp,
) -> Tensor<1> {
    let device = t.device();
    let mut v = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values after convert");
    comm.all_reduce_f32(&mut v, op);
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), &device)
}

/// Opens the collective for `backend` (`single`, `mpi`, `nccl`), checking the launch:
/// `expected_world` (the recipe's `distributed.world_size`, 0 = whatever was launched)
/// must match the launcher's world, and a multi-process launch needs a multi-process
/// backend. The error is the same on every rank.
pub fn init(backend: &str, expected_world: usize) -> Result<Box<dyn Collective>, String> {
    let env = LaunchEnv::detect();
    let launched = env.as_ref().map_or(1, |e| e.world);
    let check_world = |world: usize| {
        if expected_world > 0 && expected_world != world {
            Err(format!(
                "distributed.world_size = {expected_world} but {} started {world} process(es); launch {expected_world} (e.g. `mpirun -np {expected_world} sonora train …`) or change distributed.world_size",
                env.as_ref().map_or("this launch", |e| e.launcher)
            ))
        } else {
            Ok(())
        }
    };
    match backend {
        "single" => {
            if launched > 1 {
                return Err(format!(
                    "{} started {launched} processes but distributed.backend = \"single\" trains in one; set distributed.backend = \"mpi\" (or launch one process)",
                    env.as_ref().map_or("the launcher", |e| e.launcher)
                ));
            }
            check_world(1)?;
            Ok(Box::new(Single))
        }
        "mpi" => {
            #[cfg(feature = "mpi")]
            {
                let m = Mpi::init(env.as_ref())?;
                check_world(m.world())?;
                Ok(Box::new(m))
            }
            #[cfg(not(feature = "mpi"))]
            Err("distributed.backend = \"mpi\": this build has no MPI (rebuild with the cargo feature `mpi`, a default, after scripts/setup.sh installs OpenMPI)".into())
        }
        "nccl" => {
            #[cfg(feature = "nccl")]
            {
                let n = Nccl::init(env.as_ref())?;
                check_world(n.world())?;
                Ok(Box::new(n))
            }
            #[cfg(not(feature = "nccl"))]
            Err("distributed.backend = \"nccl\": this build has no NCCL (rebuild with `--features nccl`, which also needs the `tch` backend's libtorch; see ../shared/GPU.md), or use \"mpi\" for CPU processes".into())
        }
        other => Err(format!(
            "distributed.backend = \"{other}\": expected \"single\", \"mpi\" or \"nccl\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_is_the_identity_and_bf16_rounds_once() {
        let s = Single;
        let mut x = [1.5f32, -2.0];
        s.all_reduce_f32(&mut x, ReduceOp::Mean);
        assert_eq!(x, [1.5, -2.0]);
        let mut b = [half::bf16::from_f32(0.1)];
        s.all_reduce_bf16(&mut b, ReduceOp::Sum);
        assert_eq!(b[0], half::bf16::from_f32(0.1));
        let mut v = vec![1u8, 2];
        s.broadcast_bytes(&mut v, 0);
        assert_eq!(v, [1, 2]);
        assert!(s.any(true) && !s.any(false));
    }

    /// A second rank simulated in process: every reduction combines this rank's buffer with
    /// a fixed one, so what the tensor path sends and gets back can be checked.
    struct TwoRanks(Vec<f32>);
    impl Collective for TwoRanks {
        fn rank(&self) -> usize {
            0
        }
        fn world(&self) -> usize {
            2
        }
        fn local_rank(&self) -> usize {
            0
        }
        fn backend(&self) -> &'static str {
            "mock"
        }
        fn all_reduce_f32(&self, buf: &mut [f32], op: ReduceOp) {
            assert_eq!(
                buf.len(),
                self.0.len(),
                "buffer length differs across ranks"
            );
            for (x, o) in buf.iter_mut().zip(&self.0) {
                *x = match op {
                    ReduceOp::Sum => *x + o,
                    ReduceOp::Mean => (*x + o) / 2.0,
                    ReduceOp::Max => x.max(*o),
                    ReduceOp::Min => x.min(*o),
                };
            }
        }
        fn all_reduce_f64(&self, _: &mut [f64], _: ReduceOp) {
            unreachable!("not used by the tensor path")
        }
        fn broadcast_bytes(&self, _: &mut Vec<u8>, _: usize) {}
        fn broadcast_f32(&self, _: &mut [f32], _: usize) {}
        fn barrier(&self) {}
        fn abort(&self, code: i32) -> ! {
            panic!("abort({code})")
        }
    }

    #[test]
    fn a_tensor_is_reduced_through_the_hosts_collective_in_order() {
        let device = Device::flex();
        let comm = TwoRanks(vec![10.0, 20.0, 30.0, -4.0]);
        let t = Tensor::<1>::from_floats([1.0, 2.0, 3.0, 4.0], &device);
        let sum = comm.all_reduce_tensor(t.clone(), ReduceOp::Sum);
        assert_eq!(sum.dims(), [4]);
        let sum = sum
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(sum, [11.0, 22.0, 33.0, 0.0]);
        let mean = comm.all_reduce_tensor(t, ReduceOp::Mean);
        let mean = mean
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(mean, [5.5, 11.0, 16.5, 0.0]);
    }

    #[test]
    fn unknown_and_unbuilt_backends_are_refused_by_name() {
        let e = init("gloo", 0).err().unwrap();
        assert!(e.contains("gloo") && e.contains("mpi"), "{e}");
        let e = init("nccl", 0).err().unwrap();
        if cfg!(not(feature = "nccl")) {
            assert!(
                e.contains("no NCCL") && e.contains("--features nccl"),
                "{e}"
            );
        }
        let e = init("single", 4).err().unwrap();
        assert!(e.contains("world_size = 4"), "{e}");
    }
}
