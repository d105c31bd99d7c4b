"""The DynamoDB repository.

One item per instance, keyed by (``<prefix>#<scope>``, ``#<instance>``). A sparse global secondary
index keyed by (scope, eligible time) lists the unpaused instances of a scope in the order they
become claimable, so a claim reads only due items. Every state change is a conditional write: hot
paths (claim, complete, extend) condition on the lease fields directly; rarer read-modify-write
paths (register an existing instance, pause) compare-and-swap on the write id. A lost
condition means another worker won; it is never retried as an error.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import random
import secrets
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import anyio
import attrs
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from pyncette.dynamodb import constants as c
from pyncette.errors import BackendError, ConfigurationError
from pyncette.model import (
    ClaimedTask,
    ClaimResult,
    Completion,
    DueSummary,
    Lease,
    Page,
    RegisterOutcome,
    Registration,
    TaskKey,
    TaskState,
    fencing_token_after,
    from_micros,
    to_micros,
)
from pyncette.repository import Repository

logger = logging.getLogger(__name__)

Item = dict[str, Any]
T = TypeVar("T")

_CREDENTIAL_ERRORS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
    }
)


class _ConditionFailed(Exception):
    """A conditional write lost; ``item`` is the stored item (None when it does not exist)."""

    def __init__(self, item: Item | None) -> None:
        super().__init__("condition failed")
        self.item = item


def _eligible_at(state: TaskState) -> int:
    next_run = to_micros(state.next_run)
    if state.locked_until is None:
        return next_run
    return max(next_run, to_micros(state.locked_until))


def _at(micros: int | None) -> datetime.datetime | None:
    return None if micros is None else from_micros(micros)


def _live(item: Item | None) -> bool:
    """Whether ``item`` is a stored instance (not absent, not the tombstone of a completed once-off run)."""
    return item is not None and bool(item) and c.ATTR_GONE not in item


def _write_id() -> str:
    return secrets.token_hex(8)


def _earliest(next_due: int | None, won: list[TaskState], claim: _Claim) -> int | None:
    """``next_due`` from the index, or the expiry of the leases just taken if earlier.

    The index query ran alongside the claims and may not have seen them; their leases are instances
    that become claimable again after ``now``.
    """
    if not won:
        return next_due
    return claim.until_us if next_due is None else min(next_due, claim.until_us)


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _int(item: Item, name: str) -> int | None:
    value = item.get(name)
    return None if value is None else int(value["N"])


def _str(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value["S"])


async def _concurrently(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run ``calls`` at once; return their results in order, or raise the first error after all finished."""
    if len(calls) == 1:
        return [await calls[0]()]
    results: list[Any] = [None] * len(calls)
    errors: list[Exception] = []

    async def run(index: int) -> None:
        try:
            results[index] = await calls[index]()
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for index in range(len(calls)):
            group.start_soon(run, index)
    if errors:
        raise errors[0]
    return results


def is_transient(exc: Exception) -> bool:
    """Whether ``exc`` is worth retrying: throttling, a server fault, a dropped or refused connection."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return exc.response.get("Error", {}).get("Code") in c.THROTTLING_ERRORS or int(status) >= 500
    return isinstance(exc, (BotoConnectionError, HTTPClientError, OSError, asyncio.TimeoutError))


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (from 0): exponential, full jitter."""
    return random.uniform(0, min(c.RETRY_MAX_DELAY, c.RETRY_BASE_DELAY * 2**attempt))


async def send(client: Any, action: str, **kwargs: Any) -> Item:
    """Call ``client.<action>(**kwargs)``, retrying transient failures with back-off; raise the driver's error otherwise."""
    for attempt in range(c.RETRY_ATTEMPTS - 1):
        try:
            response: Item = await getattr(client, action)(**kwargs)
            return response
        except (ClientError, BotoCoreError, OSError, asyncio.TimeoutError) as exc:
            if not is_transient(exc):
                raise
            logger.debug("DynamoDB %s failed (%s), retrying", action, type(exc).__name__)
        await anyio.sleep(backoff(attempt))
    last: Item = await getattr(client, action)(**kwargs)
    return last


