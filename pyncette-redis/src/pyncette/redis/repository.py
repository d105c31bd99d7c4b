"""The Redis repository: Lua scripts over a per-scope hash tag, called by SHA through redis-py.

Operations run through :meth:`RedisRepository._run`, which retries transient failures (dropped
connections, timeouts, a server loading or failing over, a flushed script cache) with jittered
back-off. Every script is safe to run twice (see :mod:`pyncette.redis.scripts`), so a retry after
a reply lost with its connection never claims twice or reports its own completion as a lost lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import random
import urllib.parse
from collections import defaultdict
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import redis.asyncio as aioredis
import redis.asyncio.cluster as aioredis_cluster
import redis.commands.core as redis_commands
import redis.exceptions as redis_errors
from pyncette.errors import BackendError, ConfigurationError, SchemaVersionError
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
    from_micros,
    to_micros,
)
from pyncette.redis import constants, scripts
from pyncette.repository import Repository, WakeupCallback

logger = logging.getLogger(__name__)

T = TypeVar("T")

Client = aioredis.Redis | aioredis_cluster.RedisCluster
"""A standalone client or a Redis Cluster client: the repository works with both."""

_OUTCOMES = (RegisterOutcome.CREATED, RegisterOutcome.UPDATED, RegisterOutcome.LOCKED)

_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    redis_errors.NoScriptError,
    redis_errors.SlotNotCoveredError,
    redis_errors.ClusterError,  # CLUSTERDOWN, MASTERDOWN (parsed without their code), redirections exhausted
    OSError,
    asyncio.TimeoutError,
)
# Replies that mean "not executed, try again": busy with a script, loading, failing over.
_TRANSIENT_REPLIES = ("BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "NOSCRIPT")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _micros(value: bytes | str) -> int:
    text = _text(value)
    try:
        return int(text)
    except ValueError:
        return int(float(text))


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, redis_errors.AuthenticationError):
        return False
    if isinstance(exc, _TRANSIENT_ERRORS):
        return True
    return isinstance(exc, redis_errors.ResponseError) and str(exc).startswith(_TRANSIENT_REPLIES)


def redact_url(url: str) -> str:
    """``url`` with its credentials (userinfo password, ``password`` query field) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        # A lone userinfo may be a token: only a username followed by a password keeps its username.
        netloc = f"{user}:***@{host}" if colon and user else f"***@{host}"
    fields = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = urllib.parse.urlencode([(k, "***" if k.lower() == "password" else v) for k, v in fields], safe="*/")
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def _secrets_of(url: str) -> list[str]:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return []
    found = [parts.password] if parts.password else []
    if parts.username and parts.password is None and len(parts.username) >= 4:
        found.append(parts.username)  # a lone userinfo may be a token; short ones would mangle messages
    found += [v for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() == "password" and v]
    return found + [urllib.parse.unquote(value) for value in found]


def escape_scope(scope: str) -> str:
    """The scope as it appears inside the hash tag (see :data:`constants.SCOPE_ESCAPES`)."""
    for char, escaped in constants.SCOPE_ESCAPES.items():
        scope = scope.replace(char, escaped)
    return scope


