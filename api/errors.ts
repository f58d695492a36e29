/**
 * The API's only error handler and its not-found handler. Every error reply
 * is built here, as a JSON ErrorBody:
 *   - request validation (fastify schema) and ValidationError -> 400 with field and rule
 *   - actor timeout / stopped / mailbox full                   -> 503 (messages are safe)
 *   - fastify's own client errors (bad JSON, body too large...) -> their 4xx status
 *   - anything else, INVARIANT included                         -> 500 with no detail
 *   - a known path with another method                          -> 405 with Allow
 * Every 503 carries Retry-After.
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BlockfillError, ErrorCode, ValidationError } from '../actors/errors.ts';
import {
  clip,
  errorBodyOf,
  FRAMEWORK_MESSAGE_CHARS_MAX,
  REQUEST_ID_HEADER,
  RETRY_AFTER_UNAVAILABLE_S,
  type RouteTable,
} from './http-conventions.ts';
import {
  ConflictError,
  ReplayRefusedError,
  ReportTooLargeError,
  SuspenseNotAppliedError,
} from './ports.ts';
import type { ErrorBody } from './schemas.ts';

/** A client over the rate limit (the limiter throws it): 429, with the limiter's Retry-After. */
export class TooManyRequestsError extends Error {
  readonly statusCode = 429;
  constructor(message: string) {
    super(message);
    this.name = 'TooManyRequestsError';
  }
}

/** A plain HTTP request to a WebSocket route: 426. */
export class UpgradeRequiredError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpgradeRequiredError';
  }
}

/** Thrown by routes when the port has no such entity. */
export class ResourceNotFoundError extends Error {
  constructor(kind: string, id: string) {
    super(`${kind} ${id} not found`);
    this.name = 'ResourceNotFoundError';
  }
}

/** The infrastructure is having a moment: 503 with Retry-After, never the client's fault. */
const UNAVAILABLE: ReadonlySet<string> = new Set([
  ErrorCode.ActorTimeout,
  ErrorCode.ActorStopped,
  ErrorCode.MailboxFull,
  ErrorCode.DbRetriesExhausted,
  ErrorCode.DbUnavailable,
  ErrorCode.NatsUnreachable,
]);

/** Router errors whose message repeats the (possibly huge) URL. */
const ECHOES_URL: ReadonlySet<string> = new Set(['FST_ERR_BAD_URL', 'FST_ERR_MAX_PARAM_LENGTH']);

/** 404 -> error "NOT_FOUND", 413 -> "PAYLOAD_TOO_LARGE" (http-conventions.ts). */
function body(statusCode: number, message: string, extra?: Partial<ErrorBody>): ErrorBody {
  return { ...errorBodyOf(statusCode, message), ...extra, statusCode };
}

