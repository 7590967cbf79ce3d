/**
 * How many stream entries one read may ask for. Redis answers a command whole
 * while every other client waits, and a stream read's cost is its entries'
 * bytes: 5,000 entries of 4 KiB held Redis for most of a second (measured:
 * XRANGE at 850 ms in its slow log, ingest's scripts timing out behind it). So
 * persist's reads of entries (the pull intake's chunks, the fill, the presence
 * check) ask for at most about READ_BYTES a command, by the size of the entries
 * read so far; more is read in more commands, between which Redis serves the
 * others.
 */
import { entryBytes } from './work.js';

/** About this much of entries' text per read command. */
export const READ_BYTES = 512 * 1024;
/** Reads ask for at least this many entries, whatever their size. */
const MIN_ENTRIES = 16;
/** Before any entry was seen: a large one, so that the first read is short whatever they are. */
const FIRST_GUESS_BYTES = 4096;

export class ReadSize {
  private averageBytes = FIRST_GUESS_BYTES;
  private seen = false;

  /** Fields of entries read: their size sets the average (the first read), then moves it. */
  observe(entries: ReadonlyArray<readonly string[]>): void {
    if (entries.length === 0) return;
    let bytes = 0;
    for (const fields of entries) bytes += entryBytes(fields);
    const read = bytes / entries.length;
    this.averageBytes = this.seen ? 0.7 * this.averageBytes + 0.3 * read : read;
    this.seen = true;
  }

  /** How many entries one read asks for: about READ_BYTES of them, at most `most`. */
  count(most: number): number {
    const fit = Math.max(MIN_ENTRIES, Math.floor(READ_BYTES / this.averageBytes));
    return Math.max(0, Math.min(most, fit));
  }
}
