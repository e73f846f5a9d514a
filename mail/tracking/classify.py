"""Who made a tracking request: device, email client, and whether a machine (not a human) made it.

`classify(ctx)` runs for every open, click and unsubscribe the writer records, so everything that
depends on the user agent alone is parsed once per distinct string (an `lru_cache` keyed on it)
and only the cheap checks on IP, method and timing run per event.

A machine event is still recorded; `is_machine` and `machine_reason` let the reports count
human-only figures. Each rule sets exactly one reason, the first that matches in this order:

==================== =====================================================================
reason               when
==================== =====================================================================
empty_user_agent     no user agent, or only whitespace
gmail_image_proxy    "GoogleImageProxy" in the UA: Gmail fetched the pixel through its proxy
yahoo_image_proxy    "YahooMailProxy" in the UA: Yahoo fetched the pixel through its proxy
apple_mpp            Apple Mail Privacy Protection prefetch (see `_APPLE_MAIL_WEBKIT`)
head_request         the request method is HEAD
office_link_probe    Office's "Protocol/Existence Discovery" request that precedes a click
security_scanner     a mail security vendor's name in the UA
bot_user_agent       a crawler, HTTP library or headless browser UA; bare "Mozilla/5.0" on a click
too_soon_after_send  a click (or unsubscribe GET) under `TOO_SOON_AFTER_SEND` after sending
all_links_at_once    a click while `ALL_LINKS_AT_ONCE_MIN_OTHER_CLICKS` other links were hit
==================== =====================================================================

Proxy opens (Gmail, Yahoo, Apple MPP) are marked as machines on purpose. A Gmail or Yahoo proxy
fetch usually does follow a real open, but it cannot be tied to a device, and the proxy caches
the image so later opens are not seen at all; Apple MPP fetches whether or not the message is
ever opened. So human-only counts exclude every proxy open, and "opened by a human" is a lower
bound, never an estimate; the client (gmail, yahoo, apple) is still reported for them.

A one-click unsubscribe (RFC 8058) is a POST that the mailbox provider makes when the user
presses its unsubscribe button; the RFC chose POST so that scanners, which follow GET links,
cannot trigger it. Such a POST is therefore human intent whatever its user agent.

The user agent is parsed by ua-parser (uap-core regexes from `ua-parser-builtins`), with the
`ua-parser-rs` backend when installed; the rules above are this module's own.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Final, Literal, NamedTuple

import msgspec
import ua_parser

EventKind = Literal["open", "click", "unsubscribe"]
DeviceKind = Literal["desktop", "mobile", "tablet", "unknown"]
MailClient = Literal["gmail", "outlook", "apple", "yahoo", "other"]
MachineReason = Literal[
    "empty_user_agent",
    "gmail_image_proxy",
    "yahoo_image_proxy",
    "apple_mpp",
    "head_request",
    "office_link_probe",
    "security_scanner",
    "bot_user_agent",
    "too_soon_after_send",
    "all_links_at_once",
]

# A click this soon after sending is a link scanner at delivery time: Microsoft Defender Safe
# Links, Proofpoint URL Defense, Mimecast URL Protect and Barracuda Link Protection all follow
# links on arrival with ordinary browser user agents from data-centre IPs, so only timing gives
# them away. 10 s is our heuristic, not a published figure.
TOO_SOON_AFTER_SEND: Final = timedelta(seconds=10)
# A click when the caller counted this many *other* distinct links of the same email clicked
# within ~2 s: a scanner that follows every link, not a reader.
ALL_LINKS_AT_ONCE_MIN_OTHER_CLICKS: Final = 2
# Distinct user agents kept parsed; a campaign sees a few thousand at most.
USER_AGENT_CACHE_SIZE: Final = 8192
# Longer user agents are cut before parsing (and before caching): real ones stay well under this,
# and it bounds both the regex work and the cache's memory for hostile input.
MAX_USER_AGENT_LENGTH: Final = 1024


class EventContext(msgspec.Struct, frozen=True, kw_only=True):
    """One tracking request as the writer saw it.

    `occurred_at` and `sent_at` must both be timezone-aware (or both naive).
    """

    kind: EventKind
    user_agent: str | None
    ip: str | None
    method: str = "GET"
    occurred_at: datetime
    sent_at: datetime | None = None
    prior_clicks_same_second: int = 0


class Classification(msgspec.Struct, frozen=True, kw_only=True):
    """What `classify` concluded; `os` and `browser` are ua-parser's family names (None if unknown)."""

    device: DeviceKind
    client: MailClient
    os: str | None
    browser: str | None
    is_machine: bool
    machine_reason: MachineReason | None


