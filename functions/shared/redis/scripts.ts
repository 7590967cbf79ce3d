/**
 * Spillway's Redis scripts, loaded the BullMQ way: every script is a file in
 * `commands/`, named `<name>-<numberOfKeys>.lua`, whose header documents its
 * steps, KEYS, ARGV and replies. The loader reads the key count from the file
 * name and registers each script on a client under a versioned name
 * (`<name>:<first 8 hex of its SHA-1>`), so two versions of Spillway sharing one
 * Redis never run each other's script. Callers stay thin: `scripts.run(name,
 * keys, args)`, with the key count checked against the file name.
 *
 * Every script persist and the relay run for the drain starts with
 * `#!lua flags=allow-oom` (Redis 7): the drain is what frees memory, so a full
 * Redis must never refuse it. Ingest's script has no flags: a full Redis
 * refuses its first write, before the XADD, and ingest answers 503.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

const DIR = new URL('./commands/', import.meta.url);
const FILE = /^([a-z][a-z0-9-]*)-(\d+)\.lua$/;

interface ScriptFile {
  name: string;
  numberOfKeys: number;
  lua: string;
  sha: string;
  /** The name the script is registered under on a client. */
  command: string;
}

/** Every script of commands/, by name. */
function loadScriptFiles(): ReadonlyMap<string, ScriptFile> {
  const scripts = new Map<string, ScriptFile>();
  for (const file of readdirSync(DIR).sort()) {
    const match = FILE.exec(file);
    if (!match) continue;
    const [, name = '', keys = '0'] = match;
    const lua = readFileSync(new URL(file, DIR), 'utf8');
    const sha = createHash('sha1').update(lua).digest('hex');
    scripts.set(name, {
      name,
      numberOfKeys: Number(keys),
      lua,
      sha,
      command: `${name}:${sha.slice(0, 8)}`,
    });
  }
  return scripts;
}

const SCRIPT_FILES = loadScriptFiles();

/** The scripts, as the code calls them. */
export type ScriptName =
  | 'ingest'
  | 'ack-delete'
  | 'lease-take'
  | 'lease-renew'
  | 'lease-release'
  | 'write-budget'
  | 'catchup-claim'
  | 'stream-count-after';

type Runner = (...args: Array<string | number>) => Promise<unknown>;

/** Runs Spillway's scripts on one client (EVALSHA, falling back to EVAL after a Redis restart). */
export class Scripts {
  private readonly runners = new Map<string, Runner>();

  constructor(private readonly redis: Redis) {
    for (const script of SCRIPT_FILES.values()) {
      redis.defineCommand(script.command, { numberOfKeys: script.numberOfKeys, lua: script.lua });
      const runner = (redis as unknown as Record<string, Runner>)[script.command];
      if (runner) this.runners.set(script.name, runner.bind(redis));
    }
  }

  /** Runs a script; the number of keys must be the one its file name says. */
  run(
    name: ScriptName,
    keys: readonly string[],
    args: ReadonlyArray<string | number>,
  ): Promise<unknown> {
    const script = SCRIPT_FILES.get(name);
    const runner = this.runners.get(name);
    if (!script || !runner) throw new Error(`no Redis script commands/${name}-<keys>.lua`);
    if (keys.length !== script.numberOfKeys)
      throw new Error(`script ${name} takes ${script.numberOfKeys} keys, got ${keys.length}`);
    return runner(...keys, ...args);
  }

  /** Loads every script into Redis (on each connect: a restarted Redis has forgotten them). */
  async preload(): Promise<void> {
    await Promise.all([...SCRIPT_FILES.values()].map((s) => this.redis.script('LOAD', s.lua)));
  }
}
