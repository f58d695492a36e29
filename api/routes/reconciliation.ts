/** Reconciliation: per security, the books against the street (the fills), with every break. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { realDateMs } from '../dates.ts';
import type { ReconciliationPort } from '../ports.ts';
import { LONG_HANDLER_TIMEOUT_MS } from './bookings.ts';
import { ReconciliationQuerySchema, ReconciliationSchema } from '../schemas-operations.ts';

const reconciliationRoutes: FastifyPluginAsyncTypebox<{
  reconciliation: ReconciliationPort;
}> = async (fastify, { reconciliation }) => {
  fastify.get(
    '/reconciliation',
    {
      // Every account journal and every order's: as long as a booking close (bookings.ts).
      handlerTimeout: LONG_HANDLER_TIMEOUT_MS,
      schema: { querystring: ReconciliationQuerySchema, response: { 200: ReconciliationSchema } },
    },
    async (request) => {
      const { tradeDate } = request.query;
      if (tradeDate !== undefined) realDateMs('tradeDate', tradeDate);
      return reconciliation.reconcile(tradeDate);
    },
  );
};

export default reconciliationRoutes;