class _Agent(NamedTuple):
    """Everything that follows from the user agent alone (what the cache holds)."""

    device: DeviceKind
    client: MailClient
    os: str | None
    browser: str | None
    # A machine reason the UA alone proves, for every kind of event.
    reason: MachineReason | None
    # The exact UA Apple Mail's WebKit view sends: MPP when it comes from Apple's own addresses.
    apple_mail_webkit: bool
    # Exactly "Mozilla/5.0": an MPP prefetch on an open; no browser navigates with it.
    bare_mozilla: bool


# Gmail, since December 2013 (Gmail blog "Images now showing"), serves every image through
# Google's proxy; the fetch carries e.g. "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko
# Firefox/11.0 (via ggpht.com GoogleImageProxy)", whatever the reader's device (still so in 2024).
_GMAIL_PROXY = "googleimageproxy"
# Yahoo Mail fetches images through its own proxy, whose UA links its help article:
# "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html" (seen 2020-2024).
_YAHOO_PROXY = "yahoomailproxy"
# Yahoo's own apps identify as "YahooMobileMail/x.y" (uap-core's regexes list it, 2024).
_YAHOO_APP_TOKENS: Final = ("yahoomobilemail",)
# Outlook for Windows renders mail with Word and fetches images itself as "Microsoft Office/16.0
# (Windows NT 10.0; Microsoft Outlook 16.0.x; Pro)"; its embedded IE view sends "ms-office" /
# "MSOffice 16"; the mobile apps send "Outlook-iOS/..." and "Outlook-Android/..."; Outlook for Mac
# "MacOutlook/16.x" (all listed in uap-core's regexes, 2024).
_OUTLOOK_TOKENS: Final = (
    "microsoft outlook",
    "ms-office",
    "msoffice",
    "outlook-ios",
    "outlook-android",
    "macoutlook",
)
# When a link is clicked in an Office app, Office first probes it with an OPTIONS or HEAD request
# as "Microsoft Office Protocol Discovery" / "Microsoft Office Existence Discovery" (Microsoft
# KB 899927, 2005, unchanged in Microsoft 365 as of 2024), then hands the URL to the browser,
# whose own request is the human click.
_OFFICE_PROBE_TOKENS: Final = ("microsoft office protocol discovery", "microsoft office existence discovery")
# Mail security vendors whose names appear in some of their fetchers' UAs. Most of their link
# checks use plain browser UAs (caught by the timing rules instead), so this list catches few;
# none of these vendors documents its UA.
_SCANNER_TOKENS: Final = ("barracuda", "mimecast", "proofpoint")
# HTTP libraries, command-line tools and headless browsers: no person reads mail with these.
_TOOL_TOKENS: Final = (
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "apache-httpclient",
    "node-fetch",
    "axios/",
    "libwww-perl",
    "scrapy",
    "headlesschrome",
    "phantomjs",
)
# "bot", "crawler" or "spider" as a word or word ending ("Googlebot/2.1", "bingbot", "AhrefsBot"),
# but not the Cubot phone brand ("CUBOT X30").
_BOT_WORD = re.compile(r"(?<!cu)bot\b|crawler|spider", re.IGNORECASE)

