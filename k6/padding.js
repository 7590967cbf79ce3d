// The padding of a profile's events (k6/<name>-profile.json's payloadBytes):
// `length` characters that look like data, pseudo-random over 64 characters
// (mulberry32 with a fixed seed: the same every run). A run of one repeated
// character would be compressed to nothing by Redis's RDB-encoded AOF base,
// which then rewrites every few seconds. Plain JavaScript with no imports:
// k6/spike-test.js imports it, and so does the local VU runner
// (bench/profile.ts), so both send the same events.
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const made = new Map();

export function paddingText(length) {
  const kept = made.get(length);
  if (kept !== undefined) return kept;
  let seed = 0x5eed;
  let text = '';
  for (let i = 0; i < length; i++) {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    text += ALPHABET[((t ^ (t >>> 14)) >>> 0) % 64];
  }
  made.set(length, text);
  return text;
}
