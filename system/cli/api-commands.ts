/**
 * The API-backed commands: dead letters, actors, bookings and reconciliation,
 * each a thin client of one or two `/api/v1` routes. Text by default, the
 * server's own JSON with --json.
 */
import { readFile } from 'node:fs/promises';
import {
  JSON_OPTION,
  isoDate,
  oneOf,
  stringOption,
  wholeNumber,
  type Command,
  type CommandContext,
  type Parsed,
} from './args.ts';
import {
  API_OPTIONS,
  ApiError,
  apiClientOptions,
  apiRequest,
  segment,
  type ApiClientOptions,
  type ApiRequest,
} from './api-client.ts';
import {
  CliFailure,
  ExitCode,
  UsageError,
  cellText,
  formatFields,
  formatTable,
  toJson,
} from './output.ts';

export interface DeadLetter {
  id: string;
  reason: string;
  field: string | null;
  rule: string | null;
  detail: string | null;
  originalSubject: string;
  originalSequence: number | null;
  deadLetteredAt: string;
  execution: Record<string, unknown> | null;
  bodyBase64: string;
}

export interface DeadLetterPage {
  items: DeadLetter[];
  nextCursor: string | null;
}

export interface ReconciliationBreak {
  kind: string;
  securityId?: string;
  detail: string;
  accounts: string[];
  orders: string[];
}

export interface Reconciliation {
  tradeDate: string | null;
  clean: boolean;
  securities: unknown[];
  breaks: ReconciliationBreak[];
}

export const ACTOR_KINDS = ['account', 'block-order'] as const;

const LIMIT_MAX = 100_000;
/** `--all` stops after this many pages: a server that never ends its cursor must not loop forever. */
const PAGES_MAX = 100_000;

/** Runs `work` with the client and prints its JSON or text; API failures become CliFailures. */
async function withClient(
  name: string,
  parsed: Parsed,
  ctx: CommandContext,
  work: (client: ApiClientOptions) => Promise<{ json: unknown; text: string[]; exitCode?: number }>,
): Promise<number> {
  const client = apiClientOptions(name, parsed, ctx.env);
  const result = await work(client);
  if (parsed.values.json === true) ctx.io.out(toJson(result.json));
  else for (const line of result.text) ctx.io.out(line);
  return result.exitCode ?? ExitCode.Ok;
}

async function call<T>(client: ApiClientOptions, request: ApiRequest): Promise<T> {
  return (await apiRequest(client, request)).body as T;
}

/** `BUY1/F1`: the order and the fill (or amendment) of a dead letter, `-` if undecodable. */
export function executionLabel(execution: Record<string, unknown> | null): string {
  if (!execution) return '-';
  const order = cellText(execution.blockOrderId);
  return `${order}/${cellText(execution.fillId ?? execution.amendmentId)}`;
}

export function deadLetterTable(items: readonly DeadLetter[]): string[] {
  return formatTable(
    ['ID', 'TIME', 'REASON', 'FIELD', 'ORDER/FILL'],
    items.map((d) => [
      d.id,
      d.deadLetteredAt,
      d.reason,
      cellText(d.field),
      executionLabel(d.execution),
    ]),
  );
}

async function deadLetterPages(
  client: ApiClientOptions,
  query: { reason?: string; limit?: number; cursor?: string },
  all: boolean,
): Promise<DeadLetterPage> {
  const items: DeadLetter[] = [];
  let cursor = query.cursor;
  for (let pages = 1; ; pages++) {
    const page = await call<DeadLetterPage>(client, {
      method: 'GET',
      path: '/dead-letters',
      query: { ...query, cursor },
    });
    if (!Array.isArray(page?.items))
      throw new CliFailure('GET /dead-letters: the answer has no items list');
    items.push(...page.items);
    const next = page.nextCursor ?? null;
    if (!all || next === null) return { items, nextCursor: next };
    if (next === cursor || pages >= PAGES_MAX)
      throw new CliFailure(`GET /dead-letters: the cursor does not advance (${next})`);
    cursor = next;
  }
}

const dlqList: Command = {
  spec: {
    name: 'dlq list',
    summary: 'List dead-lettered executions (GET /api/v1/dead-letters).',
    positionals: [],
    options: {
      reason: { type: 'string', valueName: 'R', description: 'only this reason' },
      limit: { type: 'string', valueName: 'N', description: 'at most N per page' },
      cursor: { type: 'string', valueName: 'C', description: 'start at this page cursor' },
      all: { type: 'boolean', description: 'follow nextCursor to the last page' },
      ...API_OPTIONS,
      ...JSON_OPTION,
    },
  },
  run: (parsed, ctx) =>
    withClient('dlq list', parsed, ctx, async (client) => {
      const limitText = stringOption(parsed, 'limit');
      const query = {
        reason: stringOption(parsed, 'reason'),
        limit:
          limitText === undefined
            ? undefined
            : wholeNumber('dlq list', 'limit', limitText, 1, LIMIT_MAX),
        cursor: stringOption(parsed, 'cursor'),
      };
      const page = await deadLetterPages(client, query, parsed.values.all === true);
      const more = page.nextCursor
        ? [`more: --cursor ${page.nextCursor} (or --all)`]
        : [`${page.items.length} dead letter(s)`];
      const table = page.items.length > 0 ? deadLetterTable(page.items) : [];
      return { json: page, text: [...table, ...more] };
    }),
};

