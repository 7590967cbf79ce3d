/**
 * Scrapes of Prometheus endpoints kept as series on one time axis (the input
 * of bench/promql.ts's evaluation): the spike's dashboard picture, the
 * adaptive run's per-second rate and latency.
 */
import { parsePromText } from './prom-text.js';
import type { SeriesStore } from './promql.js';

/** Keeps scrapes of Prometheus endpoints as series on a common time axis. */
export class MetricsRecorder {
  readonly store: SeriesStore = { times: [], series: [] };
  private readonly index = new Map<string, number>();

  /** Adds one scrape (the texts of every endpoint) taken at `atMs`. */
  add(atMs: number, texts: string[]): void {
    const at = this.store.times.length;
    this.store.times.push(atMs);
    for (const text of texts) {
      for (const sample of parsePromText(text)) {
        if (!sample.name.startsWith('spillway_')) continue;
        const key = `${sample.name}${JSON.stringify(sample.labels)}`;
        let i = this.index.get(key);
        if (i === undefined) {
          i = this.store.series.length;
          this.index.set(key, i);
          this.store.series.push({ name: sample.name, labels: sample.labels, values: [] });
        }
        const series = this.store.series[i] as SeriesStore['series'][number];
        // Several processes may serve one series (not here: each endpoint is one registry).
        series.values[at] = (series.values[at] ?? 0) + sample.value;
      }
    }
    for (const series of this.store.series)
      if (series.values.length <= at) series.values[at] = undefined;
  }

  /** The sum of a metric's series at the latest scrape (NaN when absent). */
  latest(name: string, filter: (labels: Record<string, string>) => boolean = () => true): number {
    const at = this.store.times.length - 1;
    let total = Number.NaN;
    for (const series of this.store.series) {
      if (series.name !== name || !filter(series.labels)) continue;
      const v = series.values[at];
      if (v !== undefined) total = (Number.isNaN(total) ? 0 : total) + v;
    }
    return total;
  }
}
