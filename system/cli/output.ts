/**
 * What every command shares: exit codes, the two failure kinds, where output
 * goes, and plain-text tables. Commands write through an `Io` so they can be
 * driven from tests without a terminal.
 */
import { bigintsAsStrings } from '../../actors/errors.ts';

export const ExitCode = {
  Ok: 0,
  /** A runtime failure: a server unreachable, an HTTP error, an invalid input line. */
  Failure: 1,
  /** A bad command line: unknown command or option, a bad value. */
  Usage: 2,
  /** `reconcile` found breaks. */
  NotClean: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A bad command line: printed as one line with a hint to --help, exit 2. */
export class UsageError extends Error {
  /** The command whose --help the hint names ('' for the top level). */
  readonly command: string;
  constructor(message: string, command = '') {
    super(message);
    this.name = 'UsageError';
    this.command = command;
  }
}

export interface FailureOptions {
  /** A stable code for scripts (default FAILED). */
  code?: string;
  /** The document --json prints; default `{ error: { code, message } }`. */
  json?: Record<string, unknown>;
  cause?: unknown;
}

/** A runtime failure: the message on stderr (and, with --json, its document on stdout), exit 1. */
export class CliFailure extends Error {
  readonly code: string;
  readonly json: Record<string, unknown>;
  constructor(message: string, options: FailureOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliFailure';
    this.code = options.code ?? 'FAILED';
    this.json = options.json ?? { error: { code: this.code, message } };
  }
}

export interface Io {
  /** One line on stdout (the result). */
  out(text: string): void;
  /** One line on stderr (diagnostics, progress). */
  err(text: string): void;
  readonly stderrIsTty: boolean;
}

export const processIo: Io = {
  out: (text) => void process.stdout.write(`${text}\n`),
  err: (text) => void process.stderr.write(`${text}\n`),
  stderrIsTty: process.stderr.isTTY === true,
};

/** Exact JSON: bigints as decimal strings, indented for people who read it too. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, bigintsAsStrings, 2);
}

/** Columns padded to their widest cell; the last column is not padded. */
export function formatTable(headers: readonly string[], rows: readonly string[][]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)];
}

/** `key: value` lines, objects as compact JSON, absent values as `-`. */
export function formatFields(record: Record<string, unknown>): string[] {
  const width = Math.max(0, ...Object.keys(record).map((k) => k.length));
  return Object.entries(record).map(
    ([key, value]) => `${`${key}:`.padEnd(width + 1)} ${cellText(value)}`,
  );
}

/** A value as one table cell. */
export function cellText(value: unknown): string {
  if (value === null || value === undefined || value === '') return '-';
  if (typeof value === 'object') return JSON.stringify(value, bigintsAsStrings);
  return String(value);
}
