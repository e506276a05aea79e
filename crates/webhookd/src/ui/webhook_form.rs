//! Creating and editing a webhook from an HTML form. The form's fields are turned into the same
//! `WebhookChanges` the API's JSON body becomes, and saved by the API's own `create` / `update`,
//! so the rules and messages are the API's. Credentials and the secret are never filled back in.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::agents::find_agent;
use super::csrf::{CsrfForm, FormFields};
use super::error::UiError;
use super::logs::{chrome_for, find};
use super::request::{AgentPath, UiPath, WebhookPath};
use super::session::Session;
use super::sign_in::see_other;
use super::views::{render, render_with, Chrome};
use crate::api::error::ApiError;
use crate::api::webhooks::{create as create_webhook, update as update_webhook};
use crate::api::AppState;
use crate::domain::validation::FieldErrors;
use crate::domain::webhook::{
    AuthorizationInput, Context, CustomHeader, OAuth2Client, OAuth2Input, TlsInput, WebhookChanges,
};
use crate::domain::{Authorization, HttpMethod, WebhookSettings};
use crate::store::Agent;

/// Empty rows offered for new custom headers.
const SPARE_HEADER_ROWS: usize = 2;

/// What the form shows (never a credential or the secret).
pub struct FormValues {
    pub name: String,
    pub webhook_url: String,
    pub events: Vec<String>,
    pub timeout: String,
    pub max_retries: String,
    pub enabled: bool,
    pub http_method: String,
    pub authorization_scheme: String,
    pub auth_header_name: String,
    /// The `oauth2` client's fields, blank for other schemes (never its secret).
    pub oauth2_token_url: String,
    pub oauth2_client_id: String,
    pub oauth2_scope: String,
    pub oauth2_audience: String,
    /// Whether a client secret is stored: shown as "set" / "not set", the secret never.
    pub oauth2_secret_set: bool,
    /// The stored client certificate's subject and expiry (blank: none), and whether a CA is
    /// stored; PEM is never filled back in.
    pub tls_client_subject: String,
    pub tls_client_expires_at: String,
    pub tls_ca_set: bool,
    pub headers: Vec<(String, String)>,
    pub rate_limit: String,
    pub max_concurrency: String,
    pub ordering: String,
    /// The content filter as JSON text; blank: none.
    pub filter: String,
}

impl FormValues {
    fn new_webhook() -> Self {
        Self {
            name: String::new(),
            webhook_url: String::new(),
            events: Vec::new(),
            timeout: "30".into(),
            max_retries: "3".into(),
            enabled: true,
            http_method: "POST".into(),
            authorization_scheme: "none".into(),
            auth_header_name: String::new(),
            oauth2_token_url: String::new(),
            oauth2_client_id: String::new(),
            oauth2_scope: String::new(),
            oauth2_audience: String::new(),
            oauth2_secret_set: false,
            tls_client_subject: String::new(),
            tls_client_expires_at: String::new(),
            tls_ca_set: false,
            headers: Vec::new(),
            rate_limit: String::new(),
            max_concurrency: String::new(),
            ordering: "none".into(),
            filter: String::new(),
        }
    }

    fn of(settings: &WebhookSettings) -> Self {
        let auth_header_name = match &settings.authorization {
            Authorization::ApiKey { header, .. } => header.clone(),
            _ => String::new(),
        };
        let oauth2 = settings.authorization.oauth2();
        let oauth2_text = |field: fn(&OAuth2Client) -> Option<&str>| {
            oauth2.and_then(field).unwrap_or_default().to_string()
        };
        Self {
            name: settings.name.as_str().into(),
            webhook_url: settings.url.as_str().into(),
            events: settings.events.as_slice().to_vec(),
            timeout: settings.timeout.get().to_string(),
            max_retries: settings.max_retries.get().to_string(),
            enabled: settings.enabled,
            http_method: settings.http_method.as_str().into(),
            authorization_scheme: settings.authorization.scheme().into(),
            auth_header_name,
            oauth2_token_url: oauth2_text(|c| Some(&c.token_url)),
            oauth2_client_id: oauth2_text(|c| Some(&c.client_id)),
            oauth2_scope: oauth2_text(|c| c.scope.as_deref()),
            oauth2_audience: oauth2_text(|c| c.audience.as_deref()),
            oauth2_secret_set: oauth2.is_some(),
            tls_client_subject: settings
                .tls
                .client
                .as_ref()
                .map(|c| c.subject.clone())
                .unwrap_or_default(),
            tls_client_expires_at: settings
                .tls
                .client
                .as_ref()
                .map(|c| crate::domain::clock::format_ms(c.expires_at))
                .unwrap_or_default(),
            tls_ca_set: settings.tls.ca.is_some(),
            headers: settings
                .custom_headers
                .as_slice()
                .iter()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect(),
            rate_limit: settings.rate_limit.map(|l| l.get().to_string()).unwrap_or_default(),
            max_concurrency: settings
                .max_concurrency
                .map(|c| c.get().to_string())
                .unwrap_or_default(),
            ordering: settings.ordering.as_str().into(),
            filter: settings
                .filter
                .as_ref()
                .and_then(|f| serde_json::to_string_pretty(f.as_value()).ok())
                .unwrap_or_default(),
        }
    }

