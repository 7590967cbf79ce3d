/**
 * The receipts' pure parts: the Prefer header (RFC 7240), the receipt's text
 * and MAC, persist's announcement of a batch, and the Retry-After arithmetic.
 */
import { describe, expect, it } from 'vitest';
import { drainSeconds, MAX_RETRY_AFTER_SEC } from '../../functions/ingest/backlog.js';
import { preferredWait } from '../../functions/ingest/prefer.js';
import {
  parseReceipt,
  receiptMac,
  receiptSecrets,
  receiptText,
} from '../../functions/ingest/receipts.js';
import { announcementText, parseAnnouncement } from '../../functions/shared/receipts.js';

describe('Prefer: wait', () => {
  it('reads the first wait preference, among others, in one field or several', () => {
    expect(preferredWait('wait=5', 20)).toBe(5);
    expect(preferredWait('respond-async, wait=10', 20)).toBe(10);
    expect(preferredWait('WAIT = 3', 20)).toBe(3);
    expect(preferredWait('wait="7"', 20)).toBe(7);
    expect(preferredWait(['handling=lenient', 'wait=4, wait=9'], 20)).toBe(4);
    expect(preferredWait('foo="a, wait=1", wait=2', 20)).toBe(2);
    expect(preferredWait('wait=5;x=y', 20)).toBe(5);
  });

  it('cuts a wait to the most it honours, and ignores one it does not understand', () => {
    expect(preferredWait('wait=600', 20)).toBe(20);
    expect(preferredWait('wait=0', 20)).toBe(0);
    for (const header of [
      undefined,
      '',
      'respond-async',
      'wait=soon',
      'wait=-1',
      'wait=1.5',
      'wait',
    ])
      expect(preferredWait(header, 20), String(header)).toBeUndefined();
    // only the first instance counts, even when it is not understood
    expect(preferredWait('wait=x, wait=3', 20)).toBeUndefined();
  });
});

describe('a receipt', () => {
  const secret = Buffer.from('secret');
  const mac = receiptMac(secret, 'anon', 'spillway:events', '1732770000000-7');

  it('holds its stream id and its MAC, opaque and of a fixed length', () => {
    const text = receiptText('1732770000000-7', mac);
    expect(text).toMatch(/^[A-Za-z0-9_-]{44}$/);
    const parsed = parseReceipt(text);
    expect(parsed?.streamId).toBe('1732770000000-7');
    expect(parsed?.mac.equals(mac)).toBe(true);
    // the largest sequence a stream id may have
    const max = receiptText('1732770000000-18446744073709551615', mac);
    expect(parseReceipt(max)?.streamId).toBe('1732770000000-18446744073709551615');
  });

  it('is keyed by the secret, the scope, the stream and the id, and by nothing else', () => {
    const others = [
      receiptMac(Buffer.from('other'), 'anon', 'spillway:events', '1732770000000-7'),
      receiptMac(secret, 'key:0011223344556677', 'spillway:events', '1732770000000-7'),
      receiptMac(secret, 'anon', 'other:events', '1732770000000-7'),
      receiptMac(secret, 'anon', 'spillway:events', '1732770000000-8'),
    ];
    for (const other of others) expect(other.equals(mac)).toBe(false);
    // the same inputs, the same MAC: any ingest process mints the same receipt
    expect(receiptMac(secret, 'anon', 'spillway:events', '1732770000000-7').equals(mac)).toBe(true);
  });

  it('reads RECEIPT_SECRET as a list: the first mints, and none is empty', () => {
    expect(receiptSecrets('')).toEqual([]);
    expect(receiptSecrets(' , ')).toEqual([]);
    expect(receiptSecrets('one')).toEqual(['one']);
    expect(receiptSecrets('new, old,')).toEqual(['new', 'old']);
  });

  it('is refused when it is not one', () => {
    const text = receiptText('1732770000000-7', mac);
    for (const bad of [
      '',
      'x',
      `${text}A`,
      text.slice(1),
      `B${text.slice(1)}`,
      `${text.slice(0, 43)}=`,
    ])
      expect(parseReceipt(bad), bad).toBeUndefined();
  });
});

describe("persist's announcement of a batch", () => {
  it('carries the ids and when their events were stored, compactly', () => {
    const ids = ['1732770000005-0', '1732770000000-2', '1732770000000-10', '1732770001000-0'];
    const text = announcementText({ ids, persistedAt: 1732770002000 });
    expect(text.length).toBeLessThan(ids.join(',').length);
    expect(parseAnnouncement(text)).toEqual({
      ids: ['1732770000000-2', '1732770000000-10', '1732770000005-0', '1732770001000-0'],
      persistedAt: 1732770002000,
    });
    expect(parseAnnouncement(announcementText({ ids: ['5-18446744073709551615'] }))).toEqual({
      ids: ['5-18446744073709551615'],
    });
  });

  it('is ignored when it is not one', () => {
    for (const bad of ['', 'x', '12', 'x 1-0', ' -1', ' z!-0', ' 5', ' 1-0,5', ' 1-', ' 1--1'])
      expect(parseAnnouncement(bad), bad).toBeUndefined();
  });
});

describe('Retry-After from the measured drain', () => {
  it('is the time the excess takes at the rate, at least 1 s and at most the cap', () => {
    expect(drainSeconds(1000, 100, 1)).toBe(10);
    expect(drainSeconds(1001, 100, 1)).toBe(11);
    expect(drainSeconds(1, 100, 1)).toBe(1);
    expect(drainSeconds(10_000_000, 1, 1)).toBe(MAX_RETRY_AFTER_SEC);
    expect(drainSeconds(5, 0, 1)).toBe(MAX_RETRY_AFTER_SEC);
  });

  it('falls back to BACKLOG_RETRY_AFTER_SEC when no rate is measured', () => {
    expect(drainSeconds(1000, undefined, 7)).toBe(7);
  });
});
