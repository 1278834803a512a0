//! Command-line interface.

mod client;
mod plugin_new;

use airlift::clock::{Clock, ScaledClock, SystemClock};
use airlift::server::{Server, ServerConfig};
use std::sync::Arc;
use anyhow::Context;
use clap::{Parser, Subcommand};
use client::Client;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "airlift", version, about = "FUOTA campaign engine for LoRaWAN fleets")]
pub struct Cli {
    /// Data directory (store, blobs, compiled plugins, master key, tokens).
    #[arg(long, global = true, env = "AIRLIFT_DATA_DIR", default_value = "airlift-data")]
    data_dir: PathBuf,
    /// API base URL for client commands.
    #[arg(long, global = true, env = "AIRLIFT_API", default_value = "http://127.0.0.1:8740")]
    api: String,
    /// Bearer token for client commands; defaults to <data-dir>/admin.token.
    #[arg(long, global = true, env = "AIRLIFT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Logs as text lines, or as one JSON object per event (with the
    /// campaign of the span it happened in).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How core and agents reach the broker.
#[derive(clap::Args)]
struct KafkaArgs {
    /// Kafka bootstrap servers, host:port[,host:port…].
    #[arg(long)]
    kafka: String,
    /// librdkafka properties (TLS, SASL…), repeatable: key=value.
    #[arg(long = "kafka-property", value_parser = key_value)]
    kafka_properties: Vec<(String, String)>,
    #[arg(long, default_value = "RMC.CONFIG")]
    topic_config: String,
    #[arg(long, default_value = "RMC.AGENT")]
    topic_progress: String,
    #[arg(long, default_value = "RMC.METRIC")]
    topic_metrics: String,
    /// Uplinks the core forwards to the agents (ours): each agent reads
    /// this name followed by `.` and its instance id.
    #[arg(long, default_value = "RMC.UPLINK")]
    topic_uplinks: String,
}

impl KafkaArgs {
    fn settings(self) -> airlift::distributed::bus::KafkaSettings {
        use airlift::distributed::bus;
        let mut kafka = bus::KafkaSettings::new(self.kafka);
        kafka.properties = self.kafka_properties;
        kafka.topics = bus::Topics { config: self.topic_config, progress: self.topic_progress, metrics: self.topic_metrics, uplinks: self.topic_uplinks };
        kafka
    }
}

#[derive(clap::Args)]
struct AgentArgs {
    /// This agent's name in metrics and progress (`instanceId`).
    #[arg(long)]
    instance_id: String,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The consumer group the agents share.
    #[arg(long, default_value = "airlift-agents")]
    group: String,
    /// Device library of campaigns whose ADD names none.
    #[arg(long, default_value = "lorawan-v1")]
    device_library: String,
    /// PEM file of CAs the LRCs of ADD messages are trusted with, besides
    /// the platform's.
    #[arg(long)]
    lrc_ca_file: Option<PathBuf>,
    /// Uplink endpoints and API.
    #[arg(long, default_value = "127.0.0.1:8741")]
    bind: SocketAddr,
    /// File with the cluster key (64 hex digits) that seals the keys in
    /// configuration messages between our core and agents.
    #[arg(long)]
    cluster_key_file: Option<PathBuf>,
    /// Seed 002's compatibility mode: accept device, group and AS keys in
    /// clear, as a third-party core sends them.
    #[arg(long)]
    accept_clear_keys: bool,
    /// Run the clock this many times faster than real time (simulations).
    #[arg(long)]
    time_speed: Option<f64>,
    /// Unix milliseconds at which the sped-up clock reads real time.
    #[arg(long, requires = "time_speed")]
    time_origin: Option<u64>,
}

#[derive(clap::Args)]
struct CoreArgs {
    #[arg(long, default_value = "127.0.0.1:8740")]
    bind: SocketAddr,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// File with the cluster key (64 hex digits) the agents hold too.
    #[arg(long)]
    cluster_key_file: PathBuf,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=').map(|(k, v)| (k.trim().to_string(), v.to_string())).ok_or_else(|| format!("'{text}' is not key=value"))
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: REST API, store, plugin runtime.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8740")]
        bind: SocketAddr,
        /// Largest file upload in MiB.
        #[arg(long, default_value_t = 16)]
        upload_limit_mib: u64,
        /// Requests a second each API token may make (bursts of as many);
        /// unlimited when not given.
        #[arg(long)]
        rate_limit_per_token: Option<std::num::NonZeroU32>,
        /// Run the clock this many times faster than real time (simulations:
        /// a server and a simulated fleet in another process share it).
        #[arg(long)]
        time_speed: Option<f64>,
        /// Unix milliseconds at which the sped-up clock reads real time;
        /// give the same origin to every process of one simulation.
        #[arg(long, requires = "time_speed")]
        time_origin: Option<u64>,
        /// Serve `/metrics` without an API token (for a scraper on a
        /// trusted network).
        #[arg(long)]
        metrics_public: bool,
    },
    /// An RMC core (seed 002): the API, store and console of `serve`, with
    /// campaigns run by agents over Kafka.
    Core(CoreArgs),
    /// An RMC agent (seed 002): runs the campaigns of configuration
    /// messages from Kafka, publishes progress and metrics. It also serves
    /// the uplink endpoints (and the API) on --bind.
    Agent(AgentArgs),
    /// Plugins: list, show, describe, load (or hot-swap).
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Server objects: devices, device-sets, multicast-groups, regions,
    /// device-profiles, campaigns, smart-delta-keys, backend-instances, files.
    Object {
        kind: String,
        #[command(subcommand)]
        action: ObjectAction,
    },
    /// API tokens (admin): list, create (printed once), revoke.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Upload a file (firmware or binary).
    Upload {
        path: PathBuf,
        /// Metadata JSON, e.g. '{"firmwareVersion":"1.2.0.0"}'.
        #[arg(long)]
        metadata: Option<String>,
    },
}

