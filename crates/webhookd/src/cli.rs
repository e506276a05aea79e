//! The command line (SPEC §2). Every flag can also be given as `WEBHOOKD_<FLAG>`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, Config};
use crate::domain::egress::{EgressIps, EgressProxy};

#[derive(Debug, Parser)]
#[command(name = "webhookd", version, about = "Webhook delivery service", propagate_version = true)]
pub struct Cli {
    /// A TOML file with any of `serve`'s settings (see webhookd.example.toml); flags and
    /// environment variables override it.
    #[arg(long, global = true, env = "WEBHOOKD_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Log line format (filter with RUST_LOG, e.g. `info,webhookd=debug`).
    #[arg(long, global = true, env = "WEBHOOKD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API and the delivery workers.
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Run a local receiver that prints each webhook and whether its signature verifies.
    Listen(ListenArgs),
    /// Manage organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Manage API keys: a new key for an organization (a lost key), list, revoke.
    ///
    /// A running server trusts a key it has verified for up to 60 s without asking the database
    /// again: a revoked key may keep working on it for that long.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization and print `{"org_id": "...", "api_key": "..."}`.
    Create(OrgCreateArgs),
    /// Print every organization, one JSON object per line: `{"org_id", "name", "created_at"}`.
    List(DatabaseArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key for an existing organization and print
    /// `{"org_id": "...", "api_key": "..."}`; the key is shown only this once.
    Create(KeyCreateArgs),
    /// Print API keys (their prefixes, never the keys), one JSON object per line:
    /// `{"key_prefix", "org_id", "created_at"}`.
    List(KeyListArgs),
    /// Delete the API keys that start with a prefix and print them, one JSON object per line. A
    /// running server may keep accepting a key it verified in the last 60 s (its key cache); a
    /// restarted one refuses it at once.
    Revoke(KeyRevokeArgs),
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// The organization's id, as `webhookd org list` prints it.
    #[arg(long, env = "WEBHOOKD_ORG", value_name = "ORG_ID", value_parser = parse_org_id)]
    pub org: uuid::Uuid,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct KeyListArgs {
    /// Only this organization's keys.
    #[arg(long, env = "WEBHOOKD_ORG", value_name = "ORG_ID", value_parser = parse_org_id)]
    pub org: Option<uuid::Uuid>,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct KeyRevokeArgs {
    /// The key's first 10 characters (`whk_` and 6 more), as `webhookd key list` prints them.
    #[arg(long, env = "WEBHOOKD_KEY_PREFIX", value_name = "PREFIX", value_parser = parse_key_prefix)]
    pub key_prefix: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

fn parse_org_id(value: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(value.trim())
        .map_err(|_| "an organization id is a UUID, as `webhookd org list` prints it".to_string())
}

/// The shown part of an API key (`domain::secrets::api_key_prefix`): `whk_` and 6 characters.
fn parse_key_prefix(value: &str) -> Result<String, String> {
    use crate::domain::secrets::API_KEY_PREFIX;
    let expected = API_KEY_PREFIX.len() + 6;
    let url_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    match value.strip_prefix(API_KEY_PREFIX) {
        Some(_) if value.len() > expected => Err(format!(
            "give only the key's first {expected} characters ({API_KEY_PREFIX} and 6 more), \
             as `webhookd key list` prints them"
        )),
        Some(rest) if value.len() == expected && rest.chars().all(url_safe) => {
            Ok(value.to_string())
        }
        _ => Err(format!(
            "a key prefix is {API_KEY_PREFIX} and 6 more characters, as `webhookd key list` \
             prints them"
        )),
    }
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "WEBHOOKD_LISTEN_PORT", default_value_t = 9000)]
    pub port: u16,
    /// The webhook's signing secret (`whsec_…`), to verify signatures.
    #[arg(long, env = "WEBHOOKD_LISTEN_SECRET")]
    pub secret: Option<String>,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// `sqlite://PATH` (embedded, created if missing) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "WEBHOOKD_DATABASE", default_value = config::DEFAULT_DATABASE)]
    pub database: String,
    /// Base64 key of 32 bytes sealing secrets at rest (`openssl rand -base64 32`). Required with
    /// PostgreSQL (the same on every node); with SQLite, default: a key file beside the database.
    #[arg(long, env = "WEBHOOKD_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct OrgCreateArgs {
    /// The organization's name.
    #[arg(long, env = "WEBHOOKD_NAME")]
    pub name: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address the API listens on.
    #[arg(long, env = "WEBHOOKD_LISTEN", default_value = config::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Permit loopback and private destination addresses.
    #[arg(long, env = "WEBHOOKD_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,
    /// Send every outbound request (deliveries, tests, OAuth2 token fetches) through this
    /// proxy: http://HOST:PORT, https://HOST:PORT or socks5://HOST:PORT, with USER:PASSWORD@
    /// before the host if it asks for credentials. Destinations are still checked (SSRF)
    /// before the proxy is asked.
    #[arg(long, env = "WEBHOOKD_EGRESS_PROXY", value_name = "URL", hide_env_values = true,
        value_parser = EgressProxyParser)]
    pub egress_proxy: Option<EgressProxy>,
    /// The source addresses of deliveries, shown to customers as the ones to allow
    /// (comma-separated addresses or CIDR blocks, e.g. 203.0.113.7,198.51.100.0/28).
    #[arg(long, env = "WEBHOOKD_EGRESS_IPS", value_name = "LIST", value_parser = EgressIps::parse)]
    pub egress_ips: Option<EgressIps>,
    /// Delays before each automatic retry (each at most 30 days); the last one repeats.
    #[arg(long, env = "WEBHOOKD_RETRY_SCHEDULE", default_value = config::DEFAULT_RETRY_SCHEDULE,
        value_parser = parse_schedule)]
    pub retry_schedule: Schedule,
    /// How old a log may be and still be retried by hand (1m to 10 years).
    #[arg(long, env = "WEBHOOKD_RETRY_WINDOW", default_value = config::DEFAULT_RETRY_WINDOW,
        value_parser = config::parse_retry_window)]
    pub retry_window: Duration,
    /// How long events, delivery logs and attempts are kept (1h to 10 years).
    #[arg(long, env = "WEBHOOKD_RETENTION", default_value = config::DEFAULT_RETENTION,
        value_parser = config::parse_retention)]
    pub retention: Duration,
    /// How long their payloads are kept: event data, response bodies and headers (1h up to
    /// the retention; by default the same as the retention).
    #[arg(long, env = "WEBHOOKD_PAYLOAD_RETENTION", value_parser = config::parse_payload_retention)]
    pub payload_retention: Option<Duration>,
    /// Run only the API (no delivery workers).
    #[arg(long, env = "WEBHOOKD_NO_WORKER", conflicts_with = "no_api")]
    pub no_worker: bool,
    /// Run only the delivery workers (no API).
    #[arg(long, env = "WEBHOOKD_NO_API")]
    pub no_api: bool,
    /// Event types to add to the built-in catalog: `name` or `name=description`, comma-separated.
    #[arg(long, env = "WEBHOOKD_EXTRA_EVENT_TYPES", value_delimiter = ',')]
    pub extra_event_types: Vec<String>,
    /// A JSON or YAML file listing event types as `{name, description, schema?, example?}`:
    /// each replaces the built-in type of its name or adds one; `schema` (JSON Schema 2020-12)
    /// validates the event's `data` at ingestion. See examples/event-catalog.yaml.
    #[arg(long, env = "WEBHOOKD_EVENT_CATALOG", value_name = "FILE")]
    pub event_catalog: Option<std::path::PathBuf>,
    /// Delivery attempts in flight at once on this node.
    #[arg(long, env = "WEBHOOKD_CONCURRENCY", default_value_t = config::DEFAULT_CONCURRENCY as u64,
        value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub concurrency: u64,
    /// On shutdown, how long attempts and API requests in flight may take to finish (at most
    /// 1h).
    #[arg(long, env = "WEBHOOKD_SHUTDOWN_GRACE", default_value = config::DEFAULT_SHUTDOWN_GRACE,
        value_parser = config::parse_shutdown_grace)]
    pub shutdown_grace: Duration,
    /// API requests per second allowed per API key, with a burst of as many (0: unlimited).
    #[arg(long, env = "WEBHOOKD_RATE_LIMIT", default_value_t = config::DEFAULT_RATE_LIMIT)]
    pub rate_limit: u32,
    /// Consecutive unavailable answers (no answer, timeout, 5xx, 429) that open a webhook's
    /// circuit: its deliveries pause until a probe succeeds.
    #[arg(long, env = "WEBHOOKD_CIRCUIT_THRESHOLD", default_value_t = config::DEFAULT_CIRCUIT_THRESHOLD,
        value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub circuit_threshold: u32,
    /// How long an open circuit waits before its first probe (doubled by each failed probe,
    /// at most 10 minutes).
    #[arg(long, env = "WEBHOOKD_CIRCUIT_COOLDOWN", default_value = config::DEFAULT_CIRCUIT_COOLDOWN,
        value_parser = config::parse_circuit_cooldown)]
    pub circuit_cooldown: Duration,
    /// Where browsers reach this service, e.g. https://hooks.example.com: the base of customer
    /// portal links; an https URL also marks dashboard cookies Secure; webhook URLs on it are
    /// refused. Default: http://<listen>.
    #[arg(long, env = "WEBHOOKD_PUBLIC_URL", value_parser = config::parse_public_url)]
    pub public_url: Option<String>,
    /// Export traces (spans of ingestion and of every attempt) to this OTLP/HTTP collector,
    /// e.g. http://127.0.0.1:4318 (`/v1/traces` is added to a URL without a path). Off by
    /// default; attempts carry a W3C traceparent either way.
    #[arg(long, env = "WEBHOOKD_OTLP_ENDPOINT", value_parser = config::parse_otlp_endpoint)]
    pub otlp_endpoint: Option<String>,
    /// Consume events from a message bus, e.g.
    /// nats://127.0.0.1:4222/CALLS?subject=calls.>&consumer=webhookd (a JetStream durable pull
    /// consumer, created if missing) or amqp://guest:guest@127.0.0.1:5672/%2f?queue=calls (a
    /// RabbitMQ queue). Repeatable; each message is an ingestion body plus `agent_id`.
    #[arg(long = "source", env = "WEBHOOKD_SOURCE", value_name = "URL", value_delimiter = ',')]
    pub sources: Vec<String>,
    /// Messages of one source delivered to this node and not yet acknowledged, at most: a
    /// flood waits in the broker.
    #[arg(long, env = "WEBHOOKD_SOURCE_MAX_UNACKED", default_value_t = crate::source::DEFAULT_MAX_UNACKED as u32,
        value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub source_max_unacked: u32,
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Limits of the API's connections (slow or silent clients, descriptor exhaustion).
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// How long a request's headers may take to arrive; a silent or trickling client is
    /// disconnected after it.
    #[arg(long, env = "WEBHOOKD_HEADER_TIMEOUT", default_value = config::DEFAULT_HEADER_TIMEOUT,
        value_parser = config::parse_server_timeout)]
    pub header_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests.
    #[arg(long, env = "WEBHOOKD_IDLE_TIMEOUT", default_value = config::DEFAULT_IDLE_TIMEOUT,
        value_parser = config::parse_server_timeout)]
    pub idle_timeout: Duration,
    /// How long a request body may take to arrive, in all.
    #[arg(long, env = "WEBHOOKD_BODY_TIMEOUT", default_value = config::DEFAULT_BODY_TIMEOUT,
        value_parser = config::parse_server_timeout)]
    pub body_timeout: Duration,
    /// API connections open at once; further ones wait to be accepted. Default: half the
    /// open-file limit (ulimit -n), at most 4096.
    #[arg(long, env = "WEBHOOKD_MAX_CONNECTIONS",
        value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,
}

