//! Subcommand implementations; each turns parsed arguments into library calls and prints
//! where its outputs went.

pub mod bench;
#[cfg(feature = "mpi")]
pub mod bench_allreduce;
pub mod bench_serve;
pub mod data;
pub mod eval;
pub mod model;
pub mod provenance;
pub mod quickstart;
pub mod registry;
pub mod sample;
pub mod serve;
pub mod train;
