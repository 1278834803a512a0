//! The `airlift` command: `serve` runs the host; the other sub-commands
//! talk to a running host's API.

mod cli;

use clap::Parser;

/// mimalloc: the engine allocates many small, short-lived buffers per
/// step (records, plugin arguments); engine-bench measured about 10 % less
/// time per uplink than with the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let default_filter = "info,sled=warn,cranelift=warn,wasmtime=warn";
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref(), default_filter);
    let logs = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| default_filter.into())).with_writer(std::io::stderr);
    match cli.log_format {
        cli::LogFormat::Json => logs.json().with_current_span(true).init(),
        cli::LogFormat::Text => logs.init(),
    }
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The log filter: RUST_LOG when set, else the default. The plugin
/// compiler logs gigabytes at trace, so it stays at info unless RUST_LOG
/// names it.
fn log_filter(rust_log: Option<&str>, default: &str) -> String {
    match rust_log {
        Some(asked) => ["cranelift", "wasmtime"].iter().filter(|c| !asked.contains(*c)).fold(asked.to_string(), |f, c| format!("{f},{c}=info")),
        None => default.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trace_keeps_the_compiler_at_info_unless_asked() {
        assert_eq!(super::log_filter(Some("trace"), "info"), "trace,cranelift=info,wasmtime=info");
        assert_eq!(super::log_filter(Some("trace,wasmtime=trace"), "info"), "trace,wasmtime=trace,cranelift=info");
        assert_eq!(super::log_filter(None, "warn"), "warn");
    }
}
