/**
 * POST /api/v1/executions: JSON executions, each checked exactly like a wire
 * message (execution-json.ts) and published to its order's subject with its
 * id as the message id. A reply comes only after JetStream acknowledged, so
 * an accepted execution is durable; a re-sent one is DUPLICATE (JetStream's
 * deduplication window), and an id re-used with other content is the
 * consumer's to dead-letter as CONFLICTING_EXECUTION.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import { entryIdOf } from '../actors/block-order/decider.ts';
import { BlockfillError, ErrorCode, invariant } from '../actors/errors.ts';
import {
  INTAKE_ITEMS_MAX,
  IntakeStatus,
  type IntakeItemResult,
  type IntakeResult,
} from '../api/ports.ts';
import { entryFromJson } from './execution-json.ts';
import { encodeEntry, fillSubject } from './fill-wire.ts';
import type { StreamNames } from './jetstream.ts';

export interface IntakeDeps {
  js: JetStreamClient;
  names: StreamNames;
  partitions: number;
}

/** A publish JetStream did not acknowledge: the item's error, never a 5xx for the batch. */
const PUBLISH_FIELD = '(publish)';
const PUBLISH_RULE = 'must be acknowledged by JetStream (not durable: send it again)';

async function intakeOne(
  deps: IntakeDeps,
  item: unknown,
  index: number,
): Promise<IntakeItemResult> {
  const { names, partitions } = deps;
  const decoded = entryFromJson(item, names.subjectRoot, partitions);
  if (!decoded.ok)
    return {
      index,
      id: null,
      status: IntakeStatus.Error,
      field: decoded.field,
      rule: decoded.rule,
    };
  const entry = decoded.entry;
  const id = entryIdOf(entry);
  try {
    const ack = await deps.js.publish(
      fillSubject(names.subjectRoot, entry.blockOrderId, partitions),
      encodeEntry(entry),
      { msgID: id, expect: { streamName: names.executions } },
    );
    const status = ack.duplicate ? IntakeStatus.Duplicate : IntakeStatus.Created;
    return { index, id, status, streamSequence: ack.seq };
  } catch (error) {
    const rule = `${PUBLISH_RULE}: ${(error as Error).message}`.slice(0, 200);
    return { index, id, status: IntakeStatus.Error, field: PUBLISH_FIELD, rule };
  }
}

/** Every item answered, in request order, with the counts. */
export async function intake(deps: IntakeDeps, items: readonly unknown[]): Promise<IntakeResult> {
  invariant(items.length <= INTAKE_ITEMS_MAX, `${items.length} items in one intake`);
  const results = await Promise.all(items.map((item, index) => intakeOne(deps, item, index)));
  invariant(results.length === items.length, 'an intake item was left unanswered');
  // JetStream took none of them: the service's moment (503, Retry-After), not the items' fault.
  if (results.every((r) => r.field === PUBLISH_FIELD))
    throw new BlockfillError(
      ErrorCode.NatsUnreachable,
      `JetStream took none: ${results[0]?.rule ?? ''}`,
    );
  const count = (status: IntakeStatus) => results.filter((r) => r.status === status).length;
  return {
    created: count(IntakeStatus.Created),
    duplicates: count(IntakeStatus.Duplicate),
    errors: count(IntakeStatus.Error),
    items: results,
  };
}
