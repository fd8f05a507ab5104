//! Backend selection: the only place where concrete Burn backends are named.

/// Which device a command runs on. CUDA exists only in builds with `--features cuda`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceKind {
    /// The `flex` CPU backend (f32).
    #[default]
    Cpu,
    /// NVIDIA GPU 0 through burn-cuda.
    #[cfg(feature = "cuda")]
    Cuda,
}

impl std::fmt::Display for DeviceKind {
    /// The `--device` spelling (`cpu`, `cuda`), for output a person reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceKind::Cpu => "cpu",
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => "cuda",
        })
    }
}

impl DeviceKind {
    /// The data-parallel device entry of this kind (`cpu`, `cuda:0`).
    pub fn spec(self) -> student::distributed::DeviceSpec {
        match self {
            DeviceKind::Cpu => student::distributed::DeviceSpec::Cpu,
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => student::distributed::DeviceSpec::Cuda(0),
        }
    }
}

/// The CPU backend every build has.
pub type Cpu = burn::backend::Flex;
/// The GPU backend of `--features cuda` builds.
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;

/// Calls a generic function `f::<B>(device, args…)` with the backend that `kind` names, so
/// command code stays generic over `B: Backend`.
#[macro_export]
macro_rules! with_backend {
    ($kind:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $kind {
            $crate::backend::DeviceKind::Cpu => {
                $f::<$crate::backend::Cpu>(burn::backend::flex::FlexDevice, $($arg),*)
            }
            #[cfg(feature = "cuda")]
            $crate::backend::DeviceKind::Cuda => {
                $f::<$crate::backend::Gpu>(burn::backend::cuda::CudaDevice::new(0), $($arg),*)
            }
        }
    };
}
