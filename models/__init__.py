"""Shapes that cross a boundary (actor calls, HTTP, Redis, SQL rows), as msgspec Structs.

Nothing here does I/O or imports another mailray package.
"""
