/**
 * `npm run bench`: every scenario in one command (ingest, persist, spike,
 * flood), each with a progress bar, or only those named (`npm run bench --
 * flood`). Writes
 * bench/results/<timestamp>.json (every sample, every row), .html (charts as
 * inline SVG) and .md (the summary), and prints the targets.
 *
 * Lengths: by default ingest and persist are shortened (below) so that the whole
 * run fits in 20 minutes on a 2-core machine; `--full` runs them at their full
 * length. The spike and the flood always follow their profiles' stages (the
 * flood once per replica count in FLOOD_REPLICAS, or --replicas). `--smoke` runs every
 * scenario for seconds with tiny loads (CI).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { fileStamp, lineUi, machine, type ScenarioUi } from './common.js';
import { type ProfileName, repoRoot } from './profile.js';
import { type BenchRun, html, markdown, renderCharts } from './report.js';
import {
  estimateIngestSec,
  FULL_INGEST,
  type IngestOptions,
  killIngestChildren,
  runIngestScenario,
} from './scenarios/ingest.js';
import {
  estimatePersistSec,
  FULL_PERSIST,
  type PersistOptions,
  runPersistScenario,
} from './scenarios/persist.js';
import {
  estimateSpikeSec,
  killSpikeChildren,
  profileStages,
  runSpikeScenario,
  type SpikeOptions,
  type SpikeResult,
} from './scenarios/spike.js';
import { ingestTargets, spikeTargets, targetsText } from './targets.js';

const SCENARIOS = ['ingest', 'persist', 'spike', 'flood'] as const;
/** The flood's rows: persist alone (npm start's PERSIST_WORKERS default), and three replicas on one budget. */
const FLOOD_REPLICAS = [1, 3];
type Scenario = (typeof SCENARIOS)[number];

const USAGE = `usage: npm run bench -- [scenario ...] [options]
  scenarios: ingest, persist, spike, flood (default: all four, in that order)
  --full        ingest and persist at their full length (about 8 + 5 minutes)
  --smoke       every scenario for seconds, tiny loads (CI)
  --profile     always profile ingest at the reference load (default: only when an
                ingest target is not met)
  --no-profile  never profile
  --replicas N[,N...]  the flood's persist replica counts (default: 1,3)`;

/** The default lengths: shortened so that `npm run bench` fits in 20 minutes. */
const DEFAULT_INGEST: IngestOptions = { ...FULL_INGEST, pacedSec: 30, saturationSec: 10 };
const DEFAULT_PERSIST: PersistOptions = {
  ...FULL_PERSIST,
  seconds: 8,
  push: 20_000,
  backlog: 150_000,
  lagSeconds: 20,
};
const SMOKE_INGEST: IngestOptions = {
  ...FULL_INGEST,
  pacedSec: 1,
  saturationSec: 1,
  vus: 40,
  connections: 40,
  warmupSec: 0,
  connectPerTick: 40,
  thinkMs: 200,
};
const SMOKE_PERSIST: PersistOptions = {
  seconds: 1,
  push: 300,
  backlog: 3000,
  lagSeconds: 2,
  replicas: 3,
  adaptive: [
    { iops: 100, seconds: 2 },
    { iops: 20, seconds: 2 },
    { iops: 100, seconds: 2 },
  ],
  adaptiveRate: 200,
};

/** A profile's load: its stages at full length, or seconds of a small one (smoke). */
function loadOptions(profile: ProfileName, smoke: boolean): SpikeOptions {
  if (!smoke)
    return {
      profile,
      stages: profileStages(profile),
      drainTimeoutSec: 600,
      ceilingSec: 10,
      connectPerTick: 250,
    };
  // The flood's smoke offers far more than its VUs' answers can come back at.
  const flood = profile === 'flood';
  return {
    profile,
    stages: [
      { durationSec: 2, target: flood ? 300 : 60 },
      { durationSec: flood ? 5 : 3, target: flood ? 300 : 60 },
      { durationSec: 1, target: 0 },
    ],
    drainTimeoutSec: 60,
    ceilingSec: 1,
    connectPerTick: 50,
    thinkMs: flood ? 20 : 500,
  };
}