#[derive(Subcommand)]
enum PluginAction {
    List,
    Show { name: String },
    /// Call the plugin's describe export.
    Describe { name: String },
    /// Load a plugin; a name already loaded is swapped without restart.
    Load {
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        wasm: PathBuf,
    },
    /// Write a new plugin project to start from (no server needed).
    New {
        #[arg(long, value_enum)]
        kind: plugin_new::TemplateKind,
        /// The plugin's name: lower-case letters, digits and '-'.
        name: String,
        /// Where to write it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The airlift-plugin-sdk crate (default: this build's source tree).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    List,
    Create {
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
    },
    Revoke { name: String },
}

#[derive(Subcommand)]
enum ObjectAction {
    List {
        #[arg(long)]
        archived: bool,
    },
    Get { id: String },
    /// JSON body inline, or @path to read it from a file.
    Create { json: String },
    Update { id: String, json: String },
    Archive { id: String },
}

fn body(arg: &str) -> anyhow::Result<serde_json::Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).context("body is not JSON")
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Serve { bind, upload_limit_mib, rate_limit_per_token, time_speed, time_origin, metrics_public } = cli.command {
        let mut config = ServerConfig::new(cli.data_dir);
        config.bind = bind;
        config.metrics_public = metrics_public;
        config.upload_limit = upload_limit_mib * 1024 * 1024;
        config.rate_limit_per_token = rate_limit_per_token;
        if let Some(speed) = time_speed {
            sped_up(&mut config, speed, time_origin)?;
        }
        let server = Server::start(config).await?;
        eprintln!("Airlift serving on http://{} (admin token in the data dir's admin.token)", server.addr);
        tokio::select! {
            _ = server.wait() => {}
            _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
        }
        return Ok(());
    }
    if let Command::Core(args) = cli.command {
        return run_core(cli.data_dir, args).await;
    }
    if let Command::Agent(args) = cli.command {
        return run_agent(cli.data_dir, args).await;
    }
    if let Command::Plugin { action: PluginAction::New { kind, name, dir, sdk } } = cli.command {
        let dir = plugin_new::create(kind, &name, dir, sdk)?;
        println!("{}: build with `cargo build --release --target wasm32-wasip2` there, test with `cargo test`", dir.display());
        return Ok(());
    }
    let token = match cli.token {
        Some(t) => t,
        None => std::fs::read_to_string(cli.data_dir.join("admin.token"))
            .context("no --token given and no admin.token in the data dir")?
            .trim()
            .to_string(),
    };
    let client = Client::new(&cli.api, &token);
    let out = match cli.command {
        Command::Serve { .. } | Command::Agent(_) | Command::Core(_) => unreachable!(),
        Command::Plugin { action } => match action {
            PluginAction::List => client.get("/api/plugins").await?,
            PluginAction::Show { name } => client.get(&format!("/api/plugins/{name}")).await?,
            PluginAction::Describe { name } => client.get(&format!("/api/plugins/{name}/describe")).await?,
            PluginAction::New { .. } => unreachable!(),
            PluginAction::Load { manifest, wasm } => {
                let form = reqwest::multipart::Form::new()
                    .part("manifest", reqwest::multipart::Part::bytes(std::fs::read(&manifest)?))
                    .part("wasm", reqwest::multipart::Part::bytes(std::fs::read(&wasm)?));
                client.multipart("/api/plugins", form).await?
            }
        },
        Command::Object { kind, action } => match action {
            ObjectAction::List { archived } => client.get(&format!("/api/{kind}?archived={archived}")).await?,
            ObjectAction::Get { id } => client.get(&format!("/api/{kind}/{id}")).await?,
            ObjectAction::Create { json } => client.send(reqwest::Method::POST, &format!("/api/{kind}"), body(&json)?).await?,
            ObjectAction::Update { id, json } => client.send(reqwest::Method::PUT, &format!("/api/{kind}/{id}"), body(&json)?).await?,
            ObjectAction::Archive { id } => client.send(reqwest::Method::DELETE, &format!("/api/{kind}/{id}"), serde_json::Value::Null).await?,
        },
        Command::Token { action } => match action {
            TokenAction::List => client.get("/api/tokens").await?,
            TokenAction::Create { name, role } => client.send(reqwest::Method::POST, "/api/tokens", serde_json::json!({"name": name, "role": role})).await?,
            TokenAction::Revoke { name } => client.send(reqwest::Method::DELETE, &format!("/api/tokens/{name}"), serde_json::Value::Null).await?,
        },
        Command::Upload { path, metadata } => {
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let mut form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(std::fs::read(&path)?).file_name(name));
            if let Some(m) = metadata {
                form = form.text("metadata", m);
            }
            client.multipart("/api/files", form).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn run_agent(data_dir: PathBuf, args: AgentArgs) -> anyhow::Result<()> {
    use airlift::distributed::agent;
    let mut config = ServerConfig::new(data_dir);
    config.bind = args.bind;
    if let Some(speed) = args.time_speed {
        sped_up(&mut config, speed, args.time_origin)?;
    }
    let server = Server::start(config).await?;
    let kafka = args.kafka.settings();
    ensure_topics(&kafka).await;
    let mut agent_config = agent::AgentConfig::new(args.instance_id, kafka);
    agent_config.group = args.group;
    agent_config.settings.device_library = args.device_library;
    if let Some(ca) = args.lrc_ca_file {
        agent_config.settings.lrc_transport.ca_certificates_pem = Some(std::fs::read_to_string(&ca).with_context(|| format!("reading {}", ca.display()))?);
    }
    if let Some(path) = args.cluster_key_file {
        agent_config.cluster_key = Some(Arc::new(airlift::distributed::sealing::load_cluster_key(&path).with_context(|| format!("reading {}", path.display()))?));
    }
    agent_config.accept_clear_keys = args.accept_clear_keys;
    eprintln!("Airlift agent {} serving uplinks on http://{}", agent_config.instance_id, server.addr);
    agent::run(server.state.clone(), agent_config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    server.stop().await;
    Ok(())
}

/// A host whose clock runs `speed` times faster than real time from
/// `origin` (simulations whose processes share one timeline).
fn sped_up(config: &mut ServerConfig, speed: f64, origin: Option<u64>) -> anyhow::Result<()> {
    anyhow::ensure!(speed > 0.0 && speed.is_finite(), "--time-speed must be a positive number");
    let origin = origin.unwrap_or_else(|| SystemClock.now_unix_ms());
    config.clock = Arc::new(ScaledClock::new(origin, speed));
    config.uplink_window = airlift::api::UplinkWindow::for_clock_speed(speed);
    Ok(())
}

/// Make the topics if the broker lacks them (3 partitions, as in the
/// seed's deployment); a broker that does not let us is told in the log.
async fn ensure_topics(kafka: &airlift::distributed::bus::KafkaSettings) {
    if let Err(e) = kafka.create_topics(3).await {
        tracing::warn!(error = %e, "the topics could not be created; they must exist");
    }
}

async fn run_core(data_dir: PathBuf, args: CoreArgs) -> anyhow::Result<()> {
    use airlift::distributed::{rmc_core, sealing};
    let kafka = args.kafka.settings();
    ensure_topics(&kafka).await;
    let cluster_key = sealing::load_cluster_key(&args.cluster_key_file).with_context(|| format!("reading {}", args.cluster_key_file.display()))?;
    let core = Arc::new(rmc_core::Core::new(kafka, Arc::new(cluster_key))?);
    let mut config = ServerConfig::new(data_dir);
    config.bind = args.bind;
    config.remote = Some(core.clone());
    let server = Server::start(config).await?;
    eprintln!("Airlift core serving on http://{} (admin token in the data dir's admin.token)", server.addr);
    let consuming = tokio::spawn(core.consume(server.state.store.clone(), server.state.vault.clone(), "airlift-core".into(), async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    consuming.await??;
    server.stop().await;
    Ok(())
}
