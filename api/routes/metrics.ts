import type { FastifyPluginAsync } from 'fastify';
import type { MetricsPort } from '../ports.ts';

/**
 * GET /metrics: Prometheus text. Scraped every few seconds, so logged at warn
 * only; left out of the OpenAPI document (it is not JSON).
 */
const metricsRoutes: FastifyPluginAsync<{ metrics: MetricsPort }> = async (fastify, opts) => {
  fastify.get('/metrics', { logLevel: 'warn', schema: { hide: true } }, async (_request, reply) => {
    const text = await opts.metrics.render();
    return reply.type(opts.metrics.contentType).send(text);
  });
};

export default metricsRoutes;
