"""Browser tests of the dashboard and the customer portal: Playwright driving Debian's Chromium.

Started by `.ci/browser`, which runs webhookd and passes its address and API key in
WEBHOOKD_URL and WEBHOOKD_KEY. The scenarios run in order on one database, as a person would work
through an incident: sign in, find the failed delivery, fix the URL, retry, resend, recover, add a
webhook, hand out a portal link. Prints one line per scenario and `N passed, N failed`.
"""

import os
import sys
import time
import traceback

from playwright.sync_api import expect, sync_playwright

from api import Api
from receiver import Receiver

BASE = os.environ["WEBHOOKD_URL"]
KEY = os.environ["WEBHOOKD_KEY"]
SCREENSHOTS = os.environ.get("WEBHOOKD_SCREENSHOTS", "")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
MARKUP = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'

expect.set_options(timeout=10_000)


class World:
    """What the scenarios share: the API, the receiver, the browser and what they made."""

    def __init__(self, playwright):
        self.api = Api(BASE, KEY)
        self.receiver = Receiver()
        self.browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        self.context = self.browser.new_context(viewport={"width": 1280, "height": 860})
        self.page = self.context.new_page()
        self.dialogs = []
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.support = self.api.ok("POST", "/agents", {"name": "Support line"})["id"]
        self.sales = self.api.ok("POST", "/agents", {"name": "Sales line"})["id"]
        self.api.ok("POST", f"/agents/{self.sales}/webhooks", {
            "name": "Sales CRM", "webhook_url": self.receiver.url("/sales"), "events": ["call.completed"],
        })
        self.webhook = self.api.ok("POST", f"/agents/{self.support}/webhooks", {
            "name": "CRM", "webhook_url": self.receiver.url("/fail"), "events": ["call.completed"],
            "max_retries": 0,
        })["id"]
        for call, note in [("c_1001", "Booked a demo"), ("c_1002", MARKUP)]:
            accepted = self.api.ok("POST", f"/agents/{self.support}/events", {
                "event": "call.completed", "call_id": call, "data": {"call": call, "note": note},
            })
            self.api.wait_for_log(self.support, self.webhook, accepted["logs"][0]["log_id"], "failed")
            if call == "c_1001":
                self.failed_log = accepted["logs"][0]["log_id"]
                self.event_id = accepted["event_id"]
            else:
                self.markup_log = accepted["logs"][0]["log_id"]
        self.webhook_path = f"/ui/agents/{self.support}/webhooks/{self.webhook}"

    def close(self):
        self.browser.close()
        self.receiver.stop()

    def screenshot(self, name, full_page=False):
        if SCREENSHOTS:
            self.page.screenshot(path=os.path.join(SCREENSHOTS, name), full_page=full_page)


def sign_in_with_a_wrong_key_then_the_right_one(w):
    page = w.page
    page.goto(BASE + "/ui")
    expect(page).to_have_url(BASE + "/ui/sign-in")
    page.get_by_label("API key").fill("whk_wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-error")).to_contain_text("That API key is not valid")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Agents")).to_be_visible()
    cookie = next(c for c in w.context.cookies() if c["name"] == "webhookd_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie


def reach_the_failed_log_by_clicking_and_read_its_attempts(w):
    page = w.page
    page.get_by_role("link", name="Support line").click()
    expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
    page.get_by_role("link", name="CRM", exact=True).click()
    expect(page.get_by_role("heading", name="Delivery logs")).to_be_visible()
    page.locator('select[name="status"]').select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("a.log-link")).to_have_count(2)
    w.screenshot("ui-logs.png")
    page.locator("tr", has_text="c_1001").locator("a.log-link").click()
    expect(page.locator("#log-status")).to_have_text("failed")
    attempt = page.locator("#attempt-1")
    expect(attempt).to_contain_text("HTTP 500")
    expect(attempt).to_contain_text("spawn")
    expect(attempt).to_contain_text("upstream exploded <b>bold</b>")
    request = w.receiver.received("/fail")[0]
    headers = {k.lower(): v for k, v in request[2].items()}
    signature_row = attempt.locator("table.request-headers tr", has_text="webhook-signature")
    expect(signature_row.first).to_contain_text(headers["webhook-signature"])
    w.screenshot("ui-log-detail.png", full_page=True)


def change_the_url_then_retry_delivers_a_new_log_to_the_current_url(w):
    page = w.page
    page.goto(BASE + w.webhook_path)
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("URL", exact=True).fill(w.receiver.url("/ok"))
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".notice")).to_contain_text("Webhook updated")
    page.goto(f"{BASE}{w.webhook_path}/logs/{w.failed_log}")
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".notice")).to_contain_text("Retry queued")
    expect(page.locator("#original-log")).to_contain_text(w.failed_log)
    # The pending log refreshes itself (htmx) until it is delivered.
    expect(page.locator("#log-status")).to_have_text("success")
    expect(page.locator("#log-url")).to_contain_text(w.receiver.url("/ok"))
    expect(page.locator("#attempt-1")).to_contain_text("manual")
    delivered = w.receiver.received("/ok")
    assert len(delivered) == 1, delivered
    assert {k.lower(): v for k, v in delivered[0][2].items()}["webhook-id"] == w.event_id