class RedisRepository(Repository):
    """A :class:`~pyncette.repository.Repository` stored in Redis under one namespace.

    ``client`` is used as given (its pool, timeouts and retry policy); this class never closes it.
    It may be a :class:`redis.asyncio.cluster.RedisCluster` (redis-py 8.0+, which has cluster
    pub/sub): every script touches keys of one hash tag, and pipelines are split per node by redis-py.
    Prefer :func:`~pyncette.redis.redis_repository`, which validates options and manages the client.
    """

    def __init__(self, client: Client, namespace: str, *, secrets: Sequence[str] = ()) -> None:
        if not isinstance(namespace, str) or not constants.NAMESPACE_PATTERN.fullmatch(namespace):
            raise ConfigurationError(
                f"redis_namespace {namespace!r} is invalid: use 1-64 characters among letters, digits, '_', '.' and '-'"
            )
        self._client = client
        self.namespace = namespace
        self.channel = constants.WAKEUP_CHANNEL % namespace
        self._secrets = [secret for secret in secrets if secret]
        self._scripts: dict[str, redis_commands.AsyncScript] = {
            name: client.register_script(source) for name, source in scripts.ALL.items()
        }
        self._callback: WakeupCallback | None = None
        self._subscriber: asyncio.Task[None] | None = None
        self._subscriptions = 0
        self._stopping = asyncio.Event()
        self._subscription_changed = asyncio.Event()

    # Keys

    def scope_keys(self, task: str) -> list[str]:
        """The keys of scope ``task``: state, spec, data, due, names (one hash tag)."""
        tag = f"{{{self.namespace}:{escape_scope(task)}}}"
        return [
            tag + suffix
            for suffix in (
                constants.STATE_SUFFIX,
                constants.SPEC_SUFFIX,
                constants.DATA_SUFFIX,
                constants.DUE_SUFFIX,
                constants.NAMES_SUFFIX,
            )
        ]

    @property
    def layout_key(self) -> str:
        return constants.LAYOUT_KEY % self.namespace

    # Plumbing

    def _error(self, operation: str, exc: BaseException) -> BackendError:
        detail = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            detail = detail.replace(secret, "***")
        return BackendError(f"redis {operation} failed: {detail}")

    async def _run(self, operation: str, attempt: Callable[[bool], Awaitable[T]]) -> T:
        """Run ``attempt(retry)``; on transient errors retry with ``retry=True`` and jittered back-off."""
        self._ensure_subscriber()
        for number in range(constants.RETRY_ATTEMPTS):
            try:
                return await attempt(number > 0)
            except Exception as exc:
                if not isinstance(
                    exc, redis_errors.RedisError | redis_errors.RedisClusterException | OSError | asyncio.TimeoutError
                ):
                    raise
                if not _is_transient(exc) or number + 1 == constants.RETRY_ATTEMPTS:
                    raise self._error(operation, exc) from exc
                delay = random.uniform(0, min(constants.RETRY_MAX_DELAY, constants.RETRY_BASE_DELAY * 2**number))
                logger.warning("redis %s failed (%s), retrying in %.3fs", operation, self._error(operation, exc), delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _call_many(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Run script calls in one round trip: directly when there is one, else as a pipeline.

        The pipeline calls EVALSHA itself rather than through redis-py's script registry, which
        would add a SCRIPT EXISTS round trip to every pipeline. Calls refused with NOSCRIPT were
        not executed: they are run again after loading their scripts. On a Cluster redis-py sends
        the calls of each node as one pipeline to that node, all nodes in parallel; it routes
        EVALSHA by its keys, which share one slot per call. (Its cluster pipeline refuses the
        ``evalsha`` method, hence the raw command.)
        """
        if len(calls) == 1:
            name, keys, args = calls[0]
            return [await self._scripts[name](keys=keys, args=args)]
        replies: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for _ in range(2):
            async with self._client.pipeline(transaction=False) as pipe:
                for index in pending:
                    name, keys, args = calls[index]
                    pipe.execute_command("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
            missing = []
            for index, result in zip(pending, results, strict=True):
                if isinstance(result, redis_errors.NoScriptError):
                    missing.append(index)
                elif isinstance(result, Exception):
                    raise result
                replies[index] = result
            if not missing:
                return replies
            for name in {calls[index][0] for index in missing}:
                await self._client.script_load(self._scripts[name].script)
            pending = missing
        raise redis_errors.NoScriptError("scripts vanished again right after loading them")

    async def start(self) -> None:
        """Check the server and the namespace's layout version, then load every script once.

        On a Cluster each SCRIPT LOAD is sent to every primary; a node that joins later loads
        the scripts on its first NOSCRIPT reply.
        """
        stored = await self._client.get(self.layout_key)
        if stored is None:
            await self._client.set(self.layout_key, constants.LAYOUT_VERSION, nx=True)
            stored = await self._client.get(self.layout_key)
        if stored is not None and _text(stored) != constants.LAYOUT_VERSION:
            raise SchemaVersionError(
                f"redis_namespace {self.namespace!r} holds key layout version {_text(stored)!r}; this version of "
                f"pyncette-redis uses layout {constants.LAYOUT_VERSION!r}. Use another redis_namespace or migrate the keys."
            )
        if isinstance(self._client, aioredis_cluster.RedisCluster):
            for script in self._scripts.values():
                await self._client.script_load(script.script)
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for script in self._scripts.values():
                pipe.script_load(script.script)
            await pipe.execute()

    async def close(self) -> None:
        """Stop the wake-up subscriber (the client is closed by whoever made it).

        The subscriber is asked to stop and does so at its next read timeout. Cancelling it
        inside redis-py's pub/sub read was seen to leave the task waiting forever, so
        cancellation is only the fallback, and a subscriber that ignores it is abandoned
        rather than hanging the app's shutdown.
        """
        self._stopping.set()
        task, self._subscriber = self._subscriber, None
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=constants.SUBSCRIBER_READ_TIMEOUT + constants.SUBSCRIBER_STOP_GRACE)
        if not done:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=constants.SUBSCRIBER_STOP_GRACE)
        if not done:
            logger.warning("redis wake-up subscriber of %s did not stop; abandoning it", self.namespace)
        elif not task.cancelled() and task.exception() is not None:
            logger.warning("redis wake-up subscriber of %s failed: %r", self.namespace, task.exception())

    # Wake-ups

    def set_wakeup_callback(self, callback: WakeupCallback) -> None:
        self._callback = callback
        self._ensure_subscriber()

    def _ensure_subscriber(self) -> None:
        if self._callback is None or self._subscriber is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # started by the first operation, from inside the loop
        self._subscriber = loop.create_task(self._subscribe(), name=f"pyncette-redis wake-ups {self.namespace}")

    async def wait_subscribed(self, subscriptions: int = 1) -> int:
        """Wait until the wake-up channel was subscribed ``subscriptions`` times; return the count.

        The count grows each time the subscriber (re)connects, so a caller can wait for the
        subscription that follows a dropped connection.
        """
        while self._subscriptions < subscriptions:
            self._subscription_changed.clear()
            await self._subscription_changed.wait()
        return self._subscriptions

    async def _subscribe(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            # On a Cluster PUBLISH is broadcast to every node, so one subscription on any node hears all.
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while not self._stopping.is_set():
                    message = await pubsub.get_message(timeout=constants.SUBSCRIBER_READ_TIMEOUT)
                    kind = _text(message.get("type", b"")) if message else ""
                    if kind == "message":
                        self._deliver(message["data"])
                    elif kind == "subscribe":  # the server's confirmation: from here on nothing is missed
                        self._subscriptions += 1
                        self._subscription_changed.set()
                        failures = 0
            except Exception as exc:
                if self._stopping.is_set():
                    return
                failures += 1
                delay = random.uniform(0, min(constants.SUBSCRIBER_MAX_DELAY, constants.RETRY_BASE_DELAY * 2**failures))
                logger.warning(
                    "redis wake-up subscription lost (%s), resubscribing in %.3fs", self._error("subscribe", exc), delay
                )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _deliver(self, payload: bytes | str) -> None:
        try:
            micros, _, scope = _text(payload).partition(" ")
            when = from_micros(_micros(micros))
        except ValueError:
            logger.warning("ignoring malformed wake-up message on %s", self.channel)
            return
        callback = self._callback
        if callback is not None:
            try:
                callback(scope, when)
            except Exception:
                logger.exception("wake-up callback failed")

    # Decoding

    @staticmethod
    def _state(key: TaskKey, record: bytes | str, spec: bytes | str, data: bytes | str) -> TaskState:
        next_run, paused, locked_until, token, owner = _text(record).split("|", 4)
        locked = locked_until != ""
        return TaskState(
            key=key,
            spec=_text(spec),
            data=_text(data),
            next_run=from_micros(_micros(next_run)),
            paused=paused == "1",
            locked_until=from_micros(_micros(locked_until)) if locked else None,
            locked_by=owner if locked else None,
            fencing_token=_micros(token),
        )

    # Repository

    async def register_tasks(self, now: datetime.datetime, registrations: Sequence[Registration]) -> list[RegisterOutcome]:
        by_scope: dict[str, list[int]] = defaultdict(list)
        for index, registration in enumerate(registrations):
            by_scope[registration.key.task].append(index)
        calls: list[tuple[str, list[str], list[Any]]] = []
        order: list[list[int]] = []
        for task, indexes in by_scope.items():
            for start in range(0, len(indexes), constants.REGISTER_CHUNK):
                chunk = indexes[start : start + constants.REGISTER_CHUNK]
                fields: list[str] = []
                for index in chunk:
                    reg = registrations[index]
                    fields += [reg.key.instance, reg.spec, reg.data, str(to_micros(reg.next_run)), "1" if reg.force else "0"]
                payload = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
                calls.append(("register", self.scope_keys(task), [to_micros(now), self.channel, task, payload]))
                order.append(chunk)
        if not calls:
            return []
        replies = await self._run("register_tasks", lambda _retry: self._call_many(calls))
        outcomes: list[RegisterOutcome] = [RegisterOutcome.LOCKED] * len(registrations)
        for chunk, reply in zip(order, replies, strict=True):
            for index, code in zip(chunk, _text(reply), strict=True):
                outcomes[index] = _OUTCOMES[int(code)]
        return outcomes

    async def unregister_task(self, now: datetime.datetime, key: TaskKey) -> bool:
        keys = self.scope_keys(key.task)
        existed = await self._run("unregister_task", lambda _retry: self._scripts["unregister"](keys=keys, args=[key.instance]))
        return bool(existed)

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
        keys = self.scope_keys(task)[:4]
        locked_until = now + lease_duration
        base: list[Any] = [
            to_micros(now),
            owner,
            to_micros(locked_until),
            limit,
            "0" if instance is None else "1",
            instance or "",
        ]

        async def attempt(retry: bool) -> Any:
            return await self._scripts["claim"](keys=keys, args=[*base, "1" if retry else "0"])

        more, next_due, rows = await self._run("claim_due", attempt)
        claimed = []
        for at in range(0, len(rows), 5):
            name, next_run, token, spec, data = rows[at : at + 5]
            lease = Lease(owner=owner, token=_micros(token), locked_until=locked_until)
            state = TaskState(
                key=TaskKey(task, _text(name)),
                spec=_text(spec),
                data=_text(data),
                next_run=from_micros(_micros(next_run)),
                locked_until=locked_until,
                locked_by=owner,
                fencing_token=lease.token,
            )
            claimed.append(ClaimedTask(state=state, lease=lease))
        return ClaimResult(
            claimed=tuple(claimed),
            more=bool(int(more)),
            next_due=from_micros(_micros(next_due)) if _text(next_due) else None,
        )

    async def count_due(self, now: datetime.datetime, task: str) -> DueSummary:
        """ZCOUNT and the first member of the scope's due set: O(log n) whatever the backlog."""
        keys = self.scope_keys(task)[3:4]
        count, oldest = await self._run("count_due", lambda _retry: self._scripts["count_due"](keys=keys, args=[to_micros(now)]))
        return DueSummary(count=int(count), oldest=from_micros(_micros(oldest)) if _text(oldest) else None)

    async def complete_tasks(self, now: datetime.datetime, completions: Sequence[Completion]) -> list[bool]:
        by_scope: dict[str, list[int]] = defaultdict(list)
        for index, completion in enumerate(completions):
            by_scope[completion.key.task].append(index)
        if not by_scope:
            return []
        order = list(by_scope.items())
        payloads: list[tuple[list[str], list[Any]]] = []
        for task, indexes in order:
            args: list[Any] = []
            for index in indexes:
                c = completions[index]
                next_run = "" if c.next_run is None else to_micros(c.next_run)
                args += [c.key.instance, c.lease.owner, str(c.lease.token), next_run, c.data]
            payloads.append((self.scope_keys(task), [self.channel, task, args]))

        async def attempt(retry: bool) -> list[Any]:
            flag = "1" if retry else "0"
            return await self._call_many([("complete", keys, [ch, task, flag, *rest]) for keys, (ch, task, rest) in payloads])

        replies = await self._run("complete_tasks", attempt)
        results = [False] * len(completions)
        for (_, indexes), reply in zip(order, replies, strict=True):
            for index, applied in zip(indexes, reply, strict=True):
                results[index] = bool(int(applied))
        return results

    async def extend_lease(
        self, now: datetime.datetime, key: TaskKey, lease: Lease, lease_duration: datetime.timedelta
    ) -> Lease | None:
        keys = self.scope_keys(key.task)
        locked_until = now + lease_duration
        args: list[Any] = [key.instance, lease.owner, str(lease.token), to_micros(locked_until)]
        extended = await self._run("extend_lease", lambda _retry: self._scripts["extend"](keys=[keys[0], keys[3]], args=args))
        return Lease(owner=lease.owner, token=lease.token, locked_until=locked_until) if int(extended) else None

    async def server_time(self) -> datetime.datetime:
        seconds, micros = await self._run("server_time", lambda _retry: self._client.time())
        return datetime.datetime.fromtimestamp(int(seconds), datetime.timezone.utc) + datetime.timedelta(microseconds=int(micros))

    async def get_task(self, key: TaskKey) -> TaskState | None:
        keys = self.scope_keys(key.task)[:3]
        reply = await self._run("get_task", lambda _retry: self._scripts["get"](keys=keys, args=[key.instance]))
        return None if reply is None else self._state(key, *reply)

    async def list_tasks(self, task: str, *, limit: int, continuation: str | None = None) -> Page:
        keys = self.scope_keys(task)
        start = "-" if continuation is None else "(" + continuation
        more, rows = await self._run(
            "list_tasks", lambda _retry: self._scripts["list"](keys=[keys[0], keys[1], keys[2], keys[4]], args=[start, limit])
        )
        states = tuple(
            self._state(TaskKey(task, _text(rows[at])), rows[at + 1], rows[at + 2], rows[at + 3]) for at in range(0, len(rows), 4)
        )
        last = states[-1].key.instance if states else continuation
        return Page(states=states, continuation=last if int(more) else None)

    async def set_paused(
        self,
        now: datetime.datetime,
        key: TaskKey,
        paused: bool,
        next_run: datetime.datetime | None = None,
        data: str | None = None,
    ) -> bool:
        keys = self.scope_keys(key.task)
        args = [
            key.instance,
            "1" if paused else "0",
            "" if next_run is None else to_micros(next_run),
            self.channel,
            key.task,
            "" if data is None else "1",
            data or "",
        ]
        found = await self._run(
            "set_paused", lambda _retry: self._scripts["set_paused"](keys=[keys[0], keys[3], keys[2]], args=args)
        )
        return bool(int(found))
