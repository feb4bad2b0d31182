"""Deprecated: the retrying client moved to :mod:`valueharms.remote` (used by generation too).

Kept for one release so that ``from valueharms.score.client import call`` still works.
"""
from ..remote import (Failed, InFlight, Permanent, Policy, RateLimiter, Stats,  # noqa: F401
                      Transient, Unscorable, call, redact)
