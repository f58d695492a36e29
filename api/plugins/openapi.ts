/**
 * OpenAPI 3, generated from the routes' TypeBox schemas (@fastify/swagger),
 * and Swagger UI at /docs (@fastify/swagger-ui: its assets ship in the
 * package, so the page works with no network; no online validator). The
 * spec is at /docs/json and /docs/yaml. Register before the routes: the spec
 * is collected as routes are added.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';

export const DOCS_PREFIX = '/docs';

export async function registerOpenApi(app: FastifyInstance, version: string): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'blockfill',
        description:
          'Live state of block orders and accounts, the suspense ledger, probes and fault injection. Exact amounts are decimal strings; every error has one JSON shape.',
        version,
      },
    },
  });
  await app.register(swaggerUi, {
    routePrefix: DOCS_PREFIX,
    staticCSP: true,
    // Swagger UI sets one inline style; nothing is loaded from elsewhere.
    // No upgrade-insecure-requests: the service speaks plain HTTP, and a browser not on
    // localhost would fetch the page's own assets over https and draw nothing.
    transformStaticCSP: (header: string) =>
      header
        .replace("style-src 'self' https:", "style-src 'self' 'unsafe-inline'")
        .replace(/;?\s*upgrade-insecure-requests/, ''),
    uiConfig: { docExpansion: 'list', deepLinking: false },
  });
}