# Apple Mail Privacy Protection (announced WWDC June 2021, on by choice since iOS 15, iPadOS 15
# and macOS Monterey, autumn 2021): Apple "loads remote content privately in the background, even
# when you don't open the message", through Apple's proxies. Deliverability vendors reported
# (2021-2022) that the prefetch comes either with the bare UA "Mozilla/5.0" or with the Mac Mail
# WebKit UA "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like
# Gecko)" from Apple's addresses. Apple Mail itself (no MPP) sends the same WebKit UA, with no
# "Version/" or "Safari" token, from the reader's own address; Safari and in-app browsers add
# tokens, so only this exact shape counts as Apple Mail.
_APPLE_MAIL_WEBKIT = re.compile(
    r"Mozilla/5\.0 \((?:Macintosh|iPhone|iPad|iPod)[^)]*\) AppleWebKit/[\d.]+ \(KHTML, like Gecko\)"
    r"(?: Mobile/\w+)?"
)
# 17.0.0.0/8 has been Apple's own block since 1990 (ARIN). MPP prefetches that leave through
# iCloud Private Relay's partner networks (not 17/8) with the WebKit UA are not caught: they count
# as human Apple Mail opens. IPv6 is not checked.
_APPLE_NETWORK: Final = ipaddress.IPv4Network("17.0.0.0/8")

# ua-parser's OS families for computers (it says "Mac OS X" for every macOS).
_DESKTOP_OS: Final = frozenset(
    {
        "Windows",
        "Mac OS X",
        "macOS",
        "Linux",
        "Chrome OS",
        "Ubuntu",
        "Debian",
        "Fedora",
        "Red Hat",
        "openSUSE",
        "Linux Mint",
        "Arch Linux",
        "Gentoo",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
    }
)
# Chrome for Android and other Android browsers put "Mobile" in the UA on phones and leave it out
# on tablets (Google's "User-Agent Strings" guidance for Chrome, and MDN, as of 2024).
_MOBILE_TOKEN = re.compile(r"\bMobile\b")
# UA verdicts that name the sender outright, so they win over what the method or timing says.
_BEFORE_ANY_REQUEST_CHECK: Final = frozenset({"empty_user_agent", "gmail_image_proxy", "yahoo_image_proxy"})


def classify(ctx: EventContext) -> Classification:
    """Device, mail client and machine-or-human for one tracking request (rules: module docstring)."""
    agent = _describe_agent(ctx.user_agent[:MAX_USER_AGENT_LENGTH].strip() if ctx.user_agent else "")
    method = ctx.method.upper()
    if ctx.kind == "unsubscribe" and method == "POST":
        return _result(agent, None)
    return _result(agent, _machine_reason(ctx, agent, method))


def _machine_reason(ctx: EventContext, agent: _Agent, method: str) -> MachineReason | None:
    if agent.reason in _BEFORE_ANY_REQUEST_CHECK:
        return agent.reason
    if _is_apple_mpp(ctx, agent):
        return "apple_mpp"
    if method == "HEAD":
        return "head_request"
    if agent.reason is not None:
        return agent.reason
    if agent.bare_mozilla:
        # On an open it is MPP (above); no browser follows a link with it.
        return "bot_user_agent"
    if ctx.kind == "open":
        return None
    if ctx.sent_at is not None and ctx.occurred_at - ctx.sent_at < TOO_SOON_AFTER_SEND:
        return "too_soon_after_send"
    if ctx.kind == "click" and ctx.prior_clicks_same_second >= ALL_LINKS_AT_ONCE_MIN_OTHER_CLICKS:
        return "all_links_at_once"
    return None


def _is_apple_mpp(ctx: EventContext, agent: _Agent) -> bool:
    if agent.bare_mozilla:
        return ctx.kind == "open"
    return agent.apple_mail_webkit and _in_apple_network(ctx.ip)


def _result(agent: _Agent, reason: MachineReason | None) -> Classification:
    if reason == "apple_mpp":
        # The prefetch says nothing about the reader's device: the Mac UA is Apple's proxy's.
        return Classification(
            device="unknown", client="apple", os=None, browser=None, is_machine=True, machine_reason=reason
        )
    return Classification(
        device=agent.device,
        client=agent.client,
        os=agent.os,
        browser=agent.browser,
        is_machine=reason is not None,
        machine_reason=reason,
    )


