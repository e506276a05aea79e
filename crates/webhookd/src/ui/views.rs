//! What every page shares: the chrome around it (assets, the session's CSRF token for the
//! sign-out form, breadcrumbs, a notice), rendering, and small conversions of stored values to
//! text for the templates.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::assets;
use super::error::UiError;
use super::session::Session;
use crate::domain::clock::{format_ms, UnixMs};
use crate::domain::{LogStatus, SendType};

/// One step of the breadcrumb trail.
pub struct Crumb {
    pub label: String,
    pub href: String,
}

impl Crumb {
    pub fn new(label: impl Into<String>, href: impl Into<String>) -> Self {
        Self { label: label.into(), href: href.into() }
    }
}

/// The frame of every page.
pub struct Chrome {
    pub htmx: &'static str,
    pub style: &'static str,
    /// Empty when signed out (no sign-out form then).
    pub csrf: String,
    pub portal: bool,
    pub crumbs: Vec<Crumb>,
    /// A one-line message above the page (the result of an action).
    pub notice: Option<String>,
}

impl Chrome {
    /// The chrome of a signed-in page; its trail starts at the agents (dashboard) or at the one
    /// agent (portal), which the caller adds.
    pub fn of(session: &Session) -> Self {
        let mut chrome = Self::signed_out();
        chrome.csrf = session.csrf_token().to_string();
        chrome.portal = session.agent_scope().is_some();
        if !chrome.portal {
            chrome.crumbs.push(Crumb::new("Agents", "/ui/agents"));
        }
        chrome
    }

    pub fn signed_out() -> Self {
        Self {
            htmx: assets::htmx_path(),
            style: assets::style_path(),
            csrf: String::new(),
            portal: false,
            crumbs: Vec::new(),
            notice: None,
        }
    }

    pub fn crumb(mut self, label: impl Into<String>, href: impl Into<String>) -> Self {
        self.crumbs.push(Crumb::new(label, href));
        self
    }

    pub fn notice(mut self, notice: Option<impl Into<String>>) -> Self {
        self.notice = notice.map(Into::into);
        self
    }
}

/// A template rendered as an HTML page with `status`.
pub fn render_with(status: StatusCode, page: &impl Template) -> Result<Response, UiError> {
    Ok((status, Html(page.render()?)).into_response())
}

pub fn render(page: &impl Template) -> Result<Response, UiError> {
    render_with(StatusCode::OK, page)
}

/// Status and send-type fields as text, whether the store gives them as text or as typed values.
pub trait Label {
    fn label(&self) -> &str;
}

impl Label for String {
    fn label(&self) -> &str {
        self
    }
}

impl Label for LogStatus {
    fn label(&self) -> &str {
        self.as_str()
    }
}

impl Label for SendType {
    fn label(&self) -> &str {
        self.as_str()
    }
}

/// A stored time as shown on pages: UTC, to the millisecond.
pub fn time(ms: UnixMs) -> String {
    format_ms(ms).replace('T', " ").replace('Z', " UTC")
}

pub fn optional_time(ms: Option<UnixMs>) -> String {
    ms.map(time).unwrap_or_default()
}

/// Bytes as text for display; escaping happens in the template.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stored response headers (a JSON object) as name–value pairs; anything else as one raw line.
pub fn header_pairs(stored: Option<&str>) -> Vec<(String, String)> {
    let Some(stored) = stored else { return Vec::new() };
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(stored) {
        Ok(object) => object
            .into_iter()
            .map(|(name, value)| {
                let value = value.as_str().map_or_else(|| value.to_string(), str::to_string);
                (name, value)
            })
            .collect(),
        Err(_) => vec![(String::new(), stored.to_string())],
    }
}