/** One schema validation failure, in the shape both Ajv and TypeBox report. */
interface SchemaIssue {
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** "/a/0/b" -> "a.0.b" (JSON pointer unescaped); a missing property is named by Ajv in params. */
function fieldOf(issue: SchemaIssue, context: string): string {
  const path = (issue.instancePath ?? '')
    .split('/')
    .filter((s) => s !== '')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const named = issue.params?.missingProperty ?? issue.params?.additionalProperty;
  if (typeof named === 'string') path.push(named);
  return path.length > 0 ? path.join('.') : context;
}

function validationBody(error: FastifyError): ErrorBody {
  const context = error.validationContext ?? 'request';
  const issue: SchemaIssue = error.validation?.[0] ?? {};
  // A field can be named by the client (an unexpected property): repeated only in part.
  const field = clip(fieldOf(issue, context));
  const rule = issue.message ?? 'is invalid';
  return body(400, `${context} field "${field}" ${rule}`, { field, rule });
}

/** The API's own errors (the ports' and the routes'), each with its status; undefined: not one. */
function apiErrorReply(error: unknown): ErrorBody | undefined {
  if (error instanceof ResourceNotFoundError) return body(404, error.message);
  if (error instanceof TooManyRequestsError) return body(429, error.message);
  if (error instanceof UpgradeRequiredError)
    return { error: 'UPGRADE_REQUIRED', message: error.message, statusCode: 426 };
  if (error instanceof BlockfillError && error.code === ErrorCode.FaultInjectionDisabled)
    return { error: error.code, message: error.message, statusCode: 403 };
  if (error instanceof SuspenseNotAppliedError) {
    const status = error.outcome === 'STILL_REFUSED' ? 409 : 404;
    return { error: error.outcome, message: error.message, statusCode: status };
  }
  if (error instanceof ConflictError)
    return { error: error.code, message: error.message, statusCode: 409 };
  if (error instanceof ReportTooLargeError)
    return { error: error.code, message: error.message, statusCode: 422 };
  if (error instanceof ReplayRefusedError) {
    const field = `execution.${clip(error.field)}`;
    return body(400, `${field} ${clip(error.rule, FRAMEWORK_MESSAGE_CHARS_MAX)}`, {
      field,
      rule: error.rule,
    });
  }
  return undefined;
}

function toReply(error: unknown, request: FastifyRequest): ErrorBody {
  const known = apiErrorReply(error);
  if (known) return known;
  if (error instanceof ValidationError) {
    request.log.info({ err: error }, 'rejected invalid input');
    return body(400, error.message, { field: error.field, rule: error.rule });
  }
  if (error instanceof BlockfillError && UNAVAILABLE.has(error.code)) {
    request.log.warn({ err: error }, 'unavailable: asked to retry');
    return { error: error.code, message: error.message, statusCode: 503 };
  }
  if (error instanceof Error) {
    const fe = error as FastifyError;
    if (fe.validation) {
      const reply = validationBody(fe);
      request.log.info(
        { field: reply.field, rule: reply.rule },
        'request failed schema validation',
      );
      return reply;
    }
    // Fastify's own errors carry a safe message and a meaningful status:
    // bad or empty JSON body (400), body too large (413), handler timeout (503)...
    const status = fe.statusCode;
    if (
      typeof fe.code === 'string' &&
      fe.code.startsWith('FST_') &&
      typeof status === 'number' &&
      ((status >= 400 && status < 500) || status === 503)
    ) {
      request.log.info({ code: fe.code }, 'request rejected');
      return body(
        status,
        ECHOES_URL.has(fe.code)
          ? (STATUS_CODES[status] ?? 'bad URL')
          : clip(fe.message, FRAMEWORK_MESSAGE_CHARS_MAX),
      );
    }
  }
  request.log.error({ err: error }, 'unhandled error');
  return body(500, 'internal error', { error: 'INTERNAL' });
}

/**
 * Error bodies are serialized here, not by the route's response schemas
 * (a route's 503 may be a Readiness, for instance).
 */
function sendError(reply: FastifyReply, payload: ErrorBody): void {
  if (payload.statusCode === 503) reply.header('retry-after', String(RETRY_AFTER_UNAVAILABLE_S));
  void reply
    .code(payload.statusCode)
    .type('application/json; charset=utf-8')
    .serializer(JSON.stringify)
    .send(payload);
}

/**
 * For fastify's `frameworkErrors` option: errors raised by the router before
 * any route or handler exists (bad URL encoding, over-long path parameter).
 */
export function frameworkErrors(
  error: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  // The onRequest hook that returns the request id has not run for these.
  reply.header(REQUEST_ID_HEADER, request.id);
  sendError(reply, toReply(error, request));
}

/**
 * Once the app is closing, a request on a kept-alive connection gets 503
 * with Retry-After in the one error shape (fastify's own closing 503 has
 * neither).
 */
export function refuseWhileClosing(app: FastifyInstance): void {
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return;
    sendError(reply, body(503, 'the service is shutting down'));
    return reply;
  });
}

/**
 * Installs the error and not-found handlers. Call on the root instance,
 * before routes. A path some route serves, asked with another method, is
 * 405 with `Allow` (`routes` knows every route); any other miss is 404.
 * Neither echoes more of the URL than a short prefix.
 */
export function registerErrorHandling(app: FastifyInstance, routes: RouteTable): void {
  app.setErrorHandler((error: unknown, request, reply) => {
    sendError(reply, toReply(error, request));
  });
  const notFound = (request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?', 1)[0] ?? '';
    const allowed = routes.allowed(path);
    if (allowed.length > 0 && !allowed.includes(request.method)) {
      reply.header('allow', allowed.join(', '));
      const message = `method ${request.method} not allowed on ${clip(path)}; allowed: ${allowed.join(', ')}`;
      return sendError(reply, body(405, message));
    }
    sendError(reply, body(404, `route ${request.method} ${clip(request.url)} not found`));
  };
  // Answered before the body is read: a wrong method is 405 whatever body it carries.
  app.addHook('onRequest', async (request, reply) => {
    if (!request.is404) return;
    notFound(request, reply);
    return reply;
  });
  app.setNotFoundHandler(notFound);
}
