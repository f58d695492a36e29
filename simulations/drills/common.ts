/**
 * What every drill shares: how it reports progress, what it hands back to the
 * command line (which prints the summary or the JSON and picks the exit
 * code), option parsing, bounded waits and a plain-text table.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

export interface DrillIO {
  /** One line of progress, to stderr (stdout is kept for the result). */
  progress(line: string): void;
}

export interface DrillResult {
  /** True only when nothing was lost or doubled and every check of the drill held. */
  ok: boolean;
  /** The drill's figures; printed as the one JSON object of `--json`. */
  json: Record<string, unknown>;
  /** Human lines printed without `--json` (the usage, for `--help` or a bad option). */
  summary: string[];
  /** One line per failed check (empty when ok). */
  failures: string[];
  /** Overrides the exit code: 2 for a usage error. Absent: 0 when ok, 1 otherwise. */
  exitCode?: number;
}

export type DrillRunner = (argv: string[], io: DrillIO) => Promise<DrillResult>;

/** A bad command line: the message says what is wrong; no stack trace is shown. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The result of `--help` (ok) or of a bad option (exit 2): the usage, and what was wrong. */
export function usageResult(usage: string, error?: Error): DrillResult {
  const summary = usage.split('\n');
  if (!error) return { ok: true, json: {}, summary, failures: [] };
  const failures = [error.message];
  return { ok: false, json: { ok: false, error: error.message }, summary, failures, exitCode: 2 };
}

export interface NumberRule {
  fallback: number;
  min: number;
  max: number;
}

/**
 * node:util parseArgs, strict, plus whole-number options checked against
 * their bounds. `--json` and `--help` are accepted by every drill (the command
 * line acts on them). Throws UsageError naming the option and the rule.
 */
export function parseDrillOptions<N extends string>(
  argv: string[],
  numbers: Record<N, NumberRule>,
  others: ParseArgsOptionsConfig = {},
): { numbers: Record<N, number>; values: Record<string, string | boolean | undefined> } {
  const options: ParseArgsOptionsConfig = {
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    ...others,
  };
  for (const name of Object.keys(numbers)) options[name] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }) as {
      values: Record<string, string | boolean | undefined>;
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const out = {} as Record<N, number>;
  for (const [name, rule] of Object.entries(numbers) as Array<[N, NumberRule]>) {
    const raw = values[name];
    if (raw === undefined || typeof raw !== 'string') {
      out[name] = rule.fallback;
      continue;
    }
    if (!/^\d+$/.test(raw)) throw new UsageError(`--${name} must be a whole number, got ${raw}`);
    const n = Number(raw);
    if (n < rule.min || n > rule.max)
      throw new UsageError(`--${name} must be between ${rule.min} and ${rule.max}, got ${raw}`);
    out[name] = n;
  }
  return { numbers: out, values };
}

/**
 * Polls `probe` every `everyMs` until it returns a value (not undefined);
 * throws naming `what` after `timeoutMs`.
 */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Columns padded to their widest cell; the first row is the header. */
export function formatTable(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const line = (row: string[]) =>
    row
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  const [header, ...body] = rows;
  if (!header) return [];
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
}

/** JSON with bigints as decimal strings (figures must never lose digits). */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

export const round1 = (x: number): number => Math.round(x * 10) / 10;
