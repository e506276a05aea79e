//! Runtime configuration of `webhookd serve`, independent of how it was given (flags, env).

use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE: &str = "sqlite://webhookd.db";
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,14h,20h,24h";
pub const DEFAULT_RETRY_WINDOW: &str = "7d";
pub const DEFAULT_RETENTION: &str = "30d";
pub const DEFAULT_CONCURRENCY: usize = 256;
pub const DEFAULT_RATE_LIMIT: u32 = 1000;
pub const DEFAULT_CIRCUIT_THRESHOLD: u32 = 5;
pub const DEFAULT_CIRCUIT_COOLDOWN: &str = "10s";
pub const DEFAULT_SHUTDOWN_GRACE: &str = "30s";
pub const DEFAULT_HEADER_TIMEOUT: &str = "10s";
pub const DEFAULT_IDLE_TIMEOUT: &str = "75s";
pub const DEFAULT_BODY_TIMEOUT: &str = "30s";

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);
/// Longest delay of a retry schedule: longer ones are typos (and overflowed the clock once).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30 * DAY.as_secs());
/// Retention below an hour would delete logs while people still look at them.
pub const MIN_RETENTION: Duration = HOUR;
/// Ten years (of 365.25 days): longer retentions and retry windows mean "forever", and this is
/// as good.
pub const MAX_KEEP: Duration = Duration::from_secs(10 * 31_557_600);
/// Orchestrators kill a process long before; a longer grace is a typo.
pub const MAX_SHUTDOWN_GRACE: Duration = HOUR;
/// Bounds of the connection timeouts: shorter cuts off real clients, longer protects nothing.
pub const MIN_SERVER_TIMEOUT: Duration = Duration::from_millis(100);
pub const MAX_SERVER_TIMEOUT: Duration = HOUR;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// Permit loopback/private destination addresses (off by default).
    pub allow_private_targets: bool,
    /// The proxy every outbound request goes through (SPEC §9); `None`: direct connections.
    pub egress_proxy: Option<crate::domain::egress::EgressProxy>,
    /// The source addresses customers are told to allow (`GET /organization`, dashboard,
    /// portal); webhookd shows them and does nothing else with them.
    pub egress_ips: crate::domain::egress::EgressIps,
    /// Delay before retry n (the last one repeats).
    pub retry_schedule: Vec<Duration>,
    /// How old a log may be and still be retried by hand.
    pub retry_window: Duration,
    /// How long events, logs and attempts are kept.
    pub retention: Duration,
    /// How long their payloads are kept (event data, response bodies and headers); `None`: as
    /// long as `retention`. See [`Config::payload_retention`].
    pub payload_retention: Option<Duration>,
    pub run_api: bool,
    pub run_worker: bool,
    /// Event types added to the built-in catalog, `name` or `name=description`.
    pub extra_event_types: Vec<String>,
    /// A JSON or YAML file of event types (`domain::catalog`), read and compiled at start.
    pub event_catalog: Option<std::path::PathBuf>,
    /// Delivery attempts in flight at once on this node.
    pub concurrency: usize,
    /// On shutdown, how long attempts and API requests in flight may take to finish.
    pub shutdown_grace: Duration,
    /// API requests per second allowed per API key (0: unlimited).
    pub rate_limit: u32,
    /// Base64 key (32 bytes) that seals secrets at rest; see `app::open_sealed_store`.
    pub secret_key: Option<String>,
    /// Consecutive unavailable answers that open a webhook's circuit.
    pub circuit_threshold: u32,
    /// A circuit's first cooldown before its probe (doubled by each failed probe, up to 10 min).
    pub circuit_cooldown: Duration,
    /// Where browsers reach this service (no trailing slash), the base of customer portal links.
    /// `None` until the API is bound: then `http://<the bound address>`.
    pub public_url: Option<String>,
    /// The API's connections: how long a request head may take to arrive (from the connection's
    /// start, or from the first byte of a later request), how long a connection may sit idle
    /// between requests, how long a request body may take, and how many may be open at once
    /// (`None`: derived from the open-file limit, see `server::default_max_connections`).
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: Option<usize>,
    /// Where spans are exported (an OTLP/HTTP traces URL); `None`: no export (the default).
    pub otlp_endpoint: Option<String>,
    /// Message buses this node consumes events from (SPEC §11); only with the workers.
    pub sources: Vec<crate::source::SourceUrl>,
    /// Messages of one source delivered to this node and not yet acknowledged, at most.
    pub source_max_unacked: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("default listen address parses"),
            database_url: DEFAULT_DATABASE.into(),
            allow_private_targets: false,
            egress_proxy: None,
            egress_ips: Default::default(),
            retry_schedule: parse_retry_schedule(DEFAULT_RETRY_SCHEDULE)
                .expect("default retry schedule parses"),
            retry_window: parse_duration(DEFAULT_RETRY_WINDOW).expect("default window parses"),
            retention: parse_duration(DEFAULT_RETENTION).expect("default retention parses"),
            payload_retention: None,
            run_api: true,
            run_worker: true,
            extra_event_types: Vec::new(),
            event_catalog: None,
            concurrency: DEFAULT_CONCURRENCY,
            shutdown_grace: parse_duration(DEFAULT_SHUTDOWN_GRACE).expect("default grace parses"),
            rate_limit: DEFAULT_RATE_LIMIT,
            secret_key: None,
            circuit_threshold: DEFAULT_CIRCUIT_THRESHOLD,
            circuit_cooldown: parse_duration(DEFAULT_CIRCUIT_COOLDOWN)
                .expect("default cooldown parses"),
            public_url: None,
            header_timeout: parse_duration(DEFAULT_HEADER_TIMEOUT).expect("default parses"),
            idle_timeout: parse_duration(DEFAULT_IDLE_TIMEOUT).expect("default parses"),
            body_timeout: parse_duration(DEFAULT_BODY_TIMEOUT).expect("default parses"),
            max_connections: None,
            otlp_endpoint: None,
            sources: Vec::new(),
            source_max_unacked: crate::source::DEFAULT_MAX_UNACKED,
        }
    }
}

