/**
 * Command lines: each command declares its positionals and options; node's
 * parseArgs reads them (strict), and its errors become one line that names
 * the option and the rule (a UsageError, exit 2). Value checks live here too.
 */
import { parseArgs } from 'node:util';
import { UsageError, type Io } from './output.ts';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Shown in the usage: `--rate <per-second>`. */
  valueName?: string;
  description: string;
}

export interface CommandSpec {
  /** As typed after `npm run cli --`: `publish`, `dlq list`. */
  name: string;
  summary: string;
  /** Required positionals, in order (e.g. `<file>`). */
  positionals: readonly string[];
  options: Readonly<Record<string, OptionSpec>>;
  /** Extra usage text: rules, exit codes, examples. */
  notes?: string;
}

export const JSON_OPTION: Record<string, OptionSpec> = {
  json: { type: 'boolean', description: 'print one JSON document on stdout' },
};

const HELP_OPTION: Record<string, OptionSpec> = {
  help: { type: 'boolean', short: 'h', description: 'show this help' },
};

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

export const PROGRAM = 'npm run cli --';

/** The usage text of one command. */
export function commandUsage(spec: CommandSpec): string {
  const options = { ...spec.options, ...HELP_OPTION };
  const args = spec.positionals.map((p) => ` ${p}`).join('');
  const rows = Object.entries(options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${name}${o.valueName ? ` <${o.valueName}>` : ''}`;
    return `  ${flag.padEnd(28)} ${o.description}`;
  });
  const notes = spec.notes ? `\n\n${spec.notes}` : '';
  return `usage: ${PROGRAM} ${spec.name}${args} [options]\n\n${spec.summary}\n\noptions:\n${rows.join('\n')}${notes}`;
}

/** Whether the command line asks for help (before any `--`). */
export function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/** The option a parseArgs message quotes (`'--rate <value>'` → `--rate`). */
function quotedOption(message: string): string | undefined {
  return /'(-[^' ]+)/.exec(message)?.[1];
}

function parseArgsProblem(error: unknown, spec: CommandSpec): string {
  const e = error as { code?: string; message?: string };
  const message = e.message ?? String(error);
  const option = quotedOption(message) ?? '(option)';
  const allowed = Object.keys(spec.options)
    .map((o) => `--${o}`)
    .join(', ');
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')
    return `unknown option ${option} (options: ${allowed}, --help)`;
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    if (/does not take an argument/.test(message)) return `${option} takes no value`;
    if (/argument missing/.test(message)) return `${option} needs a value`;
    if (/ambiguous/.test(message))
      return `${option} needs a value (one starting with '-' is written ${option}=<value>)`;
  }
  return message.split('. ')[0] ?? message;
}

/** Reads argv (after the command words) by the spec; throws UsageError naming what is wrong. */
export function parseCommandLine(spec: CommandSpec, argv: readonly string[]): Parsed {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { ...spec.options, ...HELP_OPTION },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(parseArgsProblem(error, spec), spec.name);
  }
  const { positionals } = parsed;
  const missing = spec.positionals[positionals.length];
  if (missing !== undefined) throw new UsageError(`missing ${missing}`, spec.name);
  const extra = positionals[spec.positionals.length];
  if (extra !== undefined)
    throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`, spec.name);
  return { values: parsed.values as Parsed['values'], positionals };
}

/** The one-line problem plus where to look. */
export function usageErrorLine(error: UsageError): string {
  const prefix = error.command ? `${error.command}: ` : '';
  const help = error.command ? `${PROGRAM} ${error.command} --help` : `${PROGRAM} --help`;
  return `error: ${prefix}${error.message}; see ${help}`;
}

// Value checks: each throws a UsageError naming the option and its rule.

export function stringOption(parsed: Parsed, name: string): string | undefined {
  const value = parsed.values[name];
  return typeof value === 'string' ? value : undefined;
}

export function wholeNumber(
  command: string,
  option: string,
  text: string,
  min: number,
  max: number,
): number {
  const value = /^\d{1,15}$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max))
    throw new UsageError(
      `--${option} must be a whole number from ${min} to ${max} (got ${JSON.stringify(text)})`,
      command,
    );
  return value;
}

/** A positive decimal number (e.g. a rate), at most `max`. */
export function positiveNumber(command: string, option: string, text: string, max: number): number {
  const value = /^\d{1,9}(\.\d{1,6})?$/.test(text) ? Number(text) : NaN;
  if (!(value > 0 && value <= max))
    throw new UsageError(
      `--${option} must be a positive number up to ${max} (got ${JSON.stringify(text)})`,
      command,
    );
  return value;
}

export function oneOf<T extends string>(
  command: string,
  what: string,
  text: string,
  values: readonly T[],
): T {
  if (!(values as readonly string[]).includes(text))
    throw new UsageError(
      `${what} must be one of ${values.join(', ')} (got ${JSON.stringify(text)})`,
      command,
    );
  return text as T;
}

/** A calendar date YYYY-MM-DD that exists. */
export function isoDate(command: string, option: string, text: string): string {
  const date = /^\d{4}-\d{2}-\d{2}$/.test(text) ? new Date(`${text}T00:00:00Z`) : undefined;
  if (!date || Number.isNaN(date.getTime()) || date.toISOString().slice(0, 10) !== text)
    throw new UsageError(
      `--${option} must be a date YYYY-MM-DD (got ${JSON.stringify(text)})`,
      command,
    );
  return text;
}

/** An http(s) URL; `source` names where it came from (--api or an env variable). */
export function httpUrl(command: string, source: string, text: string): string {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || !['http:', 'https:'].includes(url.protocol))
    throw new UsageError(
      `${source} must be an http(s) URL like http://127.0.0.1:3000 (got ${JSON.stringify(text)})`,
      command,
    );
  return text.replace(/\/+$/, '');
}

export interface CommandContext {
  io: Io;
  env: Record<string, string | undefined>;
}

/** A command: its spec (usage, options) and what it does; resolves to the exit code. */
export interface Command {
  spec: CommandSpec;
  run(parsed: Parsed, ctx: CommandContext): Promise<number>;
}
