import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ResourceNotFoundError } from '../errors.ts';
import { BlockOrderViewSchema, IdParams } from '../schemas.ts';
import { requiresInspection } from '../plugins/inspection.ts';

const blockOrderRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/block-orders/:id',
    { schema: { params: IdParams, response: { 200: BlockOrderViewSchema } } },
    async (request) => {
      const view = await fastify.inspection.blockOrder(request.params.id);
      if (view === undefined) throw new ResourceNotFoundError('block order', request.params.id);
      return view;
    },
  );
};

export default requiresInspection('blockfill-block-order-routes', blockOrderRoutes);