def _in_apple_network(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped  # "::ffff:17.1.2.3" from a dual-stack listener
        return mapped is not None and mapped in _APPLE_NETWORK
    return address in _APPLE_NETWORK


@lru_cache(maxsize=USER_AGENT_CACHE_SIZE)
def _describe_agent(user_agent: str) -> _Agent:
    if not user_agent:
        return _Agent("unknown", "other", None, None, "empty_user_agent", False, False)
    lowered = user_agent.lower()
    if _GMAIL_PROXY in lowered:
        return _Agent("unknown", "gmail", None, None, "gmail_image_proxy", False, False)
    if _YAHOO_PROXY in lowered:
        return _Agent("unknown", "yahoo", None, None, "yahoo_image_proxy", False, False)
    if user_agent == "Mozilla/5.0":
        return _Agent("unknown", "other", None, None, None, False, True)

    parsed = _parser().parse(user_agent)
    os_family = parsed.os.family if parsed.os and parsed.os.family != "Other" else None
    browser = parsed.user_agent.family if parsed.user_agent and parsed.user_agent.family != "Other" else None
    device_family = parsed.device.family if parsed.device else None
    apple_mail_webkit = _APPLE_MAIL_WEBKIT.fullmatch(user_agent) is not None
    client = _client(lowered, apple_mail_webkit)
    device = _device(user_agent, os_family, device_family)

    reason: MachineReason | None = None
    if any(token in lowered for token in _OFFICE_PROBE_TOKENS):
        reason = "office_link_probe"
    elif any(token in lowered for token in _SCANNER_TOKENS):
        reason = "security_scanner"
    elif (
        any(token in lowered for token in _TOOL_TOKENS)
        or _BOT_WORD.search(user_agent) is not None
        # uap-core's "Spider" device also matches any UA containing "yahoo" and a few other
        # words, so a known mail client's own UA is trusted over it.
        or (device_family == "Spider" and client == "other")
    ):
        reason = "bot_user_agent"
    if reason is not None or device_family == "Spider":
        device = "unknown"
    return _Agent(device, client, os_family, browser, reason, apple_mail_webkit, False)


def _client(lowered: str, apple_mail_webkit: bool) -> MailClient:
    if any(token in lowered for token in _OUTLOOK_TOKENS):
        return "outlook"
    if any(token in lowered for token in _YAHOO_APP_TOKENS):
        return "yahoo"
    if apple_mail_webkit:
        return "apple"
    return "other"


def _device(user_agent: str, os_family: str | None, device_family: str | None) -> DeviceKind:
    if device_family in ("iPhone", "iPod"):
        return "mobile"
    if device_family == "iPad":
        # iPadOS 13+ Safari asks for desktop sites with a Mac UA by default (2019), so most iPad
        # browsing is reported as desktop; only apps and "mobile site" requests say iPad.
        return "tablet"
    if os_family == "Android":
        if _MOBILE_TOKEN.search(user_agent):
            return "mobile"
        # The Mobile-token convention is a browser one; an app's own UA ("Outlook-Android/2.0")
        # without it says nothing about the screen.
        return "tablet" if user_agent.startswith("Mozilla/") else "unknown"
    if os_family in ("iOS", "Windows Phone"):
        return "mobile"
    if os_family in _DESKTOP_OS or device_family == "Mac":
        return "desktop"
    return "unknown"


@cache
def _parser() -> ua_parser.Parser:
    """ua-parser with its fastest installed backend and no cache of its own (`_describe_agent` is one).

    Built on first use, not at import: the Rust backend compiles its regex set then (~0.1 s).
    """
    resolver = ua_parser.BestAvailableResolver
    if resolver is ua_parser.BasicResolver:
        return ua_parser.Parser(resolver(ua_parser.load_builtins()))
    return ua_parser.Parser(resolver(ua_parser.load_lazy_builtins()))
