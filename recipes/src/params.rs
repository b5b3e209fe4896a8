//! Parameter bookkeeping for the loop: stable parameter ids (so optimizer state saved by
//! one process applies to the model loaded by another), global-norm gradient clipping and
//! the named parameter groups that fine-tuning freezes.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use sonora_framework::model::SonoraDit;

/// FNV-1a, 64 bit: a stable hash of a parameter path.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Gives every float parameter the id `fnv1a(module path)`. burn draws fresh random ids when
/// a model is built, and its optimizer state is keyed by id, so without this a resumed run
/// could not find its AdamW moments.
struct StableIds {
    path: Vec<String>,
}

impl ModuleMapper for StableIds {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.id = ParamId::from(fnv1a(&self.path.join(".")));
        param
    }
}

/// `model` with ids derived from parameter paths (the same in every process).
pub fn with_stable_ids(model: SonoraDit) -> SonoraDit {
    model.map(&mut StableIds { path: Vec::new() })
}

/// Every float parameter: id, rank and module path, in visiting order.
#[derive(Default)]
pub struct ParamList(pub Vec<(ParamId, usize, String)>);

struct Collect<'a> {
    out: &'a mut ParamList,
    path: Vec<String>,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.out.0.push((p.id, D, self.path.join(".")));
    }
}

impl ParamList {
    /// The parameters of `model`.
    pub fn of(model: &SonoraDit) -> Self {
        let mut out = ParamList::default();
        model.visit(&mut Collect {
            out: &mut out,
            path: Vec::new(),
        });
        out
    }
}

/// Scales `grads` so their global L2 norm is at most `max` (0 = no clipping); returns the
/// norm before clipping. burn's own clipping is per tensor, which changes the direction.
pub fn clip_global_norm(params: &ParamList, grads: &mut GradientsParams, max: f64) -> f64 {
    fn sq<const D: usize>(g: &GradientsParams, id: ParamId) -> f64 {
        g.get::<D>(id)
            .map_or(0.0, |t| t.powi_scalar(2).sum().into_scalar::<f64>())
    }
    fn scale<const D: usize>(g: &mut GradientsParams, id: ParamId, k: f64) {
        if let Some(t) = g.remove::<D>(id) {
            g.register(id, t.mul_scalar(k));
        }
    }
    let total: f64 = params
        .0
        .iter()
        .map(|&(id, d, _)| match d {
            1 => sq::<1>(grads, id),
            2 => sq::<2>(grads, id),
            3 => sq::<3>(grads, id),
            _ => sq::<4>(grads, id),
        })
        .sum();
    let norm = total.sqrt();
    if max > 0.0 && norm > max {
        let k = max / (norm + 1e-6);
        for &(id, d, _) in &params.0 {
            match d {
                1 => scale::<1>(grads, id, k),
                2 => scale::<2>(grads, id, k),
                3 => scale::<3>(grads, id, k),
                _ => scale::<4>(grads, id, k),
            }
        }
    }
    norm
}

/// Named parts of the model a fine-tune can freeze, as module-path prefixes.
pub const PARTS: &[(&str, &[&str])] = &[
    ("text", &["text.", "text_pool."]),
    ("audio", &["audio_in.", "audio_out."]),
    ("video", &["video_in.", "video_out."]),
    ("references", &["ref_in."]),
    ("blocks", &["blocks."]),
    ("time", &["time."]),
];

/// The parameters of the named parts (`text`, `audio`, …); an unknown name is an error that
/// lists the known ones.
pub fn part_group(params: &ParamList, parts: &[String]) -> Result<ParamGroup, String> {
    let mut prefixes = Vec::new();
    for p in parts {
        let Some((_, pre)) = PARTS.iter().find(|(n, _)| n == p) else {
            let names: Vec<&str> = PARTS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown model part `{p}`; known parts: {}",
                names.join(", ")
            ));
        };
        prefixes.extend_from_slice(pre);
    }
    let ids: Vec<ParamId> = params
        .0
        .iter()
        .filter(|(_, _, path)| prefixes.iter().any(|pre| path.starts_with(pre)))
        .map(|(id, _, _)| *id)
        .collect();
    if ids.is_empty() {
        return Err(format!(
            "model parts {parts:?} match no parameter (prefixes {prefixes:?})"
        ));
    }
    Ok(ParamGroup::from_ids(ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_stable_and_path_sensitive() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a("blocks.0.q.weight"), fnv1a("blocks.1.q.weight"));
        assert_eq!(fnv1a("a.b"), fnv1a("a.b"));
    }
}
