//! A real OAuth 2.0 token endpoint for the `oauth2` tests: it checks the client's HTTP Basic
//! credentials, the grant type, scope and audience; issues numbered tokens that name their
//! client and expire after a set time; and counts the requests it answered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use base64::Engine;
use serde_json::json;

/// What the endpoint expects of a request, and how it answers.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: &'static str,
    pub secret: &'static str,
    pub scope: Option<&'static str>,
    pub audience: Option<&'static str>,
}

struct Shared {
    clients: Mutex<HashMap<String, Client>>,
    expires_in: AtomicU64,
    delay: Mutex<Duration>,
    failing: AtomicBool,
    requests: AtomicUsize,
    issued: AtomicUsize,
    /// Where each request came from.
    peers: Mutex<Vec<SocketAddr>>,
}

#[derive(Clone)]
pub struct TokenServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TokenServer {
    /// An endpoint that knows `clients` and issues tokens living `expires_in` seconds.
    pub async fn start(clients: &[Client], expires_in: u64) -> TokenServer {
        let shared = Arc::new(Shared {
            clients: Mutex::new(clients.iter().map(|c| (c.id.to_string(), c.clone())).collect()),
            expires_in: AtomicU64::new(expires_in),
            delay: Mutex::new(Duration::ZERO),
            failing: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            issued: AtomicUsize::new(0),
            peers: Mutex::default(),
        });
        let app = axum::Router::new().fallback(issue).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        TokenServer { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }

    /// Token requests answered so far (issued or refused).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The address each request came from, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.shared.peers.lock().unwrap().clone()
    }

    /// Each answer waits this long first.
    pub fn delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// While set, every request gets a 503.
    pub fn fail(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }
}

async fn issue(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    shared.peers.lock().unwrap().push(peer);
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let delay = *shared.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    if shared.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    let refuse = |status: StatusCode, error: &str, description: &str| {
        let body = json!({"error": error, "error_description": description});
        (status, axum::Json(body)).into_response()
    };
    let Some(client) = basic_client(&headers, &shared) else {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client or secret");
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type", "client_credentials");
    }
    if form.get("scope").map(String::as_str) != client.scope {
        return refuse(StatusCode::BAD_REQUEST, "invalid_scope", "unexpected scope");
    }
    if form.get("audience").map(String::as_str) != client.audience {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "unexpected audience");
    }
    let number = shared.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let body = json!({
        "access_token": format!("tok-{}-{number}", client.id),
        "token_type": "Bearer",
        "expires_in": shared.expires_in.load(Ordering::SeqCst),
    });
    axum::Json(body).into_response()
}

/// The client named by the request's `Authorization: Basic`, if its secret is right.
fn basic_client(headers: &HeaderMap, shared: &Shared) -> Option<Client> {
    let value = headers.get("authorization")?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(value).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    // RFC 6749 §2.3.1: both are form-encoded inside Basic.
    let (id, secret) = (form_decoded(id), form_decoded(secret));
    let client = shared.clients.lock().unwrap().get(&id).cloned()?;
    (client.secret == secret).then_some(client)
}

fn form_decoded(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, decoded)| decoded.into_owned())
        .unwrap_or_default()
}
