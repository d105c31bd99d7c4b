"""Every key name, default and limit of the Redis backend, each with the reason for its value."""

from __future__ import annotations

import re

DEFAULT_URL = "redis://localhost"
"""The pyncette 1.x default: a local server on the standard port, database 0."""

DEFAULT_NAMESPACE = "pyncette"
"""The pyncette 1.x default prefix; apps sharing one server pick distinct namespaces."""

DEFAULT_TIMEOUT = 10.0
"""Seconds for connecting and for each reply: far above a normal round trip, short enough to fail over."""

DEFAULT_POOL_EXTRA = 2
"""Connections beyond ``concurrency_limit``: one for the poll loop, one held by the wake-up subscriber."""

MAX_DEFAULT_POOL_SIZE = 64
"""Cap of the derived pool size: Redis runs scripts one at a time, so more sockets only add queueing."""

NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
"""Namespaces are plain identifiers: no ``{``/``}`` (hash tags), no ``:`` (our separator), no glob characters."""

LAYOUT_VERSION = "1"
"""Version of the key layout below, stored once per namespace so a future layout can refuse or upgrade."""

SCOPE_ESCAPES = {"%": "%25", "}": "%7D"}
"""Escaped in scope names so the hash tag always ends at our own ``}`` and keys stay unambiguous."""

# Keys of one scope share the hash tag ``{<namespace>:<escaped scope>}`` so every script touches one slot.
STATE_SUFFIX = ":state"
"""Hash: instance -> ``next_run|paused|locked_until|token|owner`` (micros since the epoch, owner last)."""
SPEC_SUFFIX = ":spec"
"""Hash: instance -> spec JSON text, kept apart so claims and completions never rewrite it."""
DATA_SUFFIX = ":data"
"""Hash: instance -> data JSON text, rewritten by every completion."""
DUE_SUFFIX = ":due"
"""Sorted set: unpaused instance -> micros when it becomes claimable (max of next_run and locked_until)."""
NAMES_SUFFIX = ":names"
"""Sorted set with score 0: instance names in lexicographic order, for paged listing with ZRANGEBYLEX."""

LAYOUT_KEY = "{%s}:layout"
"""String holding LAYOUT_VERSION; its own slot, read once at start-up."""

WAKEUP_CHANNEL = "%s:wakeup"
"""Pub/sub channel of a namespace; messages are ``<micros> <scope>``."""

REGISTER_CHUNK = 500
"""Registrations per script call: bounds how long one call blocks the server; chunks are pipelined."""

RETRY_ATTEMPTS = 4
"""Attempts of one operation on transient errors before BackendError reaches the scheduler."""

RETRY_BASE_DELAY = 0.05
"""Seconds before the first retry; doubled per attempt, with full jitter so workers do not stampede."""

RETRY_MAX_DELAY = 1.0
"""Cap of one retry delay: a longer outage is the scheduler's next poll's business."""

SUBSCRIBER_READ_TIMEOUT = 0.25
"""Seconds the wake-up subscriber waits for a message before checking whether it should stop."""

SUBSCRIBER_STOP_GRACE = 2.0
"""Seconds a closing repository waits for its subscriber, beyond one read, before giving up on it."""

SUBSCRIBER_MAX_DELAY = 5.0
"""Cap of the wake-up subscriber's reconnect delay; polling covers wake-ups missed meanwhile."""
