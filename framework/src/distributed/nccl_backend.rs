//! NCCL (cargo feature `nccl`): gradients reduced in place on the GPUs. NCCL and the CUDA
//! driver are loaded at run time through `cudarc` (nothing links against them, so the
//! feature builds without CUDA); the processes are bootstrapped over MPI, which also carries
//! NCCL's unique id from rank 0 and every host-side collective (flags, losses, broadcasts).
//!
//! Each rank drives the GPU of its local rank (`cuda:<local rank>`). Device tensors given to
//! [`Collective::all_reduce_tensor`] are reduced in place on libtorch's default stream, so the
//! reduction is ordered after the backward pass that produced them and before the optimizer
//! step that reads them, with no copy through host memory.

// burn 0.22 marks burn-tch deprecated in favour of CubeCL backends, but libtorch is the
// CUDA path this project builds and benchmarks against PyTorch (see README).
#![allow(deprecated)]

use std::ffi::c_int;
use std::sync::Arc;

use burn::backend::libtorch::TchTensor;
use burn::backend::{DispatchDevice, LibTorch, LibTorchDevice};
use burn::prelude::*;
use cudarc::nccl::{result, sys};

use super::{Collective, LaunchEnv, Mpi, ReduceOp};

/// One NCCL communicator over every rank, bootstrapped over MPI.
pub struct Nccl {
    mpi: Mpi,
    comm: sys::ncclComm_t,
    /// The primary CUDA context of this rank's GPU, held for the communicator's lifetime.
    _ctx: Arc<cudarc::driver::CudaContext>,
}

/// How to make NCCL loadable (cudarc looks for `libnccl.so`, pip's wheel ships
/// `libnccl.so.2`).
const NCCL_HINT: &str = "NCCL is loaded at run time as libnccl.so: put its directory on LD_LIBRARY_PATH (pip's nvidia-nccl wheel ships libnccl.so.2 only, so link libnccl.so to it; see ../shared/GPU.md)";

impl Nccl {
    /// Starts MPI, checks on every rank that CUDA and NCCL load, binds this rank to
    /// `cuda:<local rank>` and creates the communicator (rank 0's unique id sent over MPI).
    /// Any rank's failure is every rank's error.
    pub fn init(env: Option<&LaunchEnv>) -> Result<Self, String> {
        let mpi = Mpi::init(env)?;
        let device = mpi.local_rank();
        // SAFETY: only tries to open the libraries; nothing is called through them yet.
        let libs = unsafe { cudarc::driver::sys::is_culib_present() && sys::is_culib_present() };
        let ctx = if libs {
            cudarc::driver::CudaContext::new(device).map_err(|e| format!("cuda:{device}: {e:?}"))
        } else {
            Err(format!(
                "CUDA's driver or NCCL is not loadable here. {NCCL_HINT}"
            ))
        };
        let ctx = agree(&mpi, "starting CUDA", ctx)?;
        agree(
            &mpi,
            "binding the GPU",
            ctx.bind_to_thread().map_err(|e| format!("{e:?}")),
        )?;
        // rank 0 makes the unique id; the others get its 128 bytes (none: rank 0 failed)
        let mut id_bytes: Vec<u8> = Vec::new();
        if mpi.rank() == 0 {
            match result::get_uniqueid() {
                Ok(id) => id_bytes = id.internal.iter().map(|&c| c as u8).collect(),
                Err(e) => eprintln!("error: rank 0: ncclGetUniqueId: {e:?}"),
            }
        }
        mpi.broadcast_bytes(&mut id_bytes, 0);
        let mut id = sys::ncclUniqueId { internal: [0; 128] };
        if id_bytes.len() != id.internal.len() {
            return Err("rank 0 could not make NCCL's unique id (its error is above)".into());
        }
        for (d, s) in id.internal.iter_mut().zip(&id_bytes) {
            *d = *s as std::ffi::c_char;
        }
        let mut comm: sys::ncclComm_t = std::ptr::null_mut();
        // SAFETY: `comm` is a valid out-pointer; every rank passes the same id and world.
        let made = unsafe {
            result::comm_init_rank(&mut comm, mpi.world() as c_int, id, mpi.rank() as c_int)
        }
        .map(|_| ())
        .map_err(|e| format!("ncclCommInitRank on cuda:{device}: {e:?}"));
        agree(&mpi, "creating the NCCL communicator", made)?;
        Ok(Self {
            mpi,
            comm,
            _ctx: ctx,
        })
    }
}

