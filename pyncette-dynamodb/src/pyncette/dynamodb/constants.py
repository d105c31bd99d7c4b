"""Every name, layout choice and default of the DynamoDB backend, each with the reason for it."""

from __future__ import annotations

import datetime
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
ATTR_WRITE_ID = "wid"
"""Random id stamped by every write. It versions the item (read-modify-write operations compare-and-swap
on it; ids never repeat, so there is no ABA), and a retried request that finds its own id knows its first
attempt applied."""
ATTR_GONE = "gone"
"""Marks the tombstone of a once-off instance whose completion is decided; invisible to every operation."""
ATTR_EXPIRES = "ttl"
"""The table's TTL attribute (epoch seconds), set on tombstones only; DynamoDB deletes them for free."""
TOMBSTONE_LIFETIME = datetime.timedelta(days=1)
"""Far longer than any retry of the completion that wrote the tombstone, which is all it is kept for."""
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

BOTOCORE_RETRY = {"mode": "standard", "total_max_attempts": 1}
"""botocore's own retries are off: its standard mode shares a retry quota per client, which one dropped
connection pool (a hundred requests in flight) empties at once, so the next failures go unretried."""
RETRY_ATTEMPTS = 6
"""Attempts per request on throttling, 5xx and connection errors, then BackendError and the scheduler's next poll.

Every request this backend sends is safe to repeat: reads and deletes are idempotent, and writes are
conditional, so a repeat of an applied write fails its condition instead of applying twice."""
RETRY_BASE_DELAY = 0.05
"""Seconds; back-off before attempt n+1 is uniform in [0, min(RETRY_MAX_DELAY, base * 2**n)] (full jitter)."""
RETRY_MAX_DELAY = 2.0
"""Seconds; caps a single back-off, so a request gives up within a few seconds rather than outlive a lease."""
THROTTLING_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)
"""Error codes DynamoDB documents as retryable (capacity, request rate, transient server faults)."""
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
