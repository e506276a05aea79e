//! A webhook's delivery settings (SPEC §3 "Webhook fields"), parsed and validated.

use axum::http::{HeaderName, HeaderValue};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use url::Url;

use super::catalog::EventCatalog;
pub use super::validation::{bounded_text, in_range, FieldErrors};

pub const NAME_MAX: usize = 255;
pub const URL_MAX: usize = 500;
pub const SECRET_MAX: usize = 255;
pub const CREDENTIAL_MAX: usize = 1_000;
pub const TIMEOUT_MIN: i64 = 5;
pub const TIMEOUT_MAX: i64 = 120;
pub const TIMEOUT_DEFAULT: i64 = 30;
pub const MAX_RETRIES_MAX: i64 = 10;
pub const MAX_RETRIES_DEFAULT: i64 = 3;
pub const CUSTOM_HEADERS_MAX: usize = 20;
pub const HEADER_VALUE_MAX: usize = 1_000;
pub const API_KEY_HEADER_DEFAULT: &str = "X-API-Key";

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
];

/// Everything that decides how one webhook is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub timeout_secs: i64,
    pub max_retries: i64,
    pub enabled: bool,
    pub http_method: HttpMethod,
    pub authorization: Authorization,
    pub custom_headers: Vec<CustomHeader>,
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

/// How outgoing requests authenticate to the customer's endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum Authorization {
    None,
    /// `Authorization: Bearer <token>`
    Bearer {
        token: String,
    },
    /// `Authorization: Basic base64(username:password)`
    Basic {
        username: String,
        password: String,
    },
    /// `<header>: <key>`
    ApiKey {
        header: String,
        key: String,
    },
    /// `Authorization: <value>`, verbatim
    Custom {
        value: String,
    },
}

/// The request fields that carry an authorization scheme and its credentials.
#[derive(Debug, Default, Clone)]
pub struct AuthorizationInput<'a> {
    pub scheme: &'a str,
    pub token: Option<&'a str>,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub header_name: Option<&'a str>,
}

impl Authorization {
    pub const SCHEMES: [&'static str; 5] = ["none", "bearer", "basic", "api_key", "custom"];

    pub fn scheme(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Bearer { .. } => "bearer",
            Self::Basic { .. } => "basic",
            Self::ApiKey { .. } => "api_key",
            Self::Custom { .. } => "custom",
        }
    }

    /// Validates a scheme with its credentials; problems are recorded per request field.
    pub fn parse(input: &AuthorizationInput<'_>, errors: &mut FieldErrors) -> Option<Self> {
        let mut required = |field: &str, value: Option<&str>| -> Option<String> {
            let checked = match value {
                None => Err(format!("is required when authorization_scheme is {}", input.scheme)),
                Some(value) => header_value(value, CREDENTIAL_MAX),
            };
            errors.check(field, checked)
        };
        let auth = match input.scheme {
            "none" => Some(Self::None),
            "bearer" => required("auth_token", input.token).map(|token| Self::Bearer { token }),
            "custom" => required("auth_token", input.token).map(|value| Self::Custom { value }),
            "basic" => {
                let username = required("auth_username", input.username);
                let password = required("auth_password", input.password);
                if username.as_deref().is_some_and(|u| u.contains(':')) {
                    errors.add("auth_username", "must not contain ':'");
                    return None;
                }
                Some(Self::Basic { username: username?, password: password? })
            }
            "api_key" => {
                let key = required("auth_token", input.token);
                let header = input.header_name.unwrap_or(API_KEY_HEADER_DEFAULT);
                let header = errors.check("auth_header_name", custom_header_name(header));
                Some(Self::ApiKey { header: header?, key: key? })
            }
            _ => {
                let schemes = Self::SCHEMES.join(", ");
                errors.add("authorization_scheme", format!("must be one of {schemes}"));
                None
            }
        };
        auth
    }

