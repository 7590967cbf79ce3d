/**
 * RFC 3339 date-times, checked as the RFC defines them (section 5.6 and the
 * calendar rules of 5.7), not as Date.parse guesses: a day that the month does
 * not have (February 30), hour 24, a missing offset are refused, never rolled
 * over into another time. The text is what is stored as posted; the instant is
 * for queries, in milliseconds (MongoDB's Date), finer digits truncated.
 */

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

export class TimestampError extends Error {
  override name = 'TimestampError';
}

const daysIn = (year: number, month: number) =>
  month === 2
    ? year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
      ? 29
      : 28
    : [4, 6, 9, 11].includes(month)
      ? 30
      : 31;

/** The instant of an RFC 3339 date-time, in milliseconds since the epoch; throws TimestampError saying what is wrong. */
export function rfc3339Millis(text: string): number {
  const m = RFC3339.exec(text);
  if (!m)
    throw new TimestampError(
      'is not an RFC 3339 date-time (YYYY-MM-DDThh:mm:ss[.fraction] and Z or ±hh:mm)',
    );
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const fraction = m[7] ?? '';
  if (month < 1 || month > 12) throw new TimestampError(`has no month ${m[2]}`);
  if (day < 1 || day > daysIn(year, month))
    throw new TimestampError(`has no day ${m[3]} in ${m[1]}-${m[2]}`);
  if (hour > 23) throw new TimestampError(`has no hour ${m[4]} (00 to 23)`);
  if (minute > 59) throw new TimestampError(`has no minute ${m[5]} (00 to 59)`);
  // RFC 3339 allows 60 for a leap second; no database Date can hold one.
  if (second > 59) throw new TimestampError(`has second ${m[6]}: leap seconds cannot be stored`);
  let offsetMinutes = 0;
  if (m[8] === undefined) {
    const offHour = Number(m[10]);
    const offMinute = Number(m[11]);
    if (offHour > 23 || offMinute > 59)
      throw new TimestampError(`has no offset ${m[9]}${m[10]}:${m[11]}`);
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (offHour * 60 + offMinute);
  }
  const millis = Number(fraction.slice(0, 3).padEnd(3, '0'));
  // setUTCFullYear, not Date.UTC: Date.UTC reads years 0 to 99 as 1900 to 1999.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, millis);
  return date.getTime() - offsetMinutes * 60_000;
}
