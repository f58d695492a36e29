/** Tiny argument parsing for the simulation scripts: --name value, --flag. */
export function parseArgs(
  argv: string[],
  spec: Record<string, 'number' | 'string' | 'boolean'>,
): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const name = arg.slice(2);
    const kind = spec[name];
    if (!kind)
      throw new Error(
        `unknown option --${name}; known: ${Object.keys(spec)
          .map((k) => `--${k}`)
          .join(' ')}`,
      );
    if (kind === 'boolean') {
      out[name] = true;
      continue;
    }
    const value = argv[++i];
    if (value === undefined) throw new Error(`--${name} needs a value`);
    if (kind === 'number') {
      const n = Number(value);
      if (!Number.isSafeInteger(n) || n < 0)
        throw new Error(`--${name} must be a whole number, got ${value}`);
      out[name] = n;
    } else out[name] = value;
  }
  return out;
}

/**
 * parseArgs for a command line: `--help` prints `usage` and exits 0; a bad
 * option prints what is wrong and the usage, and exits 2 (no stack trace).
 */
export function parseCommandLine(
  argv: string[],
  spec: Record<string, 'number' | 'string' | 'boolean'>,
  usage: string,
): Record<string, number | string | boolean> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  try {
    return parseArgs(argv, spec);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${usage}\n`);
    process.exit(2);
  }
}
