//! A webhook's delivery settings (SPEC §3 "Webhook fields"): the typed values, and how a create
//! or a partial update turns request fields into settings.

mod auth;
mod fields;
mod oauth2;
mod tls;

pub use auth::{Authorization, AuthorizationInput, API_KEY_HEADER_DEFAULT, CREDENTIAL_MAX};
pub use fields::{
    header_name, header_value, CustomHeader, CustomHeaders, EventTypes, HeaderNameError,
    HeaderValueError, HttpMethod, MaxConcurrency, MaxRetries, Name, Ordering, RateLimit, Timeout,
    WebhookUrl, NAME_MAX, SECRET_MAX, URL_MAX,
};
pub use oauth2::{OAuth2Client, OAuth2Input};
pub use tls::{ClientIdentity, TlsInput, TlsSettings, TrustedCa};

use super::catalog::EventCatalog;
use super::destination::Destinations;
use super::filter::Filter;
use super::secrets::SigningSecret;
use super::validation::FieldErrors;

/// Everything that decides how one webhook is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    pub name: Name,
    pub url: WebhookUrl,
    pub events: EventTypes,
    pub timeout: Timeout,
    pub max_retries: MaxRetries,
    pub enabled: bool,
    pub http_method: HttpMethod,
    pub authorization: Authorization,
    pub custom_headers: CustomHeaders,
    /// Deliveries per second over every node; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Requests in flight over every node; `None`: adaptive.
    pub max_concurrency: Option<MaxConcurrency>,
    pub ordering: Ordering,
    /// Which subscribed events it receives, by their `data`; `None`: all of them.
    pub filter: Option<Filter>,
    /// A client certificate to present and a CA to trust (mutual TLS, private PKI).
    pub tls: TlsSettings,
}

/// The fields of a create or update request as the client sent them; `None` means "not given".
/// The API's JSON body and the dashboard's form both arrive here.
#[derive(Debug, Default, Clone)]
pub struct WebhookChanges<'a> {
    pub name: Option<&'a str>,
    pub webhook_url: Option<&'a str>,
    pub webhook_secret: Option<&'a str>,
    pub events: Option<&'a [String]>,
    pub timeout: Option<i64>,
    pub max_retries: Option<i64>,
    pub enabled: Option<bool>,
    pub http_method: Option<&'a str>,
    /// Present when `authorization_scheme` was given (credentials come with it).
    pub authorization: Option<AuthorizationInput<'a>>,
    /// Credentials were given without `authorization_scheme`.
    pub credentials_without_scheme: bool,
    pub custom_headers: Option<&'a [CustomHeader]>,
    /// `Some(None)`: set to null (no limit).
    pub rate_limit: Option<Option<i64>>,
    /// `Some(None)`: set to null (adaptive).
    pub max_concurrency: Option<Option<i64>>,
    pub ordering: Option<&'a str>,
    /// `Some(None)`: set to null (no filter).
    pub filter: Option<Option<&'a serde_json::Value>>,
    pub tls: TlsInput<'a>,
}

/// Parsed changes: the resulting settings and, when one was given, a new signing secret.
#[derive(Debug, Clone)]
pub struct Changed {
    pub settings: WebhookSettings,
    pub secret: Option<SigningSecret>,
}

/// Where parsing takes its context from.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub catalog: &'a EventCatalog,
    pub destinations: &'a Destinations,
}

