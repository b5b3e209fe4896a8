//! MPI (cargo feature `mpi`): the `mpi` crate (rsmpi) over the system's OpenMPI.

use mpi::collective::SystemOperation;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

use super::{Collective, LaunchEnv, ReduceOp};

/// MPI's world communicator; MPI is finalised when this is dropped.
pub struct Mpi {
    world: SimpleCommunicator,
    local_rank: usize,
    _universe: mpi::environment::Universe,
}

fn op(o: ReduceOp) -> SystemOperation {
    match o {
        ReduceOp::Sum | ReduceOp::Mean => SystemOperation::sum(),
        ReduceOp::Max => SystemOperation::max(),
        ReduceOp::Min => SystemOperation::min(),
    }
}

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
        Ok(Self {
            world,
            local_rank: env.map_or(0, |e| e.local_rank),
            _universe: universe,
        })
    }

    fn reduce<T: Equivalence + Copy + Default>(&self, buf: &mut [T], o: ReduceOp) {
        let mut out = vec![T::default(); buf.len()];
        self.world.all_reduce_into(&buf[..], &mut out[..], op(o));
        buf.copy_from_slice(&out);
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
        r.broadcast_into(&mut buf[..]);
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) {
        self.world.process_at_rank(root as i32).broadcast_into(buf);
    }
    fn barrier(&self) {
        self.world.barrier();
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
