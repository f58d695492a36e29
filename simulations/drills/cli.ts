/**
 * `npm run drill -- <name> [--json] [options]`: runs one drill and exits 0
 * only when every check of that drill held (1 otherwise, 2 for a bad command
 * line).
 *
 * With --json, stdout is exactly one JSON object; progress, logs, the usage
 * and the failed checks go to stderr. Without it, the drill's summary goes to
 * stdout and the failed checks to stderr.
 */
import { toJson, type DrillIO, type DrillResult, type DrillRunner } from './common.ts';
import { runBurstDrill } from './burst.ts';
import { runKillDrill } from './kill.ts';
import { runOutageDrill } from './outage.ts';
import { runPoisonDrill } from './poison.ts';
import { runReplayDrill } from './replay.ts';

/** Every drill by name; each takes its own options (and accepts --json and --help). */
export const DRILLS: Record<string, { run: DrillRunner; what: string }> = {
  kill: {
    run: runKillDrill,
    what: 'SIGKILL the service again and again while fills and amendments stream in',
  },
  replay: {
    run: runReplayDrill,
    what: 'rebuild every actor from the stream (amendments too); the books must be equal',
  },
  outage: {
    run: runOutageDrill,
    what: 'stop the database, then kill NATS, mid-stream (private servers)',
  },
  poison: {
    run: runPoisonDrill,
    what: '108 classes of bad message (31 of them amendments) among good fills',
  },
  burst: {
    run: runBurstDrill,
    what: 'a burst at 10x the sustainable rate; memory stays bounded',
  },
};

export const USAGE = `usage: npm run drill -- <drill> [--json] [options]
       npm run drill -- <drill> --help     (the drill's options)

drills:
${Object.entries(DRILLS)
  .map(([name, d]) => `  ${name.padEnd(8)} ${d.what}`)
  .join('\n')}

--json prints exactly one JSON object on stdout (everything else on stderr).
Exit 0 only when nothing was lost or doubled and every check of the drill held;
1 when a check failed; 2 for a bad command line. See docs/DRILLS.md.`;

const io: DrillIO = { progress: (line) => process.stderr.write(`${line}\n`) };

function exitCodeOf(result: DrillResult): number {
  return result.exitCode ?? (result.ok ? 0 : 1);
}

function print(result: DrillResult, json: boolean, name: string): void {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const err = (line: string) => process.stderr.write(`${line}\n`);
  if (result.exitCode === 2) {
    // A bad command line or a drill not there: what is wrong, then the usage, on stderr.
    if (json) out(toJson({ drill: name, ok: false, error: result.failures.join('; ') }));
    for (const failure of result.failures) err(failure);
    if (result.summary.length > 0) err('');
    for (const line of result.summary) err(line);
    return;
  }
  if (Object.keys(result.json).length === 0) {
    // --help: the usage, which was asked for.
    if (json) out(toJson({ drill: name, ok: result.ok }));
    for (const line of result.summary) (json ? err : out)(line);
    return;
  }
  if (json) out(toJson({ drill: name, ...result.json, ok: result.ok }));
  else for (const line of result.summary) out(line);
  for (const failure of result.failures) err(`FAILED: ${failure}`);
  err(`drill ${name}: ${result.ok ? 'OK' : 'FAILED'}`);
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const json = rest.includes('--json');
  if (name === undefined || name === '--help' || name === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const drill = Object.hasOwn(DRILLS, name) ? DRILLS[name] : undefined;
  if (!drill) {
    process.stderr.write(`unknown drill "${name}"\n\n${USAGE}\n`);
    return 2;
  }
  let result: DrillResult;
  try {
    result = await drill.run(rest, io);
  } catch (error) {
    // An error the drill did not turn into a failed check: the message, and
    // the stack for whoever debugs it (stderr only).
    const message = (error as Error).message ?? String(error);
    process.stderr.write(`${(error as Error).stack ?? message}\n`);
    result = { ok: false, json: { ok: false, error: message }, summary: [], failures: [message] };
  }
  print(result, json, name);
  return exitCodeOf(result);
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
  // Whatever a drill left open (a timer, a socket) must not keep the process alive.
  setTimeout(() => process.exit(), 5_000).unref();
}