    /// The values as submitted, to show the form again with its errors.
    fn submitted(fields: &FormFields) -> Self {
        let get = |name: &str| fields.get(name).unwrap_or_default().to_string();
        Self {
            name: get("name"),
            webhook_url: get("webhook_url"),
            events: fields.all("events").into_iter().map(String::from).collect(),
            timeout: get("timeout"),
            max_retries: get("max_retries"),
            enabled: fields.get("enabled").is_some(),
            http_method: get("http_method"),
            authorization_scheme: get("authorization_scheme"),
            auth_header_name: get("auth_header_name"),
            oauth2_token_url: get("oauth2_token_url"),
            oauth2_client_id: get("oauth2_client_id"),
            oauth2_scope: get("oauth2_scope"),
            oauth2_audience: get("oauth2_audience"),
            oauth2_secret_set: false,
            tls_client_subject: String::new(),
            tls_client_expires_at: String::new(),
            tls_ca_set: false,
            headers: header_rows(fields).into_iter().map(|h| (h.key, h.value)).collect(),
            rate_limit: get("rate_limit"),
            max_concurrency: get("max_concurrency"),
            ordering: get("ordering"),
            filter: get("filter"),
        }
    }
}

/// The filter field: absent (a form without it) keeps the webhook's filter, blank removes it,
/// anything else must be JSON (its rules are checked with the API's).
fn form_filter(fields: &FormFields, errors: &mut FieldErrors) -> Option<Option<serde_json::Value>> {
    let text = fields.get("filter")?.trim();
    if text.is_empty() {
        return Some(None);
    }
    match serde_json::from_str(text) {
        Ok(value) => Some(Some(value)),
        Err(error) => {
            errors.add("filter", format!("is not JSON: {error}"));
            None
        }
    }
}

/// The event types to offer: `*`, a `prefix.*` per first name segment of the catalog, each
/// type, and whatever the webhook holds besides (so nothing is dropped by saving).
fn event_choices(state: &AppState, checked: &[String]) -> Vec<EventChoice> {
    let catalog = &state.catalog;
    let choice = |name: &str, description: &str| EventChoice {
        checked: checked.iter().any(|c| c == name),
        name: name.to_string(),
        description: description.to_string(),
    };
    let mut choices = vec![choice("*", "Every event type, including types added later.")];
    let mut prefixes: Vec<&str> =
        catalog.names().filter_map(|n| n.split_once('.')).map(|p| p.0).collect();
    prefixes.dedup();
    for prefix in prefixes {
        let pattern = format!("{prefix}.*");
        let description = format!("Every type named {prefix}.…, including types added later.");
        choices.push(choice(&pattern, &description));
    }
    for (name, description) in catalog.descriptions() {
        choices.push(choice(name, description));
    }
    for extra in checked {
        if !choices.iter().any(|c| &c.name == extra) {
            choices.push(choice(extra, "Subscribed; not in the catalog."));
        }
    }
    choices
}

fn header_rows(fields: &FormFields) -> Vec<CustomHeader> {
    let keys = fields.all("header_key");
    let values = fields.all("header_value");
    keys.iter()
        .zip(values.iter().chain(std::iter::repeat(&"")))
        .filter(|(key, value)| !key.trim().is_empty() || !value.trim().is_empty())
        .map(|(key, value)| CustomHeader { key: key.trim().to_string(), value: value.to_string() })
        .collect()
}

pub struct EventChoice {
    pub name: String,
    pub description: String,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "webhook_form.html")]
