"""Lua sources of every operation; each runs atomically on the server.

Every script of a scope receives the scope's keys in ``KEYS`` (all under one hash tag) and never
touches another key, so the scripts run unchanged on Redis Cluster. Times and fencing tokens are
microseconds since the epoch: Lua numbers are doubles, exact for integers below 2**53 (year 2255),
and numbers are always written back with ``%.0f`` so they never turn into exponent notation.

An instance's record in the state hash is ``next_run|paused|locked_until|token|owner``:
``locked_until`` is empty when unlocked (``locked_by`` is then ``None``), ``owner`` is last so it
may contain ``|``. The ``due`` sorted set holds every unpaused instance scored by the time it
becomes claimable.

Scripts that take a ``retry`` flag are safe to run twice: on a retry after a lost reply they
report what the first run did instead of refusing their own earlier work.
"""

from __future__ import annotations

_COMMON = """
local function parse(s)
  local nr, pz, lu, tk, ow = string.match(s, "^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$")
  return {nr = nr, pz = pz, lu = lu, tk = tk, ow = ow}
end
local function pack(r)
  return r.nr .. "|" .. r.pz .. "|" .. r.lu .. "|" .. r.tk .. "|" .. r.ow
end
local function eligible(r)
  if r.lu ~= "" and tonumber(r.lu) > tonumber(r.nr) then return r.lu end
  return r.nr
end
-- Workers plan their next poll of a scope no later than its earliest score (a claim returns it as
-- next_due), so only a score below the earliest one needs a wake-up; fewer wake-ups, same latency.
local function earliest(due)
  local first = redis.call("ZRANGE", due, 0, 0, "WITHSCORES")
  if first[2] then return tonumber(first[2]) end
  return nil
end
local function sooner(wake, before)
  return wake ~= nil and (before == nil or tonumber(wake) < before)
end
local function fence(tk, now)
  local t = tonumber(tk) + 1
  if now > t then t = now end
  return string.format("%.0f", t)
end
"""

REGISTER = (
    _COMMON
    + """
-- KEYS: state, spec, data, due, names
-- ARGV: now, channel, scope, and a JSON array of strings: (instance, spec, data, next_run, force)
-- per registration (one argument instead of five per registration: cheaper to send and to parse)
-- Returns one outcome digit per registration, in order: 0 created, 1 updated, 2 locked.
local now = tonumber(ARGV[1])
local regs = cjson.decode(ARGV[4])
local out = {}
local wake = nil
local before = earliest(KEYS[4])
for i = 1, #regs, 5 do
  local inst, spec, nr, force = regs[i], regs[i + 1], regs[i + 3], regs[i + 4]
  local s = redis.call("HGET", KEYS[1], inst)
  local r, code
  if not s then
    r = {nr = nr, pz = "0", lu = "", tk = "0", ow = ""}
    redis.call("HSET", KEYS[3], inst, regs[i + 2])
    redis.call("ZADD", KEYS[5], 0, inst)
    code = 0
  else
    r = parse(s)
    if r.lu ~= "" and tonumber(r.lu) > now and force ~= "1" then
      code = 2
    else
      if redis.call("HGET", KEYS[2], inst) ~= spec then r.nr = nr end
      if force == "1" then
        r.lu = ""
        r.ow = ""
        r.tk = fence(r.tk, now)
      end
      code = 1
    end
  end
  if code ~= 2 then
    redis.call("HSET", KEYS[1], inst, pack(r))
    redis.call("HSET", KEYS[2], inst, spec)
    if r.pz == "0" then
      local e = eligible(r)
      redis.call("ZADD", KEYS[4], e, inst)
      if wake == nil or tonumber(e) < tonumber(wake) then wake = e end
    end
  end
  out[#out + 1] = code
end
if sooner(wake, before) then redis.call("PUBLISH", ARGV[2], wake .. " " .. ARGV[3]) end
return table.concat(out)
"""
)

