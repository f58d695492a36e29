/**
 * The inspection API: read-only HTTP views of live actor state plus probes.
 *
 *   GET /accounts/:id       200 AccountView     | 404
 *   GET /accounts/:id/events 200 a page of its journal, decoded | 404
 *   GET /block-orders/:id   200 BlockOrderView  | 404
 *   GET /healthz            200 { status: 'ok' }
 *   GET /readyz             200 Readiness       | 503 Readiness
 *   GET /consumer/stats     200 ConsumerStatsView (counters since start)
 *   GET/POST/DELETE /faults fault injection (403 unless FAULT_INJECTION=on)
 *   GET /docs               Swagger UI (offline); /docs/json and /docs/yaml: OpenAPI 3
 *   GET /metrics            Prometheus text (when the service passes its metrics)
 *
 * Errors always have a JSON ErrorBody (see api/errors.ts); the HTTP
 * conventions (405 + Allow, X-Request-Id, Retry-After, parser errors) are
 * api/http-conventions.ts.
 */
import Fastify from 'fastify';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type {
  ActorsPort,
  DeadLettersPort,
  ExecutionsPort,
  FaultPort,
  InspectionPort,
  MetricsPort,
  StreamPort,
  BookingPort,
  ReconciliationPort,
} from './ports.ts';
import { frameworkErrors, refuseWhileClosing, registerErrorHandling } from './errors.ts';
import {
  clientErrorHandler,
  REQUEST_ID_HEADER,
  legacyHeaders,
  requestIdOf,
  RouteTable,
  versionedUrlOf,
} from './http-conventions.ts';
import { inspectionPlugin } from './plugins/inspection.ts';
import { registerOpenApi } from './plugins/openapi.ts';
import { OPEN_SECURITY, registerSecurity, type SecurityOptions } from './plugins/security.ts';
import accountRoutes from './routes/accounts.ts';
import blockOrderRoutes from './routes/block-orders.ts';
import faultRoutes from './routes/faults.ts';
import metricsRoutes from './routes/metrics.ts';
import healthRoutes from './routes/health.ts';
import consumerRoutes from './routes/consumer.ts';
import actorRoutes from './routes/actors.ts';
import deadLetterRoutes from './routes/dead-letters.ts';
import executionRoutes from './routes/executions.ts';
import streamRoutes from './routes/stream.ts';
import bookingRoutes from './routes/bookings.ts';
import reconciliationRoutes from './routes/reconciliation.ts';
import websocket from '@fastify/websocket';

export type { ErrorBody } from './schemas.ts';

/** The API's version, as the OpenAPI document states it. */
export const API_VERSION = '1.0.0';

/** Every resource route lives under it; probes, /metrics and /docs stay at the root. */
export const API_PREFIX = '/api/v1';

export interface ApiDeps {
  inspection: InspectionPort;
  /** Absent: the fault routes answer 403 like a disabled injector. */
  faults?: FaultPort;
  /** Absent: no /metrics route, and request durations are not recorded. */
  metrics?: MetricsPort;
  /** Each absent port leaves its routes out (tests build the API with fakes). */
  executions?: ExecutionsPort;
  deadLetters?: DeadLettersPort;
  actors?: ActorsPort;
  bookings?: BookingPort;
  reconciliation?: ReconciliationPort;
  /** The live feed (GET /api/v1/execution/stream) and how far behind a client may fall. */
  stream?: { feed: StreamPort; bufferedBytesMax: number };
}

export interface ApiOptions {
  /** Passed to fastify (pino options or true); default false (silent). */
  logger?: FastifyServerOptions['logger'];
  /** API key, CORS origins and rate limit; default: open, no CORS, no limit. */
  security?: SecurityOptions;
  /** A pino logger of the caller's (the service's own): Fastify logs through it. */
  loggerInstance?: FastifyServerOptions['loggerInstance'];
}

