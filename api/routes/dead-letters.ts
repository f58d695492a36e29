/** The dead-letter stream: a page at a time (optionally one reason), one message, a replay. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { ResourceNotFoundError } from '../errors.ts';
import { LIST_PAGE_DEFAULT, type DeadLettersPort } from '../ports.ts';
import {
  DeadLetterIdParams,
  DeadLetterListQuerySchema,
  DeadLetterListSchema,
  DeadLetterSchema,
  ReplayBodySchema,
  ReplayResultSchema,
} from '../schemas-operations.ts';

const LIST = 'dead-letters';

const deadLetterRoutes: FastifyPluginAsyncTypebox<{ deadLetters: DeadLettersPort }> = async (
  fastify,
  { deadLetters },
) => {
  fastify.get(
    '/dead-letters',
    { schema: { querystring: DeadLetterListQuerySchema, response: { 200: DeadLetterListSchema } } },
    async (request) => {
      const { reason, cursor, limit } = request.query;
      const afterSeq = cursor === undefined ? 0 : decodeCursor(LIST, cursor, 'seq');
      const page = await deadLetters.list({
        ...(reason === undefined ? {} : { reason }),
        afterSeq,
        limit: Number(limit ?? LIST_PAGE_DEFAULT),
      });
      const next = page.lastScanned === null ? null : encodeCursor(LIST, page.lastScanned);
      return { items: page.items, nextCursor: next };
    },
  );

  fastify.get(
    '/dead-letters/:id',
    { schema: { params: DeadLetterIdParams, response: { 200: DeadLetterSchema } } },
    async (request) => {
      const view = await deadLetters.get(Number(request.params.id));
      if (view === undefined) throw new ResourceNotFoundError('dead letter', request.params.id);
      return view;
    },
  );

  // As it was, or with a corrected execution: published again to its order's subject.
  fastify.post(
    '/dead-letters/:id/replay',
    {
      schema: {
        params: DeadLetterIdParams,
        body: ReplayBodySchema,
        response: { 200: ReplayResultSchema },
      },
    },
    async (request) => {
      const corrected = request.body?.execution;
      const result = await deadLetters.replay(Number(request.params.id), corrected);
      if (result === undefined) throw new ResourceNotFoundError('dead letter', request.params.id);
      return result;
    },
  );
};

export default deadLetterRoutes;
