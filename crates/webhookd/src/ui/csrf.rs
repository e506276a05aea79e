//! CSRF protection: every state-changing form carries the session's synchronizer token in a
//! hidden `csrf` field, and a POST is refused with a 403 page unless the field matches the token
//! stored with the session (compared in constant time). The cookie's `SameSite=Strict` already
//! keeps other sites' forms from riding the session; the token does not rely on the browser.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use subtle::ConstantTimeEq;

use super::error::UiError;
use super::session::Session;
use crate::api::error::ApiError;
use crate::api::AppState;

/// The fields of a submitted form, in order, as text.
#[derive(Debug, Default, Clone)]
pub struct FormFields(Vec<(String, String)>);

impl FormFields {
    pub fn parse(body: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`, if the form sent it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The first value of `name` unless it is missing or blank.
    pub fn filled(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|value| !value.trim().is_empty())
    }

    /// Every value of `name` (checkboxes, repeated rows).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str()).collect()
    }
}

/// Whether `given` is `expected`, in time independent of where they differ.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// A form posted by a signed-in session with that session's CSRF token.
pub struct CsrfForm {
    pub session: Session,
    pub fields: FormFields,
}

impl FromRequest<AppState> for CsrfForm {
    type Rejection = UiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, UiError> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let request = Request::from_parts(parts, body);
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|_| UiError::Api(ApiError::PayloadTooLarge))?;
        let fields = FormFields::parse(&body);
        if !tokens_match(fields.get("csrf").unwrap_or_default(), session.csrf_token()) {
            return Err(UiError::Csrf);
        }
        Ok(CsrfForm { session, fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abd", "abc"));
        assert!(!tokens_match("ab", "abc"));
        assert!(!tokens_match("", ""));
    }

    #[test]
    fn form_fields_keep_repeated_names_in_order() {
        let fields = FormFields::parse(b"events=a&x=%3Cb%3E&events=c&blank=+");
        assert_eq!(fields.all("events"), ["a", "c"]);
        assert_eq!(fields.get("x"), Some("<b>"));
        assert_eq!(fields.filled("blank"), None);
    }
}
