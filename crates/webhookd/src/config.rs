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

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// Permit loopback/private destination addresses (off by default).
    pub allow_private_targets: bool,
    /// Delay before retry n (the last one repeats).
    pub retry_schedule: Vec<Duration>,
    /// How old a log may be and still be retried by hand.
    pub retry_window: Duration,
    /// How long logs, attempts and event payloads are kept.
    pub retention: Duration,
    pub run_api: bool,
    pub run_worker: bool,
    /// Event types added to the built-in catalog, `name` or `name=description`.
    pub extra_event_types: Vec<String>,
    /// Delivery attempts in flight at once on this node.
    pub concurrency: usize,
    /// On shutdown, how long attempts in flight may take to finish.
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("default listen address parses"),
            database_url: DEFAULT_DATABASE.into(),
            allow_private_targets: false,
            retry_schedule: parse_retry_schedule(DEFAULT_RETRY_SCHEDULE)
                .expect("default retry schedule parses"),
            retry_window: parse_duration(DEFAULT_RETRY_WINDOW).expect("default window parses"),
            retention: parse_duration(DEFAULT_RETENTION).expect("default retention parses"),
            run_api: true,
            run_worker: true,
            extra_event_types: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            shutdown_grace: Duration::from_secs(30),
            rate_limit: DEFAULT_RATE_LIMIT,
            secret_key: None,
            circuit_threshold: DEFAULT_CIRCUIT_THRESHOLD,
            circuit_cooldown: parse_duration(DEFAULT_CIRCUIT_COOLDOWN)
                .expect("default cooldown parses"),
            public_url: None,
        }
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

/// `30s`, `5m`, `2h`, `7d`, `1h 30m`…
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim()).map_err(|e| format!("invalid duration {value:?}: {e}"))
}

/// A comma-separated list of positive durations, e.g. `5s,5m,30m,2h`.
pub fn parse_retry_schedule(value: &str) -> Result<Vec<Duration>, String> {
    let delays = value
        .split(',')
        .map(|item| match parse_duration(item)? {
            delay if delay.is_zero() => Err(format!("retry delay {item:?} must be positive")),
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
    }
}
