//! Rank, world size and local rank from the launcher's environment: OpenMPI's `mpirun`
//! (`OMPI_COMM_WORLD_RANK`, `…_SIZE`, `…_LOCAL_RANK`), MPICH/Hydra (`PMI_RANK`,
//! `PMI_SIZE`, `MPI_LOCALRANKID`; also `srun --mpi=pmi2`) and SLURM's `srun`
//! (`SLURM_PROCID`, `SLURM_STEP_NUM_TASKS`, `SLURM_LOCALID`). SLURM's job-wide
//! `SLURM_NTASKS` is not read: it is set in an `sbatch`/`salloc` shell too, where a plain
//! `sonora train` is one process.

/// Where this process sits in a multi-process launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchEnv {
    /// Global rank.
    pub rank: usize,
    /// Number of processes.
    pub world: usize,
    /// Rank on this node.
    pub local_rank: usize,
    /// `mpirun (OpenMPI)`, `a PMI launcher (…)` or `srun (SLURM)`.
    pub launcher: &'static str,
}

impl LaunchEnv {
    /// Reads the process environment; `None` when no launcher set it.
    pub fn detect() -> Option<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Reads the launcher variables through `get` (testable without touching the process
    /// environment).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<usize>().ok());
        let sets: [(&str, &str, &str, &'static str); 3] = [
            (
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK",
                "mpirun (OpenMPI)",
            ),
            (
                "PMI_RANK",
                "PMI_SIZE",
                "MPI_LOCALRANKID",
                "a PMI launcher (mpiexec, srun --mpi=pmi2)",
            ),
            (
                "SLURM_PROCID",
                "SLURM_STEP_NUM_TASKS",
                "SLURM_LOCALID",
                "srun (SLURM)",
            ),
        ];
        sets.iter().find_map(|&(r, w, l, launcher)| {
            let (rank, world) = (num(r)?, num(w)?);
            (world > 0 && rank < world).then(|| LaunchEnv {
                rank,
                world,
                local_rank: num(l).unwrap_or(0),
                launcher,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Option<LaunchEnv> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LaunchEnv::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn each_launcher_is_read_and_openmpi_wins() {
        assert_eq!(env(&[]), None);
        let s = env(&[
            ("SLURM_PROCID", "3"),
            ("SLURM_STEP_NUM_TASKS", "8"),
            ("SLURM_LOCALID", "1"),
        ])
        .unwrap();
        // an sbatch/salloc shell: job-wide task counts, but no srun step
        assert_eq!(env(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4")]), None);
        assert_eq!(
            (s.rank, s.world, s.local_rank, s.launcher),
            (3, 8, 1, "srun (SLURM)")
        );
        let o = env(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
        ])
        .unwrap();
        assert_eq!((o.rank, o.world, o.launcher), (1, 2, "mpirun (OpenMPI)"));
        // a rank outside its world is not a launch
        assert_eq!(env(&[("PMI_RANK", "2"), ("PMI_SIZE", "2")]), None);
    }
}
