/**
 * The local load generator, run as a child process (node:child_process fork): it
 * receives one RunnerConfig over IPC, runs it, and answers one RunnerResult.
 *
 * Two load models, never mixed up (bench/README.md, "The two load models"):
 *   paced   k6's model: each VU owns one keep-alive connection, sends one event,
 *           waits for the answer, then sleeps a think time (the profile's mean ±
 *           jitter, uniform). VU start times are spread over about one mean think
 *           time (each VU connects when it starts, and sends at once), and the
 *           measurement starts one think time later, when the offered load is steady.
 *   closed  saturation: every connection sends its next request as soon as the
 *           answer to the previous one arrives (no think time). Its latency is
 *           queueing (connections / throughput), not service time.
 *   stages  the paced model following the profile's stages, as k6's ramping-vus
 *           executor runs them: the number of active VUs moves linearly from one
 *           stage's target to the next; a VU that starts opens its connection and
 *           sends at once, then thinks; a VU that is retired sends nothing more
 *           (an answer in flight is awaited) and closes its connection. Measured
 *           from the first VU to the last answer, and reported second by second.
 *
 * Lean on purpose (it shares 2 cores with the server): raw net sockets, one
 * pre-built HTTP/1.1 request per VU whose Idempotency-Key counter, iteration and
 * sentAt are rewritten in place, a minimal response parser (status line,
 * Content-Length or chunked), latency from process.hrtime.bigint() at the write
 * to the last byte of the answer, samples in a growable Float64Array.
 */
import { connect, type Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { runIfEntryPoint } from '../functions/shared/entrypoint.js';
import { firstThinkMs, type ProfileEvent, paddingText, thinkTimeMs } from './profile.js';

export interface RunnerConfig {
  mode: 'paced' | 'closed' | 'stages';
  host: string;
  port: number;
  /** VUs (paced) or connections (closed); one keep-alive connection each. */
  connections: number;
  /** Connections opened per tick while ramping up, and the tick. */
  connectPerTick: number;
  connectTickMs: number;
  /** Paced: the profile's think time. */
  thinkMeanMs: number;
  thinkJitter: number;
  /** Closed: time between the last connection opened and the measurement. */
  warmupSec: number;
  measureSec: number;
  /** A request with no full answer after this long is an error (its socket is closed). */
  timeoutMs: number;
  event: ProfileEvent;
  /** Unique per run: Idempotency-Key is `<keyPrefix>-<vu>-<iteration>`. */
  keyPrefix: string;
  path: string;
  /** Stages mode: the profile's stages (k6 ramping-vus). */
  stages?: { durationSec: number; target: number }[];
  /** Headers every request carries besides the runner's own (e.g. `Prefer: wait=2`). */
  headers?: Record<string, string>;
  /** Report every second's figures ('second' messages); always on in stages mode. */
  perSecond?: boolean;
}

/** One second of load, as the generator saw it. */
export interface SecondFigures {
  /** The second's start, ms since the epoch (this machine's clock), and its index from the first. */
  atMs: number;
  second: number;
  /** Active VUs (stages mode) or open connections at the second's end. */
  vus: number;
  connections: number;
  /** Requests sent (offered) and answers received in this second. */
  offered: number;
  answered: number;
  /** Percentiles (ms) of the answers received in this second; 0 when none. */
  p50: number;
  p95: number;
  p99: number;
  max: number;
  /** Answers by HTTP status, and failures without an answer, in this second. */
  statuses: Record<string, number>;
  errors: { non2xx: number; socket: number; timeout: number; connect: number };
}

export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
}