def translate_error(exc: Exception, action: str, table: str) -> Exception:
    """The pyncette error for a driver error raised by ``action`` (never containing credentials)."""
    if isinstance(exc, NoCredentialsError):
        return ConfigurationError(
            "no AWS credentials found for the DynamoDB backend: configure them in the environment or ~/.aws, "
            "or pass a client as dynamodb_client"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _CREDENTIAL_ERRORS or (status in (401, 403) and code != "AccessDeniedException"):
            reason = f"HTTP {status}" if code == str(status) else code
            return ConfigurationError(
                f"DynamoDB rejected the AWS credentials ({reason}); check the ambient AWS configuration "
                "or the client passed as dynamodb_client"
            )
        if code == "ResourceNotFoundException":
            return ConfigurationError(
                f"DynamoDB table {table!r} (dynamodb_table_name) or its index {c.INDEX_NAME!r} does not exist"
            )
        if code == "AccessDeniedException":
            return ConfigurationError(f"access denied to DynamoDB table {table!r} (dynamodb_table_name) for {action}")
        return BackendError(f"DynamoDB {action} on table {table!r} failed: {code}: {error.get('Message', '')}")
    return BackendError(f"DynamoDB {action} on table {table!r} failed: {type(exc).__name__} (check dynamodb_endpoint)")


class DynamoDBRepository(Repository):
    """A :class:`~pyncette.repository.Repository` stored in one DynamoDB table.

    ``client`` is an entered aiobotocore DynamoDB client; the repository never closes it.
    ``max_in_flight`` bounds the requests one call issues at once (size it to the client's pool).

    :meth:`server_time` keeps the default ``None``: DynamoDB has no operation that returns the
    service's clock (the ``Date`` header of a reply is whole seconds, and moto's is the host's), so
    workers on DynamoDB rely on their own clocks being synchronised (NTP; AWS hosts use Amazon Time
    Sync).
    """

    def __init__(self, client: Any, *, table_name: str, partition_prefix: str, max_in_flight: int) -> None:
        self._client = client
        self._table = table_name
        self._prefix = partition_prefix + c.PARTITION_SEPARATOR
        self._limiter = anyio.CapacityLimiter(max_in_flight)

    # Encoding

    def _pk(self, task: str) -> str:
        return self._prefix + task

    def _key(self, key: TaskKey) -> Item:
        return {c.ATTR_PK: _s(self._pk(key.task)), c.ATTR_SK: _s(c.INSTANCE_PREFIX + key.instance)}

    def _encode(self, state: TaskState, write_id: str) -> Item:
        item = self._key(state.key)
        item.update(
            {
                c.ATTR_SPEC: _s(state.spec),
                c.ATTR_DATA: _s(state.data),
                c.ATTR_NEXT_RUN: _n(to_micros(state.next_run)),
                c.ATTR_DUE: _n(_eligible_at(state)),
                c.ATTR_PAUSED: {"BOOL": state.paused},
                c.ATTR_TOKEN: _n(state.fencing_token),
                c.ATTR_WRITE_ID: _s(write_id),
            }
        )
        if not state.paused:
            item[c.ATTR_READY] = _s(self._pk(state.key.task))
        if state.locked_by is not None:
            item[c.ATTR_LOCKED_BY] = _s(state.locked_by)
        if state.locked_until is not None:
            item[c.ATTR_LOCKED_UNTIL] = _n(to_micros(state.locked_until))
        return item

    def _decode(self, item: Item) -> TaskState:
        locked_until = _int(item, c.ATTR_LOCKED_UNTIL)
        return TaskState(
            key=TaskKey(
                task=item[c.ATTR_PK]["S"][len(self._prefix) :],
                instance=item[c.ATTR_SK]["S"][len(c.INSTANCE_PREFIX) :],
            ),
            spec=item[c.ATTR_SPEC]["S"],
            data=item[c.ATTR_DATA]["S"],
            next_run=from_micros(int(item[c.ATTR_NEXT_RUN]["N"])),
            paused=bool(item.get(c.ATTR_PAUSED, {}).get("BOOL", False)),
            locked_until=None if locked_until is None else from_micros(locked_until),
            locked_by=_str(item, c.ATTR_LOCKED_BY),
            fencing_token=int(item[c.ATTR_TOKEN]["N"]),
        )

    # Requests

    async def _call(self, action: str, **kwargs: Any) -> Item:
        """Issue one request (see :func:`send`); a lost condition raises :class:`_ConditionFailed`."""
        try:
            async with self._limiter:
                return await send(self._client, action, TableName=self._table, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise _ConditionFailed(exc.response.get("Item")) from None
            raise translate_error(exc, action, self._table) from exc
        except (BotoCoreError, OSError, asyncio.TimeoutError) as exc:
            raise translate_error(exc, action, self._table) from exc

    async def _get_item(self, key: Item) -> Item | None:
        response = await self._call("get_item", Key=key, ConsistentRead=True)
        item: Item | None = response.get("Item")
        return item if _live(item) else None

    async def _put_if(self, item: Item, condition: str, names: dict[str, str], values: Item | None = None) -> Item | None:
        """Put ``item`` if ``condition`` holds; return None when applied, else the stored item (or {} if none)."""
        kwargs: dict[str, Any] = {"ExpressionAttributeValues": values} if values else {}
        try:
            await self._call(
                "put_item",
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **kwargs,
            )
        except _ConditionFailed as lost:
            if lost.item and lost.item.get(c.ATTR_WRITE_ID) == item[c.ATTR_WRITE_ID]:
                return None  # our own put, applied by an attempt whose response was lost
            return lost.item or {}
        return None

    async def _update_if(
        self, key: Item, sets: str, condition: str, names: dict[str, str], values: Item, *, remove: str = ""
    ) -> Item:
        """``SET sets [REMOVE remove]`` if ``condition`` holds; return the new item, else raise _ConditionFailed.

        Every update also stamps a fresh write id.
        """
        write_id = _write_id()
        try:
            response = await self._call(
                "update_item",
                Key=key,
                UpdateExpression=f"SET {sets}, #wid = :wid{f' REMOVE {remove}' if remove else ''}",
                ConditionExpression=condition,
                ExpressionAttributeNames={**names, "#wid": c.ATTR_WRITE_ID},
                ExpressionAttributeValues={**values, ":wid": _s(write_id)},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except _ConditionFailed as lost:
            if lost.item and lost.item.get(c.ATTR_WRITE_ID) == _s(write_id):
                return lost.item  # our own update, applied by an attempt whose response was lost
            raise
        attributes: Item = response["Attributes"]
        return attributes

    # register / unregister

    async def register_tasks(self, now: datetime.datetime, registrations: Sequence[Registration]) -> list[RegisterOutcome]:
        return await _concurrently([functools.partial(self._register, now, reg) for reg in registrations])

    async def _register(self, now: datetime.datetime, reg: Registration) -> RegisterOutcome:
        created = TaskState(key=reg.key, spec=reg.spec, data=reg.data, next_run=reg.next_run)
        stored_item: Item | None = {}  # {}: not known to exist, so try to create it
        for _ in range(c.MAX_CAS_ATTEMPTS):
            if stored_item is None or not _live(stored_item):
                stored_item = await self._put_if(
                    self._encode(created, _write_id()),
                    "attribute_not_exists(#pk) OR attribute_exists(#gone)",
                    {"#pk": c.ATTR_PK, "#gone": c.ATTR_GONE},
                )
                if stored_item is None:
                    return RegisterOutcome.CREATED
                if not stored_item:  # a server that does not return the item with a failed condition
                    stored_item = await self._get_item(self._key(reg.key)) or {}
                continue
            stored = self._decode(stored_item)
            if stored.is_locked(now) and not reg.force:
                return RegisterOutcome.LOCKED
            updated = attrs.evolve(stored, spec=reg.spec, next_run=stored.next_run if stored.spec == reg.spec else reg.next_run)
            if reg.force:
                token = fencing_token_after(stored.fencing_token, now)
                updated = attrs.evolve(updated, locked_by=None, locked_until=None, fencing_token=token)
            if updated == stored:
                return RegisterOutcome.UPDATED
            stored_item = await self._replace(stored_item, updated)
            if stored_item is None:
                return RegisterOutcome.UPDATED
        raise BackendError(f"DynamoDB: gave up registering {reg.key} after {c.MAX_CAS_ATTEMPTS} conflicting writes")

    async def _replace(self, stored_item: Item, state: TaskState) -> Item | None:
        """Compare-and-swap ``stored_item`` for ``state``; None when applied, else what is stored now ({} if gone)."""
        item = self._encode(state, _write_id())
        return await self._put_if(item, "#wid = :wid", {"#wid": c.ATTR_WRITE_ID}, {":wid": stored_item[c.ATTR_WRITE_ID]})

    async def unregister_task(self, now: datetime.datetime, key: TaskKey) -> bool:
        response = await self._call("delete_item", Key=self._key(key), ReturnValues="ALL_OLD")
        return _live(response.get("Attributes"))

    # claim_due

    async def claim_due(
        self,
        now: datetime.datetime,
        task: str,
        *,
        owner: str,
        lease_duration: datetime.timedelta,
        limit: int,
        instance: str | None = None,
    ) -> ClaimResult:
        now_us = to_micros(now)
        claim = _Claim(owner=owner, now_us=now_us, until_us=to_micros(now + lease_duration))
        pk = self._pk(task)
        next_due: int | None = None

        async def fetch_next_due() -> TaskState | None:
            # Runs alongside the claims, which only move items to later due times (see _earliest).
            nonlocal next_due
            next_due = await self._next_due(pk, now_us)
            return None

        if instance is not None:
            key = self._key(TaskKey(task, instance))
            calls: list[Callable[[], Awaitable[TaskState | None]]] = [functools.partial(self._claim_one, key, claim)]
            states = await _concurrently([*calls, fetch_next_due])
            won = [state for state in states if state is not None]
            return ClaimResult(claimed=self._claimed(won, claim), next_due=_at(_earliest(next_due, won, claim)))

        won = []
        start_key: Item | None = None
        more = False
        for round_ in range(c.CLAIM_ROUNDS):
            need = limit - len(won)
            kwargs: dict[str, Any] = {"ExclusiveStartKey": start_key} if start_key else {}
            response = await self._call(
                "query",
                IndexName=c.INDEX_NAME,
                KeyConditionExpression="#rdy = :pk AND #due <= :now",
                ExpressionAttributeNames={"#rdy": c.ATTR_READY, "#due": c.ATTR_DUE},
                ExpressionAttributeValues={":pk": _s(pk), ":now": _n(now_us)},
                ScanIndexForward=True,
                Limit=need + 1,
                **kwargs,
            )
            candidates = response.get("Items", [])
            more = len(candidates) > need
            candidates = candidates[:need]
            keys = [{c.ATTR_PK: item[c.ATTR_PK], c.ATTR_SK: item[c.ATTR_SK]} for item in candidates]
            calls = [functools.partial(self._claim_one, key, claim) for key in keys]
            states = await _concurrently([*calls, fetch_next_due] if round_ == 0 else calls)
            won.extend(state for state in states if state is not None)
            if not more or len(won) >= limit:
                break
            # Other workers won some candidates: read on past this window rather than return short.
            start_key = candidates[-1]
        return ClaimResult(claimed=self._claimed(won, claim), more=more, next_due=_at(_earliest(next_due, won, claim)))

    @staticmethod
    def _claimed(states: list[TaskState], claim: _Claim) -> tuple[ClaimedTask, ...]:
        until = from_micros(claim.until_us)
        return tuple(
            ClaimedTask(state=state, lease=Lease(owner=claim.owner, token=state.fencing_token, locked_until=until))
            for state in states
        )

    async def _next_due(self, pk: str, now_us: int) -> int | None:
        response = await self._call(
            "query",
            IndexName=c.INDEX_NAME,
            KeyConditionExpression="#rdy = :pk AND #due > :now",
            ExpressionAttributeNames={"#rdy": c.ATTR_READY, "#due": c.ATTR_DUE},
            ExpressionAttributeValues={":pk": _s(pk), ":now": _n(now_us)},
            ScanIndexForward=True,
            Limit=1,
        )
        items = response.get("Items", [])
        return int(items[0][c.ATTR_DUE]["N"]) if items else None

    async def count_due(self, now: datetime.datetime, task: str) -> DueSummary:
        """Query the due index with ``Select=COUNT``, page by page, plus one ``Limit=1`` query for the oldest.

        Reads only the scope's due index entries, but DynamoDB bills a query by the data it reads
        (about one read unit per 4 KB of index entries, eventually consistent), so a large backlog
        costs a proportionate number of read units on every call. The index is eventually
        consistent: the numbers may trail recent writes by a moment.
        """
        names = {"#rdy": c.ATTR_READY, "#due": c.ATTR_DUE}
        values = {":pk": _s(self._pk(task)), ":now": _n(to_micros(now))}
        query = functools.partial(
            self._call,
            "query",
            IndexName=c.INDEX_NAME,
            KeyConditionExpression="#rdy = :pk AND #due <= :now",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        first = (await query(ScanIndexForward=True, Limit=1)).get("Items", [])
        if not first:
            return DueSummary(count=0)
        count = 0
        start_key: Item | None = None
        while True:
            kwargs: dict[str, Any] = {"ExclusiveStartKey": start_key} if start_key else {}
            response = await query(Select="COUNT", **kwargs)
            count += int(response.get("Count", 0))
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                break
        if count == 0:  # the oldest one was claimed in between
            return DueSummary(count=0)
        return DueSummary(count=count, oldest=from_micros(int(first[0][c.ATTR_DUE]["N"])))

    async def _claim_one(self, key: Item, claim: _Claim) -> TaskState | None:
        names = {
            "#rdy": c.ATTR_READY,
            "#nr": c.ATTR_NEXT_RUN,
            "#lu": c.ATTR_LOCKED_UNTIL,
            "#lb": c.ATTR_LOCKED_BY,
            "#due": c.ATTR_DUE,
            "#ft": c.ATTR_TOKEN,
        }
        eligible = "attribute_exists(#rdy) AND #nr <= :now AND (attribute_not_exists(#lu) OR #lu <= :now)"
        sets = "#lb = :owner, #lu = :until, #due = :until, #ft = :token"
        values = {":now": _n(claim.now_us), ":until": _n(claim.until_us), ":owner": _s(claim.owner)}
        # Tokens are normally the clock in microseconds; only when the stored token is already at or
        # past it (claims within one microsecond, a skewed clock) does a second round need the stored value.
        token = claim.now_us
        condition = f"{eligible} AND #ft < :token"
        for _ in range(2):
            try:
                item = await self._update_if(key, sets, condition, names, {**values, ":token": _n(token)})
            except _ConditionFailed as lost:
                if lost.item is None or not _live(lost.item):
                    return None
                stored = self._decode(lost.item)
                if stored.paused or stored.is_locked(from_micros(claim.now_us)) or to_micros(stored.next_run) > claim.now_us:
                    return None
                token = fencing_token_after(stored.fencing_token, from_micros(claim.now_us))
                values[":prev"] = _n(stored.fencing_token)
                condition = f"{eligible} AND #ft = :prev"
                continue
            return self._decode(item)
        return None

    # complete / extend

    async def complete_tasks(self, now: datetime.datetime, completions: Sequence[Completion]) -> list[bool]:
        return await _concurrently([functools.partial(self._complete, now, done) for done in completions])

    async def _complete(self, now: datetime.datetime, done: Completion) -> bool:
        names = {"#lb": c.ATTR_LOCKED_BY, "#ft": c.ATTR_TOKEN, "#lu": c.ATTR_LOCKED_UNTIL, "#due": c.ATTR_DUE}
        holds = "#lb = :owner AND #ft = :token"
        values: Item = {":owner": _s(done.lease.owner), ":token": _n(done.lease.token)}
        if done.next_run is not None:
            sets = "#nr = :nr, #due = :nr, #dat = :data"
            names.update({"#nr": c.ATTR_NEXT_RUN, "#dat": c.ATTR_DATA})
            values.update({":nr": _n(to_micros(done.next_run)), ":data": _s(done.data)})
            remove = "#lb, #lu"
        else:
            # A delete could not tell, on a retry, its own applied attempt from another worker's
            # delete; a tombstone keeps the write id, and the table's TTL removes it later.
            sets = "#gone = :gone, #ttl = :ttl"
            names.update({"#gone": c.ATTR_GONE, "#ttl": c.ATTR_EXPIRES, "#rdy": c.ATTR_READY})
            names.update({"#spec": c.ATTR_SPEC, "#dat": c.ATTR_DATA})
            expires = to_micros(now + c.TOMBSTONE_LIFETIME) // 1_000_000
            values.update({":gone": {"BOOL": True}, ":ttl": _n(expires)})
            remove = "#rdy, #due, #lb, #lu, #spec, #dat"
        try:
            await self._update_if(self._key(done.key), sets, holds, names, values, remove=remove)
        except _ConditionFailed:
            return False
        return True

    async def extend_lease(
        self, now: datetime.datetime, key: TaskKey, lease: Lease, lease_duration: datetime.timedelta
    ) -> Lease | None:
        until = now + lease_duration
        names = {
            "#lb": c.ATTR_LOCKED_BY,
            "#ft": c.ATTR_TOKEN,
            "#lu": c.ATTR_LOCKED_UNTIL,
            "#due": c.ATTR_DUE,
            "#nr": c.ATTR_NEXT_RUN,
        }
        values = {":owner": _s(lease.owner), ":token": _n(lease.token), ":until": _n(to_micros(until))}
        holds = "#lb = :owner AND #ft = :token"
        try:
            # The index key must stay max(next_run, locked_until); next_run is normally in the past.
            await self._update_if(self._key(key), "#lu = :until, #due = :until", f"{holds} AND #nr <= :until", names, values)
        except _ConditionFailed as lost:
            if lost.item is None or not _live(lost.item):
                return None
            stored = self._decode(lost.item)
            if stored.locked_by != lease.owner or stored.fencing_token != lease.token:
                return None
            try:
                await self._update_if(self._key(key), "#lu = :until, #due = #nr", f"{holds} AND #nr > :until", names, values)
            except _ConditionFailed:
                return None
        return attrs.evolve(lease, locked_until=until)

    # reads

    async def get_task(self, key: TaskKey) -> TaskState | None:
        item = await self._get_item(self._key(key))
        return self._decode(item) if item else None

    async def list_tasks(self, task: str, *, limit: int, continuation: str | None = None) -> Page:
        condition = "#pk = :pk"
        values: Item = {":pk": _s(self._pk(task))}
        if continuation is not None:
            condition += " AND #sk > :after"
            values[":after"] = _s(c.INSTANCE_PREFIX + continuation)
        items: list[Item] = []
        start_key: Item | None = None
        while len(items) <= limit:
            kwargs: dict[str, Any] = {"ExclusiveStartKey": start_key} if start_key else {}
            response = await self._call(
                "query",
                KeyConditionExpression=condition,
                ExpressionAttributeNames={"#pk": c.ATTR_PK, **({"#sk": c.ATTR_SK} if continuation is not None else {})},
                ExpressionAttributeValues=values,
                ConsistentRead=True,
                Limit=limit + 1 - len(items),
                **kwargs,
            )
            items.extend(item for item in response.get("Items", []) if _live(item))
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                break
        states = tuple(self._decode(item) for item in items[:limit])
        return Page(states=states, continuation=states[-1].key.instance if len(items) > limit else None)

    # set_paused

    async def set_paused(
        self,
        now: datetime.datetime,
        key: TaskKey,
        paused: bool,
        next_run: datetime.datetime | None = None,
        data: str | None = None,
    ) -> bool:
        stored_item = await self._get_item(self._key(key))
        for _ in range(c.MAX_CAS_ATTEMPTS):
            if stored_item is None or not _live(stored_item):
                return False
            stored = self._decode(stored_item)
            updated = attrs.evolve(
                stored, paused=paused, next_run=next_run or stored.next_run, data=stored.data if data is None else data
            )
            if updated == stored:
                return True
            stored_item = await self._replace(stored_item, updated)
            if stored_item is None:
                return True
        raise BackendError(f"DynamoDB: gave up pausing {key} after {c.MAX_CAS_ATTEMPTS} conflicting writes")


@attrs.frozen
class _Claim:
    owner: str
    now_us: int
    until_us: int
