"""The mailray Gmail settings that aim a client at an emulator: its endpoints and dev credentials.

One place for the emulator's URL layout, used by the demo, the CLI, the tests and benchmarks.
"""

from __future__ import annotations

from cluster.emulators.gmail.config import EmulatorConfig


def gmail_settings_for(base_url: str, config: EmulatorConfig | None = None) -> dict[str, str]:
    """GmailSettings fields (endpoints, OAuth client) for the emulator at `base_url`."""
    config = config or EmulatorConfig()
    return {
        "api_endpoint": base_url,
        "oauth_auth_uri": f"{base_url}/o/oauth2/auth",
        "oauth_token_uri": f"{base_url}/token",
        "oauth_revoke_uri": f"{base_url}/revoke",
        "oidc_certs_uri": f"{base_url}/oauth2/v1/certs",
        "client_id": config.client_id,
        "client_secret": config.client_secret,
    }


def gmail_environment(base_url: str, config: EmulatorConfig | None = None) -> dict[str, str]:
    """The same as MAILRAY_GMAIL__* environment variables, for processes started elsewhere."""
    return {
        f"MAILRAY_GMAIL__{key.upper()}": value for key, value in gmail_settings_for(base_url, config).items()
    }
