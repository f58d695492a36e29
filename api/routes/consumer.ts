import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ConsumerStatsSchema } from '../schemas.ts';
import { requiresInspection } from '../plugins/inspection.ts';

const consumerRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  // Exceptions an operator must see without reading logs: conflicts, dead letters, naks.
  fastify.get(
    '/consumer/stats',
    { logLevel: 'warn', schema: { response: { 200: ConsumerStatsSchema } } },
    async () => fastify.inspection.consumerStats(),
  );
};

export default requiresInspection('blockfill-consumer-routes', consumerRoutes);