impl WebhookSettings {
    /// Settings from `changes` over `base` (the current settings on update; `None` on create,
    /// where `name`, `webhook_url` and `events` are required and the rest take their defaults).
    /// Every problem is reported, per field.
    pub fn apply(
        base: Option<&WebhookSettings>,
        changes: &WebhookChanges<'_>,
        context: Context<'_>,
    ) -> Result<Changed, FieldErrors> {
        let mut errors = FieldErrors::default();
        let e = &mut errors;
        let name = given_or(e, "name", changes.name.map(Name::parse), base.map(|b| b.name.clone()));
        let url = given_or(
            e,
            "webhook_url",
            changes.webhook_url.map(|url| WebhookUrl::parse(url, context.destinations)),
            base.map(|b| b.url.clone()),
        );
        let events = given_or(
            e,
            "events",
            changes.events.map(|events| EventTypes::parse(events, context.catalog)),
            base.map(|b| b.events.clone()),
        );
        let timeout = given_or(
            e,
            "timeout",
            changes.timeout.map(Timeout::parse),
            Some(base.map_or(Timeout::DEFAULT, |b| b.timeout)),
        );
        let max_retries = given_or(
            e,
            "max_retries",
            changes.max_retries.map(MaxRetries::parse),
            Some(base.map_or(MaxRetries::DEFAULT, |b| b.max_retries)),
        );
        let http_method = given_or(
            e,
            "http_method",
            changes.http_method.map(HttpMethod::parse),
            Some(base.map_or(HttpMethod::Post, |b| b.http_method)),
        );
        let custom_headers = given_or(
            e,
            "custom_headers",
            changes.custom_headers.map(CustomHeaders::parse),
            Some(base.map(|b| b.custom_headers.clone()).unwrap_or_default()),
        );
        let rate_limit = given_or(
            e,
            "rate_limit",
            changes.rate_limit.map(|limit| limit.map(RateLimit::parse).transpose()),
            Some(base.and_then(|b| b.rate_limit)),
        );
        let max_concurrency = given_or(
            e,
            "max_concurrency",
            changes.max_concurrency.map(|cap| cap.map(MaxConcurrency::parse).transpose()),
            Some(base.and_then(|b| b.max_concurrency)),
        );
        let ordering = given_or(
            e,
            "ordering",
            changes.ordering.map(Ordering::parse),
            Some(base.map(|b| b.ordering).unwrap_or_default()),
        );
        let authorization = match &changes.authorization {
            Some(input) => {
                Authorization::parse(input, base.map(|b| &b.authorization), context.destinations, e)
            }
            None if changes.credentials_without_scheme => {
                e.add("authorization_scheme", "is required when credentials are given");
                None
            }
            None => Some(base.map_or(Authorization::None, |b| b.authorization.clone())),
        };
        let secret = changes
            .webhook_secret
            .and_then(|secret| e.check("webhook_secret", SigningSecret::parse(secret)));
        let enabled = changes.enabled.or(base.map(|b| b.enabled)).unwrap_or(true);
        let filter = match changes.filter {
            None => Some(base.and_then(|b| b.filter.clone())),
            Some(None) => Some(None),
            Some(Some(value)) => match Filter::parse(value) {
                Ok(filter) => Some(Some(filter)),
                Err(error) => {
                    e.add(error.path, error.message);
                    None
                }
            },
        };
        let tls =
            TlsSettings::apply(&base.map(|b| b.tls.clone()).unwrap_or_default(), &changes.tls, e);
        let (
            Some(name),
            Some(url),
            Some(events),
            Some(timeout),
            Some(max_retries),
            Some(http_method),
            Some(authorization),
            Some(custom_headers),
            Some(rate_limit),
            Some(max_concurrency),
            Some(ordering),
            Some(filter),
            Some(tls),
        ) = (
            name,
            url,
            events,
            timeout,
            max_retries,
            http_method,
            authorization,
            custom_headers,
            rate_limit,
            max_concurrency,
            ordering,
            filter,
            tls,
        )
        else {
            return Err(errors);
        };
        let settings = WebhookSettings {
            name,
            url,
            events,
            timeout,
            max_retries,
            enabled,
            http_method,
            authorization,
            custom_headers,
            rate_limit,
            max_concurrency,
            ordering,
            filter,
            tls,
        };
        settings.check_combination(&mut errors);
        errors.finish()?;
        Ok(Changed { settings, secret })
    }

    /// Checks that hold across fields once each field is valid on its own.
    fn check_combination(&self, errors: &mut FieldErrors) {
        let headers = self.custom_headers.as_slice();
        let sets_authorization_header =
            headers.iter().any(|h| h.key.eq_ignore_ascii_case("authorization"));
        let scheme_header = self.authorization.header_name();
        if let Some(scheme_header) = scheme_header {
            let clash = headers.iter().any(|h| h.key.to_ascii_lowercase() == scheme_header);
            if clash || (sets_authorization_header && scheme_header == "authorization") {
                errors.add(
                    "custom_headers",
                    format!("{scheme_header:?} is already set by authorization_scheme"),
                );
            }
        }
    }
}

