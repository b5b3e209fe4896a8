//! MPI (cargo feature `mpi`): the `mpi` crate (rsmpi) over the system's OpenMPI.

use mpi::collective::SystemOperation;
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

use super::{Collective, LaunchEnv, ReduceOp};

/// MPI's world communicator; MPI is finalised when this is dropped.
pub struct Mpi {
    world: SimpleCommunicator,
    local_rank: usize,
    /// Receive buffer reused across calls (rsmpi has no in-place all-reduce; a fresh
    /// buffer each call would cost its page faults every step).
    scratch: std::cell::RefCell<Vec<f64>>,
    /// The library's `MPI_IN_PLACE` (a C macro, not a symbol, so rsmpi cannot export it):
    /// `(void*)1` in every Open MPI; `None` for another MPI (MPICH's value differs between
    /// its native and standard ABIs), which then reduces through the scratch buffer.
    in_place: Option<usize>,
    _universe: mpi::environment::Universe,
}

fn op(o: ReduceOp) -> SystemOperation {
    match o {
        ReduceOp::Sum | ReduceOp::Mean => SystemOperation::sum(),
        ReduceOp::Max => SystemOperation::max(),
        ReduceOp::Min => SystemOperation::min(),
    }
}

/// `MPI_IN_PLACE` of the MPI library this process runs with: Open MPI's, known by its
/// version string; `None` (reduce through a scratch buffer) for any other library.
fn in_place_marker() -> Option<usize> {
    let v = mpi::environment::library_version().unwrap_or_default();
    v.contains("Open MPI").then_some(1)
}

/// Elements per MPI call: counts are C ints.
const PIECE: usize = 1 << 30;

impl Mpi {
    /// Initialises MPI (once per process). Without a launcher it is a world of one.
    pub fn init(env: Option<&LaunchEnv>) -> Result<Self, String> {
        let universe = mpi::initialize().ok_or(
            "MPI was already initialised in this process (distributed::init is called once)",
        )?;
        let world = universe.world();
        if let Some(e) = env
            && (e.rank != world.rank() as usize || e.world != world.size() as usize)
        {
            return Err(format!(
                "{} says rank {} of {}, MPI says rank {} of {}: was sonora started by a different MPI than the one it was built against?",
                e.launcher,
                e.rank,
                e.world,
                world.rank(),
                world.size()
            ));
        }
        let mut m = Self {
            world,
            local_rank: env.map_or(0, |e| e.local_rank),
            scratch: std::cell::RefCell::new(Vec::new()),
            in_place: in_place_marker(),
            _universe: universe,
        };
        if m.in_place.is_some() {
            // the in-place path must sum like the copying one, or it is not used
            let mut x = [m.rank() as f64 + 1.0];
            m.reduce(&mut x, ReduceOp::Sum);
            let n = m.world() as f64;
            let mut ok = [f64::from(u8::from(x[0] == n * (n + 1.0) / 2.0))];
            m.in_place = None;
            m.reduce(&mut ok, ReduceOp::Min);
            if ok[0] == 1.0 {
                m.in_place = in_place_marker();
            }
        }
        Ok(m)
    }

    fn reduce<T: Equivalence + Copy + Default + bytemuck::Pod>(&self, buf: &mut [T], o: ReduceOp) {
        if let Some(marker) = self.in_place {
            // MPI_Allreduce(MPI_IN_PLACE, buf, …), in pieces whose count fits a C int
            for piece in buf.chunks_mut(PIECE) {
                // SAFETY: `marker` is this MPI's MPI_IN_PLACE; `piece` is a live, writable
                // buffer of `piece.len()` elements of the datatype passed; every rank makes
                // the same call (the trait's contract)
                let rc = unsafe {
                    mpi::ffi::MPI_Allreduce(
                        marker as *const std::os::raw::c_void,
                        piece.as_mut_ptr().cast(),
                        piece.len() as std::os::raw::c_int,
                        T::equivalent_datatype().as_raw(),
                        op(o).as_raw(),
                        self.world.as_raw(),
                    )
                };
                assert_eq!(rc, 0, "MPI_Allreduce failed with code {rc}");
            }
            return;
        }
        let mut scratch = self.scratch.borrow_mut();
        let words = std::mem::size_of_val(buf).div_ceil(8);
        if scratch.len() < words {
            scratch.resize(words, 0.0);
        }
        // f64 storage keeps the scratch aligned for f32 and f64 alike
        let all: &mut [T] = bytemuck::cast_slice_mut(&mut scratch[..words]);
        let out = &mut all[..buf.len()];
        for (send, recv) in buf.chunks(PIECE).zip(out.chunks_mut(PIECE)) {
            self.world.all_reduce_into(send, recv, op(o));
        }
        buf.copy_from_slice(out);
    }

    /// `MPI_Allreduce` (sum) from `send` into `recv` with nothing around it: the anchor
    /// `sonora bench allreduce` measures the layer against.
    pub fn raw_all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) {
        self.world
            .all_reduce_into(send, recv, SystemOperation::sum());
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn world(&self) -> usize {
        self.world.size() as usize
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn backend(&self) -> &'static str {
        "mpi"
    }
    fn all_reduce_f32(&self, buf: &mut [f32], o: ReduceOp) {
        self.reduce(buf, o);
        if o == ReduceOp::Mean {
            let k = 1.0 / self.world() as f32;
            buf.iter_mut().for_each(|x| *x *= k);
        }
    }
    fn all_reduce_f64(&self, buf: &mut [f64], o: ReduceOp) {
        self.reduce(buf, o);
        if o == ReduceOp::Mean {
            let k = 1.0 / self.world() as f64;
            buf.iter_mut().for_each(|x| *x *= k);
        }
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) {
        let r = self.world.process_at_rank(root as i32);
        let mut len = buf.len() as u64;
        r.broadcast_into(&mut len);
        buf.resize(len as usize, 0);
        for piece in buf.chunks_mut(PIECE) {
            r.broadcast_into(piece);
        }
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) {
        for piece in buf.chunks_mut(PIECE) {
            self.world
                .process_at_rank(root as i32)
                .broadcast_into(piece);
        }
    }
    fn barrier(&self) {
        self.world.barrier();
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
