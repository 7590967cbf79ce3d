--[[
  The stream's measured drain rate, as ingest reads it (ingest-7n.lua) and
  persist writes it (drain-rate-report-1.lua): one hash per stream, field = a
  second of Redis's clock (TIME, so every replica's reports land in the same
  buckets), value = stream entries persist took out of the stream (committed
  or dead-lettered) in that second, summed over every replica.

  The rate is the sum over the complete seconds of the last `window` (the
  current second is still filling), divided by the seconds they span from the
  oldest bucket present: a drain that started 5 s ago is not diluted by 5 s
  nobody measured. It is known ('' otherwise) only
    - once the buckets span at least MIN_SECONDS complete seconds: one second
      of a drain that has just started (its first write still in flight) says
      nothing of its pace;
    - and, when nothing was taken out over them, only once that has lasted
      the whole window: a replica that holds work but commits nothing reports
      0, so a drain stalled for a whole window reads 0, while a fresh one
      reads unknown, not 0.
  A drain nobody reports for a window expires with the key.
]]
local MIN_SECONDS = 3

local function drain_rate(key, window)
  local now = tonumber(redis.call('TIME')[1])
  local buckets = redis.call('HGETALL', key)
  local sum, oldest = 0, nil
  for i = 1, #buckets - 1, 2 do
    local second = tonumber(buckets[i])
    if second and second < now and second >= now - window then
      sum = sum + (tonumber(buckets[i + 1]) or 0)
      if not oldest or second < oldest then
        oldest = second
      end
    end
  end
  if not oldest or now - oldest < MIN_SECONDS then
    return ''
  end
  if sum == 0 and now - oldest < window then
    return ''
  end
  return tostring(sum / (now - oldest))
end
