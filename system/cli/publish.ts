/**
 * `publish <file>`: executions from a JSON-lines or CSV file straight onto
 * JetStream, as the service's own publisher puts them there (the order's
 * partition subject, Nats-Msg-Id = the execution id), so a file published
 * twice is stored once. The file is streamed line by line; an invalid line is
 * reported and skipped; `--rate` paces publishes on a fixed schedule.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import { entryIdOf, type Entry } from '../../actors/block-order/decider.ts';
import { loadConfig, streamNames, type Config } from '../config.ts';
import type { NatsHandles, StreamNames } from '../jetstream.ts';
import { entryFromJson, EXECUTION_JSON_FIELDS } from '../execution-json.ts';
import { encodeEntry, fillSubject } from '../fill-wire.ts';
import { Permits } from '../permits.ts';
import {
  JSON_OPTION,
  oneOf,
  positiveNumber,
  stringOption,
  wholeNumber,
  type Command,
  type CommandContext,
  type Parsed,
} from './args.ts';
import { CliFailure, ExitCode, UsageError, toJson, type Io } from './output.ts';
import { checkPartitions, connectOrFail, streamInfoOrFail } from './stream.ts';

export const FORMATS = ['jsonl', 'csv'] as const;
export type Format = (typeof FORMATS)[number];

/** The columns a CSV file may have (any subset, any order). */
export const CSV_FIELDS = EXECUTION_JSON_FIELDS;
export type CsvField = (typeof CSV_FIELDS)[number];
/** CSV columns carried as JSON numbers; the rest stay strings (exact decimals). */
const NUMBER_FIELDS: ReadonlySet<string> = new Set(['seq', 'executedAtMs']);

export const IN_FLIGHT_MAX = 256;
const RATE_MAX = 1_000_000;
const PUBLISH_TIMEOUT_MS_MAX = 600_000;
/** Invalid lines and failed publishes printed (and listed in --json) one by one; all are counted. */
const REPORTED_MAX = 100;

export type CsvLine = { ok: true; cells: string[] } | { ok: false; rule: string };

/** One CSV record (RFC 4180 quoting: `"a,b"`, `"say ""hi"""`); a cell may not span lines. */
export function parseCsvLine(line: string): CsvLine {
  const cells: string[] = [];
  let i = 0;
  for (;;) {
    let cell = '';
    if (line[i] === '"') {
      i++;
      for (;;) {
        if (i >= line.length)
          return { ok: false, rule: 'has an unterminated quoted cell (a cell cannot span lines)' };
        if (line[i] === '"' && line[i + 1] === '"') [cell, i] = [`${cell}"`, i + 2];
        else if (line[i] === '"') break;
        else cell += line[i++];
      }
      i++;
      if (i < line.length && line[i] !== ',')
        return { ok: false, rule: `has text after a closing quote (column ${cells.length + 1})` };
    } else {
      const end = line.indexOf(',', i);
      cell = line.slice(i, end === -1 ? line.length : end);
      if (cell.includes('"'))
        return {
          ok: false,
          rule: `has a quote inside an unquoted cell (column ${cells.length + 1})`,
        };
      i = end === -1 ? line.length : end;
    }
    cells.push(cell);
    if (i >= line.length) return { ok: true, cells };
    i++; // the comma
  }
}

/** The header's fields, each known and named once. */
export function csvHeader(
  line: string,
): { ok: true; fields: CsvField[] } | { ok: false; rule: string } {
  const parsed = parseCsvLine(line);
  if (!parsed.ok) return parsed;
  const fields = parsed.cells.map((c) => c.trim());
  const unknown = fields.find((f) => !(CSV_FIELDS as readonly string[]).includes(f));
  if (unknown !== undefined)
    return {
      ok: false,
      rule: `names ${JSON.stringify(unknown)}, not one of ${CSV_FIELDS.join(', ')}`,
    };
  const twice = fields.find((f, i) => fields.indexOf(f) !== i);
  if (twice !== undefined) return { ok: false, rule: `names ${twice} twice` };
  return { ok: true, fields: fields as CsvField[] };
}

/** A CSV row as a JSON execution: empty cells absent, seq and executedAtMs as numbers. */
export function csvRowToJson(
  fields: readonly CsvField[],
  cells: readonly string[],
):
  { ok: true; json: Record<string, string | number> } | { ok: false; field: string; rule: string } {
  if (cells.length !== fields.length)
    return {
      ok: false,
      field: '(row)',
      rule: `must have ${fields.length} cells like the header (has ${cells.length})`,
    };
  const json: Record<string, string | number> = {};
  fields.forEach((field, i) => {
    const cell = cells[i] ?? '';
    if (cell === '') return;
    // Not a whole number: kept as text, so the execution's own check names the field.
    json[field] = NUMBER_FIELDS.has(field) && /^-?\d{1,20}$/.test(cell) ? Number(cell) : cell;
  });
  return { ok: true, json };
}

