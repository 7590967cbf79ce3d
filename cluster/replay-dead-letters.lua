-- Reads the next dead letters and writes each as the CloudEvent (structured
-- mode, JSON) that cluster/replay-dead-letters.sh posts to ingest. Reads only.
--
-- KEYS[1]  dead-letter stream (spillway:dead-letters)
-- ARGV[1]  "-" to start at the beginning, else the last stream id handled
-- ARGV[2]  most entries to read
--
-- Reply: a flat list, two strings per entry, oldest first: the entry's stream id,
-- then the CloudEvent's JSON text on one line, or "invalid: <why>" when the
-- entry cannot be one.
--
-- An entry's fields are the ones ingest XADDed (id type source subject time seq
-- data [attributes] [key]). Every one is kept, so that a replayed copy is the
-- entry the client's 202 described: id, type, source, subject (unless empty),
-- time and data as they are, the attributes' members as attributes (none for a
-- plain event: structured mode without datacontenttype is JSON), and seq
-- and key as the attributes spillwayseq and spillwaykey, which ingest takes
-- back out for a key of INGEST_REPLAY_KEYS (and refuses from anyone else).
-- Ingest checks them all again.
-- data is spliced in as the JSON text it is, after checking that it is exactly
-- one JSON value (cjson.decode fails on anything after the value), so it cannot
-- add or override attributes. Raw line breaks in valid JSON can only be
-- whitespace between tokens: they become spaces, keeping one event per line.
local start = '-'
if ARGV[1] ~= '-' then
  start = '(' .. ARGV[1]
end
local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', tonumber(ARGV[2]))
local reply = {}
for _, entry in ipairs(entries) do
  local fields = {}
  for i = 1, #entry[2], 2 do
    fields[entry[2][i]] = entry[2][i + 1]
  end
  local parts = {'"specversion":"1.0"'}
  for _, name in ipairs({'id', 'type', 'source', 'subject', 'time'}) do
    local value = fields[name]
    if value ~= nil and not (name == 'subject' and value == '') then
      parts[#parts + 1] = cjson.encode(name) .. ':' .. cjson.encode(value)
    end
  end
  if fields.seq ~= nil then parts[#parts + 1] = '"spillwayseq":' .. cjson.encode(fields.seq) end
  if fields.key ~= nil then parts[#parts + 1] = '"spillwaykey":' .. cjson.encode(fields.key) end
  local body
  local attributes = {}
  if fields.attributes ~= nil then
    local ok, decoded = pcall(cjson.decode, fields.attributes)
    if ok and type(decoded) == 'table' then attributes = decoded else attributes = nil end
  end
  if attributes == nil then
    body = 'invalid: its attributes field is not one JSON object'
  elseif fields.data ~= nil and not pcall(cjson.decode, fields.data) then
    body = 'invalid: its data field is not one JSON value'
  else
    for name, value in pairs(attributes) do
      parts[#parts + 1] = cjson.encode(name) .. ':' .. cjson.encode(value)
    end
    if fields.data ~= nil then
      parts[#parts + 1] = '"data":' .. (string.gsub(fields.data, '[\r\n]', ' '))
    end
    body = '{' .. table.concat(parts, ',') .. '}'
  end
  reply[#reply + 1] = entry[1]
  reply[#reply + 1] = body
end
return reply