def resend_sends_the_post_call_webhook_again_to_the_same_url(w):
    page = w.page
    before = len(w.receiver.received("/fail"))
    page.goto(f"{BASE}{w.webhook_path}/logs/{w.failed_log}")
    page.get_by_role("button", name="Resend post-call webhook").click()
    expect(page.get_by_role("heading")).to_contain_text("c_1001")
    expect(page.locator("#resent")).to_contain_text(w.receiver.url("/fail"))
    expect(page.locator("#resent")).to_contain_text("resend")
    assert len(w.receiver.received("/fail")) == before + 1


def recover_shows_the_dry_run_count_then_queues(w):
    page = w.page
    expected = w.api.ok("POST", f"/agents/{w.support}/webhooks/{w.webhook}/recover",
                        {"since": "2000-01-01T00:00:00Z", "dry_run": True})["count"]
    assert expected >= 1
    before = len(w.receiver.received("/ok"))
    page.goto(BASE + w.webhook_path)
    page.get_by_role("link", name="Recover a time window").click()
    page.get_by_label("From (UTC)").fill("2000-01-01T00:00:00")
    page.get_by_role("button", name="Count (dry run)").click()
    expect(page.locator("#dry-run-count")).to_contain_text(f"{expected} log(s) would be queued")
    page.get_by_role("button", name=f"Start recovery of {expected} log(s)").click()
    expect(page.locator("#recover-result")).to_contain_text(f"Recovery queued {expected} log(s)")
    deadline = time.monotonic() + 10
    while len(w.receiver.received("/ok")) < before + expected:
        assert time.monotonic() < deadline, "the recovered logs were not delivered"
        time.sleep(0.05)


def create_a_webhook_from_the_form(w):
    page = w.page
    page.goto(f"{BASE}/ui/agents/{w.support}")
    page.get_by_role("link", name="New webhook").click()
    page.get_by_label("Name", exact=True).fill("Analytics")
    page.get_by_label("URL", exact=True).fill(w.receiver.url("/analytics"))
    page.get_by_label("call.ended").check()
    page.get_by_label("Rate limit (per second, blank: none)").fill("20")
    page.get_by_role("button", name="Create webhook").click()
    expect(page.get_by_role("heading", name="Webhook Analytics created")).to_be_visible()
    secret = page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_"), secret
    page.get_by_role("link", name="Go to the webhook").click()
    expect(page.get_by_role("heading", name="Analytics")).to_be_visible()
    hooks = w.api.ok("GET", f"/agents/{w.support}/webhooks")["webhooks"]
    created = next(h for h in hooks if h["name"] == "Analytics")
    assert created["events"] == ["call.ended"] and created["rate_limit"] == 20, created


def a_payload_with_markup_does_not_execute(w):
    page = w.page
    page.goto(f"{BASE}{w.webhook_path}/logs/{w.markup_log}")
    expect(page.locator("#payload")).to_contain_text("<script>window.__pwned = 1</script>")
    page.goto(BASE + w.webhook_path)
    expect(page.locator("a.log-link").first).to_be_visible()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("main img").count() == 0
    assert page.locator("main script").count() == 0
    assert not w.dialogs, w.dialogs


def a_form_without_its_csrf_token_is_refused(w):
    page = w.page
    page.goto(BASE + w.webhook_path)
    form = page.locator(f'form[action="{w.webhook_path}/toggle"]')
    form.locator('input[name="csrf"]').evaluate("input => input.remove()")
    form.get_by_role("button").click()
    expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
    assert w.api.ok("GET", f"/agents/{w.support}/webhooks/{w.webhook}")["enabled"] is True


def the_portal_link_shows_one_agent_only(w):
    link = w.api.ok("POST", f"/agents/{w.support}/portal", {"expires_in": 600})["url"]
    assert KEY not in link
    # The customer follows the link from the platform's own site (another site: localhost).
    w.receiver.portal_link = link
    customer = w.browser.new_context()
    page = customer.new_page()
    page.goto(f"http://localhost:{w.receiver.port}/")
    page.get_by_role("link", name="Open webhook portal").click()
    expect(page.get_by_role("heading", name="Support line")).to_be_visible()
    expect(page.locator(".badge")).to_have_text("Customer portal")
    expect(page.get_by_role("link", name="CRM", exact=True)).to_be_visible()
    assert "Sales" not in page.content()
    page.goto(BASE + "/ui/agents")
    expect(page).to_have_url(f"{BASE}/ui/agents/{w.support}")
    page.goto(f"{BASE}/ui/agents/{w.sales}")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    page.goto(BASE + w.webhook_path)
    expect(page.get_by_role("heading", name="Delivery logs")).to_be_visible()
    customer.close()


SCENARIOS = [
    sign_in_with_a_wrong_key_then_the_right_one,
    reach_the_failed_log_by_clicking_and_read_its_attempts,
    change_the_url_then_retry_delivers_a_new_log_to_the_current_url,
    resend_sends_the_post_call_webhook_again_to_the_same_url,
    recover_shows_the_dry_run_count_then_queues,
    create_a_webhook_from_the_form,
    a_payload_with_markup_does_not_execute,
    a_form_without_its_csrf_token_is_refused,
    the_portal_link_shows_one_agent_only,
]


def main():
    passed = failed = 0
    with sync_playwright() as playwright:
        world = World(playwright)
        try:
            for scenario in SCENARIOS:
                started = time.monotonic()
                try:
                    scenario(world)
                    passed += 1
                    outcome = "ok"
                except Exception:
                    failed += 1
                    outcome = "FAILED"
                    traceback.print_exc()
                print(f"browser {scenario.__name__} ... {outcome} ({time.monotonic() - started:.1f}s)", flush=True)
        finally:
            world.close()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