const dlqShow: Command = {
  spec: {
    name: 'dlq show',
    summary: 'Show one dead letter (GET /api/v1/dead-letters/:id).',
    positionals: ['<id>'],
    options: { ...API_OPTIONS, ...JSON_OPTION },
  },
  run: (parsed, ctx) =>
    withClient('dlq show', parsed, ctx, async (client) => {
      const id = parsed.positionals[0] ?? '';
      const record = await call<Record<string, unknown>>(client, {
        method: 'GET',
        path: `/dead-letters/${segment(id)}`,
      });
      return { json: record, text: formatFields(record) };
    }),
};

/** The corrected execution of `--body`: a JSON object, or `{ "execution": {...} }`. */
export async function replayBody(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as { code?: string }).code ?? String(error);
    throw new UsageError(`--body: cannot read ${file} (${code})`, 'dlq replay');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--body: ${file} is not JSON (${(error as Error).message})`, 'dlq replay');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new UsageError(`--body: ${file} must hold one JSON object (an execution)`, 'dlq replay');
  const wrapped = json as Record<string, unknown>;
  const keys = Object.keys(wrapped);
  if (keys.length === 1 && keys[0] === 'execution') return wrapped;
  return { execution: wrapped };
}

const dlqReplay: Command = {
  spec: {
    name: 'dlq replay',
    summary:
      'Publish a dead letter again, as it was or corrected (POST /api/v1/dead-letters/:id/replay).',
    positionals: ['<id>'],
    options: {
      body: {
        type: 'string',
        valueName: 'file.json',
        description: 'replay this corrected JSON execution instead of the original',
      },
      ...API_OPTIONS,
      ...JSON_OPTION,
    },
    notes: 'The server deduplicates by execution id: a replay already applied is DUPLICATE.',
  },
  run: (parsed, ctx) =>
    withClient('dlq replay', parsed, ctx, async (client) => {
      const id = parsed.positionals[0] ?? '';
      const file = stringOption(parsed, 'body');
      const body = file === undefined ? {} : await replayBody(file);
      const result = await call<Record<string, unknown>>(client, {
        method: 'POST',
        path: `/dead-letters/${segment(id)}/replay`,
        body,
      });
      const line =
        `replayed ${cellText(result.id)}: ${cellText(result.outcome)} on ` +
        `${cellText(result.subject)} (stream seq ${cellText(result.streamSequence)})`;
      return { json: result, text: [line] };
    }),
};

const actorKindNote = `<kind> is one of ${ACTOR_KINDS.join(', ')}.`;

function actorPath(command: string, parsed: Parsed): string {
  const [kindText = '', id = ''] = parsed.positionals;
  const kind = oneOf(command, '<kind>', kindText, ACTOR_KINDS);
  return `/actors/${segment(kind)}/${segment(id)}`;
}

const actorShow: Command = {
  spec: {
    name: 'actor show',
    summary: 'Show one actor: state, mailbox, view (GET /api/v1/actors/:kind/:id).',
    positionals: ['<kind>', '<id>'],
    options: { ...API_OPTIONS, ...JSON_OPTION },
    notes: actorKindNote,
  },
  run: (parsed, ctx) =>
    withClient('actor show', parsed, ctx, async (client) => {
      const path = actorPath('actor show', parsed);
      const actor = await call<Record<string, unknown>>(client, { method: 'GET', path });
      const { view, ...head } = actor;
      const text = [...formatFields(head), 'view:', view == null ? '  -' : toJson(view)];
      return { json: actor, text };
    }),
};

const actorList: Command = {
  spec: {
    name: 'actor list',
    summary: 'Actors per kind: live, passivated, stopped, mailboxes (GET /api/v1/actors).',
    positionals: [],
    options: { ...API_OPTIONS, ...JSON_OPTION },
  },
  run: (parsed, ctx) =>
    withClient('actor list', parsed, ctx, async (client) => {
      const body = await call<{ kinds: Array<Record<string, unknown>> }>(client, {
        method: 'GET',
        path: '/actors',
      });
      const columns = ['live', 'passivated', 'stopped', 'mailboxDepth', 'mailboxDepthMax'];
      const rows = (body?.kinds ?? []).map((k) => [
        cellText(k.kind),
        ...[...columns, 'restarts'].map((c) => cellText(k[c])),
      ]);
      const headers = [
        'KIND',
        'LIVE',
        'PASSIVATED',
        'STOPPED',
        'MAILBOX',
        'MAILBOX MAX',
        'RESTARTS',
      ];
      return { json: body, text: formatTable(headers, rows) };
    }),
};

const actorRestart: Command = {
  spec: {
    name: 'actor restart',
    summary: 'Restart a stopped actor (POST /api/v1/actors/:kind/:id/restart).',
    positionals: ['<kind>', '<id>'],
    options: { ...API_OPTIONS, ...JSON_OPTION },
    notes: actorKindNote,
  },
  run: (parsed, ctx) =>
    withClient('actor restart', parsed, ctx, async (client) => {
      const path = `${actorPath('actor restart', parsed)}/restart`;
      const result = await call<unknown>(client, { method: 'POST', path });
      const [kind, id] = parsed.positionals;
      const fields =
        result && typeof result === 'object' ? formatFields(result as Record<string, unknown>) : [];
      return { json: result, text: [`restarted ${kind} ${id}`, ...fields] };
    }),
};

const bookingClose: Command = {
  spec: {
    name: 'booking close',
    summary:
      'Close a booking batch of the allocations not booked yet (POST /api/v1/bookings/batches).',
    positionals: [],
    options: {
      cleanup: { type: 'boolean', description: 'remove the batch file once recorded' },
      ...API_OPTIONS,
      ...JSON_OPTION,
    },
    notes:
      'Exit 1 with the server message when there is nothing to book or a close is in progress.',
  },
  run: (parsed, ctx) =>
    withClient('booking close', parsed, ctx, async (client) => {
      const body = { cleanup: parsed.values.cleanup === true };
      const batch = await call<Record<string, unknown>>(client, {
        method: 'POST',
        path: '/bookings/batches',
        body,
      }).catch((error: unknown) => {
        if (!(error instanceof ApiError) || error.status !== 409) throw error;
        throw new CliFailure(`nothing to book / a close is in progress: ${error.message}`, {
          code: error.code,
          json: error.json,
        });
      });
      return { json: batch, text: formatFields(batch) };
    }),
};

const bookingShow: Command = {
  spec: {
    name: 'booking show',
    summary: 'Show a booking batch (GET /api/v1/bookings/batches/:id), or its CSV file with --csv.',
    positionals: ['<id>'],
    options: {
      csv: { type: 'boolean', description: 'print the batch file (CSV) as it is' },
      ...API_OPTIONS,
      ...JSON_OPTION,
    },
    notes: 'With --csv --json: { "id", "csv" }.',
  },
  run: (parsed, ctx) =>
    withClient('booking show', parsed, ctx, async (client) => {
      const id = parsed.positionals[0] ?? '';
      const path = `/bookings/batches/${segment(id)}`;
      if (parsed.values.csv === true) {
        const csv = await call<string>(client, {
          method: 'GET',
          path: `${path}/file`,
          accept: 'text',
        });
        return { json: { id, csv }, text: [csv.replace(/\r?\n$/, '')] };
      }
      const batch = await call<Record<string, unknown>>(client, { method: 'GET', path });
      return { json: batch, text: formatFields(batch) };
    }),
};

export function reconciliationText(report: Reconciliation): string[] {
  const date = report.tradeDate ?? 'all trade dates';
  const checked = `${(report.securities ?? []).length} securities checked`;
  if (report.clean) return [`clean (${date}; ${checked})`];
  const breaks = report.breaks ?? [];
  const lines = [`NOT CLEAN: ${breaks.length} break(s) (${date}; ${checked})`];
  for (const b of breaks) {
    lines.push(`- ${b.kind}${b.securityId ? ` ${b.securityId}` : ''}: ${b.detail}`);
    const accounts = (b.accounts ?? []).join(', ') || '-';
    const orders = (b.orders ?? []).join(', ') || '-';
    lines.push(`  accounts: ${accounts}; orders: ${orders}`);
  }
  return lines;
}

const reconcile: Command = {
  spec: {
    name: 'reconcile',
    summary: 'Reconcile positions, cash and orders (GET /api/v1/reconciliation).',
    positionals: [],
    options: {
      'trade-date': {
        type: 'string',
        valueName: 'YYYY-MM-DD',
        description: 'only this trade date',
      },
      ...API_OPTIONS,
      ...JSON_OPTION,
    },
    notes: 'Exit 0 when clean, 3 when there are breaks (scripts can gate on it), 1 on a failure.',
  },
  run: (parsed, ctx) =>
    withClient('reconcile', parsed, ctx, async (client) => {
      const dateText = stringOption(parsed, 'trade-date');
      const tradeDate =
        dateText === undefined ? undefined : isoDate('reconcile', 'trade-date', dateText);
      const report = await call<Reconciliation>(client, {
        method: 'GET',
        path: '/reconciliation',
        query: { tradeDate },
      });
      if (typeof report?.clean !== 'boolean')
        throw new CliFailure('GET /reconciliation: the answer has no clean flag');
      const exitCode = report.clean ? ExitCode.Ok : ExitCode.NotClean;
      return { json: report, text: reconciliationText(report), exitCode };
    }),
};

export const API_COMMANDS = {
  dlq: { list: dlqList, show: dlqShow, replay: dlqReplay },
  actor: { list: actorList, show: actorShow, restart: actorRestart },
  booking: { close: bookingClose, show: bookingShow },
  reconcile,
} as const;
