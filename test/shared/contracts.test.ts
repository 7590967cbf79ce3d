import { describe, expect, it } from 'vitest';
import { attributesText, DocumentError, toDocument } from '../../functions/shared/document.js';
import {
  EntryError,
  entryFields,
  parseEntryFields,
  type StreamEntry,
  sourceEventStreamId,
} from '../../functions/shared/entry.js';
import { SOURCE_EVENT_TYPE } from '../../functions/shared/names.js';

const entry: StreamEntry = {
  id: '0190a5c2-7e4b-7c3d-9f1a-0123456789ab',
  type: 'order.created',
  source: '/shop',
  subject: 'cust-42',
  time: '2026-11-28T06:00:00.123Z',
  seq: 7,
  data: '{"total":42,"items":["a","b"]}',
  key: 'idem-1',
};

describe('stream entry codec (the stream entry contract)', () => {
  it('writes the fields in contract order and reads them back', () => {
    const fields = entryFields(entry);
    expect(fields).toEqual([
      'id',
      entry.id,
      'type',
      'order.created',
      'source',
      '/shop',
      'subject',
      'cust-42',
      'time',
      entry.time,
      'seq',
      '7',
      'data',
      entry.data,
      'key',
      'idem-1',
    ]);
    expect(parseEntryFields(fields)).toEqual(entry);
  });

  it('leaves key out when the client sent none', () => {
    const { key: _, ...plain } = entry;
    expect(entryFields(plain)).not.toContain('key');
    expect(parseEntryFields(entryFields(plain))).toEqual(plain);
  });

  it.each([
    [['id', 'x', 'type'], /odd number/],
    [['id', 'x', 'type', 't'], /"source" is missing/],
    [entryFields({ ...entry, seq: 0 }), /"seq"/],
    [[1, 2], /not a pair of strings/],
  ])('rejects %j', (fields, message) => {
    expect(() => parseEntryFields(fields)).toThrow(message);
  });
});

describe('RedisStreamSource CloudEvent into a MongoDB document (the other two contracts)', () => {
  // Built the way eventing-redis's adapter builds it: type, source `<address>/<stream>`,
  // id = the stream entry id, data = the entry's fields as one flat JSON array of strings.
  const sourceEvent = {
    specversion: '1.0',
    type: 'dev.knative.sources.redisstream',
    source: 'redis.spillway.svc.cluster.local:6379/spillway:events',
    id: '1732770000000-0',
    datacontenttype: 'application/json',
    data: JSON.stringify(entryFields(entry)),
  };

  it('names its stream entry, which becomes the right document', () => {
    const streamId = sourceEventStreamId(sourceEvent);
    expect(streamId).toBe('1732770000000-0');
    const persistedAt = new Date('2026-11-28T06:00:01Z');
    // What is written comes from the stream entry, never from the event's data.
    expect(toDocument(parseEntryFields(entryFields(entry)), streamId, persistedAt)).toEqual({
      _id: { source: '/shop', id: entry.id },
      type: 'order.created',
      subject: 'cust-42',
      seq: 7,
      time: new Date('2026-11-28T06:00:00.123Z'),
      timeText: '2026-11-28T06:00:00.123Z',
      data: { total: 42, items: ['a', 'b'] },
      streamId: '1732770000000-0',
      persistedAt,
      key: 'idem-1',
    });
  });

  it("carries a CloudEvent's other attributes through the entry into the document", () => {
    const attributes = attributesText({
      tenant: 'acme',
      datacontenttype: 'application/json',
      n: 3,
      b: true,
    });
    expect(attributes).toBe(
      '{"b":true,"datacontenttype":"application/json","n":3,"tenant":"acme"}',
    );
    const withThem = { ...entry, attributes: attributes as string };
    const fields = entryFields(withThem);
    expect(fields.slice(-4)).toEqual(['attributes', attributes, 'key', 'idem-1']);
    const doc = toDocument(parseEntryFields(fields), '1-0', new Date());
    expect(doc.attributes).toEqual({
      b: true,
      datacontenttype: 'application/json',
      n: 3,
      tenant: 'acme',
    });
    expect(attributesText({})).toBeUndefined();
    for (const bad of ['[1]', '{"Tenant":"x"}', '{"t":{"a":1}}', 'nope'])
      expect(() => toDocument({ ...entry, attributes: bad }, '1-0', new Date())).toThrow(
        DocumentError,
      );
  });

  it('takes the stream id alone, whatever the data says (a doorbell)', () => {
    for (const data of [entryFields(entry), '[not json', '{"id":"forged"}', undefined])
      expect(sourceEventStreamId({ ...sourceEvent, data })).toBe('1732770000000-0');
  });

  it.each([
    ['another type', { ...sourceEvent, type: 'com.example' }, /expected dev\.knative/],
    ['an id that is not a stream id', { ...sourceEvent, id: 'abc' }, /not a stream entry id/],
    ['no id', { ...sourceEvent, id: undefined }, /not a stream entry id/],
  ])('refuses %s (EntryError), not a crash', (_what, event, message) => {
    expect(() => sourceEventStreamId(event)).toThrow(EntryError);
    expect(() => sourceEventStreamId(event)).toThrow(message);
  });

  it('rejects a time that is not RFC 3339 and data that is not JSON text', () => {
    expect(() => toDocument({ ...entry, time: 'yesterday' }, '1-0', new Date())).toThrow(
      DocumentError,
    );
    expect(() => toDocument({ ...entry, data: '{' }, '1-0', new Date())).toThrow(DocumentError);
  });

  it('names the source event type once', () => {
    expect(SOURCE_EVENT_TYPE).toBe(sourceEvent.type);
  });
});
