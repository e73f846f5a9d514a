"""The tracking deployment: the hot public endpoints (push webhooks now; pixel, click and unsubscribe next)."""
