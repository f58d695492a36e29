import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ResourceNotFoundError } from '../errors.ts';
import { AccountViewSchema, IdParams } from '../schemas.ts';
import { requiresInspection } from '../plugins/inspection.ts';

const accountRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/accounts/:id',
    { schema: { params: IdParams, response: { 200: AccountViewSchema } } },
    async (request) => {
      const view = await fastify.inspection.account(request.params.id);
      if (view === undefined) throw new ResourceNotFoundError('account', request.params.id);
      return view;
    },
  );
};

export default requiresInspection('blockfill-account-routes', accountRoutes);
