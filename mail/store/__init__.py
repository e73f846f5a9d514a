"""Postgres and Redis: the connection pool, migrations, bulk COPY, partitions, streams, limiters."""