impl Config {
    /// `--retry-window` in milliseconds, as log times are kept.
    pub fn retry_window_ms(&self) -> i64 {
        i64::try_from(self.retry_window.as_millis()).unwrap_or(i64::MAX)
    }

    /// How long payloads are kept: `--payload-retention`, else `--retention`.
    pub fn payload_retention(&self) -> Duration {
        self.payload_retention.unwrap_or(self.retention)
    }

    /// Settings that are valid alone but not together; the message names the bound.
    pub fn check(&self) -> Result<(), String> {
        if !self.sources.is_empty() && !self.run_worker {
            return Err("--source needs the delivery workers: remove --no-worker on the nodes \
                        that consume, or --source on this one"
                .into());
        }
        if let Some(payload) = self.payload_retention {
            if payload > self.retention {
                return Err(format!(
                    "--payload-retention {} is longer than --retention {}: payloads cannot \
                     outlive their logs; give at most {}",
                    human(payload),
                    human(self.retention),
                    human(self.retention)
                ));
            }
        }
        Ok(())
    }
}

/// An `http(s)://host[:port][/path]` URL without query or fragment, its trailing `/` removed.
pub fn parse_public_url(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value.trim())
        .map_err(|e| format!("invalid URL {value:?}: {e}; e.g. https://hooks.example.com"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("{value:?} must be an http:// or https:// URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!("{value:?} must not have a query, fragment or user name"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// An OTLP/HTTP collector: `http(s)://host:port` (its traces path `/v1/traces` is added) or the
/// full URL of its traces endpoint.
pub fn parse_otlp_endpoint(value: &str) -> Result<String, String> {
    let mut url = url::Url::parse(value.trim()).map_err(|e| {
        format!("invalid URL {value:?}: {e}; e.g. http://127.0.0.1:4318 (an OTLP/HTTP collector)")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "{value:?} must be an http:// or https:// URL of an OTLP/HTTP collector, e.g. \
             http://127.0.0.1:4318 (gRPC is not supported)"
        ));
    }
    if url.path() == "/" {
        url.set_path("/v1/traces");
    }
    Ok(url.to_string())
}

/// `30s`, `5m`, `2h`, `7d`, `1h 30m`…
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim()).map_err(|e| format!("invalid duration {value:?}: {e}"))
}

