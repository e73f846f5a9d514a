"""The email domain as plain Python: no Ray, no Serve."""
