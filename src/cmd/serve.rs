//! `sonora serve`: the OpenAI Videos API server (`sonora_serve`), and `sonora serve keys`
//! to manage its API keys.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use sonora_framework::registry::utc;
use sonora_serve::store::JobStore;
use sonora_serve::{ModelSource, ServeConfig, ServeOptions};

use super::registry::registry_dir;

/// Arguments of `sonora serve`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    /// Key management instead of serving.
    #[command(subcommand)]
    pub keys: Option<ServeCommand>,
    /// The registered model to serve: `NAME@ALIAS`, `NAME@vN` or `NAME` (its `production`).
    #[arg(long, conflicts_with = "checkpoint")]
    pub model: Option<String>,
    /// Or a checkpoint directory.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Address to listen on (default: the config's, 127.0.0.1:8000; port 0 picks one).
    #[arg(long)]
    pub addr: Option<String>,
    /// State directory: job store, outputs, uploads, keys.
    #[arg(long, default_value = "serve-state")]
    pub state: PathBuf,
    /// Registry directory (default `SONORA_REGISTRY`, else `registry/`).
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Server config (configs/serve/*.toml; default: built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config key (`--set batch=8`, `--set sampler.steps=12`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Backend.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// `sonora serve keys …`.
#[derive(Subcommand)]
pub enum ServeCommand {
    /// API keys: create (printed once), list, revoke; `init` makes the provenance signing
    /// key.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `sonora serve keys …`.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Creates a key for a user and prints it alone on stdout (it is stored hashed and
    /// cannot be shown again).
    Create {
        /// The user the key authenticates as (their videos are theirs alone).
        #[arg(long)]
        user: String,
        /// The key may also reload the model (`POST /admin/reload`).
        #[arg(long)]
        admin: bool,
        /// State directory.
        #[arg(long, default_value = "serve-state")]
        state: PathBuf,
    },
    /// Lists keys (id, user, prefix, created, revoked); never the keys themselves.
    List {
        /// State directory.
        #[arg(long, default_value = "serve-state")]
        state: PathBuf,
    },
    /// Creates the server's Ed25519 provenance signing key, kept with the registry
    /// (`REGISTRY/.provenance/`); `sonora serve` makes one on first start if there is none.
    Init {
        /// Registry directory (default `SONORA_REGISTRY`, else `registry/`).
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Replace an existing key (files it signed then verify only against the old one).
        #[arg(long)]
        force: bool,
    },
    /// Revokes a key by its id (`key_…`) or prefix; requests with it then answer 401.
    Revoke {
        /// The key's id or prefix.
        id: String,
        /// State directory.
        #[arg(long, default_value = "serve-state")]
        state: PathBuf,
    },
}

/// Runs `sonora serve` or `sonora serve keys …`.
pub fn run(a: ServeArgs) -> Result<()> {
    if let Some(ServeCommand::Keys(k)) = a.keys {
        return keys(k);
    }
    let source = match (&a.model, &a.checkpoint) {
        (Some(spec), None) => ModelSource::Registry {
            root: registry_dir(&a.registry),
            spec: spec.clone(),
        },
        (None, Some(dir)) => ModelSource::Checkpoint(dir.clone()),
        _ => bail!(
            "give the model to serve: --model NAME@ALIAS (from the registry, after `sonora promote`) or --checkpoint DIR"
        ),
    };
    let mut config = ServeConfig::load(a.config.as_deref(), &a.set)?;
    if let Some(addr) = a.addr {
        config.addr = addr;
    }
    let device = sonora_framework::device::parse_device(&a.device).map_err(anyhow::Error::msg)?;
    sonora_serve::serve(ServeOptions {
        source,
        device,
        state_dir: a.state,
        config,
        registry: registry_dir(&a.registry),
    })
}

fn keys(k: KeysCommand) -> Result<()> {
    match k {
        KeysCommand::Create { user, admin, state } => {
            let store = sonora_serve::open_store(&state)?;
            let (key, info) = sonora_serve::keys::create(&store, &user, admin)?;
            eprintln!(
                "created {} for user `{}`{}; it is shown once (stored hashed)",
                info.id,
                info.user,
                if admin { " (admin)" } else { "" }
            );
            println!("{key}");
        }
        KeysCommand::List { state } => {
            let store = sonora_serve::open_store(&state)?;
            println!(
                "{:<18} {:<16} {:<18} {:<6} {:<21} revoked",
                "id", "user", "prefix", "admin", "created"
            );
            for k in store.keys()? {
                println!(
                    "{:<18} {:<16} {:<18} {:<6} {:<21} {}",
                    k.id,
                    k.user,
                    format!("{}…", k.prefix),
                    if k.admin { "yes" } else { "no" },
                    utc(k.created_at as u64),
                    k.revoked_at.map_or("-".to_string(), |t| utc(t as u64))
                );
            }
        }
        KeysCommand::Init { registry, force } => {
            let dir = registry_dir(&registry);
            let k = sonora_serve::provenance::ServerKey::init(&dir, force)?;
            println!(
                "created {} (public key {})",
                sonora_serve::provenance::key_path(&dir).display(),
                k.public_hex()
            );
        }
        KeysCommand::Revoke { id, state } => {
            let store = sonora_serve::open_store(&state)?;
            if !store.revoke_key(&id)? {
                bail!(
                    "no unrevoked key with id or prefix {id:?} in {}",
                    state.display()
                );
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}
