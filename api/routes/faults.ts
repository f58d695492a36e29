/**
 * Fault injection for tests and drills (system/faults.ts): GET the plan, POST
 * to add to it, DELETE to clear it. 403 unless the service runs with
 * FAULT_INJECTION=on; never for production.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { BlockfillError, ErrorCode } from '../../actors/errors.ts';
import type { FaultPort } from '../ports.ts';
import { FaultPlanSchema, FaultRequestSchema } from '../schemas.ts';

const faultRoutes: FastifyPluginAsyncTypebox<{ faults: FaultPort | undefined }> = async (
  fastify,
  options,
) => {
  const enabled = (): FaultPort => {
    const faults = options.faults;
    if (!faults?.enabled)
      throw new BlockfillError(
        ErrorCode.FaultInjectionDisabled,
        'fault injection is disabled: start the service with FAULT_INJECTION=on (tests and drills only)',
      );
    return faults;
  };
  fastify.get(
    '/faults',
    { schema: { response: { 200: FaultPlanSchema } } },
    async () => enabled().plan,
  );
  fastify.post(
    '/faults',
    { schema: { body: FaultRequestSchema, response: { 200: FaultPlanSchema } } },
    async (request) => enabled().inject(request.body),
  );
  fastify.delete('/faults', { schema: { response: { 200: FaultPlanSchema } } }, async () => {
    const faults = enabled();
    faults.clear();
    return faults.plan;
  });
};

export default faultRoutes;