/** The resource routes, under API_PREFIX; a route whose port is absent is left out. */
async function registerV1(v1: FastifyInstance, deps: ApiDeps): Promise<void> {
  const { executions, deadLetters, actors, stream, bookings, reconciliation } = deps;
  await v1.register(accountRoutes);
  await v1.register(blockOrderRoutes, executions ? { executions } : {});
  await v1.register(consumerRoutes);
  if (executions) await v1.register(executionRoutes, { executions });
  if (deadLetters) await v1.register(deadLetterRoutes, { deadLetters });
  if (actors) await v1.register(actorRoutes, { actors });
  if (stream) await v1.register(streamRoutes, stream);
  if (bookings) await v1.register(bookingRoutes, { bookings });
  if (reconciliation) await v1.register(reconciliationRoutes, { reconciliation });
}

/** WebSocket routes: frames from clients bounded, and a clean close on shutdown. */
async function registerWebSocket(app: FastifyInstance): Promise<void> {
  await app.register(websocket, {
    // Incoming frames are refused by the stream route; 4 KiB bounds what a client can make us parse.
    options: { maxPayload: 4 * 1024 },
    // Shutting down: 1001 Going Away, so a client knows to reconnect elsewhere or later.
    preClose: async () => {
      for (const socket of app.websocketServer.clients)
        socket.close(1001, 'the service is stopping');
      await new Promise((resolve) => app.websocketServer.close(resolve));
    },
  });
}

/** Builds the app, not yet listening: call `listen()`, or `inject()` in tests. */
export async function buildApp(deps: ApiDeps, options: ApiOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    ...(options.loggerInstance
      ? { loggerInstance: options.loggerInstance }
      : { logger: options.logger ?? false }),
    // Small bodies only (fault plans, empty POSTs).
    bodyLimit: 16 * 1024,
    // Slow-client protection when no proxy sits in front.
    connectionTimeout: 30_000,
    requestTimeout: 10_000,
    // Longer than common load-balancer idle timeouts (60 s), so the LB closes first.
    keepAliveTimeout: 72_000,
    // Answer 503 (not a hung request) if an actor ask outlives every timeout of its own.
    handlerTimeout: 15_000,
    // Closing: our own 503 (onRequest below), in the one error shape with Retry-After.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Router errors (bad URL encoding, over-long parameter) get the same JSON error body.
    frameworkErrors,
    routerOptions: {
      // Well above the 64-char id limit, so a too-long id gets the schema's 400 naming the
      // field; only absurd lengths get the router's 414.
      maxParamLength: 256,
      ignoreTrailingSlash: false,
      caseSensitive: true,
    },
    ajv: {
      customOptions: {
        allErrors: false, // first error only: cheaper, and no DoS through huge error lists
        coerceTypes: false,
        removeAdditional: false,
        useDefaults: false,
      },
    },
    // X-Request-Id: the client's when sane, else a UUID; echoed back, and the logs' reqId.
    requestIdHeader: false,
    genReqId: requestIdOf,
    // Parser errors (431 headers too large, malformed request) get the one error body.
    clientErrorHandler,
    // Unversioned paths of before /api/v1 are served by their versioned routes.
    rewriteUrl: versionedUrlOf(API_PREFIX),
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.addHook('onRequest', async (request, reply) => {
    reply.header(REQUEST_ID_HEADER, request.id);
  });
  legacyHeaders(app, API_PREFIX);
  const routes = RouteTable.track(app);
  registerErrorHandling(app, routes);
  refuseWhileClosing(app);
  await registerSecurity(app, options.security ?? OPEN_SECURITY);
  await registerOpenApi(app, API_VERSION);
  const { metrics } = deps;
  if (metrics) {
    // By the route's pattern (404s share one label): the series stay few.
    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? 'unmatched';
      metrics.observeRequest(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
    });
    await app.register(metricsRoutes, { metrics });
  }
  await app.register(inspectionPlugin, { port: deps.inspection });
  if (deps.stream) await registerWebSocket(app);
  await app.register((v1) => registerV1(v1, deps), { prefix: API_PREFIX });
  await app.register(healthRoutes);
  await app.register(faultRoutes, { faults: deps.faults });
  return app;
}
