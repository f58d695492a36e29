/**
 * Booking: close a window (every allocation since the previous batch, as one
 * portfolio-accounting CSV), read a batch and its file, and prove membership:
 * which booked lines, from which fills, are in which batch.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ResourceNotFoundError } from '../errors.ts';
import type { BookingPort } from '../ports.ts';
import {
  BookingBatchIdParams,
  BookingBatchSchema,
  BookingCloseBodySchema,
  MembershipQuerySchema,
  MembershipSchema,
} from '../schemas-operations.ts';

/**
 * A close reads every journal row past the marks and writes up to 250,000
 * lines (a million-account day takes minutes), and a regenerated file reads
 * them back: far beyond the app's 15 s bound for an ask, but still bounded.
 */
export const LONG_HANDLER_TIMEOUT_MS = 600_000;

const bookingRoutes: FastifyPluginAsyncTypebox<{ bookings: BookingPort }> = async (
  fastify,
  { bookings },
) => {
  // 201 with the batch; 409 when another close is running or nothing is new.
  fastify.post(
    '/bookings/batches',
    {
      handlerTimeout: LONG_HANDLER_TIMEOUT_MS,
      schema: { body: BookingCloseBodySchema, response: { 201: BookingBatchSchema } },
    },
    async (request, reply) => {
      const batch = await bookings.close({ cleanup: request.body?.cleanup ?? false });
      return reply.code(201).header('location', `${request.url}/${batch.id}`).send(batch);
    },
  );

  fastify.get(
    '/bookings/batches/:id',
    { schema: { params: BookingBatchIdParams, response: { 200: BookingBatchSchema } } },
    async (request) => {
      const batch = await bookings.batch(request.params.id);
      if (batch === undefined) throw new ResourceNotFoundError('booking batch', request.params.id);
      return batch;
    },
  );

  // The CSV as written (or regenerated from the recorded lines when cleaned up: same bytes).
  fastify.get(
    '/bookings/batches/:id/file',
    {
      handlerTimeout: LONG_HANDLER_TIMEOUT_MS,
      schema: {
        params: BookingBatchIdParams,
        produces: ['text/csv'],
        response: { 200: Type.String({ description: 'the batch file, text/csv' }) },
      },
    },
    async (request, reply) => {
      const file = await bookings.file(request.params.id);
      if (file === undefined) throw new ResourceNotFoundError('booking batch', request.params.id);
      return reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="${file.fileName}"`)
        .serializer((payload: unknown) => payload as string)
        .send(file.csv);
    },
  );

  fastify.get(
    '/bookings/membership',
    { schema: { querystring: MembershipQuerySchema, response: { 200: MembershipSchema } } },
    async (request) => bookings.membership(request.query.fillId),
  );
};

export default bookingRoutes;
