"""Deprecated: the retrying client moved to :mod:`valueharms.remote` (used by generation too).

Kept for one release so that ``from valueharms.score.client import call`` still works.
"""
from ..remote import (  # noqa: F401
                      Failed,
                      InFlight,
                      Permanent,
                      Policy,
                      RateLimiter,
                      Stats,
                      Transient,
                      Unscorable,
                      call,
                      redact,
)
