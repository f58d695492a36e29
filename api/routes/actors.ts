/** Actor management: counts per kind, one actor's state, and restarting a stopped actor. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ConflictError, type ActorsPort } from '../ports.ts';
import {
  ActorParams,
  ActorRestartSchema,
  ActorStatsSchema,
  ActorStatusSchema,
} from '../schemas-operations.ts';

const actorRoutes: FastifyPluginAsyncTypebox<{ actors: ActorsPort }> = async (
  fastify,
  { actors },
) => {
  fastify.get('/actors', { schema: { response: { 200: ActorStatsSchema } } }, async () => ({
    kinds: actors.stats(),
  }));

  fastify.get(
    '/actors/:kind/:id',
    { schema: { params: ActorParams, response: { 200: ActorStatusSchema } } },
    async (request) => actors.status(request.params.kind, request.params.id),
  );

  fastify.post(
    '/actors/:kind/:id/restart',
    { schema: { params: ActorParams, response: { 200: ActorRestartSchema } } },
    async (request) => {
      const { kind, id } = request.params;
      if (!actors.restart(kind, id))
        throw new ConflictError('NOT_STOPPED', `${kind}/${id} was not stopped by its supervisor`);
      return { kind, id, restarted: true as const };
    },
  );
};

export default actorRoutes;
