//! The values of a webhook's fields (SPEC §3 "Webhook fields"). Each type's only constructor from
//! outside input parses it, so a value that exists is valid.

use axum::http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::domain::catalog::EventCatalog;
use crate::domain::destination::Destinations;
use crate::domain::text;

pub const NAME_MAX: usize = 255;
pub const URL_MAX: usize = 500;
pub const SECRET_MAX: usize = 255;
pub const CUSTOM_HEADERS_MAX: usize = 20;
pub const HEADER_VALUE_MAX: usize = 1_000;

/// Headers webhookd sets itself; a custom header may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-webhook-signature",
    "x-webhook-event",
    "traceparent",
];

/// A name of an agent, webhook or organization: trimmed, 1–255 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(value: &str) -> Result<Self, String> {
        text::parse_trimmed(value, NAME_MAX).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name read back from the database, where only parsed names are written.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }
}

/// An absolute `http://` or `https://` URL with a host and no embedded credentials, at most 500
/// characters, that is a permitted destination (no private or loopback address unless the
/// server allows them, never this service itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(value: &str, destinations: &Destinations) -> Result<Self, String> {
        let value = text::parse_exact(value.trim(), URL_MAX)?;
        // The URL parser is lenient (it reads `http:///x` as `http://x/` and `\` as `/`); a
        // destination must be written plainly.
        let lower = value.to_ascii_lowercase();
        let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"));
        let Some(rest) = rest else {
            return Err("must start with http:// or https://".into());
        };
        if rest.is_empty() || rest.starts_with(['/', '\\', '?', '#']) {
            return Err("must have a host after http:// or https://".into());
        }
        let url = Url::parse(value).map_err(|e| format!("must be a valid URL ({e})"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err("must have a host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain credentials; use authorization_scheme basic".into());
        }
        destinations.check(&url)?;
        Ok(Self(value.to_string()))
    }

    /// A URL read back from the database, where only parsed URLs are written.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// At least one event type, each from the catalog or a wildcard (`*`: every type; `call.*`:
/// every type whose name starts with `call.`, including types added to the catalog later);
/// duplicates dropped, order kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EventTypes(Vec<String>);

impl EventTypes {
    pub fn parse(events: &[String], catalog: &EventCatalog) -> Result<Self, String> {
        if events.is_empty() {
            return Err("must contain at least 1 event".into());
        }
        let mut parsed: Vec<String> = Vec::with_capacity(events.len());
        for event in events {
            check_subscription(event, catalog)?;
            if !parsed.contains(event) {
                parsed.push(event.clone());
            }
        }
        Ok(Self(parsed))
    }

    /// The JSON array stored in the `events` column: a non-empty list of names. (The catalog is
    /// not consulted: types removed from `--extra-event-types` stay subscribed, harmlessly.)
    pub fn from_stored(json: &str) -> Result<Self, String> {
        let events: Vec<String> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if events.is_empty() {
            return Err("a webhook subscribes to no event".into());
        }
        Ok(Self(events))
    }

    /// Whether an event of this type reaches the webhook: named, or matched by a wildcard.
    pub fn contains(&self, event: &str) -> bool {
        self.0.iter().any(|pattern| subscription_matches(pattern, event))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn to_json(&self) -> String {
        serde_json::Value::from(self.0.clone()).to_string()
    }
}

/// Whether `pattern` (a type, `*` or `prefix.*`) covers the type `event`.
fn subscription_matches(pattern: &str, event: &str) -> bool {
    match pattern.strip_suffix('*') {
        None => pattern == event,
        Some(prefix) => prefix.is_empty() || event.starts_with(prefix),
    }
}

/// A type of the catalog, `*`, or `prefix.*` matching at least one type of the catalog (so a
/// typo is caught; types added later match it too).
fn check_subscription(event: &str, catalog: &EventCatalog) -> Result<(), String> {
    if event == "*" {
        return Ok(());
    }
    if let Some(prefix) = event.strip_suffix('*') {
        if !prefix.ends_with('.') || prefix.len() < 2 || prefix.contains('*') {
            return Err(format!(
                "{event:?} is not a valid wildcard: use \"*\" (every type) or a prefix ending in \
                 \".*\", e.g. \"call.*\""
            ));
        }
        if !catalog.names().any(|name| name.starts_with(prefix)) {
            return Err(format!(
                "{event:?} matches no event type; available: {}",
                catalog.listing()
            ));
        }
        return Ok(());
    }
    if event.contains('*') {
        return Err(format!(
            "{event:?} is not a valid wildcard: use \"*\" (every type) or a prefix ending in \
             \".*\", e.g. \"call.*\""
        ));
    }
    catalog.check(event)
}

/// An integer setting within a range, e.g. the timeout in seconds (5–120).
macro_rules! ranged {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr, $default:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name(u32);

        impl $name {
            pub const MIN: u32 = $min;
            pub const MAX: u32 = $max;
            pub const DEFAULT: Self = Self($default);
            pub const LARGEST: Self = Self($max);

            pub fn parse(value: i64) -> Result<Self, String> {
                u32::try_from(value)
                    .ok()
                    .filter(|v| (Self::MIN..=Self::MAX).contains(v))
                    .map(Self)
                    .ok_or_else(|| format!("must be between {} and {}", Self::MIN, Self::MAX))
            }

            /// A value read back from the database; out of range means a corrupt row.
            pub fn from_stored(value: i64) -> Result<Self, String> {
                Self::parse(value).map_err(|e| format!("{} {e}, found {value}", stringify!($name)))
            }

            pub fn get(self) -> u32 {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::DEFAULT
            }
        }
    };
}