/** When message `index` (0-based) is due: start + index/rate, so pacing never drifts. */
export function dueAtMs(startMs: number, index: number, ratePerSecond: number): number {
  return startMs + (index * 1000) / ratePerSecond;
}

/** --format, or the file's extension (.jsonl/.ndjson/.json → jsonl, .csv → csv). */
export function formatOf(file: string, option: string | undefined): Format {
  if (option !== undefined) return oneOf('publish', '--format', option, FORMATS);
  const ext = extname(file).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (['.jsonl', '.ndjson', '.json'].includes(ext)) return 'jsonl';
  throw new UsageError(
    `cannot tell the format of ${JSON.stringify(file)} from its extension: ` +
      'give --format jsonl or --format csv',
    'publish',
  );
}

export type Decoded =
  | { kind: 'skip' }
  | { kind: 'entry'; entry: Entry }
  | { kind: 'invalid'; field: string; rule: string };

/**
 * A decoder of the file's lines, in order (a CSV's first non-blank line is
 * its header; a bad header throws). Each execution is checked by entryFromJson.
 */
export function lineDecoder(
  format: Format,
  subjectRoot: string,
  partitions: number,
): (line: string) => Decoded {
  let header: CsvField[] | undefined;
  const check = (json: unknown): Decoded => {
    const result = entryFromJson(json, subjectRoot, partitions);
    return result.ok
      ? { kind: 'entry', entry: result.entry }
      : { kind: 'invalid', field: result.field, rule: result.rule };
  };
  let first = true;
  return (text) => {
    // A byte-order mark (a spreadsheet's export) is no part of the first line.
    const line = first ? text.replace(/^\uFEFF/, '') : text;
    first = false;
    if (line.trim() === '') return { kind: 'skip' };
    if (format === 'jsonl') {
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch (error) {
        return {
          kind: 'invalid',
          field: '(line)',
          rule: `is not JSON: ${(error as Error).message}`,
        };
      }
      return check(json);
    }
    if (header === undefined) {
      const parsed = csvHeader(line);
      if (!parsed.ok) throw new CliFailure(`the CSV header ${parsed.rule}`);
      header = parsed.fields;
      return { kind: 'skip' };
    }
    const cells = parseCsvLine(line);
    if (!cells.ok) return { kind: 'invalid', field: '(row)', rule: cells.rule };
    const row = csvRowToJson(header, cells.cells);
    return row.ok ? check(row.json) : { kind: 'invalid', ...row };
  };
}

export interface PublishCounts {
  linesRead: number;
  published: number;
  duplicates: number;
  invalid: number;
  failed: number;
}

export type PublishEvent =
  | { kind: 'invalid'; line: number; field: string; rule: string }
  | { kind: 'failed'; line: number; message: string }
  | { kind: 'line'; bytes: number; counts: PublishCounts };

export interface PublishLoopDeps {
  decode: (line: string) => Decoded;
  /** Publishes one entry; resolves to whether the server had it already. */
  publish: (entry: Entry) => Promise<{ duplicate: boolean }>;
  /** Messages per second; undefined: as fast as acks come back. */
  ratePerSecond?: number;
  inFlightMax: number;
  nowMs: () => number;
  sleepMs: (ms: number) => Promise<unknown>;
  onEvent: (event: PublishEvent) => void;
}

/** Decodes and publishes every line, at most `inFlightMax` awaiting their ack, paced by the rate. */
export async function publishLines(
  lines: AsyncIterable<string>,
  deps: PublishLoopDeps,
): Promise<PublishCounts> {
  const counts: PublishCounts = {
    linesRead: 0,
    published: 0,
    duplicates: 0,
    invalid: 0,
    failed: 0,
  };
  const permits = new Permits(deps.inFlightMax);
  const startMs = deps.nowMs();
  let sent = 0;
  for await (const line of lines) {
    const lineNo = ++counts.linesRead;
    const decoded = deps.decode(line);
    deps.onEvent({ kind: 'line', bytes: Buffer.byteLength(line) + 1, counts });
    if (decoded.kind === 'skip') continue;
    if (decoded.kind === 'invalid') {
      counts.invalid++;
      deps.onEvent({ kind: 'invalid', line: lineNo, field: decoded.field, rule: decoded.rule });
      continue;
    }
    if (deps.ratePerSecond !== undefined) {
      const waitMs = dueAtMs(startMs, sent, deps.ratePerSecond) - deps.nowMs();
      if (waitMs > 0) await deps.sleepMs(waitMs);
    }
    sent++;
    await permits.acquire();
    deps
      .publish(decoded.entry)
      .then(
        (ack) => void (ack.duplicate ? counts.duplicates++ : counts.published++),
        (error: unknown) => {
          counts.failed++;
          deps.onEvent({ kind: 'failed', line: lineNo, message: (error as Error).message });
        },
      )
      .finally(() => permits.release());
  }
  await permits.idle();
  return counts;
}

