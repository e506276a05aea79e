//! The dashboard and the customer portal (SPEC §7), driven as a browser would: cookies kept,
//! redirects not followed, forms posted with their hidden tokens.

mod actions;
mod pages;
mod portal;
mod session;

use std::collections::HashMap;
use std::sync::Mutex;

use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{redirect, Client};
use serde_json::{json, Value};

use crate::harness::TestApp;

/// One answer of the UI.
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The `Set-Cookie` header that sets `name`.
    pub fn set_cookie(&self, name: &str) -> String {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    }

    /// The value of the first hidden field `name` on the page.
    pub fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker).unwrap_or_else(|| panic!("no {name} in {}", self.body));
        let rest = &self.body[start + marker.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    #[track_caller]
    pub fn assert_contains(&self, text: &str) {
        assert!(
            self.body.contains(text),
            "expected {text:?} in (status {}):\n{}",
            self.status,
            self.body
        );
    }
}

/// A browser: keeps the cookies the UI sets, sends them back, follows no redirect.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    client: Client,
    cookies: Mutex<HashMap<String, String>>,
    pub extra_headers: Vec<(&'static str, &'static str)>,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        let client = Client::builder().redirect(redirect::Policy::none()).build().unwrap();
        Browser { app, client, cookies: Mutex::default(), extra_headers: Vec::new() }
    }

    /// A browser connecting from `address` (any of 127.0.0.0/8 reaches a loopback server).
    pub fn from_address(app: &'a TestApp, address: &str) -> Self {
        let client = Client::builder()
            .redirect(redirect::Policy::none())
            .local_address(Some(address.parse().unwrap()))
            .build()
            .unwrap();
        Browser { app, client, cookies: Mutex::default(), extra_headers: Vec::new() }
    }

    fn cookie_header(&self) -> String {
        let cookies = self.cookies.lock().unwrap();
        cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn finish(&self, request: reqwest::RequestBuilder) -> Page {
        let mut request = request.header("cookie", self.cookie_header());
        for (name, value) in &self.extra_headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for value in headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()) {
            let pair = value.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let mut cookies = self.cookies.lock().unwrap();
            if value.is_empty() || value.contains("Max-Age=0") {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_string(), value.to_string());
            }
        }
        Page { status, headers, body: response.text().await.unwrap() }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.finish(self.client.get(self.app.url(path))).await
    }

    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.finish(self.client.post(self.app.url(path)).form(fields)).await
    }

    /// Posts a form with this session's CSRF token added, as the page's own form would.
    pub async fn submit(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.csrf().await;
        let mut fields = fields.to_vec();
        fields.push(("csrf", &token));
        self.post(path, &fields).await
    }

    /// The CSRF token of this browser's session, read from a page as a form would carry it.
    pub async fn csrf(&self) -> String {
        let page = self.get("/ui/agents").await;
        let page = if page.status == 303 { self.get(page.location()).await } else { page };
        page.hidden("csrf")
    }

    pub async fn sign_in(&self, key: &str) -> Page {
        let form = self.get("/ui/sign-in").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let nonce = form.hidden("nonce");
        self.post("/ui/sign-in", &[("nonce", &nonce), ("api_key", key)]).await
    }

    pub fn has_cookie(&self, name: &str) -> bool {
        self.cookies.lock().unwrap().contains_key(name)
    }
}

/// A signed-in browser on a new app with one agent; returns the app, the agent id.
pub async fn signed_in(app: &TestApp) -> Browser<'_> {
    let browser = Browser::new(app);
    let page = browser.sign_in(&app.api_key).await;
    assert_eq!(page.status, 303, "{}", page.body);
    browser
}

pub fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_string()
}

/// An agent and a webhook (no retries) to `url`.
pub async fn agent_with_webhook(app: &TestApp, url: &str) -> (String, String) {
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": url, "max_retries": 0})).await;
    (agent, id(&webhook))
}
