"""Fixtures live in plugin modules; this file only lists them."""

pytest_plugins = [
    "tests.fix_services",
    "tests.fix_db",
    "tests.fix_redis",
    "tests.fix_ray",
    "tests.fix_serve",
    "tests.fix_gmail",
]