interface Progress {
  onEvent(event: PublishEvent): void;
  stop(): void;
}

/** A bar on stderr when it is a terminal (by bytes of the file read); nothing otherwise. */
function progressBar(io: Io, totalBytes: number): Progress {
  if (!io.stderrIsTty) return { onEvent: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format:
        'publishing {bar} {percentage}% | {published} new, {duplicates} dup, {invalid} invalid',
      hideCursor: false,
      gracefulExit: false,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let doneBytes = 0;
  bar.start(Math.max(1, totalBytes), 0, { published: 0, duplicates: 0, invalid: 0 });
  return {
    onEvent(event) {
      if (event.kind !== 'line') return;
      doneBytes += event.bytes;
      bar.update(Math.min(doneBytes, totalBytes), { ...event.counts });
    },
    stop: () => bar.stop(),
  };
}

export interface PublishSummary extends PublishCounts {
  file: string;
  format: Format;
  stream: string;
  elapsedMs: number;
  /** Acked messages (new + duplicate) per second over the whole run. */
  achievedRatePerSecond: number;
  invalidLines: Array<{ line: number; field: string; rule: string }>;
  failures: Array<{ line: number; message: string }>;
}

export function summaryText(s: PublishSummary): string[] {
  return [
    `${s.file} (${s.format}) -> stream ${s.stream}`,
    `lines read:  ${s.linesRead}`,
    `published:   ${s.published}`,
    `duplicates:  ${s.duplicates}`,
    `invalid:     ${s.invalid}`,
    ...(s.failed > 0 ? [`failed:      ${s.failed}`] : []),
    `elapsed:     ${(s.elapsedMs / 1000).toFixed(2)} s`,
    `rate:        ${s.achievedRatePerSecond.toFixed(1)}/s`,
  ];
}

interface PublishOptions {
  file: string;
  /** The file's size, for the progress bar. */
  totalBytes: number;
  format: Format;
  ratePerSecond?: number;
  timeoutMs: number;
}

function publishOptions(parsed: Parsed): Omit<PublishOptions, 'totalBytes'> {
  const file = parsed.positionals[0] ?? '';
  const rateText = stringOption(parsed, 'rate');
  const timeoutText = stringOption(parsed, 'timeout-ms');
  return {
    file,
    format: formatOf(file, stringOption(parsed, 'format')),
    ...(rateText === undefined
      ? {}
      : { ratePerSecond: positiveNumber('publish', 'rate', rateText, RATE_MAX) }),
    timeoutMs:
      timeoutText === undefined
        ? 15_000
        : wholeNumber('publish', 'timeout-ms', timeoutText, 1, PUBLISH_TIMEOUT_MS_MAX),
  };
}

async function fileSizeOrFail(file: string): Promise<number> {
  try {
    const info = await stat(file);
    if (!info.isFile())
      throw new UsageError(`<file> ${JSON.stringify(file)} is not a file`, 'publish');
    return info.size;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const code = (error as { code?: string }).code ?? String(error);
    throw new UsageError(`<file>: cannot read ${JSON.stringify(file)} (${code})`, 'publish');
  }
}

/** Reports invalid lines and failed publishes on stderr (the first REPORTED_MAX of each). */
function reporter(io: Io, summary: PublishSummary, progress: Progress) {
  return (event: PublishEvent) => {
    if (event.kind === 'line') return progress.onEvent(event);
    const list: Array<unknown> = event.kind === 'invalid' ? summary.invalidLines : summary.failures;
    if (list.length >= REPORTED_MAX) return;
    const { kind, ...rest } = event;
    list.push(rest);
    io.err(
      kind === 'invalid'
        ? `line ${event.line}: invalid: ${event.field} ${event.rule}`
        : `line ${event.line}: publish failed: ${event.message}`,
    );
  };
}

/** Publishes as the service's own publisher does, keeping the PubAck (its duplicate flag). */
function jetStreamPublisher(
  nats: NatsHandles,
  names: StreamNames,
  partitions: number,
  timeoutMs: number,
) {
  return (entry: Entry) =>
    nats.js.publish(
      fillSubject(names.subjectRoot, entry.blockOrderId, partitions),
      encodeEntry(entry),
      {
        msgID: entryIdOf(entry),
        expect: { streamName: names.executions },
        timeout: timeoutMs,
      },
    );
}

async function publishFile(
  nats: NatsHandles,
  config: Config,
  options: PublishOptions,
  io: Io,
): Promise<PublishSummary> {
  const names = streamNames(config);
  const info = await streamInfoOrFail(nats.jsm, names.executions, config);
  checkPartitions(info, names, config.partitions);
  const summary: PublishSummary = {
    file: options.file,
    format: options.format,
    stream: names.executions,
    linesRead: 0,
    published: 0,
    duplicates: 0,
    invalid: 0,
    failed: 0,
    elapsedMs: 0,
    achievedRatePerSecond: 0,
    invalidLines: [],
    failures: [],
  };
  const lines = createInterface({
    input: createReadStream(options.file, { encoding: 'utf8' }),
    crlfDelay: Infinity,
  });
  const progress = progressBar(io, options.totalBytes);
  const startMs = performance.now();
  const counts = await publishLines(lines, {
    decode: lineDecoder(options.format, names.subjectRoot, config.partitions),
    publish: jetStreamPublisher(nats, names, config.partitions, options.timeoutMs),
    ...(options.ratePerSecond === undefined ? {} : { ratePerSecond: options.ratePerSecond }),
    inFlightMax: IN_FLIGHT_MAX,
    nowMs: () => performance.now(),
    sleepMs: (ms) => sleep(ms),
    onEvent: reporter(io, summary, progress),
  }).finally(() => {
    progress.stop();
    lines.close();
  });
  const elapsedMs = Math.round(performance.now() - startMs);
  const acked = counts.published + counts.duplicates;
  const perSecond = elapsedMs > 0 ? Math.round((acked * 10_000) / elapsedMs) / 10 : acked;
  return { ...summary, ...counts, elapsedMs, achievedRatePerSecond: perSecond };
}

async function runPublish(parsed: Parsed, ctx: CommandContext): Promise<number> {
  const parsedOptions = publishOptions(parsed);
  const config = loadConfig(ctx.env);
  const options = { ...parsedOptions, totalBytes: await fileSizeOrFail(parsedOptions.file) };
  const nats = await connectOrFail(config, 'blockfill-cli-publish');
  try {
    const summary = await publishFile(nats, config, options, ctx.io);
    if (parsed.values.json === true) ctx.io.out(toJson(summary));
    else for (const line of summaryText(summary)) ctx.io.out(line);
    return summary.invalid > 0 || summary.failed > 0 ? ExitCode.Failure : ExitCode.Ok;
  } finally {
    await nats.nc.close();
  }
}

export const publishCommand: Command = {
  spec: {
    name: 'publish',
    summary:
      'Publish executions from a file straight to JetStream.\n' +
      'Each goes on its block order’s partition subject with its id as Nats-Msg-Id,\n' +
      'so one published again is a duplicate, stored once.',
    positionals: ['<file>'],
    options: {
      rate: {
        type: 'string',
        valueName: 'per-second',
        description: 'at most this many messages per second (default: unlimited)',
      },
      format: {
        type: 'string',
        valueName: 'jsonl|csv',
        description: 'the file format (default: from the extension)',
      },
      'timeout-ms': {
        type: 'string',
        valueName: 'ms',
        description: 'wait this long for each ack (default 15000)',
      },
      ...JSON_OPTION,
    },
    notes: [
      'jsonl: one JSON execution per line, e.g.',
      '  {"fillId":"F1","blockOrderId":"BUY1","seq":1,"quantity":"500","price":"101.25","venue":"XNYS","executedAtMs":1000}',
      '  {"kind":"BUST","amendmentId":"B1","fillId":"F1","blockOrderId":"BUY1","seq":2,"executedAtMs":2000}',
      `csv: a header naming the columns (any of ${CSV_FIELDS.join(', ')}), then one row each;`,
      '  an empty cell is absent. Prices are decimal strings (at most 6 fraction digits).',
      'An invalid line is reported (line number, field, rule) and not published; the rest go on.',
      'The streams must exist (the service creates them). Configured by NATS_URL,',
      'BLOCKFILL_NAMESPACE and PARTITIONS, as the service is.',
      'Exit 0 when every line was published (or a duplicate), 1 otherwise.',
    ].join('\n'),
  },
  run: runPublish,
};
