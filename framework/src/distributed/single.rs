//! One process: every collective is the identity.

use super::{Collective, ReduceOp};

/// The collective of a run in one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn backend(&self) -> &'static str {
        "single"
    }
    fn all_reduce_f32(&self, _buf: &mut [f32], _op: ReduceOp) {}
    fn all_reduce_f64(&self, _buf: &mut [f64], _op: ReduceOp) {}
    fn broadcast_bytes(&self, _buf: &mut Vec<u8>, _root: usize) {}
    fn broadcast_f32(&self, _buf: &mut [f32], _root: usize) {}
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
