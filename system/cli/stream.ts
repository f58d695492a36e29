/**
 * `stream status`, and the JetStream plumbing `publish` shares: connecting
 * with a clear failure, and finding the streams the service created (the CLI
 * never creates them).
 */
import type { ConsumerInfo, JetStreamManager, StreamInfo } from '@nats-io/jetstream';
import { loadConfig, natsStartupFailure, streamNames, type Config } from '../config.ts';
import { openJetStream, type NatsHandles, type StreamNames } from '../jetstream.ts';
import { JSON_OPTION, type Command } from './args.ts';
import { CliFailure, ExitCode, formatTable, toJson } from './output.ts';

/** Connects to NATS_URL; an unreachable server is a CliFailure naming the variable. */
export async function connectOrFail(config: Config, name: string): Promise<NatsHandles> {
  try {
    return await openJetStream(config, name);
  } catch (error) {
    const failure = natsStartupFailure(error, config.natsServers);
    throw new CliFailure((failure as Error).message ?? String(failure), {
      code: (failure as { code?: string }).code ?? 'NATS_FAILED',
      cause: error,
    });
  }
}

/** The stream's info; a missing stream says to start the service (which creates it). */
export async function streamInfoOrFail(
  jsm: JetStreamManager,
  stream: string,
  config: Pick<Config, 'namespace'>,
): Promise<StreamInfo> {
  try {
    return await jsm.streams.info(stream);
  } catch (error) {
    if ((error as { name?: string }).name !== 'StreamNotFoundError') throw error;
    const ns = config.namespace ? ` (BLOCKFILL_NAMESPACE=${config.namespace})` : '';
    throw new CliFailure(
      `stream ${stream} does not exist${ns}: start the service first (npm start), it creates the streams`,
      { code: 'STREAM_NOT_FOUND' },
    );
  }
}

/** The executions stream must have one subject per partition, as PARTITIONS says. */
export function checkPartitions(info: StreamInfo, names: StreamNames, partitions: number): void {
  const root = names.subjectRoot.replace(/\./g, '\\.');
  const pattern = new RegExp(`^${root}\\.\\d+\\.\\*$`);
  const existing = (info.config.subjects ?? []).filter((s) => pattern.test(s)).length;
  if (existing !== partitions)
    throw new CliFailure(
      `stream ${names.executions} has ${existing} partitions but PARTITIONS=${partitions}: ` +
        'set PARTITIONS as the service has it',
      { code: 'PARTITIONS_MISMATCH' },
    );
}

export interface StreamReport {
  role: 'executions' | 'dead-letter';
  name: string;
  messages: number;
  bytes: number;
  firstSeq: number;
  lastSeq: number;
}

export interface ConsumerReport {
  name: string;
  filterSubject: string | null;
  pending: number;
  ackPending: number;
  /** Stream sequence below which every message is acked. */
  ackFloorSeq: number;
  /** Last stream sequence delivered. */
  deliveredSeq: number;
  redelivered: number;
  lag: number;
}

export interface StreamStatus {
  streams: StreamReport[];
  consumers: ConsumerReport[];
  total: { pending: number; ackPending: number; lag: number };
}

export function streamReport(role: StreamReport['role'], info: StreamInfo): StreamReport {
  const s = info.state;
  return {
    role,
    name: info.config.name,
    messages: s.messages,
    bytes: s.bytes,
    firstSeq: s.first_seq,
    lastSeq: s.last_seq,
  };
}

export function consumerReport(c: ConsumerInfo): ConsumerReport {
  return {
    name: c.name,
    filterSubject: c.config.filter_subject ?? null,
    pending: c.num_pending,
    ackPending: c.num_ack_pending,
    ackFloorSeq: c.ack_floor.stream_seq,
    deliveredSeq: c.delivered.stream_seq,
    redelivered: c.num_redelivered,
    lag: c.num_pending + c.num_ack_pending,
  };
}

/** Both streams and every durable consumer of the executions stream, with totals. */
export async function streamStatus(
  jsm: JetStreamManager,
  names: StreamNames,
  config: Pick<Config, 'namespace'>,
): Promise<StreamStatus> {
  const executions = await streamInfoOrFail(jsm, names.executions, config);
  const deadLetter = await streamInfoOrFail(jsm, names.deadLetter, config);
  const consumers: ConsumerReport[] = [];
  for await (const c of jsm.consumers.list(names.executions))
    if (c.config.durable_name) consumers.push(consumerReport(c));
  consumers.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
  const sum = (f: (c: ConsumerReport) => number) => consumers.reduce((n, c) => n + f(c), 0);
  return {
    streams: [streamReport('executions', executions), streamReport('dead-letter', deadLetter)],
    consumers,
    total: {
      pending: sum((c) => c.pending),
      ackPending: sum((c) => c.ackPending),
      lag: sum((c) => c.lag),
    },
  };
}

export function streamStatusText(status: StreamStatus): string[] {
  const streams = formatTable(
    ['STREAM', 'ROLE', 'MESSAGES', 'BYTES', 'FIRST SEQ', 'LAST SEQ'],
    status.streams.map((s) =>
      [s.name, s.role, s.messages, s.bytes, s.firstSeq, s.lastSeq].map(String),
    ),
  );
  const rows = status.consumers.map((c) =>
    [c.name, c.pending, c.ackPending, c.ackFloorSeq, c.deliveredSeq, c.lag].map(String),
  );
  const t = status.total;
  rows.push(['TOTAL', String(t.pending), String(t.ackPending), '', '', String(t.lag)]);
  const consumers = formatTable(
    ['CONSUMER', 'PENDING', 'ACK PENDING', 'ACK FLOOR', 'DELIVERED', 'LAG'],
    rows,
  );
  return [...streams, '', ...consumers];
}

export const streamStatusCommand: Command = {
  spec: {
    name: 'stream status',
    summary:
      'Stream and consumer lag, read from JetStream directly.\n' +
      'The executions and dead-letter streams (messages, bytes, first/last seq), and each\n' +
      'durable consumer of the executions stream with its lag (pending + ack pending).',
    positionals: [],
    options: { ...JSON_OPTION },
    notes: 'Streams and consumers are named by BLOCKFILL_NAMESPACE; NATS_URL says where NATS is.',
  },
  async run(parsed, ctx) {
    const config = loadConfig(ctx.env);
    const nats = await connectOrFail(config, 'blockfill-cli');
    try {
      const status = await streamStatus(nats.jsm, streamNames(config), config);
      if (parsed.values.json === true) ctx.io.out(toJson(status));
      else for (const line of streamStatusText(status)) ctx.io.out(line);
      return ExitCode.Ok;
    } finally {
      await nats.nc.close();
    }
  },
};
