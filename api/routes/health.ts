import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HealthSchema, ReadinessSchema } from '../schemas.ts';
import { RETRY_AFTER_NOT_READY_S } from '../http-conventions.ts';
import { requiresInspection } from '../plugins/inspection.ts';

/** Probes are polled every few seconds: log only warnings and worse for them. */
const PROBE_LOG_LEVEL = 'warn';

const healthRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  // Liveness: the process answers. No I/O, so a slow dependency never gets it restarted.
  fastify.get(
    '/healthz',
    { logLevel: PROBE_LOG_LEVEL, schema: { response: { 200: HealthSchema } } },
    async () => ({ status: 'ok' as const }),
  );

  // Readiness: 503 with the same body when not ready, so probes and humans see why.
  fastify.get(
    '/readyz',
    {
      logLevel: PROBE_LOG_LEVEL,
      schema: { response: { 200: ReadinessSchema, 503: ReadinessSchema } },
    },
    async (_request, reply) => {
      const readiness = await fastify.inspection.readiness();
      if (!readiness.ready) reply.header('retry-after', String(RETRY_AFTER_NOT_READY_S));
      return reply.code(readiness.ready ? 200 : 503).send(readiness);
    },
  );
};

export default requiresInspection('blockfill-health-routes', healthRoutes);