/**
 * The flood once per replica count, each with its own ceiling unless the
 * persist scenario gave one; the rows run are kept in `rows` whatever becomes
 * of the next (a row that fails throws after the others ran).
 */
async function runFlood(
  replicas: readonly number[],
  opts: SpikeOptions,
  ui: ScenarioUi,
  where: Parameters<typeof runSpikeScenario>[2],
  rows: SpikeResult[],
): Promise<void> {
  const failed: string[] = [];
  for (const persistWorkers of replicas) {
    ui.log(`flood with ${persistWorkers} persist replica(s)`);
    try {
      rows.push(await runSpikeScenario({ ...opts, persistWorkers }, ui, where));
    } catch (error) {
      failed.push(`${persistWorkers} replica(s): ${String((error as Error)?.message ?? error)}`);
    }
  }
  if (failed.length > 0) throw new Error(failed.join('; '));
}

function shortenedNotes(
  ingest: IngestOptions,
  persist: PersistOptions,
  run: readonly Scenario[],
): string[] {
  const notes: string[] = [];
  if (run.includes('ingest')) {
    if (ingest.pacedSec < FULL_INGEST.pacedSec)
      notes.push(
        `ingest reference load ${ingest.pacedSec} s per row (full: ${FULL_INGEST.pacedSec} s)`,
      );
    if (ingest.saturationSec < FULL_INGEST.saturationSec)
      notes.push(
        `ingest saturation ${ingest.saturationSec} s per row (full: ${FULL_INGEST.saturationSec} s)`,
      );
  }
  if (run.includes('persist')) {
    if (persist.seconds < FULL_PERSIST.seconds)
      notes.push(
        `persist (a), (a′), (b) ${persist.seconds} s each (full: ${FULL_PERSIST.seconds} s)`,
      );
    if (persist.push < FULL_PERSIST.push)
      notes.push(`persist (c) ${persist.push} events (full: ${FULL_PERSIST.push})`);
    if (persist.backlog < FULL_PERSIST.backlog)
      notes.push(`persist (d) backlog ${persist.backlog} entries (full: ${FULL_PERSIST.backlog})`);
    if (persist.lagSeconds < FULL_PERSIST.lagSeconds)
      notes.push(`persist lag ${persist.lagSeconds} s (full: ${FULL_PERSIST.lagSeconds} s)`);
  }
  return notes;
}

/** Each scenario's output, and the run's hooks around the scenarios. */
interface ProgressUis {
  ui: (name: Scenario) => ScenarioUi;
  start: (name: Scenario) => void;
  done: (name: Scenario) => void;
  stop: () => void;
}

/** Progress bars on a terminal; plain lines elsewhere (CI, a pipe). */
function progressUis(
  scenarios: readonly Scenario[],
  estimates: Record<Scenario, number>,
): ProgressUis {
  if (!process.stderr.isTTY) return lineUis();
  return barUis(scenarios, estimates);
}

/** Plain lines, each phase named by its scenario. */
function lineUis(): ProgressUis {
  return {
    ui: (name: Scenario): ScenarioUi => ({
      log: lineUi.log,
      phase: (text) => lineUi.phase(`[${name}] ${text}`),
    }),
    start: (_name: Scenario) => {},
    done: (_name: Scenario) => {},
    stop: () => {},
  };
}

/**
 * One bar per scenario, its total the scenario's estimate; a started bar moves
 * with the clock each second (never to its end before the scenario is done).
 */
