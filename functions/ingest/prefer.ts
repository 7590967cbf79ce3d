/**
 * The `wait` preference of a request (RFC 7240, "Prefer Header for HTTP"):
 * `Prefer: wait=5`, alone or among other preferences (`respond-async, wait=5`),
 * in one header field or several. As the RFC asks, only its first instance
 * counts, and a preference the server does not understand (`wait=soon`) is
 * ignored, not refused: the request is answered as if it were not there.
 */

/** One preference of a Prefer field: its name (lower case) and its value ('' when none). */
interface Preference {
  name: string;
  value: string;
}

/** The preferences of one field value, in order; quoted strings may hold commas and semicolons. */
function preferences(field: string): Preference[] {
  const out: Preference[] = [];
  let part = '';
  let quoted = false;
  const flush = () => {
    const head = part.split(';')[0] ?? '';
    const at = head.indexOf('=');
    const name = (at < 0 ? head : head.slice(0, at)).trim().toLowerCase();
    const raw = at < 0 ? '' : head.slice(at + 1).trim();
    const value = raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw;
    if (name !== '') out.push({ name, value });
    part = '';
  };
  for (let i = 0; i < field.length; i++) {
    const c = field[i] as string;
    if (c === '"') quoted = !quoted;
    if (c === '\\' && quoted) {
      part += c + (field[++i] ?? '');
      continue;
    }
    if (c === ',' && !quoted) flush();
    else part += c;
  }
  flush();
  return out;
}

/**
 * Seconds the client prefers to wait (the first `wait` preference), at most
 * `most`; undefined when it sent none, or none this server understands
 * (delta-seconds: digits only).
 */
export function preferredWait(
  header: string | string[] | undefined,
  most: number,
): number | undefined {
  if (header === undefined) return undefined;
  const fields = Array.isArray(header) ? header : [header];
  for (const field of fields)
    for (const { name, value } of preferences(field)) {
      if (name !== 'wait') continue;
      if (!/^\d{1,10}$/.test(value)) return undefined;
      return Math.min(Number(value), most);
    }
  return undefined;
}