UNREGISTER = """
-- KEYS: state, spec, data, due, names; ARGV: instance
local existed = redis.call("HDEL", KEYS[1], ARGV[1])
redis.call("HDEL", KEYS[2], ARGV[1])
redis.call("HDEL", KEYS[3], ARGV[1])
redis.call("ZREM", KEYS[4], ARGV[1])
redis.call("ZREM", KEYS[5], ARGV[1])
return existed
"""

CLAIM = (
    _COMMON
    + """
-- KEYS: state, spec, data, due
-- ARGV: now, owner, locked_until, limit, single ("1" or "0"), instance, retry
-- Returns {more, next_due or "", {instance, next_run, token, spec, data, ...}}
local now = tonumber(ARGV[1])
local owner, untl, limit, single = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5] == "1"
local rows = {}
local count = 0
local function emit(inst, r)
  rows[#rows + 1] = inst
  rows[#rows + 1] = r.nr
  rows[#rows + 1] = r.tk
  rows[#rows + 1] = redis.call("HGET", KEYS[2], inst) or ""
  rows[#rows + 1] = redis.call("HGET", KEYS[3], inst) or ""
  count = count + 1
end
local function take(inst)
  local s = redis.call("HGET", KEYS[1], inst)
  if not s then
    redis.call("ZREM", KEYS[4], inst)
    return
  end
  local r = parse(s)
  if r.pz ~= "0" or tonumber(eligible(r)) > now then return end
  r.tk = fence(r.tk, now)
  r.lu = untl
  r.ow = owner
  redis.call("HSET", KEYS[1], inst, pack(r))
  redis.call("ZADD", KEYS[4], untl, inst)
  emit(inst, r)
end
if ARGV[7] == "1" then
  -- A retry after a lost reply: hand back what the first run claimed (same owner, same expiry).
  for _, inst in ipairs(redis.call("ZRANGEBYSCORE", KEYS[4], untl, untl)) do
    if not single or inst == ARGV[6] then
      local s = redis.call("HGET", KEYS[1], inst)
      if s then
        local r = parse(s)
        if r.lu == untl and r.ow == owner then emit(inst, r) end
      end
    end
  end
end
local more = 0
if single then
  if count == 0 then take(ARGV[6]) end
else
  local want = limit - count
  if want > 0 then
    local due = redis.call("ZRANGEBYSCORE", KEYS[4], "-inf", ARGV[1], "LIMIT", 0, want + 1)
    for i = 1, math.min(#due, want) do take(due[i]) end
    if #due > want then more = 1 end
  end
end
local nxt = redis.call("ZRANGEBYSCORE", KEYS[4], "(" .. ARGV[1], "+inf", "LIMIT", 0, 1, "WITHSCORES")
return {more, nxt[2] or "", rows}
"""
)

COMPLETE = (
    _COMMON
    + """
-- KEYS: state, spec, data, due, names
-- ARGV: channel, scope, retry, then (instance, owner, token, next_run or "", data) per completion
local out = {}
local wake = nil
local retry = ARGV[3] == "1"
local before = earliest(KEYS[4])
for i = 4, #ARGV, 5 do
  local inst, owner, token, nr = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local s = redis.call("HGET", KEYS[1], inst)
  local ok = 0
  if s then
    local r = parse(s)
    if r.lu ~= "" and r.ow == owner and r.tk == token then
      ok = 1
      if nr == "" then
        redis.call("HDEL", KEYS[1], inst)
        redis.call("HDEL", KEYS[2], inst)
        redis.call("HDEL", KEYS[3], inst)
        redis.call("ZREM", KEYS[4], inst)
        redis.call("ZREM", KEYS[5], inst)
      else
        r.nr = nr
        r.lu = ""
        r.ow = ""
        redis.call("HSET", KEYS[1], inst, pack(r))
        redis.call("HSET", KEYS[3], inst, ARGV[i + 4])
        if r.pz == "0" then
          redis.call("ZADD", KEYS[4], nr, inst)
          if wake == nil or tonumber(nr) < tonumber(wake) then wake = nr end
        end
      end
    elseif retry and r.lu == "" and r.tk == token then
      -- Only a completion with this very token releases a lock and keeps the token.
      ok = 1
    end
  elseif retry and nr == "" then
    ok = 1
  end
  out[#out + 1] = ok
end
if sooner(wake, before) then redis.call("PUBLISH", ARGV[1], wake .. " " .. ARGV[2]) end
return out
"""
)