/// A duration within `[min, max]`; the message names the bound that was crossed.
fn parse_within(value: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let duration = parse_duration(value)?;
    if duration < min {
        return Err(format!("{:?} is shorter than the minimum of {}", value.trim(), human(min)));
    }
    if duration > max {
        return Err(format!("{:?} is longer than the maximum of {}", value.trim(), human(max)));
    }
    Ok(duration)
}

fn human(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// `--retention`: at least an hour, at most ten years.
pub fn parse_retention(value: &str) -> Result<Duration, String> {
    parse_within(value, MIN_RETENTION, MAX_KEEP)
}

/// `--payload-retention`: at least an hour (its upper bound is `--retention`, checked by
/// [`Config::check`]).
pub fn parse_payload_retention(value: &str) -> Result<Duration, String> {
    parse_within(value, MIN_RETENTION, MAX_KEEP)
}

/// `--retry-window`: at least a minute (a shorter one makes manual retry useless), at most ten
/// years.
pub fn parse_retry_window(value: &str) -> Result<Duration, String> {
    parse_within(value, MINUTE, MAX_KEEP)
}

/// `--shutdown-grace`: zero (stop at once) to an hour.
pub fn parse_shutdown_grace(value: &str) -> Result<Duration, String> {
    parse_within(value, Duration::ZERO, MAX_SHUTDOWN_GRACE)
}

/// `--header-timeout`, `--idle-timeout`, `--body-timeout`: 100ms to an hour.
pub fn parse_server_timeout(value: &str) -> Result<Duration, String> {
    parse_within(value, MIN_SERVER_TIMEOUT, MAX_SERVER_TIMEOUT)
}

/// A comma-separated list of delays, each positive and at most [`MAX_RETRY_DELAY`], e.g.
/// `5s,5m,30m,2h`.
pub fn parse_retry_schedule(value: &str) -> Result<Vec<Duration>, String> {
    let delays = value
        .split(',')
        .map(|item| match parse_duration(item)? {
            delay if delay.is_zero() => Err(format!("retry delay {item:?} must be positive")),
            delay if delay > MAX_RETRY_DELAY => Err(format!(
                "retry delay {:?} is longer than the maximum of {}",
                item.trim(),
                human(MAX_RETRY_DELAY)
            )),
            delay => Ok(delay),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() {
        return Err("retry schedule must list at least one delay".into());
    }
    Ok(delays)
}

impl Config {
    /// The circuit breaker's tuning.
    pub fn breaker(&self) -> crate::domain::circuit::Breaker {
        crate::domain::circuit::Breaker {
            threshold: self.circuit_threshold,
            first_cooldown_ms: i64::try_from(self.circuit_cooldown.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// A circuit's first cooldown: at least 1 second (a probe per second at most) and at most the
/// 10 minute ceiling of every cooldown.
pub fn parse_circuit_cooldown(value: &str) -> Result<Duration, String> {
    let cooldown = parse_duration(value)?;
    let ceiling = Duration::from_millis(crate::domain::circuit::COOLDOWN_MAX_MS.unsigned_abs());
    if cooldown < Duration::from_secs(1) || cooldown > ceiling {
        return Err(format!("circuit cooldown {value:?} must be between 1s and 10m"));
    }
    Ok(cooldown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_endpoints_get_the_traces_path_unless_they_name_one() {
        assert_eq!(
            parse_otlp_endpoint("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            parse_otlp_endpoint("https://otel.example.com/custom/traces").unwrap(),
            "https://otel.example.com/custom/traces"
        );
        assert!(parse_otlp_endpoint("grpc://127.0.0.1:4317").unwrap_err().contains("gRPC"));
        assert!(parse_otlp_endpoint("127.0.0.1:4318").is_err());
    }

    #[test]
    fn defaults_parse() {
        let config = Config::default();
        assert_eq!(config.retry_schedule.len(), 9);
        assert_eq!(config.retry_schedule[0], Duration::from_secs(5));
        assert_eq!(config.retry_window, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn public_urls_are_http_or_https_without_a_trailing_slash() {
        assert_eq!(
            parse_public_url("https://hooks.example.com/").unwrap(),
            "https://hooks.example.com"
        );
        assert_eq!(
            parse_public_url("http://10.0.0.5:8080/hooks/").unwrap(),
            "http://10.0.0.5:8080/hooks"
        );
        assert!(parse_public_url("hooks.example.com").is_err());
        assert!(parse_public_url("ftp://example.com").is_err());
        assert!(parse_public_url("https://example.com/?a=1").is_err());
    }

    #[test]
    fn retry_schedules_refuse_garbage_and_zero() {
        assert_eq!(
            parse_retry_schedule("100ms, 1s").unwrap(),
            vec![Duration::from_millis(100), Duration::from_secs(1)]
        );
        assert!(parse_retry_schedule("").is_err());
        assert!(parse_retry_schedule("5s,,5m").is_err());
        assert!(parse_retry_schedule("0s").is_err());
        assert!(parse_retry_schedule("soon").is_err());
        assert!(parse_retry_schedule("30d").is_ok());
        let error = parse_retry_schedule("5s,99999999999999h").unwrap_err();
        assert!(error.contains("maximum of 30days"), "{error}");
    }

    #[test]
    fn durations_out_of_their_range_are_refused_naming_the_bound() {
        assert!(parse_retention("0s").unwrap_err().contains("minimum of 1h"));
        assert!(parse_retention("99999999999999h").unwrap_err().contains("maximum of"));
        assert_eq!(parse_retention("30d"), Ok(DAY * 30));
        assert!(parse_payload_retention("59m").unwrap_err().contains("minimum of 1h"));
        let config =
            Config { retention: DAY * 10, payload_retention: Some(DAY * 11), ..Config::default() };
        let error = config.check().unwrap_err();
        assert!(error.contains("--payload-retention 11days is longer than --retention 10days"));
        let config = Config { payload_retention: Some(DAY * 7), ..config };
        assert_eq!((config.check(), config.payload_retention()), (Ok(()), DAY * 7));
        assert_eq!(Config::default().payload_retention(), DAY * 30);
        assert!(parse_retry_window("0s").unwrap_err().contains("minimum of 1m"));
        assert!(parse_retry_window("99999999999999h").is_err());
        assert_eq!(parse_shutdown_grace("0s"), Ok(Duration::ZERO));
        assert!(parse_shutdown_grace("99999999999999h").is_err());
        assert!(parse_server_timeout("0s").is_err());
        assert!(parse_server_timeout("2h").is_err());
        assert_eq!(parse_server_timeout("10s"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn every_default_is_within_its_own_range() {
        assert!(parse_retention(DEFAULT_RETENTION).is_ok());
        assert!(parse_retry_window(DEFAULT_RETRY_WINDOW).is_ok());
        assert!(parse_shutdown_grace(DEFAULT_SHUTDOWN_GRACE).is_ok());
        for timeout in [DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_BODY_TIMEOUT] {
            assert!(parse_server_timeout(timeout).is_ok());
        }
    }
}
