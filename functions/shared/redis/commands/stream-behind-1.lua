#!lua flags=no-writes,allow-oom
--[[
  The stream's oldest entries that have waited longer than a given time: what
  persist's grant adds to its write from the stream's front (functions/persist/
  settle.ts). An entry's id is the time ingest added it, on this server's
  clock (XADD *), so the age is read on the same clock here, whatever the
  caller's clock says.

  Input:
    KEYS[1] stream                 spillway:events
    ARGV[1] waited longer than, ms
    ARGV[2] at most this many entries
    ARGV[3] after this id (exclusive; optional: from the stream's first entry)

  Output:
    XRANGE's reply: {{id, {field, value, ...}}, ...}, oldest first
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local before = now - tonumber(ARGV[1])
if before < 0 then return {} end
local from = ARGV[3] and ('(' .. ARGV[3]) or '-'
return redis.call('XRANGE', KEYS[1], from, string.format('%d', before), 'COUNT', tonumber(ARGV[2]))
