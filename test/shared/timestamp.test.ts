/** RFC 3339 date-times as the RFC defines them (functions/shared/timestamp.ts): pure logic. */
import { describe, expect, it } from 'vitest';
import { rfc3339Millis, TimestampError } from '../../functions/shared/timestamp.js';

describe('rfc3339Millis', () => {
  it.each([
    ['2026-02-03T10:00:00.123456+02:00', '2026-02-03T08:00:00.123Z'],
    ['2024-02-29T00:00:00z', '2024-02-29T00:00:00.000Z'],
    ['2026-12-31t23:59:59.9-23:59', '2027-01-01T23:58:59.900Z'],
    ['0050-01-01T00:00:00Z', '0050-01-01T00:00:00.000Z'],
    ['2000-02-29T12:00:00+00:00', '2000-02-29T12:00:00.000Z'],
    ['1970-01-01T00:00:00.0000001Z', '1970-01-01T00:00:00.000Z'],
  ])('%s is the instant %s', (text, iso) => {
    expect(new Date(rfc3339Millis(text)).toISOString()).toBe(iso);
  });

  it.each([
    ['2026-02-30T10:00:00Z', /no day 30 in 2026-02/],
    ['2025-02-29T10:00:00Z', /no day 29 in 2025-02/],
    ['1900-02-29T10:00:00Z', /no day 29 in 1900-02/],
    ['2026-04-31T10:00:00Z', /no day 31/],
    ['2026-13-01T10:00:00Z', /no month 13/],
    ['2026-00-01T10:00:00Z', /no month 00/],
    ['2026-01-00T10:00:00Z', /no day 00/],
    ['2026-01-01T24:00:00Z', /no hour 24/],
    ['2026-01-01T10:60:00Z', /no minute 60/],
    ['2016-12-31T23:59:60Z', /leap seconds/],
    ['2026-01-01T10:00:00+24:00', /no offset/],
    ['2026-01-01T10:00:00+02:60', /no offset/],
    ['2026-01-01T10:00:00', /not an RFC 3339/],
    ['2026-01-01 10:00:00Z', /not an RFC 3339/],
    ['2026-1-01T10:00:00Z', /not an RFC 3339/],
    ['2026-01-01T10:00:00.Z', /not an RFC 3339/],
    ['yesterday', /not an RFC 3339/],
  ])('refuses %s', (text, why) => {
    expect(() => rfc3339Millis(text)).toThrow(TimestampError);
    expect(() => rfc3339Millis(text)).toThrow(why);
  });
});
