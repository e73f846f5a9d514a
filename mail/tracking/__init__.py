"""Tracking: signed tokens, instrumented HTML, durable event intake, classification, analytics."""