/// Parses `--egress-proxy` with an error of its own: clap's repeats the value, and a proxy URL
/// may hold a password.
#[derive(Debug, Clone, Copy)]
struct EgressProxyParser;

impl clap::builder::TypedValueParser for EgressProxyParser {
    type Value = EgressProxy;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<EgressProxy, clap::Error> {
        let refused = |message: String| {
            let message = format!("--egress-proxy {message}\n");
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd)
        };
        let value = value.to_str().ok_or_else(|| refused("is not valid UTF-8".into()))?;
        EgressProxy::parse(value).map_err(refused)
    }
}

/// A parsed `--retry-schedule` (a newtype, so clap takes the list as one value).
#[derive(Debug, Clone)]
pub struct Schedule(pub Vec<Duration>);

fn parse_schedule(value: &str) -> Result<Schedule, String> {
    config::parse_retry_schedule(value).map(Schedule)
}

impl ServeArgs {
    /// The settings of `serve`; a `--source` that does not parse is refused here, in one line
    /// that names the shape to give (and never its password).
    pub fn into_config(self) -> Result<Config, String> {
        let sources = self
            .sources
            .iter()
            .map(|source| {
                crate::source::SourceUrl::parse(source).map_err(|e| format!("--source {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Config {
            listen: self.listen,
            database_url: self.database.database,
            secret_key: self.database.secret_key,
            allow_private_targets: self.allow_private_targets,
            egress_proxy: self.egress_proxy,
            egress_ips: self.egress_ips.unwrap_or_default(),
            retry_schedule: self.retry_schedule.0,
            retry_window: self.retry_window,
            retention: self.retention,
            payload_retention: self.payload_retention,
            run_api: !self.no_api,
            run_worker: !self.no_worker,
            extra_event_types: self.extra_event_types,
            event_catalog: self.event_catalog,
            concurrency: usize::try_from(self.concurrency).unwrap_or(config::DEFAULT_CONCURRENCY),
            shutdown_grace: self.shutdown_grace,
            rate_limit: self.rate_limit,
            circuit_threshold: self.circuit_threshold,
            circuit_cooldown: self.circuit_cooldown,
            public_url: self.public_url,
            header_timeout: self.connections.header_timeout,
            idle_timeout: self.connections.idle_timeout,
            body_timeout: self.connections.body_timeout,
            max_connections: self.connections.max_connections.map(|n| n as usize),
            otlp_endpoint: self.otlp_endpoint,
            sources,
            source_max_unacked: self.source_max_unacked as usize,
        })
    }
}

/// `--help` and `--version` print and succeed; a missing command prints the usage and exits 2
/// (a script that forgot its command must not pass); any other parse error is one line and exit 2.
pub fn exit_for_parse_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{}", error.render());
            ExitCode::from(2)
        }
        _ => {
            let rendered = error.render().to_string();
            let first = rendered.lines().find(|line| !line.trim().is_empty()).unwrap_or("error");
            eprintln!("{first} (see `webhookd --help`)");
            ExitCode::from(2)
        }
    }
}

