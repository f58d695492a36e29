/**
 * Executions, in the shapes of the execution distribution spec: an order's
 * status, one fill with its lines and history, a portfolio's report between
 * two trade dates, and the intake of up to 100 executions per request.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ValidationError } from '../../actors/errors.ts';
import { realDateMs } from '../dates.ts';
import { ResourceNotFoundError } from '../errors.ts';
import type { ExecutionsPort } from '../ports.ts';
import {
  ExecutionReportQuerySchema,
  ExecutionReportSchema,
  FillDetailsSchema,
  FillIdParams,
  IntakeBodySchema,
  IntakeResultSchema,
  OrderExecutionStatusSchema,
  OrderIdParams,
  PortfolioIdParams,
} from '../schemas-operations.ts';

/** A report covers at most this many days: a longer window is a 400, not a long scan. */
export const REPORT_WINDOW_DAYS_MAX = 366;
const DAY_MS = 86_400_000;
/** A request of INTAKE_ITEMS_MAX executions, each well under 1 KiB, fits. */
export const INTAKE_BODY_BYTES_MAX = 128 * 1024;

/** start ≤ end, both real dates, at most REPORT_WINDOW_DAYS_MAX apart. */
function checkWindow(start: string, end: string): void {
  const startMs = realDateMs('start_date', start);
  const endMs = realDateMs('end_date', end);
  if (endMs < startMs) throw new ValidationError('end_date', 'must not be before start_date');
  if ((endMs - startMs) / DAY_MS >= REPORT_WINDOW_DAYS_MAX)
    throw new ValidationError(
      'end_date',
      `must be within ${REPORT_WINDOW_DAYS_MAX} days of start_date`,
    );
}

const executionRoutes: FastifyPluginAsyncTypebox<{ executions: ExecutionsPort }> = async (
  fastify,
  { executions },
) => {
  fastify.get(
    '/execution/:orderId/status',
    { schema: { params: OrderIdParams, response: { 200: OrderExecutionStatusSchema } } },
    async (request) => {
      const status = await executions.orderStatus(request.params.orderId);
      if (status === undefined)
        throw new ResourceNotFoundError('block order', request.params.orderId);
      return status;
    },
  );

  fastify.get(
    '/execution/fills/:fillId',
    { schema: { params: FillIdParams, response: { 200: FillDetailsSchema } } },
    async (request) => {
      const fill = await executions.fill(request.params.fillId);
      if (fill === undefined) throw new ResourceNotFoundError('fill', request.params.fillId);
      return fill;
    },
  );

  fastify.get(
    '/execution/reports/:portfolioId',
    {
      // A whole account journal (up to 200,000 rows) and its executions.
      handlerTimeout: 120_000,
      schema: {
        params: PortfolioIdParams,
        querystring: ExecutionReportQuerySchema,
        response: { 200: ExecutionReportSchema },
      },
    },
    async (request) => {
      const { start_date: start, end_date: end } = request.query;
      checkWindow(start, end);
      const report = await executions.report(request.params.portfolioId, start, end);
      if (report === undefined)
        throw new ResourceNotFoundError('portfolio', request.params.portfolioId);
      return report;
    },
  );

  // 200 with a result per item: some may be errors while others were published.
  fastify.post(
    '/executions',
    // 100 executions of a few hundred bytes each: above the app's 16 KiB default.
    {
      bodyLimit: INTAKE_BODY_BYTES_MAX,
      schema: { body: IntakeBodySchema, response: { 200: IntakeResultSchema } },
    },
    async (request) => executions.intake(request.body),
  );
};

export default executionRoutes;
