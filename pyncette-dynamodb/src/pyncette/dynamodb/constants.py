"""Every name, layout choice and default of the DynamoDB backend, each with the reason for it."""

from __future__ import annotations

import re

DEFAULT_TABLE_NAME = "pyncette"
"""Same default as pyncette 1.x, so an upgraded app finds its configuration unchanged."""

DEFAULT_PARTITION_PREFIX = "pyncette"
"""Scopes of several apps can share one table when each app uses its own prefix."""

TABLE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{3,255}")
"""DynamoDB's own rule for table names; checked before any request is built."""

PARTITION_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.\-:]{0,64}")
"""No ``#``: the prefix must never contain PARTITION_SEPARATOR, so decoding a key is unambiguous."""

PARTITION_SEPARATOR = "#"
"""Ends the prefix in the partition key ``<prefix>#<scope>``; scopes themselves may contain anything."""

INSTANCE_PREFIX = "#"
"""Key values cannot be empty strings; static tasks have instance ``""``, so the sort key is ``#<instance>``."""

# Attribute names. Kept short because attribute names count towards item size and capacity units.
ATTR_PK = "pk"
"""Table partition key: ``<prefix>#<scope>``; a scope (and each partition of a partitioned task) is one partition key."""
ATTR_SK = "sk"
"""Table sort key: ``#<instance>``; instances of a scope sort by name, which list_tasks pages over."""
ATTR_READY = "rdy"
"""Index partition key: a copy of ``pk`` present only while unpaused, so paused items drop out of the sparse index."""
ATTR_DUE = "due"
"""Index sort key: epoch microseconds when the item becomes claimable, max(next_run, locked_until)."""
ATTR_NEXT_RUN = "nr"
"""Epoch microseconds (a number, so comparisons in conditions are numeric and exact to the microsecond)."""
ATTR_LOCKED_UNTIL = "lu"
"""Epoch microseconds; absent when unlocked."""
ATTR_LOCKED_BY = "lb"
"""Lease owner; absent when unlocked."""
ATTR_TOKEN = "ft"
"""Fencing token; claims compare-and-swap on it."""
ATTR_VERSION = "ver"
"""Incremented by every write, so read-modify-write operations can compare-and-swap the whole item."""
ATTR_PAUSED = "psd"
ATTR_SPEC = "spec"
ATTR_DATA = "dat"

INDEX_NAME = "pyncette_due"
"""Global (not local) secondary index: no 10 GB item-collection limit on a scope with millions of instances."""

META_PARTITION_KEY = "~pyncette"
"""Partition key of the schema item; it contains no PARTITION_SEPARATOR, so no scope can ever map to it."""
META_SORT_KEY = "schema"
ATTR_SCHEMA_VERSION = "schema_version"
SCHEMA_VERSION = 1
"""Layout version written on table creation; a backend refuses a table that records a newer one."""

RETRY_MODE = "standard"
"""botocore's standard mode: jittered exponential back-off on throttling, 5xx and connection errors."""
RETRY_ATTEMPTS = 4
"""Total attempts per request; afterwards BackendError, and the scheduler retries on its next poll."""
CONNECT_TIMEOUT = 5.0
"""Seconds; a dead endpoint should fail a request quickly rather than hold a worker."""
READ_TIMEOUT = 30.0
"""Seconds; well below typical lease durations, so a hung request cannot outlive a lease unnoticed."""
MIN_POOL_CONNECTIONS = 10
"""aiobotocore's default pool size; raised to batch_size / concurrency_limit so a batch's writes run at once."""
MAX_POOL_CONNECTIONS = 200
"""Cap on concurrent HTTP connections (and in-flight requests) per repository."""
MAX_CAS_ATTEMPTS = 16
"""Read-modify-write rounds before giving up under contention on one item (each round lost to another writer)."""
CLAIM_ROUNDS = 3
"""Index windows a claim may read when other workers win the first candidates, before returning what it got."""
TABLE_ACTIVE_TIMEOUT = 300.0
"""Seconds to wait for a new table and its index to become ACTIVE (real DynamoDB takes seconds to minutes)."""
