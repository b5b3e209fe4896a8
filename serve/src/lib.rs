//! sonora-serve: the OpenAI Videos API over a job store and sampler workers.
//!
//! Requests ([`videos`]) become jobs in a [`store::JobStore`] (SQLite by default);
//! [`worker`]s claim compatible jobs with leases, run them through the framework's
//! [`Generator`](sonora_framework::generate::Generator) in batches, and write outputs
//! atomically. A killed server loses nothing: queued jobs stay queued, a running job's
//! lease expires and it is claimed again (or failed after `max_tries`). API keys
//! ([`keys`]) map to users; each user sees only their own videos.

pub mod api;
pub mod characters;
pub mod config;
pub mod consent;
pub mod error;
pub mod form;
pub mod job;
pub mod keys;
pub mod media;
pub mod model;
pub mod provenance;
pub mod state;
pub mod store;
pub mod videos;
pub mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use burn::prelude::Device;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

pub use config::ServeConfig;
pub use model::ModelSource;

use crate::model::ModelSlot;
use crate::state::AppState;
use crate::store::{JobStore, SqliteStore};

/// What `sonora serve` was asked to do.
pub struct ServeOptions {
    /// The model.
    pub source: ModelSource,
    /// The device the sampler runs on.
    pub device: Device,
    /// `--state`: job store, outputs, uploads.
    pub state_dir: PathBuf,
    /// Settings (with `--addr` applied).
    pub config: ServeConfig,
    /// The registry directory, where the provenance signing key is kept.
    pub registry: PathBuf,
}

/// The job store of a state directory.
pub fn open_store(state_dir: &Path) -> anyhow::Result<SqliteStore> {
    Ok(SqliteStore::open(&state_dir.join("jobs.sqlite"))?)
}

/// Runs the server until SIGINT or SIGTERM. Prints `listening on http://ADDR` on stdout
/// once it accepts connections (port 0 picks a free port and prints it).
pub fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let store: Arc<dyn JobStore> = Arc::new(open_store(&opts.state_dir)?);
    if store.keys()?.is_empty() {
        let (key, info) = keys::create(store.as_ref(), "admin", true)?;
        let path = opts.state_dir.join("admin.key");
        write_private(&path, &key)?;
        eprintln!(
            "no API keys yet: created an admin key for user `{}`, saved in {} (readable by you only); \
             create more with `sonora serve keys create --user NAME --state {}`",
            info.user,
            path.display(),
            opts.state_dir.display()
        );
    }
    let signer = if provenance::key_path(&opts.registry).exists() {
        provenance::ServerKey::load(&opts.registry)?
    } else {
        let k = provenance::ServerKey::init(&opts.registry, false)?;
        eprintln!(
            "no provenance signing key yet: created one in {} (public key {})",
            provenance::key_path(&opts.registry).display(),
            k.public_hex()
        );
        k
    };
    let model = ModelSlot::open(opts.source, opts.device).context("loading the model")?;
    tracing::info!("serving {}", model.get().label());
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("sonora_job_seconds".into()),
            &[0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0],
        )?
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0],
        )?
        .install_recorder()
        .context("installing the metrics recorder")?;
    let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
    let addr = opts.config.addr.clone();
    let st = Arc::new(AppState {
        config: opts.config,
        state_dir: opts.state_dir,
        store,
        model,
        wake_tx,
        wake_rx,
        stopping: AtomicBool::new(false),
        signer,
    });
    let pid = std::process::id();
    let workers: Vec<_> = (0..st.config.workers)
        .map(|k| {
            let s = st.clone();
            std::thread::Builder::new()
                .name(format!("worker-{k}"))
                .spawn(move || worker::worker_loop(s, format!("{pid}-worker-{k}")))
        })
        .collect::<Result<_, _>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local: SocketAddr = listener.local_addr()?;
        println!("listening on http://{local}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::spawn(reload_on_sighup(st.clone()));
        let app = api::router(st.clone(), prometheus);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        anyhow::Ok(())
    })?;
    st.stopping.store(true, Ordering::SeqCst);
    for _ in &workers {
        st.wake();
    }
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

fn write_private(path: &Path, key: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut f, format!("{key}\n").as_bytes())?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: running jobs go back to the queue");
}

async fn reload_on_sighup(st: Arc<AppState>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let s = st.clone();
        match tokio::task::spawn_blocking(move || s.model.reload()).await {
            Ok(Ok(m)) => tracing::info!("SIGHUP: now serving {}", m.label()),
            Ok(Err(e)) => {
                tracing::error!("SIGHUP: reload failed, still serving the previous model: {e:#}")
            }
            Err(e) => tracing::error!("SIGHUP: reload: {e}"),
        }
    }
}
