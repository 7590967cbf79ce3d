--[[
  Accepts one event: 5 reads and 5 writes, atomically, in one round trip.

  Steps:
    Reads
      1. GET    the idempotency record (KEYS[1], scoped to the client); a hit with
                the same request fingerprint answers the first id, seq, source and
                stream id and writes nothing; a hit with another fingerprint is
                refused (the key was reused for a different request) and writes
                nothing.
      2. HMGET  the per-source settings (KEYS[4]): `disabled` ("1" refuses the
                source) and `rateLimitPerSec` (overrides ARGV[3] for that source).
      3. GET    the client's rate-limit window counter (KEYS[2]); at the limit the
                request is refused and nothing is written.
      4. XLEN   the stream (KEYS[3]): the backlog not yet persisted; at ARGV[5] or
                above the request is refused and nothing is written.
      5. GET    the sequence of the event's (source, subject) (KEYS[6]).
    Only where needed, the stream's measured drain rate (KEYS[7],
    includes/drain-rate.lua: HGETALL and TIME): when the backlog refuses the
    request (its Retry-After), and on every request only when ARGV[12]
    (MAX_DRAIN_SEC) is set, which refuses the request when the backlog would
    take longer than that to drain at the measured rate (no rate known: it
    does not judge). Nothing is written then either.
    Writes (only when accepted); every key written expires or is bounded:
      6. XADD   NOMKSTREAM the stream entry (docs/architecture.md, "The three
                contracts"), the value of its `seq` field filled in here. Persist
                deletes it once stored. The first write: a full Redis refuses it
                and nothing is written. A stream that does not exist is not made
                here (its receipts need their epoch, receipt-epoch-2.lua): the
                reply says so, nothing is written, and ingest makes it and runs
                this script again.
      7. SET    the (source, subject) sequence to seq = previous + 1, its time to live
                (ARGV[8] ms) refreshed: a subject silent that long starts again at 1.
                A replayed entry (ARGV[11] > 0) keeps its own seq: nothing is set.
      8. SET/INCR the client's window counter (a new window expires after ARGV[4] ms).
      9. HINCRBY the source's count of accepted events in today's counters hash
                (KEYS[5], one hash a day for every source, expiring after ARGV[9] ms).
     10. SET    the idempotency record (JSON: seq, id, source, fingerprint, stream
                id) with ARGV[2] ms to live, only when the client sent an
                Idempotency-Key (ARGV[1] = "1"): a replay gets the same receipt.

  Input:
    KEYS[1] idempotency record     spillway:idem:<client scope>:<Idempotency-Key>
    KEYS[2] rate-limit window      spillway:rate:<client>:<unix second>
    KEYS[3] stream                 spillway:events
    KEYS[4] per-source settings    spillway:source:<source>:settings (hash, set by operators)
    KEYS[5] today's counters       spillway:stats:<YYYY-MM-DD> (hash: source → accepted)
    KEYS[6] subject's sequence     spillway:seq:<length of source>:<source>:<subject>
    KEYS[7] the stream's drain rate spillway:drain:<stream> (hash: second → entries; persist's)

    ARGV[1] "1" when the client sent an Idempotency-Key, else "0"
    ARGV[2] idempotency record time to live, ms
    ARGV[3] rate limit per client per second, 0 = none (a source's setting wins)
    ARGV[4] rate-limit window time to live, ms
    ARGV[5] max backlog (stream length), 0 = none
    ARGV[6] event id
    ARGV[7] event source
    ARGV[8] sequence time to live, ms
    ARGV[9] counters hash time to live, ms
    ARGV[10] request fingerprint (method, path, media type, CloudEvent headers, body)
    ARGV[11] a replayed entry's own seq, else "0"
    ARGV[12] max drain time, s (MAX_DRAIN_SEC), 0 = none
    ARGV[13] the drain rate's window, s
    ARGV[14..] the stream entry's field/value strings; the value of the field named
            `seq` is replaced by the sequence this script assigns (or ARGV[11])

  Output (an array whose first element says what happened):
    {"ok", id, seq, streamId}   accepted: entry appended
    {"dup", id, seq, source, streamId}  the same request with this Idempotency-Key
                                before: its answer ('' stream id: a record older than
                                receipts)
    {"reused"}                  this Idempotency-Key was used for a different request
    {"disabled"}                the source's settings refuse it
    {"rate", limit}             the client is over its limit in this second
    {"full", backlog, rate}     the stream holds max backlog entries or more; rate:
                                the measured drain, entries/s ('' unknown)
    {"drain", backlog, rate}    the backlog would take longer than ARGV[12] s to
                                drain at rate
    {"nostream"}                the stream does not exist: nothing written
]]
--- @include "includes/drain-rate"
local idem = redis.call('GET', KEYS[1])
local settings = redis.call('HMGET', KEYS[4], 'disabled', 'rateLimitPerSec')
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local backlog = redis.call('XLEN', KEYS[3])
local last = tonumber(redis.call('GET', KEYS[6]) or '0')

if idem then
  local record = cjson.decode(idem)
  if record.fingerprint ~= ARGV[10] then
    return {'reused'}
  end
  return {'dup', record.id, tostring(record.seq), record.source, record.streamId or ''}
end
if settings[1] == '1' then
  return {'disabled'}
end
local limit = tonumber(settings[2] or ARGV[3]) or 0
if limit > 0 and used >= limit then
  return {'rate', tostring(limit)}
end
local maxBacklog = tonumber(ARGV[5])
if maxBacklog > 0 and backlog >= maxBacklog then
  return {'full', tostring(backlog), drain_rate(KEYS[7], tonumber(ARGV[13]))}
end
local maxDrainSec = tonumber(ARGV[12])
if maxDrainSec > 0 and backlog > 0 then
  local rate = drain_rate(KEYS[7], tonumber(ARGV[13]))
  if rate ~= '' and backlog > tonumber(rate) * maxDrainSec then
    return {'drain', tostring(backlog), rate}
  end
end

local seq = tonumber(ARGV[11])
local assign = seq == 0
if assign then
  seq = last + 1
end
local fields = {}
for i = 14, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
for i = 1, #fields - 1, 2 do
  if fields[i] == 'seq' then
    fields[i + 1] = tostring(seq)
  end
end
local streamId = redis.call('XADD', KEYS[3], 'NOMKSTREAM', '*', unpack(fields))
if not streamId then
  return {'nostream'}
end
if assign then
  redis.call('SET', KEYS[6], seq, 'PX', ARGV[8])
end
if used == 0 then
  redis.call('SET', KEYS[2], 1, 'PX', ARGV[4])
else
  redis.call('INCR', KEYS[2])
end
if redis.call('HINCRBY', KEYS[5], ARGV[7], 1) == 1 then
  redis.call('PEXPIRE', KEYS[5], ARGV[9], 'NX')
end
if ARGV[1] == '1' then
  local record = cjson.encode({
    seq = seq, id = ARGV[6], source = ARGV[7], fingerprint = ARGV[10], streamId = streamId,
  })
  redis.call('SET', KEYS[1], record, 'PX', ARGV[2])
end
return {'ok', ARGV[6], tostring(seq), streamId}
