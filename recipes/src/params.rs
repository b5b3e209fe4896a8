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
/// The squared norms are summed on the device and read back once (the norm is logged).
pub fn clip_global_norm(params: &ParamList, grads: &mut GradientsParams, max: f64) -> f64 {
    fn sq<const D: usize>(g: &GradientsParams, id: ParamId) -> Option<Tensor<1>> {
        g.get::<D>(id).map(|t| t.powi_scalar(2).sum())
    }
    fn scale<const D: usize>(g: &mut GradientsParams, id: ParamId, k: f64) {
        if let Some(t) = g.remove::<D>(id) {
            g.register(id, t.mul_scalar(k));
        }
    }
    // one [1] sum of squares per gradient → [P] → Σ, read once
    let parts: Vec<Tensor<1>> = params
        .0
        .iter()
        .filter_map(|&(id, d, _)| match d {
            1 => sq::<1>(grads, id),
            2 => sq::<2>(grads, id),
            3 => sq::<3>(grads, id),
            _ => sq::<4>(grads, id),
        })
        .collect();
    if parts.is_empty() {
        return 0.0;
    }
    let norm = Tensor::cat(parts, 0).sum().into_scalar::<f64>().sqrt();
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

/// Every float parameter's values, concatenated in visiting order.
pub fn flatten_params(model: &SonoraDit) -> Vec<f32> {
    struct Flat(Vec<f32>);
    impl ModuleVisitor for Flat {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let data = p.val().into_data().convert::<f32>();
            self.0
                .extend(data.as_slice::<f32>().expect("f32 after convert"));
        }
    }
    let mut f = Flat(Vec::new());
    model.visit(&mut f);
    f.0
}

/// `model` with every float parameter replaced by the next values of `flat` (the layout
/// [`flatten_params`] writes); ids and gradient tracking are kept.
pub fn load_flat_params(model: SonoraDit, flat: &[f32]) -> SonoraDit {
    struct Load<'a> {
        flat: &'a [f32],
        at: usize,
    }
    impl ModuleMapper for Load<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (at, flat) = (&mut self.at, self.flat);
            param.map(|t| {
                let shape = t.shape();
                let n = shape.num_elements();
                let grad = t.is_require_grad();
                let data = TensorData::new(flat[*at..*at + n].to_vec(), shape);
                *at += n;
                Tensor::<D>::from_data(data, &t.device()).set_require_grad(grad)
            })
        }
    }
    let mut l = Load { flat, at: 0 };
    let model = model.map(&mut l);
    assert_eq!(l.at, flat.len(), "flat parameters of another model");
    model
}

/// Every float parameter's shape, in [`ParamList`] order.
pub fn param_shapes(model: &SonoraDit) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl ModuleVisitor for Shapes {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.val().dims().to_vec());
        }
    }
    let mut s = Shapes(Vec::new());
    model.visit(&mut s);
    s.0
}

/// Sums `grads` over every rank in place: presence flags (which parameters have a gradient on
/// some rank) reduced on the host, and every gradient flattened into one tensor (zeros where
/// this rank has none, e.g. a part no example of its batch used) reduced by
/// [`Collective::all_reduce_tensor`](sonora_framework::distributed::Collective::all_reduce_tensor)
/// — on the device under NCCL. Each parameter that has a gradient on some rank gets its sum
/// back; one no rank has a gradient for (a frozen one) stays without, as in one process.
pub fn all_reduce_grads(
    params: &ParamList,
    shapes: &[Vec<usize>],
    grads: &mut GradientsParams,
    comm: &dyn sonora_framework::distributed::Collective,
    device: &Device,
) {
    use sonora_framework::distributed::ReduceOp;
    fn take<const D: usize>(g: &mut GradientsParams, id: ParamId, len: usize) -> Option<Tensor<1>> {
        g.remove::<D>(id).map(|t| t.reshape([len]))
    }
    fn put<const D: usize>(g: &mut GradientsParams, id: ParamId, flat: Tensor<1>, shape: &[usize]) {
        let dims: [usize; D] = shape.try_into().expect("shape of the parameter's rank");
        g.register(id, flat.reshape(dims));
    }
    let mut have = vec![0f32; params.0.len()];
    // [P] per parameter, then [Σ P] in ParamList order
    let mut parts = Vec::with_capacity(params.0.len());
    for (k, (&(id, d, _), shape)) in params.0.iter().zip(shapes).enumerate() {
        let len: usize = shape.iter().product();
        let got = match d {
            1 => take::<1>(grads, id, len),
            2 => take::<2>(grads, id, len),
            3 => take::<3>(grads, id, len),
            _ => take::<4>(grads, id, len),
        };
        have[k] = f32::from(u8::from(got.is_some()));
        parts.push(got.unwrap_or_else(|| Tensor::zeros([len], device)));
    }
    comm.all_reduce_f32(&mut have, ReduceOp::Sum);
    let flat = comm.all_reduce_tensor(Tensor::cat(parts, 0), ReduceOp::Sum);
    let mut at = 0;
    for (k, (&(id, d, _), shape)) in params.0.iter().zip(shapes).enumerate() {
        let len: usize = shape.iter().product();
        if have[k] > 0.0 {
            let g = flat.clone().narrow(0, at, len);
            match d {
                1 => put::<1>(grads, id, g, shape),
                2 => put::<2>(grads, id, g, shape),
                3 => put::<3>(grads, id, g, shape),
                _ => put::<4>(grads, id, g, shape),
            }
        }
        at += len;
    }
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
