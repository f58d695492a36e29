/**
 * The live execution feed behind `GET /api/v1/execution/stream`: the actor
 * host hands over each batch of events once it is durable (never before),
 * and the feed maps them to execution updates for the subscribers whose
 * filter (order ids, data types) they pass. Delivery is the subscriber's:
 * the WebSocket route cuts off a client that falls behind instead of
 * buffering for it. With no subscriber the host's hand-over costs one check.
 */
import type { AccountEvent, LineEvent } from '../actors/account/decider.ts';
import type { BlockOrderEvent } from '../actors/block-order/decider.ts';
import { formatPrice } from '../actors/domain/money.ts';
import { assertNever, invariant } from '../actors/errors.ts';
import {
  DataType,
  FEED_SUBSCRIBERS_MAX,
  TooManySubscribersError,
  type ExecutionUpdate,
  type FeedFilter,
  type StreamPort,
} from '../api/ports.ts';

interface Subscriber {
  filter: FeedFilter;
  deliver: (update: ExecutionUpdate, json: string) => void;
}

type Draft = Omit<ExecutionUpdate, 'eventId' | 'timestamp'>;

const q = (value: bigint) => value.toString();

function fillUpdates(orderId: string, event: BlockOrderEvent): Draft[] {
  switch (event.type) {
    case 'FillAllocated':
    case 'FillAccumulated': {
      const f = event.fill;
      const data = {
        ...{ fillId: f.fillId, seq: f.seq, quantity: q(f.quantity), price: formatPrice(f.price) },
        ...{ venue: f.venue, executedAt: new Date(f.executedAtMs).toISOString() },
        accumulated: event.type === 'FillAccumulated',
      };
      return [
        { dataType: DataType.FillNotification, orderId, data },
        {
          dataType: DataType.OrderUpdate,
          orderId,
          data: { seq: f.seq, change: 'FILL', filledDelta: q(f.quantity) },
        },
      ];
    }
    case 'FillBusted':
    case 'FillCorrected':
    case 'AveragedFillAmended':
      return amendUpdates(orderId, event);
    case 'OrderCancelled': {
      const data = {
        seq: event.amendment.seq,
        change: 'CANCEL',
        cancelledQuantity: q(event.cancelledQuantity),
      };
      return [{ dataType: DataType.OrderUpdate, orderId, data }];
    }
    case 'BlockOrderOpened':
    case 'AllocationsConfirmed':
      return [];
    default:
      return assertNever(event, 'block order event');
  }
}

function amendUpdates(
  orderId: string,
  event: Extract<BlockOrderEvent, { type: 'FillBusted' | 'FillCorrected' | 'AveragedFillAmended' }>,
): Draft[] {
  const a = event.amendment;
  const was =
    event.type === 'AveragedFillAmended' ? event.amended.quantity : event.amended.previousQuantity;
  const now = a.kind === 'CORRECTION' ? a.quantity : 0n;
  const data = {
    ...{ amendmentId: a.amendmentId, fillId: a.fillId, seq: a.seq, previousQuantity: q(was) },
    ...(a.kind === 'CORRECTION' ? { quantity: q(a.quantity), price: formatPrice(a.price) } : {}),
  };
  const dataType = a.kind === 'BUST' ? DataType.Bust : DataType.Correction;
  return [
    { dataType, orderId, data },
    {
      dataType: DataType.OrderUpdate,
      orderId,
      data: { seq: a.seq, change: a.kind, filledDelta: q(now - was) },
    },
  ];
}

function lineUpdates(accountId: string, event: LineEvent): Draft[] {
  if (event.type === 'AllocationRejected') return [];
  const a = event.allocation;
  const data = {
    ...{ accountId, fillSeq: a.fillSeq, securityId: a.securityId, side: a.side },
    ...{
      quantity: q(a.quantity),
      price: formatPrice(a.price),
      cashDeltaMinor: q(event.cashDeltaMinor),
    },
    amended: event.type === 'AllocationAmended',
  };
  return [{ dataType: DataType.Allocation, orderId: a.blockOrderId, data }];
}

function accountUpdates(accountId: string, event: AccountEvent): Draft[] {
  switch (event.type) {
    case 'AccountOpened':
      return [];
    case 'AllocationBatch':
      return event.events.flatMap((e) => lineUpdates(accountId, e));
    case 'SuspenseApplied':
      return lineUpdates(accountId, { ...event, type: 'AllocationApplied' });
    case 'AllocationApplied':
    case 'AllocationRejected':
    case 'AllocationAmended':
      return lineUpdates(accountId, event);
    default:
      return assertNever(event, 'account event');
  }
}

export class EventFeed implements StreamPort {
  readonly #subscribers = new Set<Subscriber>();
  readonly #nowMs: () => number;
  readonly #onDeliveryFailed: (error: unknown) => void;

  /** `onDeliveryFailed`: told when a subscriber threw (it is dropped; the others go on). */
  constructor(nowMs: () => number, onDeliveryFailed: (error: unknown) => void = () => {}) {
    this.#nowMs = nowMs;
    this.#onDeliveryFailed = onDeliveryFailed;
  }

  get active(): boolean {
    return this.#subscribers.size > 0;
  }

  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** Returns the unsubscribe; throws TooManySubscribersError at the bound. */
  subscribe(
    filter: FeedFilter,
    deliver: (update: ExecutionUpdate, json: string) => void,
  ): () => void {
    invariant(filter.dataTypes.size > 0, 'a subscription to no data type');
    if (this.#subscribers.size >= FEED_SUBSCRIBERS_MAX) throw new TooManySubscribersError();
    const subscriber = { filter, deliver };
    this.#subscribers.add(subscriber);
    return () => void this.#subscribers.delete(subscriber);
  }

  /** The host's hand-over: events of one batch, durable, rows from `firstSeq`. Never throws. */
  durable(kind: string, id: string, firstSeq: number, events: readonly unknown[]): void {
    if (this.#subscribers.size === 0) return;
    const drafts =
      kind === 'block-order'
        ? (events as BlockOrderEvent[]).flatMap((e) => fillUpdates(id, e))
        : (events as AccountEvent[]).flatMap((e) => accountUpdates(id, e));
    const timestamp = new Date(this.#nowMs()).toISOString();
    drafts.forEach((draft, i) => {
      const update = { eventId: `${kind}-${id}@${firstSeq}.${i}`, timestamp, ...draft };
      let json: string | undefined;
      for (const s of this.#subscribers) {
        const { orderIds, dataTypes } = s.filter;
        if (!dataTypes.has(update.dataType) || (orderIds && !orderIds.has(update.orderId)))
          continue;
        // Serialized once for all subscribers; one subscriber's failure is its own.
        json ??= JSON.stringify(update);
        try {
          s.deliver(update, json);
        } catch (error) {
          this.#subscribers.delete(s);
          this.#onDeliveryFailed(error);
        }
      }
    });
  }
}
