use crate::model::PluginKind;

/// Why a plugin could not be loaded or a call into it failed. A failed
/// call never takes the host down: the instance is discarded with its store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    #[error("plugin '{0}' is not loaded")]
    NotFound(String),
    #[error("plugin '{name}' is a {actual} plugin, not a {expected} plugin")]
    WrongKind { name: String, expected: PluginKind, actual: PluginKind },
    #[error("invalid plugin: {0}")]
    Invalid(String),
    #[error("plugin '{name}' trapped: {message}")]
    Trap { name: String, message: String },
    #[error("plugin '{name}' exceeded its deadline of {timeout_ms} ms")]
    Timeout { name: String, timeout_ms: u32 },
    #[error("plugin '{name}' exceeded its memory limit of {memory_mib} MiB")]
    OutOfMemory { name: String, memory_mib: u32 },
    #[error("plugin storage: {0}")]
    Storage(String),
}