/// Settings a configuration file may hold: `serve`'s flags, spelled with `_` or `-`.
pub const FILE_SETTINGS: &[&str] = &[
    "listen",
    "database",
    "allow_private_targets",
    "egress_proxy",
    "egress_ips",
    "retry_schedule",
    "retry_window",
    "retention",
    "payload_retention",
    "no_worker",
    "no_api",
    "extra_event_types",
    "event_catalog",
    "concurrency",
    "shutdown_grace",
    "rate_limit",
    "header_timeout",
    "idle_timeout",
    "body_timeout",
    "max_connections",
    "secret_key",
    "public_url",
    "log_format",
    "circuit_threshold",
    "circuit_cooldown",
    "otlp_endpoint",
    "source",
    "source_max_unacked",
];

/// Applies `--config FILE` (or `WEBHOOKD_CONFIG`): each setting becomes the `WEBHOOKD_*` variable
/// of its flag unless that variable is set already. Precedence is therefore flag, then
/// environment, then file, then default — clap's own order, with the file slotted in.
pub fn apply_config_file(args: &[std::ffi::OsString]) -> Result<(), String> {
    let from_args = args.iter().enumerate().find_map(|(i, arg)| {
        let arg = arg.to_str()?;
        match arg.strip_prefix("--config=") {
            Some(path) => Some(path.to_string()),
            None if arg == "--config" => {
                args.get(i + 1).and_then(|p| p.to_str()).map(str::to_string)
            }
            None => None,
        }
    });
    let Some(path) = from_args.or_else(|| std::env::var("WEBHOOKD_CONFIG").ok()) else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("{path} is not valid TOML: {}", e.message()))?;
    for (key, value) in table {
        let setting = key.replace('-', "_");
        if !FILE_SETTINGS.contains(&setting.as_str()) {
            return Err(format!("{path}: unknown setting {key:?}"));
        }
        let value = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(str::to_string).ok_or(()))
                .collect::<Result<Vec<_>, ()>>()
                .map_err(|()| format!("{path}: {key} must be a list of strings"))?
                .join(","),
            _ => return Err(format!("{path}: {key} must be a string, number, boolean or list")),
        };
        let variable = format!("WEBHOOKD_{}", setting.to_ascii_uppercase());
        if std::env::var_os(&variable).is_none() {
            std::env::set_var(variable, value);
        }
    }
    Ok(())
}
