/**
 * Decorates the fastify instance with the InspectionPort, the API's only way
 * into the running system. Not encapsulated (skip-override), so routes
 * registered after it on the same instance see `fastify.inspection`.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { InspectionPort } from '../ports.ts';

declare module 'fastify' {
  interface FastifyInstance {
    inspection: InspectionPort;
  }
}

export interface InspectionPluginOptions {
  port: InspectionPort;
}

export const INSPECTION_PLUGIN = 'blockfill-inspection';

const plugin: FastifyPluginAsync<InspectionPluginOptions> = async (fastify, options) => {
  fastify.decorate('inspection', options.port);
};

// What fastify-plugin would add: no encapsulation, a name for `dependencies`, a version range.
export const inspectionPlugin = Object.assign(plugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: INSPECTION_PLUGIN,
  [Symbol.for('plugin-meta')]: { name: INSPECTION_PLUGIN, fastify: '5.x' },
});

/**
 * Marks a plugin as needing `fastify.inspection`: fastify then refuses to
 * register it before this plugin, instead of failing on the first request.
 */
export function requiresInspection<T extends object>(name: string, dependent: T): T {
  return Object.assign(dependent, {
    [Symbol.for('fastify.display-name')]: name,
    [Symbol.for('plugin-meta')]: {
      name,
      fastify: '5.x',
      decorators: { fastify: ['inspection'] },
      dependencies: [INSPECTION_PLUGIN],
    },
  });
}