/// `Ok` on every rank only when `r` is `Ok` on every rank (so no rank goes on into a
/// collective that another, failed, rank will never enter).
fn agree<T>(mpi: &Mpi, what: &str, r: Result<T, String>) -> Result<T, String> {
    let failed_somewhere = mpi.any(r.is_err());
    match r {
        Err(e) => Err(format!("rank {}: {what}: {e}", mpi.rank())),
        Ok(_) if failed_somewhere => Err(format!(
            "{what} failed on another rank (its error names it)"
        )),
        Ok(v) => Ok(v),
    }
}

fn nccl_op(op: ReduceOp) -> sys::ncclRedOp_t {
    match op {
        ReduceOp::Sum => sys::ncclRedOp_t::ncclSum,
        ReduceOp::Mean => sys::ncclRedOp_t::ncclAvg,
        ReduceOp::Max => sys::ncclRedOp_t::ncclMax,
        ReduceOp::Min => sys::ncclRedOp_t::ncclMin,
    }
}

impl Drop for Nccl {
    fn drop(&mut self) {
        // before MPI is finalised (the `mpi` field drops after this)
        // SAFETY: the communicator was created by `init` and is not used after this.
        let _ = unsafe { result::comm_destroy(self.comm) };
    }
}

impl Collective for Nccl {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }
    fn world(&self) -> usize {
        self.mpi.world()
    }
    fn local_rank(&self) -> usize {
        self.mpi.local_rank()
    }
    fn backend(&self) -> &'static str {
        "nccl"
    }
    fn all_reduce_f32(&self, buf: &mut [f32], op: ReduceOp) {
        self.mpi.all_reduce_f32(buf, op);
    }
    fn all_reduce_f64(&self, buf: &mut [f64], op: ReduceOp) {
        self.mpi.all_reduce_f64(buf, op);
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) {
        self.mpi.broadcast_bytes(buf, root);
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) {
        self.mpi.broadcast_f32(buf, root);
    }
    fn barrier(&self) {
        self.mpi.barrier();
    }
    fn abort(&self, code: i32) -> ! {
        self.mpi.abort(code)
    }

    /// A CUDA tensor is reduced in place by `ncclAllReduce` on libtorch's default stream;
    /// any other tensor through host memory and MPI.
    fn all_reduce_tensor(&self, t: Tensor<1>, op: ReduceOp) -> Tensor<1> {
        let on_gpu = matches!(
            t.device().as_dispatch(),
            DispatchDevice::LibTorch(LibTorchDevice::Cuda(_))
        );
        if !on_gpu || t.dtype() != burn::tensor::DType::F32 {
            return super::host_all_reduce_tensor(self, t, op);
        }
        let prim = t
            .try_into_primitive::<LibTorch>()
            .expect("a libtorch CUDA tensor is a libtorch primitive");
        let x = prim.tensor.contiguous();
        let n = x.numel();
        let ptr = x.data_ptr();
        // SAFETY: `ptr` addresses `n` contiguous f32 on this rank's GPU, owned by `x` for the
        // call; in place (send = receive) is allowed by NCCL; stream 0 is libtorch's default.
        let r = unsafe {
            result::all_reduce(
                ptr,
                ptr,
                n,
                sys::ncclDataType_t::ncclFloat32,
                nccl_op(op),
                self.comm,
                std::ptr::null_mut(),
            )
        };
        if let Err(e) = r {
            eprintln!(
                "error: rank {}: ncclAllReduce of {n} values: {e:?}",
                self.rank()
            );
            self.abort(1);
        }
        Tensor::from_primitive::<LibTorch>(TchTensor::new(x))
    }
}