ranged!(
    /// Seconds an attempt may take, 5–120 (default 30).
    Timeout, 5, 120, 30
);
ranged!(
    /// Automatic retries after a failed first attempt, 0–10 (default 3).
    MaxRetries, 0, 10, 3
);
ranged!(
    /// Deliveries per second to one webhook, summed over every node, 1–10000.
    RateLimit, 1, 10_000, 1
);
ranged!(
    /// Requests to one webhook in flight at once, over every node, 1–1000.
    MaxConcurrency, 1, 1_000, 1
);

impl Timeout {
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.0))
    }

    pub fn millis(self) -> i64 {
        i64::from(self.0) * 1_000
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Post,
    Put,
    Patch,
}

impl HttpMethod {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "POST" => Ok(Self::Post),
            "PUT" => Ok(Self::Put),
            "PATCH" => Ok(Self::Patch),
            _ => Err("must be one of POST, PUT, PATCH".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
        }
    }
}

/// How deliveries of one call are sequenced (SPEC §4 "Scheduling").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// Events go out as they come, several at once.
    #[default]
    None,
    /// A call's events go one at a time, in ingestion order.
    Call,
}

impl Ordering {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "call" => Ok(Self::Call),
            _ => Err("must be \"none\" or \"call\"".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Call => "call",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CustomHeader {
    /// Header name, e.g. `X-Team`.
    pub key: String,
    pub value: String,
}

/// At most 20 headers with valid, non-reserved, distinct names and printable values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct CustomHeaders(Vec<CustomHeader>);

impl CustomHeaders {
    pub fn parse(headers: &[CustomHeader]) -> Result<Self, String> {
        if headers.len() > CUSTOM_HEADERS_MAX {
            return Err(format!("must have at most {CUSTOM_HEADERS_MAX} headers"));
        }
        let mut seen = Vec::with_capacity(headers.len());
        for header in headers {
            header_name(&header.key).map_err(|e| e.to_string())?;
            let key = header.key.to_ascii_lowercase();
            if seen.contains(&key) {
                return Err(format!("{:?} appears more than once", header.key));
            }
            header_value(&header.value, HEADER_VALUE_MAX)
                .map_err(|e| format!("value of {:?} {e}", header.key))?;
            seen.push(key);
        }
        Ok(Self(headers.to_vec()))
    }

    /// The JSON array stored in the `custom_headers` column, checked like new input.
    pub fn from_stored(json: &str) -> Result<Self, String> {
        let headers: Vec<CustomHeader> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Self::parse(&headers)
    }

    pub fn as_slice(&self) -> &[CustomHeader] {
        &self.0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "[]".into())
    }
}

/// Why a header name cannot be a customer's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderNameError {
    #[error("{0:?} is not a valid header name")]
    Invalid(String),
    #[error("{0:?} is set by webhookd and cannot be overridden")]
    Reserved(String),
}

/// Why a header value cannot be sent. Its messages follow the field's name
/// (`auth_token must not be empty`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderValueError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} bytes")]
    TooLong { max: usize },
    #[error("must be printable ASCII without line breaks")]
    NotPrintable,
}

/// A header name a customer may set: valid, and not one webhookd sets itself.
pub fn header_name(name: &str) -> Result<String, HeaderNameError> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| HeaderNameError::Invalid(name.to_string()))?;
    if RESERVED_HEADERS.contains(&parsed.as_str()) {
        return Err(HeaderNameError::Reserved(name.to_string()));
    }
    Ok(name.to_string())
}