export interface RunnerResult {
  mode: RunnerConfig['mode'];
  connections: number;
  /** Connections open when the measurement started. */
  connectedAtStart: number;
  measuredSec: number;
  /** Answers received within the measurement window, and their rate. */
  completed: number;
  rps: number;
  /** ms, answers within the window. */
  latencyMs: LatencySummary;
  /** Counted over the whole run (ramp, warm-up and window). */
  errors: {
    total: number;
    non2xx: number;
    socket: number;
    timeout: number;
    connect: number;
  };
  errorCodes: Record<string, number>;
  statuses: Record<string, number>;
  /** Requests sent over the whole run, and reconnects after a server-side close. */
  sent: number;
  reconnects: number;
  /** This generator during the window: CPU share of one core, event-loop delay (ms). */
  generator: { cpuPercent: number; loopDelayP99Ms: number; loopDelayMaxMs: number };
}

export type RunnerMessage =
  | { type: 'progress'; text: string }
  | { type: 'window'; edge: 'start' | 'end' }
  | { type: 'second'; figures: SecondFigures }
  | { type: 'result'; result: RunnerResult }
  | { type: 'failed'; error: string };

const CRLFCRLF = Buffer.from('\r\n\r\n');
const CHUNKED_END = Buffer.from('\n0\r\n\r\n');
const ITER_WIDTH = 10;
const LOOP_RESOLUTION_MS = 10;
const SENT_AT_WIDTH = 24; // 2024-01-01T00:00:00.000Z

class Vu {
  socket: Socket | null = null;
  connected = false;
  connecting = false;
  connectStartedMs = 0;
  inFlight = false;
  sendOnConnect = false;
  sentAt = 0n;
  iteration = 0;
  pending: Buffer | null = null;
  timer: NodeJS.Timeout | null = null;
  /** Stages mode: a VU retired by a ramp-down sends nothing more. */
  retired = false;
  constructor(
    readonly index: number,
    /** The request bytes; key, iteration and sentAt are rewritten before each send. */
    readonly request: Buffer,
    readonly keyAt: number,
    readonly iterationAt: number,
    readonly sentAtAt: number,
  ) {}
}

/** Writes `value` right-aligned into `width` bytes at `at`, padded with `pad`. */
function writeDigits(buf: Buffer, at: number, width: number, value: number, pad: number) {
  let v = value;
  for (let i = at + width - 1; i >= at; i--) {
    if (v > 0 || i === at + width - 1) {
      buf[i] = 48 + (v % 10);
      v = Math.floor(v / 10);
    } else buf[i] = pad;
  }
}

