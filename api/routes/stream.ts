/**
 * GET /api/v1/execution/stream: a WebSocket of execution updates, pushed as
 * they become durable, filtered by `order_ids` and `data_types` (comma
 * separated). The first message is `{"subscribed": {...}}`: from then on
 * nothing durable is missed. Each later message is one ExecutionUpdate.
 *
 * A client that falls behind by more than `bufferedBytesMax` unsent bytes is
 * cut off with close code 1013 (Try Again Later) instead of growing the
 * server's memory; it reconnects and reads what it missed from the REST API.
 * A plain HTTP GET gets 426 Upgrade Required in the one error shape.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { WebSocket } from '@fastify/websocket';
import { Type } from 'typebox';
import {
  DATA_TYPES,
  TooManySubscribersError,
  type DataType,
  type FeedFilter,
  type StreamPort,
} from '../ports.ts';
import { ID_PATTERN } from '../schemas.ts';
import { UpgradeRequiredError } from '../errors.ts';

/** Close codes (RFC 6455 §7.4; 1013 from the IANA registry). */
export const StreamClose = {
  /** The client fell behind, or the stream has its bound of subscribers. */
  TryAgainLater: 1013,
  /** The client sent something: this stream only speaks. */
  Unsupported: 1003,
  /** The server is stopping. */
  GoingAway: 1001,
} as const;

/** Order ids one subscription names, at most. */
export const STREAM_ORDER_IDS_MAX = 100;
/** A client that answers no ping within this is dropped (its socket is half-open). */
const PING_INTERVAL_MS = 30_000;
/** After the close frame, how long the client has to finish the handshake. */
const CLOSE_GRACE_MS = 5_000;

const ID = ID_PATTERN.slice(1, -1);
const TYPES = DATA_TYPES.join('|');
export const StreamQuerySchema = Type.Object(
  {
    order_ids: Type.Optional(
      Type.String({ pattern: `^${ID}(,${ID}){0,${STREAM_ORDER_IDS_MAX - 1}}$` }),
    ),
    data_types: Type.Optional(Type.String({ pattern: `^(${TYPES})(,(${TYPES})){0,9}$` })),
  },
  { additionalProperties: false },
);

function filterOf(query: { order_ids?: string; data_types?: string }): FeedFilter {
  return {
    orderIds: query.order_ids === undefined ? null : new Set(query.order_ids.split(',')),
    dataTypes: new Set((query.data_types?.split(',') ?? DATA_TYPES) as DataType[]),
  };
}

/** Sends while the client keeps up; past the bound, closes once and stops sending. */
function serve(socket: WebSocket, feed: StreamPort, filter: FeedFilter, bufferedBytesMax: number) {
  let open = true;
  let unsubscribe = () => {};
  const closeWith = (code: number, reason: string) => {
    if (!open) return;
    open = false;
    unsubscribe();
    socket.close(code, reason);
    setTimeout(() => socket.terminate(), CLOSE_GRACE_MS).unref();
  };
  try {
    unsubscribe = feed.subscribe(filter, (_update, json) => {
      if (!open) return;
      if (socket.bufferedAmount > bufferedBytesMax)
        return closeWith(
          StreamClose.TryAgainLater,
          `slow consumer: over ${bufferedBytesMax} bytes behind`,
        );
      socket.send(json);
    });
  } catch (error) {
    if (!(error instanceof TooManySubscribersError)) throw error;
    return closeWith(StreamClose.TryAgainLater, error.message);
  }
  const subscribed = {
    orderIds: filter.orderIds && [...filter.orderIds],
    dataTypes: [...filter.dataTypes],
  };
  socket.send(JSON.stringify({ subscribed }));
  let alive = true;
  const ping = setInterval(() => {
    if (!alive) return socket.terminate();
    alive = false;
    socket.ping();
  }, PING_INTERVAL_MS).unref();
  socket.on('pong', () => void (alive = true));
  socket.on('message', () => closeWith(StreamClose.Unsupported, 'this stream takes no messages'));
  socket.on('close', () => {
    open = false;
    clearInterval(ping);
    unsubscribe();
  });
}

const streamRoutes: FastifyPluginAsyncTypebox<{
  feed: StreamPort;
  bufferedBytesMax: number;
}> = async (fastify, { feed, bufferedBytesMax }) => {
  fastify.route({
    method: 'GET',
    url: '/execution/stream',
    schema: { querystring: StreamQuerySchema },
    handler: async (_request, reply) => {
      reply.header('upgrade', 'websocket');
      throw new UpgradeRequiredError('this route is a WebSocket: connect with Upgrade: websocket');
    },
    wsHandler: (socket, request) => serve(socket, feed, filterOf(request.query), bufferedBytesMax),
  });
};

export default streamRoutes;