function barUis(scenarios: readonly Scenario[], estimates: Record<Scenario, number>): ProgressUis {
  const multibar = new cliProgress.MultiBar(
    {
      format: '{scenario} [{bar}] {percentage}% | {elapsed}s of ≈{total}s | {phase}',
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      barsize: 30,
      etaBuffer: 20,
      stream: process.stderr,
      autopadding: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map(
    scenarios.map((name) => [
      name,
      multibar.create(Math.round(estimates[name]), 0, {
        scenario: name.padEnd(7),
        phase: 'waiting',
        elapsed: 0,
      }),
    ]),
  );
  const started = new Map<Scenario, number>();
  const timer = setInterval(() => {
    for (const [name, at] of started) {
      const bar = bars.get(name);
      const elapsed = Math.round((performance.now() - at) / 1000);
      bar?.update(Math.min(elapsed, bar.getTotal() - 1), { elapsed });
    }
  }, 1000);
  return {
    ui: (name: Scenario): ScenarioUi => ({
      log: (line) => multibar.log(`${line}\n`),
      phase: (text) => bars.get(name)?.update({ phase: text.slice(0, 70) }),
    }),
    start: (name: Scenario) => started.set(name, performance.now()),
    done: (name: Scenario) => {
      const at = started.get(name);
      started.delete(name);
      const bar = bars.get(name);
      const elapsed = at === undefined ? 0 : Math.round((performance.now() - at) / 1000);
      bar?.update(bar.getTotal(), { phase: 'done', elapsed });
    },
    stop: () => {
      clearInterval(timer);
      multibar.stop();
    },
  };
}

/** What the command line asks for: which scenarios, at which lengths. */
interface Plan {
  chosen: Scenario[];
  smoke: boolean;
  ingest: IngestOptions;
  persist: PersistOptions;
  spike: SpikeOptions;
  flood: SpikeOptions;
  /** The flood's rows, one per persist replica count. */
  floodReplicas: number[];
  profileMode: 'never' | 'always' | 'when-missed';
}

/** The plan from the command line; undefined after printing the usage (--help). */
function planOf(argv: string[]): Plan | undefined {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      full: { type: 'boolean', default: false },
      smoke: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      'no-profile': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
      replicas: { type: 'string', default: FLOOD_REPLICAS.join(',') },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return undefined;
  }
  for (const name of positionals)
    if (!(SCENARIOS as readonly string[]).includes(name)) {
      console.error(`unknown scenario ${name}\n${USAGE}`);
      process.exit(2);
    }
  const floodReplicas = values.replicas.split(',').map(Number);
  if (floodReplicas.some((n) => !Number.isInteger(n) || n < 1)) {
    console.error(
      `--replicas takes replica counts of 1 or more, comma-separated: ${values.replicas}\n${USAGE}`,
    );
    process.exit(2);
  }
  const smoke = values.smoke === true;
  const length = smoke ? 'smoke' : values.full ? 'full' : 'default';
  return {
    chosen:
      positionals.length === 0
        ? [...SCENARIOS]
        : SCENARIOS.filter((name) => positionals.includes(name)),
    smoke,
    ingest: { smoke: SMOKE_INGEST, full: FULL_INGEST, default: DEFAULT_INGEST }[length],
    persist: { smoke: SMOKE_PERSIST, full: FULL_PERSIST, default: DEFAULT_PERSIST }[length],
    spike: loadOptions('spike', smoke),
    flood: loadOptions('flood', smoke),
    floodReplicas,
    profileMode: values['no-profile'] ? 'never' : values.profile ? 'always' : 'when-missed',
  };
}

/** Where a run's files go, and under which stamp. */
interface Output {
  resultsDir: string;
  stamp: string;
}

/** Ingest's rows; profiled at the reference load when asked, or when a target is missed. */
async function ingestScenario(plan: Plan, ui: ScenarioUi, out: Output) {
  const result = await runIngestScenario(
    { ...plan.ingest, profile: plan.profileMode === 'always' },
    ui,
    out,
  );
  const missed = ingestTargets(result).some((t) => t.met === false);
  if (plan.profileMode === 'when-missed' && missed && plan.ingest.pacedSec > 0) {
    ui.log('an ingest target is not met: profiling ingest at the reference load');
    const profiled = await runIngestScenario({ ...plan.ingest, only: [], profile: true }, ui, out);
    if (profiled.cpuProfile) result.cpuProfile = profiled.cpuProfile;
  }
  return result;
}

/** One scenario into the run; a failure is recorded, and the others go on. */
async function runScenario(name: Scenario, plan: Plan, run: BenchRun, ui: ScenarioUi, out: Output) {
  try {
    if (name === 'ingest') run.scenarios.ingest = await ingestScenario(plan, ui, out);
    else if (name === 'persist') run.scenarios.persist = await runPersistScenario(plan.persist, ui);
    else {
      const ceiling = run.scenarios.persist?.ceiling;
      const where = { ...out, smoke: plan.smoke, ...(ceiling !== undefined ? { ceiling } : {}) };
      if (name === 'spike') run.scenarios.spike = await runSpikeScenario(plan.spike, ui, where);
      else {
        run.scenarios.flood = [];
        await runFlood(plan.floodReplicas, plan.flood, ui, where, run.scenarios.flood);
      }
    }
  } catch (error) {
    run.failures[name] = String((error as Error)?.message ?? error);
    ui.log(`${name} FAILED: ${String((error as Error)?.stack ?? error)}`);
  }
}

/** The run's JSON, HTML and Markdown (charts beside them), and the targets printed. */
async function writeResults(run: BenchRun, out: Output): Promise<void> {
  const base = join(out.resultsDir, out.stamp);
  const charts = await renderCharts(run);
  if (charts.spike) writeFileSync(`${base}-spike.svg`, charts.spike);
  const floodSvgs = charts.flood.map((svg, i) => {
    writeFileSync(`${base}-flood-${i + 1}.svg`, svg);
    return `${out.stamp}-flood-${i + 1}.svg`;
  });
  writeFileSync(`${base}.json`, `${JSON.stringify(run)}\n`);
  writeFileSync(`${base}.html`, html(run, charts));
  writeFileSync(
    `${base}.md`,
    markdown(run, { ...(charts.spike ? { spikeSvg: `${out.stamp}-spike.svg` } : {}), floodSvgs }),
  );
  const rel = (file: string) => relative(process.cwd(), file);
  console.log(
    [
      '',
      run.targets.length > 0 ? `Targets:\n${targetsText(run.targets)}` : 'No targets in this run.',
      ...Object.entries(run.failures).map(([name, error]) => `${name} FAILED: ${error}`),
      '',
      `Results: ${rel(`${base}.md`)}, ${rel(`${base}.html`)}, ${rel(`${base}.json`)}`,
    ].join('\n'),
  );
}

async function main(): Promise<void> {
  const plan = planOf(process.argv.slice(2));
  if (!plan) return;
  const { chosen, smoke } = plan;
  const startedAt = new Date();
  const out: Output = {
    resultsDir: join(repoRoot(), 'bench', 'results'),
    stamp: fileStamp(startedAt),
  };
  mkdirSync(out.resultsDir, { recursive: true });
  const run: BenchRun = {
    startedAt: startedAt.toISOString(),
    finishedAt: '',
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    machine: machine(),
    smoke,
    shortened: smoke ? [] : shortenedNotes(plan.ingest, plan.persist, chosen),
    scenarios: {},
    targets: [],
    failures: {},
  };
  const estimates: Record<Scenario, number> = {
    ingest: estimateIngestSec({ ...plan.ingest, profile: plan.profileMode === 'always' }),
    persist: estimatePersistSec(plan.persist),
    spike: estimateSpikeSec(plan.spike, chosen.includes('persist')),
    flood: plan.floodReplicas.length * estimateSpikeSec(plan.flood, chosen.includes('persist')),
  };
  const progress = progressUis(chosen, estimates);
  try {
    for (const name of chosen) {
      progress.start(name);
      await runScenario(name, plan, run, progress.ui(name), out);
      progress.done(name);
    }
  } finally {
    progress.stop();
  }
  if (run.scenarios.ingest) run.targets.push(...ingestTargets(run.scenarios.ingest));
  if (run.scenarios.spike) run.targets.push(...spikeTargets(run.scenarios.spike));
  for (const row of run.scenarios.flood ?? []) run.targets.push(...spikeTargets(row));
  run.finishedAt = new Date().toISOString();
  await writeResults(run, out);
  if (Object.keys(run.failures).length > 0) process.exitCode = 1;
}

function killAll() {
  killIngestChildren();
  killSpikeChildren();
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}
process.on('exit', killAll);

main().catch((error: unknown) => {
  killAll();
  process.stderr.write(`bench failed: ${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
