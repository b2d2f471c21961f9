//! Which device a run computes on: chosen once (by a binary's flag, or the default) and
//! passed down to whatever loads a model ([`crate::load`] and its siblings, sft-train's
//! checkpoint loading, sft-eval's `EvalOptions::device`).
//!
//! The fused kernels of this crate and of sft-train run on the CPU; every one of them has a
//! plain candle-ops path that the other devices take (see [`crate::norm`],
//! [`crate::attention`], [`crate::loss`], sft-train's `optim` and `accumulate`).

use candle_core::Device;

/// A device as a flag names it: `cpu`, `cuda` (the first GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda(usize),
}

impl DeviceChoice {
    /// The candle device; a CUDA device needs a build with the `cuda` feature and the GPU.
    pub fn open(self) -> crate::Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(ordinal) => Device::new_cuda(ordinal).map_err(|e| {
                crate::ModelError::Input(format!(
                    "device cuda:{ordinal}: {e} (CUDA needs a build with the `cuda` feature)"
                ))
            }),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Reads a device name (`cpu`, `cuda`, `cuda:N`, any case); an unknown one is refused,
/// naming the accepted forms.
pub fn parse_choice(name: &str) -> Result<DeviceChoice, String> {
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
        _ => lower
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceChoice::Cuda)
            .ok_or_else(|| {
                format!("unknown device \"{name}\": expected cpu, cuda or cuda:N (a GPU's index)")
            }),
    }
}

/// [`parse_choice`] and [`DeviceChoice::open`] in one: the device a flag names.
pub fn parse(name: &str) -> crate::Result<Device> {
    parse_choice(name).map_err(crate::ModelError::Input)?.open()
}

/// The device of a run that chose none: the CPU.
pub fn default_device() -> Device {
    Device::Cpu
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse() {
        assert_eq!(parse_choice("cpu"), Ok(DeviceChoice::Cpu));
        assert_eq!(parse_choice(" CPU "), Ok(DeviceChoice::Cpu));
        assert_eq!(parse_choice("cuda"), Ok(DeviceChoice::Cuda(0)));
        assert_eq!(parse_choice("cuda:3"), Ok(DeviceChoice::Cuda(3)));
        assert!(parse_choice("tpu")
            .unwrap_err()
            .contains("cpu, cuda or cuda:N"));
        assert!(parse_choice("cuda:x").is_err());
        assert!(parse("cpu").unwrap().is_cpu());
        assert_eq!(DeviceChoice::Cuda(1).to_string(), "cuda:1");
        assert!(default_device().is_cpu());
    }
}