/// A header value: 1–`max` bytes of printable ASCII without line breaks.
pub fn header_value(value: &str, max: usize) -> Result<String, HeaderValueError> {
    if value.is_empty() {
        return Err(HeaderValueError::Empty);
    }
    if value.len() > max {
        return Err(HeaderValueError::TooLong { max });
    }
    HeaderValue::from_str(value).map_err(|_| HeaderValueError::NotPrintable)?;
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(value: &str) -> Result<WebhookUrl, String> {
        WebhookUrl::parse(value, &Destinations::new(true, []))
    }

    #[test]
    fn urls_must_be_plain_absolute_http_without_credentials() {
        assert!(url("https://example.com/hook").is_ok());
        assert!(url(" http://127.0.0.1:9000/x ").is_ok());
        for bad in [
            "ftp://example.com",
            "not a url",
            "https://user:pw@example.com",
            "http:///x",
            "http:\\\\example.com",
            "https://",
            "http://exa\0mple.com",
        ] {
            assert!(url(bad).is_err(), "{bad}");
        }
        assert!(url(&format!("https://example.com/{}", "a".repeat(500))).is_err());
    }

    #[test]
    fn private_destinations_name_the_flag_that_permits_them() {
        let error =
            WebhookUrl::parse("http://127.0.0.1:9000/x", &Destinations::default()).unwrap_err();
        assert!(error.contains("--allow-private-targets"), "{error}");
    }

    #[test]
    fn a_url_of_this_service_itself_is_refused_even_where_private_addresses_are_allowed() {
        let own = Destinations::new(true, ["http://127.0.0.1:8080"]);
        let error =
            WebhookUrl::parse("http://127.0.0.1:8080/api/v1/agents/a/events", &own).unwrap_err();
        assert!(error.contains("this webhookd itself"), "{error}");
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/x", &own).is_ok());
    }

    #[test]
    fn events_must_be_known_and_are_deduplicated() {
        let catalog = EventCatalog::default();
        let events = vec!["call.ended".to_string(), "call.ended".to_string()];
        assert_eq!(EventTypes::parse(&events, &catalog).unwrap().as_slice(), ["call.ended"]);
        assert!(EventTypes::parse(&[], &catalog).is_err());
        let error = EventTypes::parse(&["nope".to_string()], &catalog).unwrap_err();
        assert!(error.contains("call.completed"), "the catalog is listed: {error}");
        assert!(EventTypes::from_stored("[]").is_err());
        assert!(EventTypes::from_stored("not json").is_err());
    }

    #[test]
    fn wildcards_cover_every_type_or_a_prefix_and_must_match_the_catalog() {
        let catalog = EventCatalog::default();
        let parse = |events: &[&str]| {
            let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
            EventTypes::parse(&events, &catalog)
        };
        let calls = parse(&["call.*"]).unwrap();
        assert!(calls.contains("call.completed"));
        assert!(calls.contains("call.added.later"), "types added later match");
        assert!(!calls.contains("recording.ready"));
        assert!(!calls.contains("call"), "the prefix includes its dot");
        let all = parse(&["*"]).unwrap();
        assert!(all.contains("recording.ready") && all.contains("anything"));
        assert!(parse(&["sms.*"]).unwrap_err().contains("matches no event type"));
        for bad in ["call*", "*.ended", "call.*.x", ".*", "**"] {
            assert!(parse(&[bad]).unwrap_err().contains("not a valid wildcard"), "{bad}");
        }
    }

    #[test]
    fn ranged_settings_refuse_out_of_range_values() {
        assert_eq!(Timeout::parse(30).unwrap().get(), 30);
        assert!(Timeout::parse(4).is_err());
        assert!(Timeout::parse(121).is_err());
        assert!(MaxRetries::parse(-1).is_err());
        assert!(RateLimit::parse(0).is_err());
        assert!(RateLimit::parse(10_001).is_err());
        assert!(MaxConcurrency::parse(1_000).is_ok());
        assert!(Timeout::from_stored(0).unwrap_err().contains("Timeout"));
    }

    #[test]
    fn header_errors_keep_the_messages_the_api_answers_with() {
        let name = |name: &str| header_name(name).unwrap_err().to_string();
        assert_eq!(name("bad name"), "\"bad name\" is not a valid header name");
        assert_eq!(name("Host"), "\"Host\" is set by webhookd and cannot be overridden");
        let value = |value: &str| header_value(value, 3).unwrap_err().to_string();
        assert_eq!(value(""), "must not be empty");
        assert_eq!(value("abcd"), "must be at most 3 bytes");
        assert_eq!(value("a\nb"), "must be printable ASCII without line breaks");
        assert_eq!(header_name("X-Team").as_deref(), Ok("X-Team"));
    }

    #[test]
    fn custom_headers_refuse_reserved_invalid_and_repeated_names() {
        let header = |key: &str, value: &str| CustomHeader { key: key.into(), value: value.into() };
        assert!(CustomHeaders::parse(&[header("X-Team", "a")]).is_ok());
        assert!(CustomHeaders::parse(&[header("webhook-signature", "a")]).is_err());
        assert!(CustomHeaders::parse(&[header("traceparent", "a")]).is_err());
        assert!(CustomHeaders::parse(&[header("bad name", "a")]).is_err());
        assert!(CustomHeaders::parse(&[header("X-A", "line\nbreak")]).is_err());
        assert!(CustomHeaders::parse(&[header("X-A", "1"), header("x-a", "2")]).is_err());
        let many: Vec<_> = (0..21).map(|i| header(&format!("X-{i}"), "v")).collect();
        assert!(CustomHeaders::parse(&many).is_err());
    }
}