EXTEND = (
    _COMMON
    + """
-- KEYS: state, due; ARGV: instance, owner, token, locked_until
local s = redis.call("HGET", KEYS[1], ARGV[1])
if not s then return 0 end
local r = parse(s)
if r.lu == "" or r.ow ~= ARGV[2] or r.tk ~= ARGV[3] then return 0 end
r.lu = ARGV[4]
redis.call("HSET", KEYS[1], ARGV[1], pack(r))
if r.pz == "0" then redis.call("ZADD", KEYS[2], eligible(r), ARGV[1]) end
return 1
"""
)

SET_PAUSED = (
    _COMMON
    + """
-- KEYS: state, due, data
-- ARGV: instance, paused ("1" or "0"), next_run or "", channel, scope, "1" to store data else "", data
local s = redis.call("HGET", KEYS[1], ARGV[1])
if not s then return 0 end
local r = parse(s)
r.pz = ARGV[2]
if ARGV[3] ~= "" then r.nr = ARGV[3] end
redis.call("HSET", KEYS[1], ARGV[1], pack(r))
if ARGV[6] == "1" then redis.call("HSET", KEYS[3], ARGV[1], ARGV[7]) end
if r.pz == "1" then
  redis.call("ZREM", KEYS[2], ARGV[1])
else
  local e = eligible(r)
  local before = earliest(KEYS[2])
  redis.call("ZADD", KEYS[2], e, ARGV[1])
  if sooner(e, before) then redis.call("PUBLISH", ARGV[4], e .. " " .. ARGV[5]) end
end
return 1
"""
)

COUNT_DUE = """
-- KEYS: due; ARGV: now
-- Returns {count, earliest score or ""}: the due set is scored by eligibility, so this is the claim's rule.
local first = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, 1, "WITHSCORES")
return {redis.call("ZCOUNT", KEYS[1], "-inf", ARGV[1]), first[2] or ""}
"""

GET = """
-- KEYS: state, spec, data; ARGV: instance
local s = redis.call("HGET", KEYS[1], ARGV[1])
if not s then return nil end
return {s, redis.call("HGET", KEYS[2], ARGV[1]) or "", redis.call("HGET", KEYS[3], ARGV[1]) or ""}
"""

LIST = """
-- KEYS: state, spec, data, names; ARGV: lexicographic start ("-" or "(<name>"), limit
-- Returns {more, {instance, record, spec, data, ...}}
local limit = tonumber(ARGV[2])
local names = redis.call("ZRANGEBYLEX", KEYS[4], ARGV[1], "+", "LIMIT", 0, limit + 1)
local rows = {}
local more = 0
for i, inst in ipairs(names) do
  if i > limit then
    more = 1
    break
  end
  local s = redis.call("HGET", KEYS[1], inst)
  if s then
    rows[#rows + 1] = inst
    rows[#rows + 1] = s
    rows[#rows + 1] = redis.call("HGET", KEYS[2], inst) or ""
    rows[#rows + 1] = redis.call("HGET", KEYS[3], inst) or ""
  end
end
return {more, rows}
"""

ALL = {
    "register": REGISTER,
    "unregister": UNREGISTER,
    "claim": CLAIM,
    "complete": COMPLETE,
    "extend": EXTEND,
    "set_paused": SET_PAUSED,
    "get": GET,
    "count_due": COUNT_DUE,
    "list": LIST,
}
"""Every script by name; all are loaded once at start-up and then called by SHA."""
