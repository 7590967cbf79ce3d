--[[
  Accepts one event: 5 reads and 5 writes, atomically, in one round trip.

  Steps:
    Reads
      1. GET    the idempotency record (KEYS[1]); a hit answers the first id and
                seq and writes nothing.
      2. HMGET  the per-source settings (KEYS[4]): `disabled` ("1" refuses the
                source) and `rateLimitPerSec` (overrides ARGV[3] for that source).
      3. GET    the client's rate-limit window counter (KEYS[2]); at the limit the
                request is refused and nothing is written.
      4. XLEN   the stream (KEYS[3]): the backlog not yet persisted; at ARGV[5] or
                above the request is refused and nothing is written.
      5. GET    the per-subject sequence (KEYS[6]).
    Writes (only when accepted)
      6. SET    the per-subject sequence to seq = previous + 1.
      7. XADD   the stream entry (docs/architecture.md, "the stream entry"), the value
                of its `seq` field filled in here.
      8. SET/INCR the client's window counter (a new window expires after ARGV[4] ms).
      9. HINCRBY the per-source counter `accepted`.
     10. SET    the idempotency record "<seq> <id>" with ARGV[2] ms to live (only when
                the client sent an Idempotency-Key: ARGV[1] = "1").

  Input:
    KEYS[1] idempotency record     spillway:idem:<Idempotency-Key>
    KEYS[2] rate-limit window      spillway:rate:<client>:<unix second>
    KEYS[3] stream                 spillway:events
    KEYS[4] per-source settings    spillway:source:<source>:settings (hash)
    KEYS[5] per-source counters    spillway:source:<source>:stats (hash)
    KEYS[6] per-subject sequence   spillway:seq:<subject>

    ARGV[1] "1" when the client sent an Idempotency-Key, else "0"
    ARGV[2] idempotency record time to live, ms
    ARGV[3] rate limit per client per second, 0 = none (a source's setting wins)
    ARGV[4] rate-limit window time to live, ms
    ARGV[5] max backlog (stream length), 0 = none
    ARGV[6] event id
    ARGV[7..] the stream entry's field/value strings; the value of the field named
            `seq` is replaced by the sequence this script assigns

  Output (an array whose first element says what happened):
    {"ok", id, seq, streamId}   accepted: entry appended
    {"dup", id, seq}            Idempotency-Key seen before: the first answer
    {"disabled"}                the source's settings refuse it
    {"rate", limit}             the client is over its limit in this second
    {"full", backlog}           the stream holds max backlog entries or more
]]
local idem = redis.call('GET', KEYS[1])
local settings = redis.call('HMGET', KEYS[4], 'disabled', 'rateLimitPerSec')
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local backlog = redis.call('XLEN', KEYS[3])
local last = tonumber(redis.call('GET', KEYS[6]) or '0')

if idem then
  local space = string.find(idem, ' ', 1, true)
  return {'dup', string.sub(idem, space + 1), string.sub(idem, 1, space - 1)}
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
  return {'full', tostring(backlog)}
end

local seq = last + 1
redis.call('SET', KEYS[6], seq)
local fields = {}
for i = 7, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
for i = 1, #fields - 1, 2 do
  if fields[i] == 'seq' then
    fields[i + 1] = tostring(seq)
  end
end
local streamId = redis.call('XADD', KEYS[3], '*', unpack(fields))
if used == 0 then
  redis.call('SET', KEYS[2], 1, 'PX', ARGV[4])
else
  redis.call('INCR', KEYS[2])
end
redis.call('HINCRBY', KEYS[5], 'accepted', 1)
if ARGV[1] == '1' then
  redis.call('SET', KEYS[1], seq .. ' ' .. ARGV[6], 'PX', ARGV[2])
end
return {'ok', ARGV[6], tostring(seq), streamId}
