//! The served model: resolved from the registry (`NAME@ALIAS`) or a checkpoint
//! directory, loaded once, and swapped in place by a reload (`POST /admin/reload`,
//! SIGHUP) while queued jobs wait in the store.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use burn::prelude::Device;
use sonora_framework::generate::Generator;
use sonora_framework::model::ModelConfig;
use sonora_framework::registry::Registry;

/// Where the model comes from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// A registry entry, `NAME@ALIAS` or `NAME@vN`, resolved again at each reload.
    Registry {
        /// The registry directory.
        root: PathBuf,
        /// `NAME@ALIAS`.
        spec: String,
    },
    /// A checkpoint directory.
    Checkpoint(PathBuf),
}

/// A loaded model and what it is.
pub struct Served {
    /// Model, tokenizer and codec.
    pub generator: Generator,
    /// The name clients pass as `model` (the registry name, or the model config's name).
    pub name: String,
    /// `v3`, or `checkpoint` when served from a directory.
    pub version: String,
    /// The checkpoint directory it was loaded from.
    pub path: PathBuf,
    /// The checkpoint's training step.
    pub step: u64,
}

impl Served {
    /// The model's clip shape.
    pub fn config(&self) -> &ModelConfig {
        self.generator.config()
    }

    /// `name@version`, as video objects carry it.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The one size this model makes, `WxH`.
    pub fn size(&self) -> String {
        format!("{}x{}", self.config().width, self.config().height)
    }
}

/// The model slot workers and handlers read; a reload replaces what it holds.
pub struct ModelSlot {
    source: ModelSource,
    device: Device,
    current: RwLock<Arc<Served>>,
}

fn load(source: &ModelSource, device: &Device) -> anyhow::Result<Served> {
    let (dir, name, version) = match source {
        ModelSource::Registry { root, spec } => {
            let (dir, v) = Registry::open(root).resolve(spec)?;
            let name = spec.split_once('@').map_or(spec.as_str(), |(n, _)| n);
            (dir, name.to_string(), format!("v{}", v.version))
        }
        ModelSource::Checkpoint(dir) => (dir.clone(), String::new(), "checkpoint".to_string()),
    };
    let (generator, man, _) = Generator::load(&dir, device)?;
    let name = if name.is_empty() {
        generator.config().name.clone()
    } else {
        name
    };
    Ok(Served {
        generator,
        name,
        version,
        path: dir,
        step: man.step,
    })
}

impl ModelSlot {
    /// Resolves and loads the model.
    pub fn open(source: ModelSource, device: Device) -> anyhow::Result<Self> {
        let served = load(&source, &device)?;
        Ok(Self {
            source,
            device,
            current: RwLock::new(Arc::new(served)),
        })
    }

    /// The model now served.
    pub fn get(&self) -> Arc<Served> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Resolves the source again (an alias may have moved) and swaps the model in; jobs
    /// running finish on the model they started with. Returns the new one.
    pub fn reload(&self) -> anyhow::Result<Arc<Served>> {
        let served = Arc::new(load(&self.source, &self.device)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = served.clone();
        Ok(served)
    }

    /// Where the model comes from, for `/healthz`.
    pub fn source(&self) -> String {
        match &self.source {
            ModelSource::Registry { spec, root } => format!("{spec} in {}", root.display()),
            ModelSource::Checkpoint(p) => p.display().to_string(),
        }
    }
}
