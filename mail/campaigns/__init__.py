"""Campaigns: recipients, content, sending, A/B decisions."""
