//! Exponential moving average of the weights: `ema ← d·ema + (1 − d)·θ` after every optimizer
//! step. The average is kept on the inner (non-autodiff) backend and saved beside the model
//! as `ema.safetensors`; samples and evaluation use it when it is enabled.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use sonora_framework::model::SonoraDit;

/// The averaged model and its decay.
pub struct Ema {
    /// The averaged weights (inner backend).
    pub model: SonoraDit,
    /// Decay per step, in (0, 1).
    pub decay: f64,
}

/// Collects each parameter (flattened) by module path.
struct Snapshot {
    path: Vec<String>,
    values: HashMap<String, Tensor<1>>,
}

impl ModuleVisitor for Snapshot {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.values
            .insert(self.path.join("."), p.val().reshape([-1]));
    }
}

/// Moves each parameter toward the snapshot's value at the same path.
struct Blend {
    path: Vec<String>,
    values: HashMap<String, Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(cur) = self.values.remove(&self.path.join(".")) else {
            return param;
        };
        let d = self.decay;
        param.map(|e| {
            let shape = e.shape();
            e.mul_scalar(d) + cur.reshape(shape).mul_scalar(1.0 - d)
        })
    }
}

impl Ema {
    /// Starts the average at the current weights of `model` (taken off the autodiff graph).
    pub fn new(model: &SonoraDit, decay: f64) -> Self {
        Self {
            model: model.valid(),
            decay,
        }
    }

    /// One update after an optimizer step.
    pub fn update(&mut self, model: &SonoraDit) {
        let mut snap = Snapshot {
            path: Vec::new(),
            values: HashMap::new(),
        };
        model.valid().visit(&mut snap);
        let mut blend = Blend {
            path: Vec::new(),
            values: snap.values,
            decay: self.decay,
        };
        self.model = self.model.clone().map(&mut blend);
    }
}
