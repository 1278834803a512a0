//! The `airlift` command: `serve` runs the host; the other sub-commands
//! talk to a running host's API.

mod cli;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The demo draws progress bars on stderr: keep its logs to warnings.
    let default_filter = if std::env::args().nth(1).as_deref() == Some("demo") { "warn" } else { "info,sled=warn,cranelift=warn,wasmtime=warn" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()))
        .with_writer(std::io::stderr)
        .init();
    match cli::run(cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
