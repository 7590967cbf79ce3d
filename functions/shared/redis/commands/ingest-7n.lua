--[[
  Accepts events: for each, 5 reads and 5 writes, atomically; one round trip
  for all of them. Ingest sends the events of one turn of its event loop in
  one call (functions/ingest/store.ts): one command and one reply however many
  requests came in together. The events are judged in order, each as if it
  came alone after the ones before it: a second event with the same
  Idempotency-Key is a replay of the first, a client's rate limit counts both,
  the backlog holds both.

  Steps, for each event:
    Reads
      1. GET    the idempotency record (its key 1, scoped to the client); a hit
                with the same request fingerprint answers the first id, seq,
                source and stream id and writes nothing; a hit with another
                fingerprint is refused (the key was reused for a different
                request) and writes nothing.
      2. HMGET  the per-source settings (key 4): `disabled` ("1" refuses the
                source) and `rateLimitPerSec` (overrides the call's rate limit
                for that source).
      3. GET    the client's rate-limit window counter (key 2); at the limit the
                request is refused and nothing is written.
      4. XLEN   the stream (key 3): the backlog not yet persisted; at the max
                backlog or above the request is refused and nothing is written.
      5. GET    the sequence of the event's (source, subject) (key 6).
    Only where needed, the stream's measured drain rate (key 7,
    includes/drain-rate.lua: HGETALL and TIME, read once a call): when the
    backlog refuses the request (its Retry-After), and for every event only when
    MAX_DRAIN_SEC is set, which refuses the request when the backlog would take
    longer than that to drain at the measured rate (no rate known: it does not
    judge). Nothing is written then either.
    Writes (only when accepted); every key written expires or is bounded:
      6. XADD   NOMKSTREAM the stream entry (docs/architecture.md, "The three
                contracts"), the value of its `seq` field filled in here. Persist
                deletes it once stored. The first write: a full Redis refuses it
                and nothing is written. A stream that does not exist is not made
                here (its receipts need their epoch, receipt-epoch-2.lua): the
                event's reply says so, nothing is written for it, and ingest
                makes the stream and sends it again.
      7. SET    the (source, subject) sequence to seq = previous + 1, its time to
                live refreshed: a subject silent that long starts again at 1. A
                replayed entry (its own seq given) keeps it: nothing is set.
      8. SET/INCR the client's window counter (a new window expires after the
                window's time to live).
      9. HINCRBY the source's count of accepted events in today's counters hash
                (key 5, one hash a day for every source, with its time to live).
     10. SET    the idempotency record (JSON: seq, id, source, fingerprint, stream
                id) with its time to live, only when the client sent an
                Idempotency-Key: a replay gets the same receipt.

  Input: 7 keys per event (the number of keys is 7 × the events), event i's
  at KEYS[7(i-1)+1 .. 7i]:
    1 idempotency record     spillway:idem:<client scope>:<Idempotency-Key>
    2 rate-limit window      spillway:rate:<client>:<unix second>
    3 stream                 spillway:events
    4 per-source settings    spillway:source:<source>:settings (hash, set by operators)
    5 today's counters       spillway:stats:<YYYY-MM-DD> (hash: source → accepted)
    6 subject's sequence     spillway:seq:<length of source>:<source>:<subject>
    7 the stream's drain rate spillway:drain:<stream> (hash: second → entries; persist's)

    The call's limits, the same for every event:
    ARGV[1] idempotency record time to live, ms
    ARGV[2] rate limit per client per second, 0 = none (a source's setting wins)
    ARGV[3] rate-limit window time to live, ms
    ARGV[4] max backlog (stream length), 0 = none
    ARGV[5] sequence time to live, ms
    ARGV[6] counters hash time to live, ms
    ARGV[7] max drain time, s (MAX_DRAIN_SEC), 0 = none
    ARGV[8] the drain rate's window, s
    Then each event's, in the order of its keys:
      "1" when the client sent an Idempotency-Key, else "0"
      event id
      event source
      request fingerprint (method, path, media type, CloudEvent headers, body)
      a replayed entry's own seq, else "0"
      the number of strings of its stream entry, then those field/value strings;
      the value of the field named `seq` is replaced by the sequence assigned
      here (or the replayed entry's own)

  Output: one reply per event, in order, each an array whose first element
  says what happened:
    {"ok", id, seq, streamId}   accepted: entry appended
    {"dup", id, seq, source, streamId}  the same request with this Idempotency-Key
                                before: its answer ('' stream id: a record older than
                                receipts)
    {"reused"}                  this Idempotency-Key was used for a different request
    {"disabled"}                the source's settings refuse it
    {"rate", limit}             the client is over its limit in this second
    {"full", backlog, rate}     the stream holds max backlog entries or more; rate:
                                the measured drain, entries/s ('' unknown)
    {"drain", backlog, rate}    the backlog would take longer than MAX_DRAIN_SEC to
                                drain at rate
    {"nostream"}                the stream does not exist: nothing written
    {"error", message}          a command failed for this event (e.g. a full
                                Redis refused its first write); whatever the
                                event wrote before stays (its XADD is its first
                                write)
]]
--- @include "includes/drain-rate"
local idemTtl, rateLimit, rateWindowTtl = ARGV[1], ARGV[2], ARGV[3]
local maxBacklog, seqTtl, countersTtl = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local maxDrainSec, drainWindow = tonumber(ARGV[7]), tonumber(ARGV[8])

-- The drain rate does not change while the script runs: read once, when needed.
local rates = {}
local function rate_of(key)
  if rates[key] == nil then
    rates[key] = drain_rate(key, drainWindow)
  end
  return rates[key]
end

-- One event: its keys start at KEYS[k + 1], its values at ARGV[a + 1].
local function accept(k, a, fields)
  local hasIdem, id, source = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local fingerprint, fixedSeq = ARGV[a + 4], tonumber(ARGV[a + 5])
  local idemKey, windowKey, stream = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local idem = redis.call('GET', idemKey)
  local settings = redis.call('HMGET', KEYS[k + 4], 'disabled', 'rateLimitPerSec')
  local used = tonumber(redis.call('GET', windowKey) or '0')
  local backlog = redis.call('XLEN', stream)
  local last = tonumber(redis.call('GET', KEYS[k + 6]) or '0')

  if idem then
    local record = cjson.decode(idem)
    if record.fingerprint ~= fingerprint then
      return {'reused'}
    end
    return {'dup', record.id, tostring(record.seq), record.source, record.streamId or ''}
  end
  if settings[1] == '1' then
    return {'disabled'}
  end
  local limit = tonumber(settings[2] or rateLimit) or 0
  if limit > 0 and used >= limit then
    return {'rate', tostring(limit)}
  end
  if maxBacklog > 0 and backlog >= maxBacklog then
    return {'full', tostring(backlog), rate_of(KEYS[k + 7])}
  end
  if maxDrainSec > 0 and backlog > 0 then
    local rate = rate_of(KEYS[k + 7])
    if rate ~= '' and backlog > tonumber(rate) * maxDrainSec then
      return {'drain', tostring(backlog), rate}
    end
  end

  local seq = fixedSeq
  local assign = seq == 0
  if assign then
    seq = last + 1
  end
  for i = 1, #fields - 1, 2 do
    if fields[i] == 'seq' then
      fields[i + 1] = tostring(seq)
    end
  end
  local streamId = redis.call('XADD', stream, 'NOMKSTREAM', '*', unpack(fields))
  if not streamId then
    return {'nostream'}
  end
  if assign then
    redis.call('SET', KEYS[k + 6], seq, 'PX', seqTtl)
  end
  if used == 0 then
    redis.call('SET', windowKey, 1, 'PX', rateWindowTtl)
  else
    redis.call('INCR', windowKey)
  end
  if redis.call('HINCRBY', KEYS[k + 5], source, 1) == 1 then
    redis.call('PEXPIRE', KEYS[k + 5], countersTtl, 'NX')
  end
  if hasIdem == '1' then
    local record = cjson.encode({
      seq = seq, id = id, source = source, fingerprint = fingerprint, streamId = streamId,
    })
    redis.call('SET', idemKey, record, 'PX', idemTtl)
  end
  return {'ok', id, tostring(seq), streamId}
end

-- An error of one event (a record that is not JSON, a write refused) is that
-- event's reply: it fails alone, and the events after it are still judged.
local function error_reply(err)
  if type(err) == 'table' and err.err then
    return {'error', err.err}
  end
  return {'error', tostring(err)}
end

local replies = {}
local a = 8
for k = 0, #KEYS - 1, 7 do
  local count = tonumber(ARGV[a + 6])
  local fields = {}
  for i = 1, count do
    fields[i] = ARGV[a + 6 + i]
  end
  local ok, reply = pcall(accept, k, a, fields)
  replies[#replies + 1] = ok and reply or error_reply(reply)
  a = a + 6 + count
end
return replies
