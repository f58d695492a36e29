/**
 * The commands, their usage, and running one command line (the entry is
 * main.ts).
 *
 * Exit codes: 0 done; 1 a runtime failure (server unreachable, HTTP error,
 * invalid input lines); 2 a bad command line; 3 reconcile found breaks.
 * With --json, stdout holds exactly one JSON document (a failure too:
 * `{ "error": ... }`); messages and progress go to stderr.
 */
import { ConfigError } from '../config.ts';
import { API_COMMANDS } from './api-commands.ts';
import {
  PROGRAM,
  commandUsage,
  parseCommandLine,
  usageErrorLine,
  wantsHelp,
  type Command,
  type CommandContext,
} from './args.ts';
import { CliFailure, ExitCode, UsageError, toJson } from './output.ts';
import { publishCommand } from './publish.ts';
import { streamStatusCommand } from './stream.ts';

type Group = Readonly<Record<string, Command>>;

/** Every command: a single one, or a group of subcommands. */
export const COMMANDS: Readonly<Record<string, Command | Group>> = {
  publish: publishCommand,
  stream: { status: streamStatusCommand },
  ...API_COMMANDS,
};

const isCommand = (entry: Command | Group): entry is Command => 'spec' in entry;

/** Every command's full name (`dlq list`), for the usage and for tests. */
export function commandNames(): string[] {
  return Object.entries(COMMANDS).flatMap(([name, entry]) =>
    isCommand(entry) ? [name] : Object.keys(entry).map((sub) => `${name} ${sub}`),
  );
}

/** A summary's first sentence, without the route it calls. */
export function briefOf(summary: string): string {
  const sentence = summary.split(/\.(\s|$)/)[0] ?? summary;
  return sentence.replace(/\s*\((GET|POST) [^)]*\)/, '').split(':')[0] ?? sentence;
}

function commandLines(): string[] {
  return Object.entries(COMMANDS)
    .flatMap(([name, entry]) =>
      isCommand(entry)
        ? [[name, entry.spec.summary] as const]
        : Object.entries(entry).map(([sub, c]) => [`${name} ${sub}`, c.spec.summary] as const),
    )
    .map(([name, summary]) => `  ${name.padEnd(15)} ${briefOf(summary)}`);
}

export function topUsage(): string {
  return [
    `usage: ${PROGRAM} <command> [options]`,
    `       ${PROGRAM} <command> --help`,
    '',
    'commands:',
    ...commandLines(),
    '',
    'Every command takes --json (one JSON document on stdout) and --help.',
    'Configured by the service’s environment (NATS_URL, BLOCKFILL_NAMESPACE, PARTITIONS,',
    'PORT, API_KEY, ...); the API is at --api, $BLOCKFILL_API or http://127.0.0.1:$PORT.',
    'Exit codes: 0 done, 1 failure, 2 bad command line, 3 reconcile found breaks.',
  ].join('\n');
}

function groupUsage(name: string, group: Group): string {
  const lines = Object.entries(group).map(
    ([sub, c]) => `  ${`${name} ${sub}`.padEnd(15)} ${briefOf(c.spec.summary)}`,
  );
  const subs = Object.keys(group).join('|');
  return [
    `usage: ${PROGRAM} ${name} <${subs}> [options]`,
    '',
    ...lines,
    '',
    `Each one's options: ${PROGRAM} ${name} <${subs}> --help`,
  ].join('\n');
}

/** The command argv names and the arguments after its words; a usage text instead for help. */
export function resolveCommand(
  argv: readonly string[],
): { command: Command; args: string[] } | { usage: string } {
  const [first, second] = argv;
  if (first === undefined) throw new UsageError('a command is needed');
  if (first === '--help' || first === '-h' || first === 'help') return { usage: topUsage() };
  const entry = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
  if (entry === undefined)
    throw new UsageError(
      `unknown command ${JSON.stringify(first)} (commands: ${Object.keys(COMMANDS).join(', ')})`,
    );
  if (isCommand(entry)) return { command: entry, args: argv.slice(1) };
  if (second === undefined || second === '--help' || second === '-h') {
    if (second === undefined)
      throw new UsageError(`a subcommand is needed: ${Object.keys(entry).join(', ')}`, first);
    return { usage: groupUsage(first, entry) };
  }
  const command = Object.hasOwn(entry, second) ? entry[second] : undefined;
  if (command === undefined)
    throw new UsageError(
      `unknown subcommand ${JSON.stringify(second)} (${Object.keys(entry).join(', ')})`,
      first,
    );
  return { command, args: argv.slice(2) };
}

/** A failure on stderr (and as the JSON document with --json); its exit code. */
function reportFailure(error: unknown, json: boolean, ctx: CommandContext): number {
  if (error instanceof UsageError) {
    ctx.io.err(usageErrorLine(error));
    return ExitCode.Usage;
  }
  if (error instanceof ConfigError) {
    ctx.io.err(`error: ${error.message}`);
    return ExitCode.Usage;
  }
  const message = error instanceof Error ? error.message : String(error);
  ctx.io.err(`error: ${message}`);
  if (json)
    ctx.io.out(
      toJson(error instanceof CliFailure ? error.json : { error: { code: 'FAILED', message } }),
    );
  return ExitCode.Failure;
}

/** Runs one command line; resolves to the exit code (never throws). */
export async function main(argv: readonly string[], ctx: CommandContext): Promise<number> {
  let json = false;
  try {
    const resolved = resolveCommand(argv);
    if ('usage' in resolved) {
      ctx.io.out(resolved.usage);
      return ExitCode.Ok;
    }
    const { command, args } = resolved;
    if (wantsHelp(args)) {
      ctx.io.out(commandUsage(command.spec));
      return ExitCode.Ok;
    }
    const parsed = parseCommandLine(command.spec, args);
    json = parsed.values.json === true;
    return await command.run(parsed, ctx);
  } catch (error) {
    return reportFailure(error, json, ctx);
  }
}