struct FormPage {
    chrome: Chrome,
    action: String,
    creating: bool,
    values: FormValues,
    events: Vec<EventChoice>,
    methods: [&'static str; 3],
    schemes: [&'static str; 6],
    header_rows: Vec<(String, String)>,
    errors: Vec<String>,
    /// Problems with the filter, shown next to it.
    filter_errors: Vec<String>,
}

fn form_page(
    state: &AppState,
    chrome: Chrome,
    action: String,
    creating: bool,
    values: FormValues,
    errors: FieldErrors,
) -> FormPage {
    let events = event_choices(state, &values.events);
    let (filter_errors, errors) = messages(errors);
    let mut header_rows = values.headers.clone();
    header_rows.extend(std::iter::repeat_n((String::new(), String::new()), SPARE_HEADER_ROWS));
    FormPage {
        chrome,
        action,
        creating,
        values,
        events,
        methods: [HttpMethod::Post, HttpMethod::Put, HttpMethod::Patch].map(HttpMethod::as_str),
        schemes: Authorization::SCHEMES,
        header_rows,
        errors,
        filter_errors,
    }
}

/// The messages of the filter's problems (shown next to it), and of the rest.
fn messages(errors: FieldErrors) -> (Vec<String>, Vec<String>) {
    let (mut filter, mut rest) = (Vec::new(), Vec::new());
    for (field, messages) in errors.into_map() {
        let list = if field.starts_with("filter") { &mut filter } else { &mut rest };
        list.extend(messages.into_iter().map(|m| format!("{field} {m}")));
    }
    (filter, rest)
}

/// A number field: blank is `None`; anything but a whole number is an error naming the field.
fn number(fields: &FormFields, name: &str, errors: &mut FieldErrors) -> Option<i64> {
    let value = fields.filled(name)?;
    errors.check(name, value.trim().parse::<i64>().map_err(|_| "must be a whole number"))
}

/// Parses the form into changes and hands them to `save`. `current_scheme` is the webhook's
/// scheme when editing: kept, with its stored credentials, unless the form changes it or gives
/// new credentials.
fn changes<'a>(
    fields: &'a FormFields,
    events: &'a [String],
    headers: &'a [CustomHeader],
    filter: Option<&'a Option<serde_json::Value>>,
    current_scheme: Option<&str>,
    errors: &mut FieldErrors,
) -> WebhookChanges<'a> {
    let credentials = AuthorizationInput {
        scheme: fields.get("authorization_scheme").unwrap_or("none"),
        token: fields.filled("auth_token"),
        username: fields.filled("auth_username"),
        password: fields.filled("auth_password"),
        header_name: fields.filled("auth_header_name"),
        oauth2: OAuth2Input {
            token_url: fields.filled("oauth2_token_url"),
            client_id: fields.filled("oauth2_client_id"),
            client_secret: fields.filled("oauth2_client_secret"),
            scope: fields.filled("oauth2_scope"),
            audience: fields.filled("oauth2_audience"),
        },
    };
    let keep_credentials =
        current_scheme == Some(credentials.scheme) && !credentials.has_credentials();
    let limit = |name: &str, errors: &mut FieldErrors| match fields.filled(name) {
        None => Some(None),
        Some(_) => number(fields, name, errors).map(Some),
    };
    WebhookChanges {
        name: fields.get("name"),
        webhook_url: fields.get("webhook_url").map(str::trim),
        webhook_secret: fields.filled("webhook_secret"),
        events: Some(events),
        timeout: number(fields, "timeout", errors),
        max_retries: number(fields, "max_retries", errors),
        enabled: Some(fields.get("enabled").is_some()),
        http_method: fields.get("http_method"),
        authorization: (!keep_credentials).then_some(credentials),
        credentials_without_scheme: false,
        custom_headers: Some(headers),
        rate_limit: limit("rate_limit", errors),
        max_concurrency: limit("max_concurrency", errors),
        ordering: fields.get("ordering"),
        filter: filter.map(Option::as_ref),
        // Blank keeps what is stored (PEM is never filled back in); a box removes it.
        tls: TlsInput {
            client_cert: match fields.get("tls_client_remove") {
                Some(_) => Some(None),
                None => fields.filled("tls_client_cert").map(Some),
            },
            client_key: fields.filled("tls_client_key"),
            ca_cert: match fields.get("tls_ca_remove") {
                Some(_) => Some(None),
                None => fields.filled("tls_ca_cert").map(Some),
            },
        },
    }
}

/// The form's own errors (fields that are not numbers) with every error the API's validation
/// finds in the rest, so one submission lists every problem. Nothing is saved.
fn all_errors(
    state: &AppState,
    base: Option<&WebhookSettings>,
    changes: &WebhookChanges<'_>,
    mut errors: FieldErrors,
) -> ApiError {
    let context = Context { catalog: &state.catalog, destinations: &state.destinations };
    if let Err(more) = WebhookSettings::apply(base, changes, context) {
        for (field, messages) in more.into_map() {
            for message in messages {
                errors.add(field.clone(), message);
            }
        }
    }
    ApiError::Validation(errors)
}

