//! The OAuth 2.0 client-credentials grant (RFC 6749 §4.4) as a webhook's authorization: where
//! the token comes from and the client's credentials. The whole value is stored sealed, with the
//! other credentials (`auth_config`).

use serde::{Deserialize, Serialize};

use super::auth::CREDENTIAL_MAX;
use super::fields::{header_value, WebhookUrl};
use crate::domain::destination::Destinations;
use crate::domain::validation::FieldErrors;

/// A client of a token endpoint; every field checked when it was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2Client {
    /// An http(s) URL that obeys the destination rules, like `webhook_url`.
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// The request fields of the `oauth2` scheme, as given.
#[derive(Debug, Default, Clone, Copy)]
pub struct OAuth2Input<'a> {
    pub token_url: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub audience: Option<&'a str>,
}

impl OAuth2Input<'_> {
    pub fn is_given(&self) -> bool {
        self.token_url.is_some()
            || self.client_id.is_some()
            || self.client_secret.is_some()
            || self.scope.is_some()
            || self.audience.is_some()
    }
}

impl OAuth2Client {
    /// The client, or `None` with each problem recorded under its request field. `current` is
    /// the client stored before this change: its secret is kept when the request gives none (an
    /// edit of the scope need not repeat it), but only for the same token URL, so that nobody
    /// can send a stored secret somewhere new without knowing it.
    pub fn parse(
        input: &OAuth2Input<'_>,
        current: Option<&OAuth2Client>,
        destinations: &Destinations,
        errors: &mut FieldErrors,
    ) -> Option<Self> {
        const WHY: &str = "is required when authorization_scheme is oauth2";
        let token_url = match input.token_url {
            None => Err(WHY.to_string()),
            Some(url) => WebhookUrl::parse(url, destinations).map(|u| u.as_str().to_string()),
        };
        let token_url = errors.check("oauth2_token_url", token_url);
        let mut credential = |field: &str, value: Option<&str>| {
            let checked = match value {
                None => Err(WHY.to_string()),
                Some(value) => header_value(value, CREDENTIAL_MAX).map_err(|e| e.to_string()),
            };
            errors.check(field, checked)
        };
        let client_id = credential("oauth2_client_id", input.client_id);
        let kept_secret = current
            .filter(|current| token_url.as_deref() == Some(current.token_url.as_str()))
            .map(|current| current.client_secret.as_str());
        let client_secret = credential("oauth2_client_secret", input.client_secret.or(kept_secret));
        let mut optional = |field: &str, value: Option<&str>| match value.map(str::trim) {
            None | Some("") => Some(None),
            Some(value) => errors.check(field, header_value(value, CREDENTIAL_MAX).map(Some)),
        };
        let scope = optional("oauth2_scope", input.scope);
        let audience = optional("oauth2_audience", input.audience);
        Some(Self {
            token_url: token_url?,
            client_id: client_id?,
            client_secret: client_secret?,
            scope: scope?,
            audience: audience?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: OAuth2Input<'_>) -> Result<OAuth2Client, Vec<String>> {
        let mut errors = FieldErrors::default();
        let client = OAuth2Client::parse(&input, None, &Destinations::STRICT, &mut errors);
        client.ok_or_else(|| errors.into_map().into_keys().collect())
    }

    #[test]
    fn a_client_needs_a_token_url_an_id_and_a_secret() {
        let missing = parse(OAuth2Input::default()).unwrap_err();
        assert_eq!(missing, ["oauth2_client_id", "oauth2_client_secret", "oauth2_token_url"]);
        let client = parse(OAuth2Input {
            token_url: Some("https://auth.example.com/token"),
            client_id: Some("id"),
            client_secret: Some("secret"),
            scope: Some("webhooks.write"),
            audience: Some(" "),
        })
        .unwrap();
        assert_eq!(client.scope.as_deref(), Some("webhooks.write"));
        assert_eq!(client.audience, None, "a blank audience is none");
    }

    #[test]
    fn a_stored_secret_is_kept_for_the_same_token_url_only() {
        let stored = parse(OAuth2Input {
            token_url: Some("https://auth.example.com/token"),
            client_id: Some("id"),
            client_secret: Some("secret"),
            ..Default::default()
        })
        .unwrap();
        let mut errors = FieldErrors::default();
        let same = OAuth2Input {
            token_url: Some("https://auth.example.com/token"),
            client_id: Some("id"),
            scope: Some("more"),
            ..Default::default()
        };
        let kept = OAuth2Client::parse(&same, Some(&stored), &Destinations::STRICT, &mut errors);
        assert_eq!(kept.unwrap().client_secret, "secret");
        let moved = OAuth2Input { token_url: Some("https://elsewhere.example/token"), ..same };
        let moved = OAuth2Client::parse(&moved, Some(&stored), &Destinations::STRICT, &mut errors);
        assert_eq!(moved, None);
        assert!(errors.into_map().contains_key("oauth2_client_secret"));
    }

    #[test]
    fn a_token_url_obeys_the_destination_rules() {
        let refused = parse(OAuth2Input {
            token_url: Some("http://169.254.169.254/token"),
            client_id: Some("id"),
            client_secret: Some("secret"),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(refused, ["oauth2_token_url"]);
    }
}
