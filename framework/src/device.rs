//! Backend selection at run time (`--device`): `flex` (pure-Rust CPU, the default), and
//! `cuda[:N]` / `libtorch` (the `tch` feature) or `vulkan` (the `vulkan` feature) when
//! this binary was built with them.

use burn::prelude::*;

/// Resolves a `--device` name; the error lists what this build supports.
// burn 0.22 deprecates burn-tch; it stays the libtorch/CUDA path (see README).
#[allow(deprecated)]
pub fn parse_device(name: &str) -> Result<Device, String> {
    let supported = supported_devices().join(", ");
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        #[cfg(feature = "tch")]
        "libtorch" => Ok(Device::libtorch()),
        #[cfg(feature = "tch")]
        n if n == "cuda" || n.starts_with("cuda:") => {
            let idx = n.strip_prefix("cuda:").map_or(Ok(0), |i| {
                i.parse::<usize>()
                    .map_err(|_| format!("bad CUDA index in `{n}`"))
            })?;
            Ok(Device::libtorch_cuda(idx))
        }
        #[cfg(feature = "vulkan")]
        "vulkan" => Ok(Device::vulkan(Default::default())),
        other => Err(format!(
            "device `{other}` is not available in this build; available: {supported} (tch and vulkan need `cargo build --features tch|vulkan`, see shared GPU.md)"
        )),
    }
}

/// Device names this build accepts.
pub fn supported_devices() -> Vec<&'static str> {
    let mut v = vec!["flex"];
    if cfg!(feature = "tch") {
        v.extend(["libtorch", "cuda[:N]"]);
    }
    if cfg!(feature = "vulkan") {
        v.push("vulkan");
    }
    v
}