pub async fn new(
    State(state): State<AppState>,
    session: Session,
    UiPath(path): UiPath<AgentPath>,
) -> Result<Response, UiError> {
    let agent = find_agent(&state, &session, path.agent_id).await?;
    let chrome = agent_chrome(&session, &agent).crumb("New webhook", "");
    let action = format!("/ui/agents/{}/webhooks", agent.id);
    render(&form_page(
        &state,
        chrome,
        action,
        true,
        FormValues::new_webhook(),
        FieldErrors::default(),
    ))
}

fn agent_chrome(session: &Session, agent: &Agent) -> Chrome {
    Chrome::of(session).crumb(agent.name.clone(), format!("/ui/agents/{}", agent.id))
}

#[derive(Template)]
#[template(path = "webhook_created.html")]
struct CreatedPage {
    chrome: Chrome,
    href: String,
    name: String,
    signing_secret: String,
}

pub async fn create(
    State(state): State<AppState>,
    UiPath(path): UiPath<AgentPath>,
    form: CsrfForm,
) -> Result<Response, UiError> {
    let session = &form.session;
    let agent = find_agent(&state, session, path.agent_id).await?;
    let fields = &form.fields;
    let events: Vec<String> = fields.all("events").into_iter().map(String::from).collect();
    let headers = header_rows(fields);
    let mut errors = FieldErrors::default();
    let filter = form_filter(fields, &mut errors);
    let changes = changes(fields, &events, &headers, filter.as_ref(), None, &mut errors);
    let saved = match errors.finish() {
        Ok(()) => create_webhook(&state, session.org_id(), agent.id, &changes).await,
        Err(errors) => Err(all_errors(&state, None, &changes, errors)),
    };
    match saved {
        Ok((webhook, signing_secret)) => {
            let chrome = agent_chrome(session, &agent);
            let href = format!("/ui/agents/{}/webhooks/{}", agent.id, webhook.id);
            let name = webhook.settings.name.as_str().to_string();
            render(&CreatedPage { chrome, href, name, signing_secret })
        }
        Err(ApiError::Validation(errors)) => {
            let chrome = agent_chrome(session, &agent).crumb("New webhook", "");
            let action = format!("/ui/agents/{}/webhooks", agent.id);
            let values = FormValues::submitted(fields);
            let page = form_page(&state, chrome, action, true, values, errors);
            render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn edit(
    State(state): State<AppState>,
    session: Session,
    UiPath(path): UiPath<WebhookPath>,
) -> Result<Response, UiError> {
    let (agent, webhook) = find(&state, &session, &path).await?;
    let chrome = chrome_for(&session, &agent, &webhook).crumb("Edit", "");
    let action = format!("/ui/agents/{}/webhooks/{}", agent.id, webhook.id);
    let values = FormValues::of(&webhook.settings);
    render(&form_page(&state, chrome, action, false, values, FieldErrors::default()))
}

pub async fn update(
    State(state): State<AppState>,
    UiPath(path): UiPath<WebhookPath>,
    form: CsrfForm,
) -> Result<Response, UiError> {
    let session = &form.session;
    let (agent, webhook) = find(&state, session, &path).await?;
    let fields = &form.fields;
    let events: Vec<String> = fields.all("events").into_iter().map(String::from).collect();
    let headers = header_rows(fields);
    let mut errors = FieldErrors::default();
    let scheme = webhook.settings.authorization.scheme();
    let filter = form_filter(fields, &mut errors);
    let changes = changes(fields, &events, &headers, filter.as_ref(), Some(scheme), &mut errors);
    let saved = match errors.finish() {
        Ok(()) => update_webhook(&state, session.org_id(), &path, &changes).await,
        Err(errors) => Err(all_errors(&state, Some(&webhook.settings), &changes, errors)),
    };
    match saved {
        Ok(updated) => {
            Ok(see_other(&format!("/ui/agents/{}/webhooks/{}?done=updated", agent.id, updated.id)))
        }
        Err(ApiError::Validation(errors)) => {
            let chrome = chrome_for(session, &agent, &webhook).crumb("Edit", "");
            let action = format!("/ui/agents/{}/webhooks/{}", agent.id, webhook.id);
            let values = FormValues::submitted(fields);
            let page = form_page(&state, chrome, action, false, values, errors);
            render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(other) => Err(other.into()),
    }
}
