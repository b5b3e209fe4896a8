//! What every handler and worker shares.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crossbeam_channel::{Receiver, Sender};

use crate::config::ServeConfig;
use crate::model::ModelSlot;
use crate::provenance::ServerKey;
use crate::store::JobStore;

/// The server's shared state.
pub struct AppState {
    /// Settings.
    pub config: ServeConfig,
    /// `--state`: the job store, outputs, uploads.
    pub state_dir: PathBuf,
    /// Jobs and keys.
    pub store: Arc<dyn JobStore>,
    /// The served model.
    pub model: ModelSlot,
    /// Wakes an idle worker when a job is queued.
    pub wake_tx: Sender<()>,
    /// What idle workers wait on.
    pub wake_rx: Receiver<()>,
    /// Set on shutdown: workers give their jobs back and stop.
    pub stopping: AtomicBool,
    /// Signs every MP4's provenance.
    pub signer: ServerKey,
}

impl AppState {
    /// Tells one idle worker that a job is waiting.
    pub fn wake(&self) {
        let _ = self.wake_tx.try_send(());
    }
}
