//! `sonora provenance verify FILE`: whether an MP4 came from a sonora server (this one:
//! the registry's key), which model and request made it, and whether it was altered.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use sonora_framework::registry::utc;
use sonora_serve::provenance::{ServerKey, key_path, verify};

use super::registry::registry_dir;

/// `sonora provenance …`.
#[derive(Subcommand)]
pub enum ProvenanceCommand {
    /// Checks an MP4's signed provenance and prints what it says.
    Verify {
        /// The MP4.
        file: PathBuf,
        /// Registry directory whose key is "this server" (default `SONORA_REGISTRY`, else
        /// `registry/`).
        #[arg(long)]
        registry: Option<PathBuf>,
    },
}

/// Runs `sonora provenance …`.
pub fn run(c: ProvenanceCommand) -> Result<()> {
    let ProvenanceCommand::Verify { file, registry } = c;
    let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let m = match verify(&bytes) {
        Ok(m) => m,
        Err(e) => bail!("{}: NOT VERIFIED: {e}", file.display()),
    };
    let dir = registry_dir(&registry);
    let ours = key_path(&dir)
        .exists()
        .then(|| ServerKey::load(&dir).map(|k| k.public_hex()))
        .transpose()?;
    let who = match ours {
        Some(k) if k == m.server_key => "this server".to_string(),
        Some(_) => format!("another sonora server (key {}), not this one", m.server_key),
        None => format!(
            "a sonora server with key {} (no key in {} to compare)",
            m.server_key,
            dir.display()
        ),
    };
    println!(
        "{}: verified, unaltered since it was signed",
        file.display()
    );
    println!("  signed by:   {who}");
    println!("  model:       {}", m.model);
    println!("  request:     {}", m.request_id);
    println!("  created:     {}", utc(m.created_at.max(0) as u64));
    println!(
        "  characters:  {}",
        if m.characters.is_empty() {
            "none".to_string()
        } else {
            m.characters.join(", ")
        }
    );
    match &m.derived_from {
        Some(d) => println!(
            "  derived:     {} of {}",
            d.kind,
            d.video_id.as_deref().unwrap_or("an uploaded clip")
        ),
        None => println!("  derived:     no (a new clip)"),
    }
    println!(
        "  watermarked: {}",
        if m.watermarked { "yes" } else { "no" }
    );
    Ok(())
}
