//! Choosing where models run, and making libtorch's CUDA backend visible.

use clap::ValueEnum;

/// `--device` values accepted by every command that runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DeviceChoice {
    /// CUDA when a GPU is usable, otherwise CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "--device cuda was requested but no CUDA GPU is usable ({0}); use --device cpu or \
         --device auto, or run where libtorch_cuda.so and a GPU are available \
         (see `slidestream doctor`)"
    )]
    CudaUnavailable(String),
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<tch::Device, DeviceError> {
        let cuda = tch::Cuda::is_available();
        match self {
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Auto if cuda => Ok(tch::Device::Cuda(0)),
            DeviceChoice::Auto => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda if cuda => Ok(tch::Device::Cuda(0)),
            DeviceChoice::Cuda => Err(DeviceError::CudaUnavailable(cuda_backend_status())),
        }
    }
}

/// Where `libtorch_cuda.so` came from, or why it could not be loaded.
static CUDA_BACKEND: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

/// Loads libtorch's CUDA backend if the library is on the search path.
///
/// rustc links with `--as-needed`, so `libtorch_cuda.so` never becomes a dependency of the
/// binary and its CUDA kernels would stay unregistered; opening it explicitly (global
/// symbols) registers them. On CPU-only machines the library is absent: that is not an
/// error. Call once at the start of `main`, before any tensor is created.
pub fn load_cuda_backend() {
    CUDA_BACKEND.get_or_init(|| {
        let name = c"libtorch_cuda.so";
        // SAFETY: dlopen with a valid NUL-terminated name; the handle is intentionally
        // kept open for the life of the process.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns a thread-local C string or null.
            let message = unsafe { libc::dlerror() };
            Err(if message.is_null() {
                "libtorch_cuda.so not found".to_string()
            } else {
                // SAFETY: non-null dlerror result is a valid C string.
                unsafe { std::ffi::CStr::from_ptr(message) }
                    .to_string_lossy()
                    .into_owned()
            })
        } else {
            Ok(())
        }
    });
}

/// One line on the CUDA backend for `doctor` and error messages.
pub fn cuda_backend_status() -> String {
    match CUDA_BACKEND.get() {
        None => "libtorch_cuda.so not loaded yet".into(),
        Some(Ok(())) if tch::Cuda::is_available() => format!(
            "libtorch_cuda.so loaded, {} GPU(s) visible",
            tch::Cuda::device_count()
        ),
        Some(Ok(())) => "libtorch_cuda.so loaded, but no GPU is visible".into(),
        Some(Err(reason)) => format!("CPU-only libtorch ({reason})"),
    }
}

/// A device's name as reports and `--device` spell it: "cpu", "cuda:N", "mps", "vulkan".
pub fn describe(device: tch::Device) -> String {
    match device {
        tch::Device::Cpu => "cpu".to_owned(),
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        tch::Device::Mps => "mps".to_owned(),
        tch::Device::Vulkan => "vulkan".to_owned(),
    }
}
