//! `log`: plugin lines go to `tracing`, tagged with the plugin's name.

use super::super::bindings::latest::imports::airlift::plugin::log::{Host, Level};
use crate::plugin::CallState;

/// Longest line kept; the rest is cut so a plugin cannot flood the logs.
const MAX_LINE: usize = 2048;

impl Host for CallState {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let mut line = message;
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let plugin = self.plugin.name.as_str();
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, "{line}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, "{line}"),
            Level::Info => tracing::info!(target: "plugin", plugin, "{line}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, "{line}"),
            Level::Error => tracing::error!(target: "plugin", plugin, "{line}"),
        }
        Ok(())
    }
}
