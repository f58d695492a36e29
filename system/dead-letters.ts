/**
 * The dead-letter stream, for operators: a page of what was dead-lettered
 * (scanning stream sequences, optionally one reason), one message, and a
 * replay to its order's subject, as it was or with a corrected body. A replay
 * is published with its own message id (`<id>:replay:<dlq seq>:<body digest>`),
 * so a client retrying it is deduplicated by JetStream (a different
 * correction is not), and a later copy by the consumer's execution index.
 */
import { createHash } from 'node:crypto';
import type { JetStreamClient, JetStreamManager, StoredMsg } from '@nats-io/jetstream';
import { entryIdOf, type Entry } from '../actors/block-order/decider.ts';
import { BlockfillError, ErrorCode, invariant } from '../actors/errors.ts';
import {
  ReplayRefusedError,
  type DeadLetterPage,
  type DeadLetterView,
  type DeadLettersPort,
  type ReplayResult,
} from '../api/ports.ts';
import { entryFromJson, entryToJson } from './execution-json.ts';
import { decodeEntry, encodeEntry, fillSubject } from './fill-wire.ts';
import { DeadLetterHeader, type StreamNames } from './jetstream.ts';

export interface DeadLettersDeps {
  js: JetStreamClient;
  jsm: JetStreamManager;
  names: StreamNames;
  partitions: number;
}

/** Stream sequences one list request reads, at most (a page may then hold fewer). */
export const DEAD_LETTER_SCAN_MAX = 500;
/** Gets in flight at once while scanning. */
const GETS_IN_FLIGHT_MAX = 16;

const header = (m: StoredMsg, name: string): string | null => {
  const value = m.header?.get(name);
  return value === undefined || value === '' ? null : value;
};

function viewOf(deps: DeadLettersDeps, m: StoredMsg): DeadLetterView {
  const originalSubject = header(m, DeadLetterHeader.OriginalSubject);
  const originalSequence = Number(header(m, DeadLetterHeader.OriginalSequence) ?? NaN);
  const decoded =
    originalSubject === null
      ? undefined
      : decodeEntry(m.data, originalSubject, deps.names.subjectRoot, deps.partitions);
  return {
    id: String(m.seq),
    reason: header(m, DeadLetterHeader.Reason) ?? 'UNKNOWN',
    field: header(m, DeadLetterHeader.Field),
    rule: header(m, DeadLetterHeader.Rule),
    detail: header(m, DeadLetterHeader.Detail),
    originalSubject,
    originalSequence: Number.isSafeInteger(originalSequence) ? originalSequence : null,
    deadLetteredAt: m.time.toISOString(),
    execution: decoded?.ok ? entryToJson(decoded.entry) : null,
    bodyBase64: Buffer.from(m.data).toString('base64'),
  };
}

async function message(deps: DeadLettersDeps, seq: number): Promise<StoredMsg | undefined> {
  try {
    return (await deps.jsm.streams.getMessage(deps.names.deadLetter, { seq })) ?? undefined;
  } catch (error) {
    // A deleted or never-written sequence: not found, like any other.
    if (/no message found|not found/i.test((error as Error).message)) return undefined;
    throw error;
  }
}

async function list(
  deps: DeadLettersDeps,
  query: { reason?: string; afterSeq: number; limit: number },
): Promise<DeadLetterPage> {
  invariant(query.limit >= 1 && query.limit <= DEAD_LETTER_SCAN_MAX, `a page of ${query.limit}`);
  const info = await deps.jsm.streams.info(deps.names.deadLetter);
  const lastSeq = info.state.last_seq;
  const subject = query.reason && `${deps.names.dlqSubjectRoot}.${query.reason.toLowerCase()}`;
  const items: DeadLetterView[] = [];
  let seq = Math.max(query.afterSeq, info.state.first_seq - 1);
  const scanEnd = Math.min(lastSeq, seq + DEAD_LETTER_SCAN_MAX);
  while (seq < scanEnd && items.length < query.limit) {
    // A few sequences at a time (the server answers each get on its own), in order.
    const seqs = Array.from(
      { length: Math.min(GETS_IN_FLIGHT_MAX, scanEnd - seq) },
      (_, i) => seq + i + 1,
    );
    const got = await Promise.all(seqs.map((s) => message(deps, s)));
    for (const [i, m] of got.entries()) {
      seq = seqs[i] ?? seq;
      if (m === undefined || (subject && m.subject !== subject)) continue;
      items.push(viewOf(deps, m));
      if (items.length === query.limit) break;
    }
  }
  return { items, lastScanned: seq >= lastSeq ? null : seq };
}

/** The entry to replay: the corrected body when given, else the bytes as they arrived. */
function entryToReplay(deps: DeadLettersDeps, m: StoredMsg, corrected: unknown): Entry {
  const { subjectRoot } = deps.names;
  if (corrected !== undefined) {
    const result = entryFromJson(corrected, subjectRoot, deps.partitions);
    if (!result.ok) throw new ReplayRefusedError(result.field, result.rule);
    return result.entry;
  }
  const subject = header(m, DeadLetterHeader.OriginalSubject) ?? '';
  const decoded = decodeEntry(m.data, subject, subjectRoot, deps.partitions);
  if (!decoded.ok)
    throw new ReplayRefusedError(decoded.field, `${decoded.rule}: send a corrected execution`);
  return decoded.entry;
}

async function replay(
  deps: DeadLettersDeps,
  seq: number,
  corrected: unknown,
): Promise<ReplayResult | undefined> {
  const m = await message(deps, seq);
  if (m === undefined) return undefined;
  const entry = entryToReplay(deps, m, corrected);
  const subject = fillSubject(deps.names.subjectRoot, entry.blockOrderId, deps.partitions);
  const bytes = encodeEntry(entry);
  // One message id per dead letter and body: a retried replay is deduplicated, a new correction is not.
  const digest = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  const ack = await deps.js.publish(subject, bytes, {
    msgID: `${entryIdOf(entry)}:replay:${seq}:${digest}`,
    expect: { streamName: deps.names.executions },
  });
  return {
    id: String(seq),
    outcome: ack.duplicate ? 'DUPLICATE' : 'PUBLISHED',
    subject,
    streamSequence: ack.seq,
  };
}

/** A NATS failure (timeout, no responders, a closed connection) is the service's moment: 503. */
async function nats<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (error instanceof ReplayRefusedError || error instanceof BlockfillError) throw error;
    throw new BlockfillError(ErrorCode.NatsUnreachable, `JetStream: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

export function deadLetters(deps: DeadLettersDeps): DeadLettersPort {
  return {
    list: (query) => nats(list(deps, query)),
    get: async (seq) => {
      const m = await nats(message(deps, seq));
      return m && viewOf(deps, m);
    },
    replay: (seq, corrected) => nats(replay(deps, seq, corrected)),
  };
}
