//! Signing in and out, the session cookie, CSRF refusals and the security headers.

use reqwest::Method;

use super::{agent_with_webhook, signed_in, Browser};
use crate::backend_tests;
use crate::harness::{Backend, TestApp};

backend_tests!(
    signing_in_with_a_good_key_starts_a_strict_http_only_session,
    a_wrong_api_key_is_a_clear_message_on_the_sign_in_page,
    the_session_cookie_is_secure_when_the_request_came_over_tls,
    signing_out_ends_the_session,
    a_post_without_the_csrf_token_is_refused_with_a_403_page,
    failed_sign_ins_pause_the_address_even_for_the_right_key,
    failed_sign_ins_with_one_key_prefix_pause_it_from_every_address,
);

/// Wrong keys from `browser`, each a 401, each with its own prefix unless `prefix` is given.
async fn fail_sign_ins(browser: &Browser<'_>, count: u32, prefix: &str) {
    for n in 0..count {
        let page = browser.sign_in(&format!("{prefix}wrong{n:06}")).await;
        assert_eq!(page.status, 401, "failure {n}: {}", page.body);
    }
}

#[track_caller]
fn assert_paused(page: &super::Page, message: &str) {
    assert_eq!(page.status, 429, "{}", page.body);
    let retry_after: u64 =
        page.headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After: {retry_after}");
    page.assert_contains(message);
    page.assert_contains("<form method=\"post\" action=\"/ui/sign-in\">");
    assert!(page.set_cookie("webhookd_session").is_empty());
}

async fn failed_sign_ins_pause_the_address_even_for_the_right_key(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let attacker = Browser::from_address(&app, "127.0.0.2");
    for n in 0..10 {
        let page = attacker.sign_in(&format!("whk_{n:06}wrong")).await;
        assert_eq!(page.status, 401, "failure {n}: {}", page.body);
    }
    let page = attacker.sign_in("whk_one-too-many").await;
    assert_paused(&page, "Too many failed sign-ins from your address");
    let page = attacker.sign_in(&app.api_key).await;
    assert_paused(&page, "Too many failed sign-ins from your address");
    assert_eq!(attacker.get("/ui/agents").await.location(), "/ui/sign-in");

    let neighbour = Browser::from_address(&app, "127.0.0.3");
    let page = neighbour.sign_in(&app.api_key).await;
    assert_eq!((page.status, page.location()), (303, "/ui/agents"), "{}", page.body);
}

async fn failed_sign_ins_with_one_key_prefix_pause_it_from_every_address(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let prefix = &app.api_key[..10];
    fail_sign_ins(&Browser::from_address(&app, "127.0.0.4"), 10, prefix).await;
    let elsewhere = Browser::from_address(&app, "127.0.0.5");
    let page = elsewhere.sign_in(&format!("{prefix}one-too-many")).await;
    assert_paused(&page, "Too many failed sign-ins with this key");
    let page = elsewhere.sign_in(&app.api_key).await;
    assert_paused(&page, "Too many failed sign-ins with this key");

    let other_key = app.other_org_key().await;
    let page = elsewhere.sign_in(&other_key).await;
    assert_eq!((page.status, page.location()), (303, "/ui/agents"), "{}", page.body);
}

async fn signing_in_with_a_good_key_starts_a_strict_http_only_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_agent().await;
    let browser = Browser::new(&app);
    assert_eq!(browser.get("/ui").await.location(), "/ui/sign-in");
    let page = browser.sign_in(&app.api_key).await;
    assert_eq!((page.status, page.location()), (303, "/ui/agents"), "{}", page.body);
    let cookie = page.set_cookie("webhookd_session");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(!cookie.contains(&app.api_key), "{cookie}");
    let agents = browser.get("/ui/agents").await;
    assert_eq!(agents.status, 200);
    agents.assert_contains("Sales");
    agents.assert_contains("Sign out");
}

async fn a_wrong_api_key_is_a_clear_message_on_the_sign_in_page(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let browser = Browser::new(&app);
    let page = browser.sign_in("whk_not-a-real-key").await;
    assert_eq!(page.status, 401);
    page.assert_contains("That API key is not valid");
    page.assert_contains("API key");
    assert!(page.set_cookie("webhookd_session").is_empty());
    assert_eq!(browser.get("/ui/agents").await.location(), "/ui/sign-in");
    let empty = browser.sign_in("").await;
    empty.assert_contains("Enter an API key");
}

async fn the_session_cookie_is_secure_when_the_request_came_over_tls(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(&app);
    browser.extra_headers.push(("x-forwarded-proto", "https"));
    let page = browser.sign_in(&app.api_key).await;
    assert!(page.set_cookie("webhookd_session").contains("Secure"), "{:?}", page.headers);

    let app = TestApp::spawn_with(backend, |config| {
        config.public_url = Some("https://hooks.example.com".into());
    })
    .await;
    let page = Browser::new(&app).sign_in(&app.api_key).await;
    assert!(page.set_cookie("webhookd_session").contains("Secure"), "{:?}", page.headers);
}

async fn signing_out_ends_the_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let browser = signed_in(&app).await;
    let token = browser.csrf().await;
    let stolen = browser.cookie_header();
    let page = browser.post("/ui/sign-out", &[("csrf", &token)]).await;
    assert_eq!((page.status, page.location()), (303, "/ui/sign-in?signed_out=1"));
    assert!(page.set_cookie("webhookd_session").contains("Max-Age=0"));
    assert!(!browser.has_cookie("webhookd_session"));
    assert_eq!(browser.get("/ui/agents").await.location(), "/ui/sign-in");
    // The session is gone from the database too: the old cookie no longer works anywhere.
    let replay = Browser::new(&app);
    let (name, value) = stolen.split_once('=').unwrap();
    replay.cookies.lock().unwrap().insert(name.into(), value.into());
    assert_eq!(replay.get("/ui/agents").await.location(), "/ui/sign-in");
    browser.get("/ui/sign-in?signed_out=1").await.assert_contains("You are signed out");
}

async fn a_post_without_the_csrf_token_is_refused_with_a_403_page(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (agent, webhook) = agent_with_webhook(&app, "https://example.com/hook").await;
    let browser = signed_in(&app).await;
    let toggle = format!("/ui/agents/{agent}/webhooks/{webhook}/toggle");
    for fields in [vec![], vec![("csrf", "forged")]] {
        let page = browser.post(&toggle, &fields).await;
        assert_eq!(page.status, 403, "{}", page.body);
        page.assert_contains("security token");
    }
    let (_, read) =
        app.call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks/{webhook}"), None).await;
    assert_eq!(read["data"]["enabled"], true, "nothing changed: {read}");
    let other_session = signed_in(&app).await;
    let foreign_token = other_session.csrf().await;
    let page = browser.post(&toggle, &[("csrf", &foreign_token)]).await;
    assert_eq!(page.status, 403, "another session's token is not this session's");
    // Signing in is a form too: without the nonce of its own page it is refused.
    let page = Browser::new(&app).post("/ui/sign-in", &[("api_key", &app.api_key)]).await;
    assert_eq!(page.status, 403);
    assert!(page.set_cookie("webhookd_session").is_empty());
}
