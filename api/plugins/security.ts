/**
 * Who may call the API, and how often:
 * - an API key, when configured, guards every mutating route (any method but
 *   GET, HEAD and OPTIONS), and with `protectReads` every read under /api/
 *   too: `Authorization: Bearer <key>` or `X-Api-Key`. A
 *   missing or wrong key is 401 with `WWW-Authenticate`, compared in
 *   constant time. Without a key the mutating routes are open (a local run).
 * - CORS for the configured origins only (@fastify/cors); none by default.
 * - a rate limit per client address (@fastify/rate-limit): 429 with
 *   `Retry-After`, in the one error shape. Off by default.
 * Register on the root instance, before the routes.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TooManyRequestsError } from '../errors.ts';
import { errorBodyOf } from '../http-conventions.ts';

export interface SecurityOptions {
  apiKey: string | null;
  /** The key guards reads of the resources (API_READ_PREFIX) too; probes, /metrics, /docs stay open. */
  protectReads?: boolean;
  corsOrigins: readonly string[];
  /** 0: no limit. */
  rateLimitPerMinute: number;
}

export const OPEN_SECURITY: SecurityOptions = {
  apiKey: null,
  corsOrigins: [],
  rateLimitPerMinute: 0,
};

const READ_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Reads of client data (trades, bookings, dead letters): guarded when protectReads is set. */
const API_READ_PREFIX = '/api/';

/** Client addresses the rate limiter tracks at once (a limit on its memory). */
const RATE_LIMIT_CLIENTS_MAX = 10_000;

/** Equal-length digests, so the comparison takes the same time whatever was sent. */
const digest = (text: string) => createHash('sha256').update(text).digest();

function presentedKey(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice('Bearer '.length);
  const header = request.headers['x-api-key'];
  return typeof header === 'string' ? header : undefined;
}

export async function registerSecurity(
  app: FastifyInstance,
  options: SecurityOptions,
): Promise<void> {
  if (options.corsOrigins.length > 0)
    await app.register(cors, {
      origin: [...options.corsOrigins],
      exposedHeaders: ['x-request-id'],
    });
  if (options.rateLimitPerMinute > 0)
    await app.register(rateLimit, {
      max: options.rateLimitPerMinute,
      timeWindow: 60_000,
      cache: RATE_LIMIT_CLIENTS_MAX,
      // Thrown, so the root error handler answers it like every other error.
      errorResponseBuilder: (_request, context) =>
        new TooManyRequestsError(
          `more than ${context.max} requests a minute; retry in ${context.after}`,
        ),
    });
  const { apiKey } = options;
  if (apiKey === null) return;
  const expected = digest(apiKey);
  const readsOpen = (request: FastifyRequest) =>
    READ_METHODS.has(request.method) &&
    (!options.protectReads ||
      request.method === 'OPTIONS' ||
      !request.url.startsWith(API_READ_PREFIX));
  app.addHook('onRequest', async (request, reply) => {
    if (readsOpen(request)) return;
    const given = presentedKey(request);
    if (given !== undefined && timingSafeEqual(digest(given), expected)) return;
    const message = given === undefined ? 'an API key is required' : 'the API key is wrong';
    return reply
      .code(401)
      .header('www-authenticate', 'Bearer realm="blockfill"')
      .type('application/json; charset=utf-8')
      .serializer(JSON.stringify)
      .send(errorBodyOf(401, message));
  });
}
