/**
 * The Prometheus text exposition format (what /metrics serves), read back: the
 * samples, and the metric families with their types (a histogram `x` is served
 * as `x_bucket`, `x_sum` and `x_count`).
 */

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function unescapeLabel(value: string): string {
  return value.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

/** Every sample of an exposition (comments skipped). */
export function parsePromText(text: string): PromSample[] {
  const samples: PromSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    if (match[3]) {
      for (const m of match[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
        labels[m[1] as string] = unescapeLabel(m[2] as string);
    }
    const text = match[4] as string;
    const value =
      text === '+Inf'
        ? Number.POSITIVE_INFINITY
        : text === '-Inf'
          ? Number.NEGATIVE_INFINITY
          : Number(text);
    samples.push({ name: match[1] as string, labels, value });
  }
  return samples;
}

/** The value of the first sample named `name`, whatever its labels (NaN when there is none). */
export function sampleValue(text: string, name: string): number {
  return parsePromText(text).find((sample) => sample.name === name)?.value ?? Number.NaN;
}

/** The sum of every sample named `name`, whatever its labels (NaN when there is none). */
export function sampleSum(text: string, name: string): number {
  const values = parsePromText(text).filter((s) => s.name === name);
  return values.length === 0 ? Number.NaN : values.reduce((sum, s) => sum + s.value, 0);
}

/** The metric families an exposition declares (`# TYPE name type`). */
export function metricFamilies(text: string): Map<string, string> {
  const families = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)/gm))
    families.set(m[1] as string, m[2] as string);
  return families;
}

/** Every series name an exposition can serve: a histogram's and a summary's parts included. */
export function exportedSeriesNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const [name, type] of metricFamilies(text)) {
    names.add(name);
    if (type === 'histogram')
      for (const part of ['_bucket', '_sum', '_count']) names.add(name + part);
    if (type === 'summary') for (const part of ['_sum', '_count']) names.add(name + part);
  }
  for (const sample of parsePromText(text)) names.add(sample.name);
  return names;
}
