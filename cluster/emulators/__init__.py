"""Stand-ins for the providers mailray talks to, for the demo, tests and benchmarks.

`cluster.emulators.gmail` is a Gmail API server (REST, batch, OAuth 2.0, Pub/Sub push) faithful to
the gmail.v1 discovery document shipped in google-api-python-client.
"""