    /// The header this scheme adds to every request, if any.
    pub fn header(&self) -> Option<(String, String)> {
        match self {
            Self::None => None,
            Self::Bearer { token } => Some(("authorization".into(), format!("Bearer {token}"))),
            Self::Basic { username, password } => {
                let encoded = STANDARD.encode(format!("{username}:{password}"));
                Some(("authorization".into(), format!("Basic {encoded}")))
            }
            Self::ApiKey { header, key } => Some((header.clone(), key.clone())),
            Self::Custom { value } => Some(("authorization".into(), value.clone())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CustomHeader {
    /// Header name, e.g. `X-Team`.
    pub key: String,
    pub value: String,
}

pub fn parse_name(value: &str) -> Result<String, String> {
    bounded_text(value, NAME_MAX)
}

/// An absolute http(s) URL with a host and no embedded credentials, at most 500 characters.
pub fn parse_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.chars().count() > URL_MAX {
        return Err(format!("must be at most {URL_MAX} characters"));
    }
    let url = Url::parse(value).map_err(|e| format!("must be a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must use http or https".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must have a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials; use authorization_scheme basic".into());
    }
    Ok(value.to_string())
}

/// At least one event, each from the catalog; duplicates are dropped, order kept.
pub fn parse_events(events: &[String], catalog: &EventCatalog) -> Result<Vec<String>, String> {
    if events.is_empty() {
        return Err("must contain at least 1 event".into());
    }
    let mut parsed: Vec<String> = Vec::with_capacity(events.len());
    for event in events {
        if !catalog.contains(event) {
            return Err(format!("contains an unknown event type: {event:?}"));
        }
        if !parsed.contains(event) {
            parsed.push(event.clone());
        }
    }
    Ok(parsed)
}

pub fn parse_timeout(value: i64) -> Result<i64, String> {
    in_range(value, TIMEOUT_MIN, TIMEOUT_MAX)
}

pub fn parse_max_retries(value: i64) -> Result<i64, String> {
    in_range(value, 0, MAX_RETRIES_MAX)
}

/// A customer-supplied signing secret: 1–255 characters without surrounding whitespace.
pub fn parse_secret(value: &str) -> Result<String, String> {
    if value != value.trim() {
        return Err("must not start or end with whitespace".into());
    }
    bounded_text(value, SECRET_MAX)
}

fn custom_header_name(name: &str) -> Result<String, String> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    if RESERVED_HEADERS.contains(&parsed.as_str()) {
        return Err(format!("{name:?} is set by webhookd and cannot be overridden"));
    }
    Ok(name.to_string())
}

fn header_value(value: &str, max: usize) -> Result<String, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > max {
        return Err(format!("must be at most {max} bytes"));
    }
    HeaderValue::from_str(value)
        .map_err(|_| "must be printable ASCII without line breaks".to_string())?;
    Ok(value.to_string())
}

/// At most 20 headers with valid, non-reserved, distinct names and printable values.
pub fn parse_custom_headers(headers: &[CustomHeader]) -> Result<Vec<CustomHeader>, String> {
    if headers.len() > CUSTOM_HEADERS_MAX {
        return Err(format!("must have at most {CUSTOM_HEADERS_MAX} headers"));
    }
    let mut seen = Vec::with_capacity(headers.len());
    for header in headers {
        custom_header_name(&header.key)?;
        let key = header.key.to_ascii_lowercase();
        if seen.contains(&key) {
            return Err(format!("{:?} appears more than once", header.key));
        }
        header_value(&header.value, HEADER_VALUE_MAX)
            .map_err(|e| format!("value of {:?} {e}", header.key))?;
        seen.push(key);
    }
    Ok(headers.to_vec())
}

/// Checks that hold across fields once each field is valid on its own.
pub fn check_combination(settings: &WebhookSettings, errors: &mut FieldErrors) {
    let sets_authorization_header =
        settings.custom_headers.iter().any(|h| h.key.eq_ignore_ascii_case("authorization"));
    let scheme_header = settings.authorization.header().map(|(name, _)| name.to_ascii_lowercase());
    if let Some(scheme_header) = scheme_header {
        let clash =
            settings.custom_headers.iter().any(|h| h.key.to_ascii_lowercase() == scheme_header);
        if clash || (sets_authorization_header && scheme_header == "authorization") {
            errors.add(
                "custom_headers",
                format!("{scheme_header:?} is already set by authorization_scheme"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_http_without_credentials() {
        assert!(parse_url("https://example.com/hook").is_ok());
        assert!(parse_url("http://127.0.0.1:9000/x").is_ok());
        assert!(parse_url("ftp://example.com").is_err());
        assert!(parse_url("not a url").is_err());
        assert!(parse_url("https://user:pw@example.com").is_err());
        assert!(parse_url(&format!("https://example.com/{}", "a".repeat(500))).is_err());
    }

    #[test]
    fn events_must_be_known_and_are_deduplicated() {
        let catalog = EventCatalog::default();
        let events = vec!["call.ended".to_string(), "call.ended".to_string()];
        assert_eq!(parse_events(&events, &catalog).unwrap(), vec!["call.ended"]);
        assert!(parse_events(&[], &catalog).is_err());
        assert!(parse_events(&["nope".to_string()], &catalog).is_err());
    }

    #[test]
    fn authorization_schemes_need_their_credentials() {
        let mut errors = FieldErrors::default();
        let input = AuthorizationInput { scheme: "bearer", ..Default::default() };
        assert_eq!(Authorization::parse(&input, &mut errors), None);
        assert!(errors.into_map().contains_key("auth_token"));

        let mut errors = FieldErrors::default();
        let input = AuthorizationInput {
            scheme: "basic",
            username: Some("u"),
            password: Some("p"),
            ..Default::default()
        };
        let basic = Authorization::parse(&input, &mut errors).unwrap();
        assert_eq!(basic.header().unwrap().1, "Basic dTpw");

        let mut errors = FieldErrors::default();
        let input =
            AuthorizationInput { scheme: "api_key", token: Some("k"), ..Default::default() };
        let api_key = Authorization::parse(&input, &mut errors).unwrap();
        assert_eq!(api_key.header().unwrap(), ("X-API-Key".into(), "k".into()));

        let mut errors = FieldErrors::default();
        let input = AuthorizationInput { scheme: "magic", ..Default::default() };
        assert_eq!(Authorization::parse(&input, &mut errors), None);
        assert!(errors.into_map().contains_key("authorization_scheme"));
    }

    #[test]
    fn custom_headers_refuse_reserved_invalid_and_repeated_names() {
        let header = |key: &str, value: &str| CustomHeader { key: key.into(), value: value.into() };
        assert!(parse_custom_headers(&[header("X-Team", "a")]).is_ok());
        assert!(parse_custom_headers(&[header("webhook-signature", "a")]).is_err());
        assert!(parse_custom_headers(&[header("bad name", "a")]).is_err());
        assert!(parse_custom_headers(&[header("X-A", "line\nbreak")]).is_err());
        assert!(parse_custom_headers(&[header("X-A", "1"), header("x-a", "2")]).is_err());
        let many: Vec<_> = (0..21).map(|i| header(&format!("X-{i}"), "v")).collect();
        assert!(parse_custom_headers(&many).is_err());
    }
}