function buildVu(config: RunnerConfig, index: number): Vu {
  const { event } = config;
  const iterationSlot = ' '.repeat(ITER_WIDTH);
  const sentAtSlot = 'x'.repeat(SENT_AT_WIDTH);
  // k6/spike-test.js's event: profile type/source, subject <prefix><vu>, data {vu, iteration,
  // sentAt} and, with the profile's payloadBytes, a payload of that many characters.
  // The iteration is right-aligned in spaces (valid JSON whitespace) so its width never changes.
  const head = JSON.stringify({
    type: event.type,
    source: event.source,
    subject: `${event.subjectPrefix}${index}`,
  }).slice(0, -1);
  const payload = event.payloadBytes ? `,"payload":"${paddingText(event.payloadBytes)}"` : '';
  const body = `${head},"data":{"vu":${index},"iteration":${iterationSlot},"sentAt":"${sentAtSlot}"${payload}}}`;
  const key = `${config.keyPrefix}-${index}-`;
  const text =
    `POST ${config.path} HTTP/1.1\r\n` +
    `Host: ${config.host}:${config.port}\r\n` +
    'Connection: keep-alive\r\n' +
    'Content-Type: application/json\r\n' +
    Object.entries(config.headers ?? {})
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('') +
    `Idempotency-Key: ${key}${'0'.repeat(ITER_WIDTH)}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    '\r\n' +
    body;
  const request = Buffer.from(text, 'utf8');
  const keyAt = request.indexOf(`${key}${'0'.repeat(ITER_WIDTH)}`) + Buffer.byteLength(key);
  const iterationAt = request.indexOf(`"iteration":${iterationSlot}`) + '"iteration":'.length;
  const sentAtAt = request.indexOf(sentAtSlot);
  return new Vu(index, request, keyAt, iterationAt, sentAtAt);
}

/** Latency samples in µs: a growable Float64Array, sorted once at the end. */
class Samples {
  private data = new Float64Array(1 << 16);
  length = 0;
  push(value: number) {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = value;
  }
  summaryMs(): LatencySummary {
    const sorted = this.data.subarray(0, this.length).sort();
    const n = sorted.length;
    const at = (q: number) => (n === 0 ? 0 : (sorted[Math.min(n - 1, Math.ceil(q * n) - 1)] ?? 0));
    let sum = 0;
    for (let i = 0; i < n; i++) sum += sorted[i] as number;
    const ms = (us: number) => Math.round(us) / 1000;
    return {
      count: n,
      mean: n === 0 ? 0 : ms(sum / n),
      p50: ms(at(0.5)),
      p90: ms(at(0.9)),
      p95: ms(at(0.95)),
      p99: ms(at(0.99)),
      p999: ms(at(0.999)),
      max: n === 0 ? 0 : ms(sorted[n - 1] as number),
    };
  }
}

/** Exact percentile (ms) of a small sample of µs values, sorted in place. */
function percentileMs(values: number[], q: number): number {
  if (values.length === 0) return 0;
  return (
    Math.round(values[Math.min(values.length - 1, Math.ceil(q * values.length) - 1)] ?? 0) / 1000
  );
}

/** The number of active VUs at `ms` from the start: linear within each stage, from 0. */
export function stageTarget(stages: RunnerConfig['stages'], ms: number): number {
  let start = 0;
  let from = 0;
  for (const stage of stages ?? []) {
    const length = stage.durationSec * 1000;
    if (ms < start + length)
      return Math.round(from + ((stage.target - from) * (ms - start)) / length);
    start += length;
    from = stage.target;
  }
  return from;
}

export function run(
  config: RunnerConfig,
  report: (message: RunnerMessage) => void = () => {},
): Promise<RunnerResult> {
  return new Generator(config, report).run();
}

type ErrorKind = 'non2xx' | 'socket' | 'timeout' | 'connect';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const clock = () => performance.timeOrigin + performance.now();
const newSecond = () => ({
  offered: 0,
  answered: 0,
  latencies: [] as number[],
  statuses: new Map<number, number>(),
  errors: { non2xx: 0, socket: 0, timeout: 0, connect: 0 },
});

/** Where an answer ends in `data` (Infinity: not yet known), from its head. */
function answerEnd(data: Buffer, headEnd: number, head: string): number {
  const cl = head.indexOf('\r\ncontent-length:');
  if (cl >= 0) {
    const eol = head.indexOf('\r\n', cl + 17);
    return headEnd + 4 + Number.parseInt(head.slice(cl + 17, eol < 0 ? head.length : eol), 10);
  }
  if (head.includes('\r\ntransfer-encoding: chunked')) {
    const last = data.indexOf(CHUNKED_END, headEnd + 3);
    return last < 0 ? Number.POSITIVE_INFINITY : last + CHUNKED_END.length;
  }
  return headEnd + 4;
}

/** One run of one config: the VUs, their sockets and every count. */
class Generator {
  private readonly vus: Vu[] = [];
  private readonly staged: boolean;
  private readonly paced: boolean;
  /** This second's figures are reported (stages mode, or perSecond). */
  private readonly perSecond: boolean;
  private readonly samples = new Samples();
  private readonly statuses = new Map<number, number>();
  private readonly errorCodes = new Map<string, number>();
  private readonly errors = { non2xx: 0, socket: 0, timeout: 0, connect: 0 };
  private stopping = false;
  private measuring = false;
  private completed = 0;
  private sent = 0;
  private reconnects = 0;
  private connected = 0;
  private active = 0;
  private second = newSecond();
  private secondIndex = 0;
  private secondAt = clock();
  private sweeper: NodeJS.Timeout | undefined;
  private readonly sendLater = (vu: Vu) => this.send(vu);
  private readonly openLater = (vu: Vu) => this.open(vu);

  constructor(
    private readonly config: RunnerConfig,
    private readonly report: (message: RunnerMessage) => void,
  ) {
    for (let i = 0; i < config.connections; i++) this.vus.push(buildVu(config, i + 1));
    this.staged = config.mode === 'stages';
    this.paced = config.mode === 'paced' || this.staged;
    this.perSecond = this.staged || config.perSecond === true;
  }

  async run(): Promise<RunnerResult> {
    // Requests (closed) or request timeouts and stuck connects: checked every 500 ms.
    // After the I/O already there is read: a runner busy past a request's timeout
    // must not count an answer that is waiting in its socket as a timeout.
    this.sweeper = setInterval(() => setImmediate(() => this.sweep()), 500);
    if (this.staged) return this.runStages();
    // 1. Closed: open connections gradually (a burst of 10,000 SYNs overflows listen
    //    queues); each starts its loop as soon as it is open. Paced: a VU connects when
    //    it starts (as a k6 VU does on its first request): a connection that sat idle
    //    before its first request would be closed by a server's headers timeout (the
    //    lean host answers 408 after HEADERS_TIMEOUT_MS), which is not the load's doing.
    if (!this.paced) await this.rampConnections();
    // 2. Paced: stagger the VUs' starts, then warm up for one mean think time. Closed: warm up.
    if (this.paced) await this.staggerStarts();
    else await sleep(this.config.warmupSec * 1000);
    // 3. Measure, 4. stop.
    return this.measureWindow();
  }

  private countCode(code: string) {
    this.errorCodes.set(code, (this.errorCodes.get(code) ?? 0) + 1);
  }

  private countError(kind: ErrorKind) {
    this.errors[kind]++;
    this.second.errors[kind]++;
  }

  private send(vu: Vu) {
    vu.timer = null;
    if (this.stopping) return;
    if (!vu.connected || vu.socket === null) {
      vu.sendOnConnect = true;
      return;
    }
    const iteration = ++vu.iteration;
    const req = vu.request;
    writeDigits(req, vu.keyAt, ITER_WIDTH, iteration, 48);
    writeDigits(req, vu.iterationAt, ITER_WIDTH, iteration, 32);
    req.write(new Date().toISOString(), vu.sentAtAt, SENT_AT_WIDTH, 'latin1');
    vu.inFlight = true;
    vu.pending = null;
    vu.sentAt = process.hrtime.bigint();
    this.sent++;
    this.second.offered++;
    // The previous write is complete (its answer arrived), so rewriting req is safe.
    vu.socket.write(req);
  }

  private next(vu: Vu) {
    if (this.stopping || vu.retired) return;
    const { thinkMeanMs, thinkJitter } = this.config;
    if (this.paced)
      vu.timer = setTimeout(this.sendLater, thinkTimeMs(thinkMeanMs, thinkJitter), vu);
    else this.send(vu);
  }

  private complete(vu: Vu, status: number, close: boolean) {
    const end = process.hrtime.bigint();
    vu.inFlight = false;
    if (this.measuring) {
      this.samples.push(Number(end - vu.sentAt) / 1000);
      this.completed++;
    }
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
    if (this.perSecond) {
      const second = this.second;
      second.answered++;
      second.latencies.push(Number(end - vu.sentAt) / 1000);
      second.statuses.set(status, (second.statuses.get(status) ?? 0) + 1);
    }
    if (status < 200 || status > 299) this.countError('non2xx');
    if (close || vu.retired) {
      vu.socket?.destroy();
      return; // the close handler reconnects and schedules the next request
    }
    this.next(vu);
  }

  private onData(vu: Vu, chunk: Buffer) {
    if (!vu.inFlight) {
      this.countCode('unexpected_data');
      return;
    }
    const data = vu.pending === null ? chunk : Buffer.concat([vu.pending, chunk]);
    const headEnd = data.indexOf(CRLFCRLF);
    if (headEnd < 0) {
      vu.pending = data;
      return;
    }
    const head = data.toString('latin1', 0, headEnd).toLowerCase();
    if (data.length < answerEnd(data, headEnd, head)) {
      vu.pending = data;
      return;
    }
    vu.pending = null;
    const status =
      ((data[9] as number) - 48) * 100 +
      ((data[10] as number) - 48) * 10 +
      (data[11] as number) -
      48;
    this.complete(vu, status, head.includes('\r\nconnection: close'));
  }

  private open(vu: Vu) {
    if (this.stopping || vu.retired) return;
    vu.connecting = true;
    vu.connectStartedMs = Date.now();
    const socket = connect({ host: this.config.host, port: this.config.port, noDelay: true });
    vu.socket = socket;
    socket.on('connect', () => {
      vu.connecting = false;
      vu.connected = true;
      this.connected++;
      if (vu.sendOnConnect || !this.paced) {
        vu.sendOnConnect = false;
        this.send(vu);
      }
    });
    socket.on('data', (chunk: Buffer) => this.onData(vu, chunk));
    socket.on('error', (error: NodeJS.ErrnoException) =>
      this.countCode(error.code ?? error.message),
    );
    socket.on('close', () => this.onClose(vu, socket));
  }

  private onClose(vu: Vu, socket: Socket) {
    if (vu.socket !== socket) return;
    vu.socket = null;
    if (vu.connected) this.connected--;
    else if (!this.stopping && !vu.retired) this.countError('connect');
    const wasConnected = vu.connected;
    vu.connected = false;
    vu.connecting = false;
    if (this.stopping) return;
    if (vu.retired) {
      if (vu.inFlight) this.countError('socket');
      vu.inFlight = false;
      return;
    }
    if (vu.inFlight) {
      vu.inFlight = false;
      this.countError('socket');
      vu.sendOnConnect = !this.paced;
      if (this.paced) this.next(vu);
    } else if (!this.paced) vu.sendOnConnect = true;
    if (wasConnected) this.reconnects++;
    // A refused or failed connection retries after a pause; a closed one at once.
    if (wasConnected) this.open(vu);
    else setTimeout(this.openLater, 500, vu).unref();
  }

  private sweep() {
    const now = process.hrtime.bigint();
    const limit = BigInt(this.config.timeoutMs) * 1_000_000n;
    const nowMs = Date.now();
    for (const vu of this.vus) {
      if (vu.inFlight && now - vu.sentAt > limit) {
        this.countError('timeout');
        vu.inFlight = false;
        this.countCode('timeout');
        vu.sendOnConnect = !this.paced;
        if (this.paced) this.next(vu);
        vu.socket?.destroy();
      } else if (vu.connecting && nowMs - vu.connectStartedMs > this.config.timeoutMs) {
        this.countCode('connect_timeout');
        vu.socket?.destroy();
      }
    }
  }

  /** Every second's figures, on the second from the first VU's start. */
  private flushSecond() {
    const done = this.second;
    this.second = newSecond();
    const at = this.secondAt;
    this.secondAt = clock();
    if (!this.perSecond) return;
    done.latencies.sort((x, y) => x - y);
    this.report({
      type: 'second',
      figures: {
        atMs: at,
        second: this.secondIndex++,
        vus: this.staged ? this.active : this.connected,
        connections: this.connected,
        offered: done.offered,
        answered: done.answered,
        p50: percentileMs(done.latencies, 0.5),
        p95: percentileMs(done.latencies, 0.95),
        p99: percentileMs(done.latencies, 0.99),
        max: percentileMs(done.latencies, 1),
        statuses: Object.fromEntries([...done.statuses].map(([k, v]) => [String(k), v])),
        errors: done.errors,
      },
    });
  }

  /** Closed: opens the connections `connectPerTick` per tick, then waits for them (10 s at most). */
  private async rampConnections() {
    const { vus, config } = this;
    const rampStart = Date.now();
    for (let i = 0; i < vus.length; i += config.connectPerTick) {
      for (const vu of vus.slice(i, i + config.connectPerTick)) this.open(vu);
      await sleep(config.connectTickMs);
    }
    for (let waited = 0; this.connected < vus.length && waited < 10_000; waited += 100)
      await sleep(100);
    this.report({
      type: 'progress',
      text: `${this.connected}/${vus.length} connections open after ${((Date.now() - rampStart) / 1000).toFixed(1)} s`,
    });
  }

  /**
   * Paced: staggers the VUs' starts so that their sum is steady at once (each VU
   * starts, connects and sends after a stationary residual think time:
   * stratified, so the starts are smooth; ~7/8 of them fall within one mean think
   * time), then warms up for one mean think time.
   */
  private async staggerStarts() {
    const { vus, config } = this;
    const n = vus.length;
    const order = vus.map((_, i) => (i + Math.random()) / n);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [order[i], order[j]] = [order[j] as number, order[i] as number];
    }
    const start = (vu: Vu) => {
      vu.timer = null;
      vu.sendOnConnect = true;
      this.open(vu);
    };
    vus.forEach((vu, i) => {
      const delay = firstThinkMs(config.thinkMeanMs, config.thinkJitter, order[i]);
      vu.timer = setTimeout(start, delay, vu);
    });
    this.report({
      type: 'progress',
      text: `VUs starting (steady ≈${((n * 1000) / config.thinkMeanMs).toFixed(0)} req/s offered); warming up for one mean think time, ${(config.thinkMeanMs / 1000).toFixed(1)} s`,
    });
    await sleep(config.thinkMeanMs);
  }

  /** Paced and closed: the measurement window, `measureSec` long. */
  private async measureWindow(): Promise<RunnerResult> {
    const loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    loopDelay.enable();
    const connectedAtStart = this.connected;
    const cpuStart = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    this.measuring = true;
    this.report({ type: 'window', edge: 'start' });
    this.second = newSecond();
    this.secondAt = clock();
    const seconds = this.perSecond ? setInterval(() => this.flushSecond(), 1000) : undefined;
    const progress = setInterval(() => {
      const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
      this.report({
        type: 'progress',
        text: `${elapsed.toFixed(0)} s: ${this.completed} answers (${(this.completed / elapsed).toFixed(0)} req/s), ${this.connected} connections`,
      });
    }, 15_000);
    await sleep(this.config.measureSec * 1000);
    this.measuring = false;
    const t1 = process.hrtime.bigint();
    const cpu = process.cpuUsage(cpuStart);
    loopDelay.disable();
    this.report({ type: 'window', edge: 'end' });
    clearInterval(progress);
    clearInterval(seconds);
    return this.finish(t0, t1, cpu, loopDelay, connectedAtStart);
  }

  /** Stages mode: starts or retires VUs to the stages' target at `elapsedMs`. */
  private steer(elapsedMs: number) {
    const { vus } = this;
    const target = Math.min(vus.length, stageTarget(this.config.stages, elapsedMs));
    while (this.active < target) {
      const vu = vus[this.active++] as Vu;
      vu.retired = false;
      vu.sendOnConnect = true; // k6: a VU's first iteration starts at once
      this.open(vu);
    }
    while (this.active > target) {
      const vu = vus[--this.active] as Vu;
      vu.retired = true;
      if (vu.timer) clearTimeout(vu.timer);
      vu.timer = null;
      if (!vu.inFlight) vu.socket?.destroy();
    }
  }

  /** Stages mode: VUs follow the stages; measured from the first start to the last answer. */
  private async runStages(): Promise<RunnerResult> {
    const { vus, config, errors } = this;
    const totalMs = (config.stages ?? []).reduce((sum, s) => sum + s.durationSec * 1000, 0);
    const loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    loopDelay.enable();
    const cpuStart = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    this.measuring = true;
    this.secondAt = clock();
    this.report({ type: 'window', edge: 'start' });
    const elapsedMs = () => Number(process.hrtime.bigint() - t0) / 1e6;
    const steering = setInterval(() => this.steer(elapsedMs()), 100);
    this.steer(elapsedMs());
    const seconds = setInterval(() => this.flushSecond(), 1000);
    const progress = setInterval(() => {
      this.report({
        type: 'progress',
        text: `${(elapsedMs() / 1000).toFixed(0)} s: ${this.active} VUs, ${this.completed} answers, ${errors.non2xx + errors.socket + errors.timeout + errors.connect} errors`,
      });
    }, 15_000);
    await sleep(totalMs);
    clearInterval(steering);
    this.steer(elapsedMs());
    // The last answers (a retired VU's request in flight is awaited, up to the timeout).
    const deadline = Date.now() + config.timeoutMs + 1000;
    while (vus.some((vu) => vu.inFlight) && Date.now() < deadline) await sleep(50);
    clearInterval(seconds);
    clearInterval(progress);
    this.flushSecond();
    this.measuring = false;
    const t1 = process.hrtime.bigint();
    const cpu = process.cpuUsage(cpuStart);
    loopDelay.disable();
    this.report({ type: 'window', edge: 'end' });
    return this.finish(t0, t1, cpu, loopDelay, 0);
  }

  private finish(
    t0: bigint,
    t1: bigint,
    cpu: NodeJS.CpuUsage,
    loopDelay: ReturnType<typeof monitorEventLoopDelay>,
    connectedAtStart: number,
  ): RunnerResult {
    this.stopping = true;
    clearInterval(this.sweeper);
    for (const vu of this.vus) {
      if (vu.timer) clearTimeout(vu.timer);
      vu.socket?.destroy();
    }
    const { errors, completed } = this;
    const measuredSec = Number(t1 - t0) / 1e9;
    const errorTotal = errors.non2xx + errors.socket + errors.timeout + errors.connect;
    return {
      mode: this.config.mode,
      connections: this.vus.length,
      connectedAtStart,
      measuredSec,
      completed,
      rps: completed / measuredSec,
      latencyMs: this.samples.summaryMs(),
      errors: { total: errorTotal, ...errors },
      errorCodes: Object.fromEntries(this.errorCodes),
      statuses: Object.fromEntries([...this.statuses].map(([k, v]) => [String(k), v])),
      sent: this.sent,
      reconnects: this.reconnects,
      generator: {
        cpuPercent: ((cpu.user + cpu.system) / 1e6 / measuredSec) * 100,
        // The histogram holds whole timer intervals: the delay is what exceeds the resolution.
        loopDelayP99Ms: Math.max(0, loopDelay.percentile(99) / 1e6 - LOOP_RESOLUTION_MS),
        loopDelayMaxMs: Math.max(0, loopDelay.max / 1e6 - LOOP_RESOLUTION_MS),
      },
    };
  }
}

// As a child process (forked with IPC, this module its entry point): one config
// in, one result out.
runIfEntryPoint(import.meta.url, 'vu-runner', async () => {
  if (process.send === undefined) throw new Error('run me with fork(): I take my config over IPC');
  const reply = (message: RunnerMessage) => process.send?.(message);
  process.once('message', (config: RunnerConfig) => {
    run(config, reply).then(
      (result) => {
        reply({ type: 'result', result });
        process.disconnect?.();
        setTimeout(() => process.exit(0), 200).unref();
      },
      (error: unknown) => {
        reply({ type: 'failed', error: String((error as Error)?.stack ?? error) });
        process.exit(1);
      },
    );
  });
});
