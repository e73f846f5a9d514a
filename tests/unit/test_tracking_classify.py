"""mail.tracking.classify: device, client and machine-or-human for recorded user agents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from mail.tracking.classify import (
    MAX_USER_AGENT_LENGTH,
    TOO_SOON_AFTER_SEND,
    Classification,
    DeviceKind,
    EventContext,
    EventKind,
    MachineReason,
    MailClient,
    classify,
)

SENT_AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
AN_HOUR_LATER = SENT_AT + timedelta(hours=1)
HOME_IP = "203.0.113.7"  # TEST-NET-3: stands for a reader's own address
APPLE_IP = "17.58.101.12"

# Recorded user agents (2024-2026 logs and vendors' published samples).
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
APPLE_MAIL_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
APPLE_MAIL_IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
OUTLOOK_DESKTOP = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
OUTLOOK_IOS = "Outlook-iOS/709.2226530.prod.iphone (4.2220.0)"
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
SAFARI_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
CHROME_ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)
CHROME_ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
CUBOT_PHONE = (
    "Mozilla/5.0 (Linux; Android 11; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)
FIREFOX_UBUNTU = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
HEADLESS_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/126.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def event(
    user_agent: str | None,
    *,
    kind: EventKind = "open",
    ip: str | None = HOME_IP,
    method: str = "GET",
    occurred_at: datetime = AN_HOUR_LATER,
    sent_at: datetime | None = SENT_AT,
    prior_clicks_same_second: int = 0,
) -> EventContext:
    return EventContext(
        kind=kind,
        user_agent=user_agent,
        ip=ip,
        method=method,
        occurred_at=occurred_at,
        sent_at=sent_at,
        prior_clicks_same_second=prior_clicks_same_second,
    )


def human(device: DeviceKind, client: MailClient, os: str | None, browser: str | None) -> Classification:
    return Classification(
        device=device, client=client, os=os, browser=browser, is_machine=False, machine_reason=None
    )


def machine(
    reason: MachineReason,
    device: DeviceKind = "unknown",
    client: MailClient = "other",
    os: str | None = None,
    browser: str | None = None,
) -> Classification:
    return Classification(
        device=device, client=client, os=os, browser=browser, is_machine=True, machine_reason=reason
    )


RECORDED = [
    pytest.param(event(GMAIL_PROXY), machine("gmail_image_proxy", client="gmail"), id="gmail-proxy"),
    pytest.param(event(YAHOO_PROXY), machine("yahoo_image_proxy", client="yahoo"), id="yahoo-proxy"),
    pytest.param(
        event(APPLE_MAIL_MAC, ip=APPLE_IP), machine("apple_mpp", client="apple"), id="apple-mpp-17/8"
    ),
    pytest.param(
        event(APPLE_MAIL_MAC, ip=f"::ffff:{APPLE_IP}"),
        machine("apple_mpp", client="apple"),
        id="apple-mpp-v4-mapped",
    ),
    pytest.param(
        event("Mozilla/5.0", ip=HOME_IP), machine("apple_mpp", client="apple"), id="apple-mpp-bare-ua"
    ),
    pytest.param(
        event(APPLE_MAIL_MAC), human("desktop", "apple", "Mac OS X", "Apple Mail"), id="apple-mail-mac-own-ip"
    ),
    pytest.param(
        event(APPLE_MAIL_IPHONE),
        human("mobile", "apple", "iOS", "Mobile Safari UI/WKWebView"),
        id="apple-mail-iphone-own-ip",
    ),
    pytest.param(
        event(OUTLOOK_DESKTOP), human("desktop", "outlook", "Windows", "Outlook"), id="outlook-desktop"
    ),
    pytest.param(event(OUTLOOK_IOS), human("mobile", "outlook", "iOS", "Outlook-iOS"), id="outlook-ios"),
    pytest.param(
        event(CHROME_WINDOWS, kind="click"),
        human("desktop", "other", "Windows", "Chrome"),
        id="chrome-windows",
    ),
    pytest.param(
        event(SAFARI_IPAD, kind="click"), human("tablet", "other", "iOS", "Mobile Safari"), id="safari-ipad"
    ),
    pytest.param(
        event(SAFARI_IPHONE, kind="click"),
        human("mobile", "other", "iOS", "Mobile Safari"),
        id="safari-iphone",
    ),
    pytest.param(
        event(CHROME_ANDROID_PHONE, kind="click"),
        human("mobile", "other", "Android", "Chrome Mobile"),
        id="chrome-android-phone",
    ),
    pytest.param(
        event(CHROME_ANDROID_TABLET, kind="click"),
        human("tablet", "other", "Android", "Chrome"),
        id="chrome-android-tablet",
    ),
    pytest.param(
        event(CUBOT_PHONE, kind="click"),
        human("mobile", "other", "Android", "Chrome Mobile"),
        id="cubot-is-no-bot",
    ),
    pytest.param(
        event(FIREFOX_UBUNTU, kind="click"),
        human("desktop", "other", "Ubuntu", "Firefox"),
        id="firefox-ubuntu",
    ),
    pytest.param(event("curl/8.5.0", kind="click"), machine("bot_user_agent", browser="curl"), id="curl"),
    pytest.param(
        event("python-requests/2.32.3", kind="click"),
        machine("bot_user_agent", browser="Python Requests"),
        id="python-requests",
    ),
    pytest.param(
        event(HEADLESS_CHROME, kind="click"),
        machine("bot_user_agent", os="Linux", browser="HeadlessChrome"),
        id="headless-chrome",
    ),
    pytest.param(event(GOOGLEBOT), machine("bot_user_agent", browser="Googlebot"), id="googlebot"),
    pytest.param(
        event("Barracuda Sentinel (EE)", kind="click"), machine("security_scanner"), id="barracuda-scanner"
    ),
    pytest.param(
        event("Microsoft Office Existence Discovery", kind="click", method="HEAD"),
        machine("head_request"),
        id="office-existence-head",
    ),
    pytest.param(
        event("Microsoft Office Protocol Discovery", kind="click", method="OPTIONS"),
        machine("office_link_probe"),
        id="office-protocol-options",
    ),
    pytest.param(
        event(CHROME_WINDOWS, kind="click", method="HEAD"),
        machine("head_request", device="desktop", os="Windows", browser="Chrome"),
        id="head-with-browser-ua",
    ),
    pytest.param(
        event(CHROME_WINDOWS, kind="click", occurred_at=SENT_AT + timedelta(seconds=3)),
        machine("too_soon_after_send", device="desktop", os="Windows", browser="Chrome"),
        id="click-3s-after-send",
    ),
    pytest.param(
        event(CHROME_WINDOWS, kind="click", prior_clicks_same_second=2),
        machine("all_links_at_once", device="desktop", os="Windows", browser="Chrome"),
        id="three-links-at-once",
    ),
    pytest.param(event("", kind="click"), machine("empty_user_agent"), id="empty-ua"),
    pytest.param(event(None), machine("empty_user_agent"), id="missing-ua"),
    pytest.param(event("   "), machine("empty_user_agent"), id="blank-ua"),
]


@pytest.mark.parametrize(("ctx", "expected"), RECORDED)
def test_recorded_user_agents(ctx: EventContext, expected: Classification) -> None:
    assert classify(ctx) == expected


def test_open_soon_after_send_is_human() -> None:
    # Readers do open mail the moment it arrives; only clicks that fast are scanners.
    result = classify(event(APPLE_MAIL_IPHONE, occurred_at=SENT_AT + timedelta(seconds=2)))
    assert not result.is_machine


def test_too_soon_threshold_is_exclusive() -> None:
    at_threshold = classify(event(CHROME_WINDOWS, kind="click", occurred_at=SENT_AT + TOO_SOON_AFTER_SEND))
    assert at_threshold.machine_reason is None
    just_before = SENT_AT + TOO_SOON_AFTER_SEND - timedelta(milliseconds=1)
    assert classify(event(CHROME_WINDOWS, kind="click", occurred_at=just_before)).machine_reason == (
        "too_soon_after_send"
    )


def test_click_before_send_time_counts_as_too_soon() -> None:
    # Clock skew or a scanner racing the delivery receipt: still not a reader.
    early = classify(event(CHROME_WINDOWS, kind="click", occurred_at=SENT_AT - timedelta(seconds=1)))
    assert early.machine_reason == "too_soon_after_send"


def test_click_without_sent_at_skips_the_timing_rule() -> None:
    assert not classify(event(CHROME_WINDOWS, kind="click", sent_at=None)).is_machine


def test_two_links_at_once_is_still_human() -> None:
    assert not classify(event(CHROME_WINDOWS, kind="click", prior_clicks_same_second=1)).is_machine


def test_links_at_once_does_not_apply_to_opens() -> None:
    assert not classify(event(APPLE_MAIL_MAC, prior_clicks_same_second=5)).is_machine


def test_bare_mozilla_click_is_a_bot_not_mpp() -> None:
    # MPP prefetches images, it does not follow links.
    assert classify(event("Mozilla/5.0", kind="click")) == machine("bot_user_agent")


def test_apple_mail_ua_from_apple_network_on_click_is_mpp() -> None:
    assert classify(event(APPLE_MAIL_MAC, kind="click", ip=APPLE_IP)).machine_reason == "apple_mpp"


@pytest.mark.parametrize("ip", [None, "", "not-an-ip", "18.0.0.1", "2001:db8::1", "16.255.255.255"])
def test_apple_mail_ua_outside_apple_network_is_human(ip: str | None) -> None:
    result = classify(event(APPLE_MAIL_MAC, ip=ip))
    assert (result.is_machine, result.client, result.device) == (False, "apple", "desktop")


def test_safari_on_mac_from_apple_network_is_not_mpp() -> None:
    # Safari adds "Version/" and "Safari/": a person browsing from an Apple office, not Mail.
    safari_mac = (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Safari/605.1.15"
    )
    result = classify(event(safari_mac, kind="click", ip=APPLE_IP))
    assert result == human("desktop", "other", "Mac OS X", "Safari")


def test_gmail_proxy_wins_over_head_and_timing() -> None:
    ctx = event(GMAIL_PROXY, method="HEAD", occurred_at=SENT_AT + timedelta(seconds=1))
    assert classify(ctx).machine_reason == "gmail_image_proxy"


def test_one_click_unsubscribe_post_is_human_whatever_the_agent() -> None:
    # RFC 8058: the provider POSTs when the reader presses its unsubscribe button.
    for user_agent in (None, "Go-http-client/1.1", CHROME_WINDOWS):
        ctx = event(user_agent, kind="unsubscribe", method="POST", occurred_at=SENT_AT + timedelta(seconds=1))
        assert not classify(ctx).is_machine


def test_unsubscribe_get_follows_the_click_rules() -> None:
    ctx = event(CHROME_WINDOWS, kind="unsubscribe", occurred_at=SENT_AT + timedelta(seconds=2))
    assert classify(ctx).machine_reason == "too_soon_after_send"
    assert not classify(event(CHROME_WINDOWS, kind="unsubscribe")).is_machine


def test_method_is_case_insensitive() -> None:
    assert classify(event(CHROME_WINDOWS, kind="click", method="head")).machine_reason == "head_request"


def test_yahoo_app_is_not_taken_for_a_spider() -> None:
    # uap-core files any UA containing "yahoo" under its Spider device; the client's own UA wins.
    result = classify(event("YahooMobileMail/1.0 (Android Mail; 1.4.4)"))
    assert (result.client, result.is_machine) == ("yahoo", False)


def test_outlook_android_app_device_is_unknown_not_tablet() -> None:
    result = classify(event("Outlook-Android/2.0"))
    assert (result.client, result.device, result.is_machine) == ("outlook", "unknown", False)


def test_overlong_user_agent_is_cut_and_still_classified() -> None:
    padded = CHROME_WINDOWS + " " + "x" * (10 * MAX_USER_AGENT_LENGTH)
    assert classify(event(padded, kind="click")) == human("desktop", "other", "Windows", "Chrome")


def test_classification_round_trips_through_msgspec() -> None:
    result = classify(event(GMAIL_PROXY))
    encoded = msgspec.json.encode(result)
    assert msgspec.json.decode(encoded, type=Classification) == result