/// A field's new value if given (checked), else its current value; `None` records "is required".
fn given_or<T>(
    errors: &mut FieldErrors,
    field: &str,
    given: Option<Result<T, String>>,
    current: Option<T>,
) -> Option<T> {
    match given {
        Some(result) => errors.check(field, result),
        None if current.is_none() => {
            errors.add(field, "is required");
            None
        }
        None => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static STRICT: Destinations = Destinations::STRICT;

    fn context(catalog: &EventCatalog) -> Context<'_> {
        Context { catalog, destinations: &STRICT }
    }

    fn created() -> WebhookSettings {
        let catalog = EventCatalog::default();
        let events = ["call.completed".to_string()];
        let changes = WebhookChanges {
            name: Some("CRM"),
            webhook_url: Some("https://example.com/hook"),
            events: Some(&events),
            ..Default::default()
        };
        WebhookSettings::apply(None, &changes, context(&catalog)).unwrap().settings
    }

    #[test]
    fn create_requires_name_url_and_events_and_defaults_the_rest() {
        let catalog = EventCatalog::default();
        let errors = WebhookSettings::apply(None, &WebhookChanges::default(), context(&catalog))
            .unwrap_err();
        let fields: Vec<String> = errors.into_map().into_keys().collect();
        assert_eq!(fields, ["events", "name", "webhook_url"]);
        let settings = created();
        assert_eq!(settings.timeout.get(), 30);
        assert_eq!(settings.max_retries.get(), 3);
        assert_eq!((settings.rate_limit, settings.max_concurrency), (None, None));
        assert_eq!(settings.ordering, Ordering::None);
    }

    #[test]
    fn an_update_changes_only_what_it_names_and_null_clears_a_limit() {
        let catalog = EventCatalog::default();
        let base = created();
        let limited = WebhookChanges { rate_limit: Some(Some(5)), ..Default::default() };
        let limited =
            WebhookSettings::apply(Some(&base), &limited, context(&catalog)).unwrap().settings;
        assert_eq!(limited.rate_limit.map(RateLimit::get), Some(5));
        assert_eq!(limited.name, base.name);
        let cleared = WebhookChanges { rate_limit: Some(None), ..Default::default() };
        let cleared =
            WebhookSettings::apply(Some(&limited), &cleared, context(&catalog)).unwrap().settings;
        assert_eq!(cleared.rate_limit, None);
    }

    #[test]
    fn a_filter_is_parsed_kept_by_updates_that_omit_it_and_cleared_by_null() {
        let catalog = EventCatalog::default();
        let value = serde_json::json!({"duration": {"$gte": 30}});
        let set = WebhookChanges { filter: Some(Some(&value)), ..Default::default() };
        let filtered =
            WebhookSettings::apply(Some(&created()), &set, context(&catalog)).unwrap().settings;
        assert_eq!(filtered.filter.as_ref().map(Filter::as_value), Some(&value));
        let renamed = WebhookChanges { name: Some("Other"), ..Default::default() };
        let renamed =
            WebhookSettings::apply(Some(&filtered), &renamed, context(&catalog)).unwrap().settings;
        assert_eq!(renamed.filter, filtered.filter);
        let cleared = WebhookChanges { filter: Some(None), ..Default::default() };
        let cleared =
            WebhookSettings::apply(Some(&renamed), &cleared, context(&catalog)).unwrap().settings;
        assert_eq!(cleared.filter, None);
        let bad = serde_json::json!({"duration": {"$gte": [1]}});
        let bad = WebhookChanges { filter: Some(Some(&bad)), ..Default::default() };
        let errors = WebhookSettings::apply(Some(&created()), &bad, context(&catalog))
            .unwrap_err()
            .into_map();
        assert!(errors.contains_key("filter.duration.$gte"), "{errors:?}");
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let catalog = EventCatalog::default();
        let changes = WebhookChanges {
            timeout: Some(1),
            max_concurrency: Some(Some(0)),
            ordering: Some("fifo"),
            webhook_secret: Some("whsec_!!!"),
            ..Default::default()
        };
        let errors = WebhookSettings::apply(Some(&created()), &changes, context(&catalog))
            .unwrap_err()
            .into_map();
        for field in ["timeout", "max_concurrency", "ordering", "webhook_secret"] {
            assert!(errors.contains_key(field), "{field}: {errors:?}");
        }
    }
}
