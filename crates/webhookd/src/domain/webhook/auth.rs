//! How outgoing requests authenticate to a customer's endpoint (`authorization_scheme` and its
//! credentials).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::fields::{header_name, header_value};
use super::oauth2::{OAuth2Client, OAuth2Input};
use crate::domain::destination::Destinations;
use crate::domain::validation::FieldErrors;

pub const CREDENTIAL_MAX: usize = 1_000;
pub const API_KEY_HEADER_DEFAULT: &str = "X-API-Key";

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
    /// `Authorization: Bearer <token>`, the token fetched with the client-credentials grant.
    #[serde(rename = "oauth2")]
    OAuth2(OAuth2Client),
}

/// The request fields that carry an authorization scheme and its credentials.
#[derive(Debug, Default, Clone)]
pub struct AuthorizationInput<'a> {
    pub scheme: &'a str,
    pub token: Option<&'a str>,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub header_name: Option<&'a str>,
    pub oauth2: OAuth2Input<'a>,
}

impl AuthorizationInput<'_> {
    pub fn has_credentials(&self) -> bool {
        self.token.is_some()
            || self.username.is_some()
            || self.password.is_some()
            || self.header_name.is_some()
            || self.oauth2.is_given()
    }
}

impl Authorization {
    pub const SCHEMES: [&'static str; 6] =
        ["none", "bearer", "basic", "api_key", "custom", "oauth2"];

    /// The OAuth2 client, when this is the `oauth2` scheme.
    pub fn oauth2(&self) -> Option<&OAuth2Client> {
        match self {
            Self::OAuth2(client) => Some(client),
            _ => None,
        }
    }

    pub fn scheme(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Bearer { .. } => "bearer",
            Self::Basic { .. } => "basic",
            Self::ApiKey { .. } => "api_key",
            Self::Custom { .. } => "custom",
            Self::OAuth2(_) => "oauth2",
        }
    }

    /// A scheme with its credentials; problems are recorded per request field. `current` is the
    /// webhook's authorization before this change: an `oauth2` change without a new client
    /// secret keeps the stored one.
    pub fn parse(
        input: &AuthorizationInput<'_>,
        current: Option<&Authorization>,
        destinations: &Destinations,
        errors: &mut FieldErrors,
    ) -> Option<Self> {
        let mut required = |field: &str, value: Option<&str>| -> Option<String> {
            let checked = match value {
                None => Err(format!("is required when authorization_scheme is {}", input.scheme)),
                Some(value) => header_value(value, CREDENTIAL_MAX).map_err(|e| e.to_string()),
            };
            errors.check(field, checked)
        };
        match input.scheme {
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
                let header = errors.check("auth_header_name", header_name(header));
                Some(Self::ApiKey { header: header?, key: key? })
            }
            "oauth2" => {
                let current = current.and_then(Self::oauth2);
                OAuth2Client::parse(&input.oauth2, current, destinations, errors).map(Self::OAuth2)
            }
            _ => {
                let schemes = Self::SCHEMES.join(", ");
                errors.add("authorization_scheme", format!("must be one of {schemes}"));
                None
            }
        }
    }

    /// The name of the header this scheme sets, lowercase, if any.
    pub fn header_name(&self) -> Option<String> {
        match self {
            Self::ApiKey { header, .. } => Some(header.to_ascii_lowercase()),
            Self::None => None,
            _ => Some("authorization".into()),
        }
    }

    /// The header this scheme adds to every request, if its value is known before the request
    /// (`oauth2`'s token is fetched when it is sent, `dispatch::oauth2`).
    pub fn header(&self) -> Option<(String, String)> {
        match self {
            Self::None | Self::OAuth2(_) => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_schemes_need_their_credentials() {
        let mut errors = FieldErrors::default();
        let input = AuthorizationInput { scheme: "bearer", ..Default::default() };
        assert_eq!(Authorization::parse(&input, None, &Destinations::STRICT, &mut errors), None);
        assert!(errors.into_map().contains_key("auth_token"));

        let mut errors = FieldErrors::default();
        let input = AuthorizationInput {
            scheme: "basic",
            username: Some("u"),
            password: Some("p"),
            ..Default::default()
        };
        let basic = Authorization::parse(&input, None, &Destinations::STRICT, &mut errors).unwrap();
        assert_eq!(basic.header().unwrap().1, "Basic dTpw");

        let mut errors = FieldErrors::default();
        let input =
            AuthorizationInput { scheme: "api_key", token: Some("k"), ..Default::default() };
        let api_key =
            Authorization::parse(&input, None, &Destinations::STRICT, &mut errors).unwrap();
        assert_eq!(api_key.header().unwrap(), ("X-API-Key".into(), "k".into()));

        let mut errors = FieldErrors::default();
        let input = AuthorizationInput { scheme: "magic", ..Default::default() };
        assert_eq!(Authorization::parse(&input, None, &Destinations::STRICT, &mut errors), None);
        assert!(errors.into_map().contains_key("authorization_scheme"));
    }
}
