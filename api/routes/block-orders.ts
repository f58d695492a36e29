import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { realDateMs } from '../dates.ts';
import { ResourceNotFoundError } from '../errors.ts';
import { LIST_PAGE_DEFAULT, type ExecutionsPort } from '../ports.ts';
import { BlockOrderViewSchema, IdParams } from '../schemas.ts';
import { BlockOrderListQuerySchema, BlockOrderListSchema } from '../schemas-operations.ts';
import { requiresInspection } from '../plugins/inspection.ts';

const LIST = 'block-orders';

const blockOrderRoutes: FastifyPluginAsyncTypebox<{ executions?: ExecutionsPort }> = async (
  fastify,
  options,
) => {
  fastify.get(
    '/block-orders/:id',
    { schema: { params: IdParams, response: { 200: BlockOrderViewSchema } } },
    async (request) => {
      const view = await fastify.inspection.blockOrder(request.params.id);
      if (view === undefined) throw new ResourceNotFoundError('block order', request.params.id);
      return view;
    },
  );

  const { executions } = options;
  if (!executions) return;
  // Keyset by id; a status filter reads live actors, so a page may hold fewer than `limit`
  // while nextCursor is not null: follow it to the end.
  fastify.get(
    '/block-orders',
    { schema: { querystring: BlockOrderListQuerySchema, response: { 200: BlockOrderListSchema } } },
    async (request) => {
      const { status, security, tradeDate, side, cursor, limit } = request.query;
      if (tradeDate !== undefined) realDateMs('tradeDate', tradeDate);
      const page = await executions.listBlockOrders({
        ...(status === undefined ? {} : { status }),
        ...(security === undefined ? {} : { securityId: security }),
        ...(tradeDate === undefined ? {} : { tradeDate }),
        ...(side === undefined ? {} : { side }),
        afterId: cursor === undefined ? '' : decodeCursor(LIST, cursor, 'string'),
        limit: Number(limit ?? LIST_PAGE_DEFAULT),
      });
      const next = page.lastScannedId === null ? null : encodeCursor(LIST, page.lastScannedId);
      return { items: page.items, nextCursor: next };
    },
  );
};

export default requiresInspection('blockfill-block-order-routes', blockOrderRoutes);
