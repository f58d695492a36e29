import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ResourceNotFoundError } from '../errors.ts';
import { EVENTS_PAGE_DEFAULT } from '../ports.ts';
import {
  AccountEventsPageSchema,
  AccountEventsQuery,
  AccountViewSchema,
  IdParams,
  SuspenseRetryParams,
  SuspenseRetryResultSchema,
} from '../schemas.ts';
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

  // The account's journal, decoded, a page at a time (keyset: after a seq).
  fastify.get(
    '/accounts/:id/events',
    {
      schema: {
        params: IdParams,
        querystring: AccountEventsQuery,
        response: { 200: AccountEventsPageSchema },
      },
    },
    async (request) => {
      const after = Number(request.query.after ?? 0);
      const limit = Number(request.query.limit ?? EVENTS_PAGE_DEFAULT);
      const page = await fastify.inspection.accountEvents(request.params.id, after, limit);
      if (page === undefined) throw new ResourceNotFoundError('account', request.params.id);
      return page;
    },
  );

  // A resolution path for the suspense ledger: apply a refused line to its
  // account now that it can take it (e.g. the shares arrived). Idempotent:
  // once applied, the line is no longer in suspense (404).
  fastify.post(
    '/accounts/:id/suspense/:blockOrderId/:fillSeq/retry',
    { schema: { params: SuspenseRetryParams, response: { 200: SuspenseRetryResultSchema } } },
    async (request) => {
      const { id, blockOrderId, fillSeq } = request.params;
      const result = await fastify.inspection.retrySuspense(id, blockOrderId, Number(fillSeq));
      if (result === undefined) throw new ResourceNotFoundError('account', id);
      return result;
    },
  );
};

export default requiresInspection('blockfill-account-routes', accountRoutes);
