"""A Gmail API emulator faithful to the gmail.v1 discovery document: REST and batch, OAuth 2.0,
quota (legacy and 2026 regimes), history with expiry, Pub/Sub push with signed OIDC tokens,
injected faults. The product's demo and the sync engine's test bed.

    from cluster.emulators.gmail import EmulatorConfig, GmailEmulator
"""

from cluster.emulators.gmail.config import EmulatorConfig
from cluster.emulators.gmail.server import GmailEmulator
from cluster.emulators.gmail.stats import EmulatorStats

__all__ = ["EmulatorConfig", "EmulatorStats", "GmailEmulator"]
