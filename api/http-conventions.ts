/**
 * The API's HTTP conventions, in one place:
 * - a wrong method on a known path is 405 with `Allow`, not 404 (RouteTable);
 * - `X-Request-Id` is taken from the client when it is a sane token, else
 *   generated; it is returned on every reply and is the logs' `reqId`;
 * - an error never echoes more than a short prefix of what the client sent;
 * - a 503 says when to come back (`Retry-After`);
 * - errors Node's HTTP parser raises before Fastify sees a request (431
 *   headers too large, 400 malformed request, 408 timeout) get the same JSON
 *   error body as every other error.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { invariant } from '../actors/errors.ts';
import type { ErrorBody } from './schemas.ts';

export const REQUEST_ID_HEADER = 'x-request-id';

/** A client's request id is kept only if it is a short token (no log injection, no huge ids). */
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** The client's X-Request-Id if it is a sane token, else a new UUID. */
export function requestIdOf(request: IncomingMessage): string {
  const given = request.headers[REQUEST_ID_HEADER];
  return typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
}

/** How much of a client's URL an error message repeats. */
export const ECHO_CHARS_MAX = 64;

/** `text` cut to its first `max` characters, marked when cut. */
export function clip(text: string, max = ECHO_CHARS_MAX): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

/** fastify's own messages are fixed text, but some quote a header (a content type): bounded too. */
export const FRAMEWORK_MESSAGE_CHARS_MAX = 160;

/** Seconds a client waits before retrying a 503: an actor busy or recovering. */
export const RETRY_AFTER_UNAVAILABLE_S = 1;
/** Seconds before asking /readyz again: readiness changes on reconnects, not per request. */
export const RETRY_AFTER_NOT_READY_S = 5;

/** Routes added, at most this many (a limit on everything: the API has a dozen). */
const ROUTES_MAX = 1_000;

/**
 * Every route's path pattern and method, collected as routes are added, so
 * the not-found handler can tell a wrong method (405, with the methods that
 * exist) from a path that does not exist at all (404).
 */
export class RouteTable {
  readonly #routes: Array<{ pattern: RegExp; method: string }> = [];

  add(url: string, methods: string | string[]): void {
    invariant(this.#routes.length < ROUTES_MAX, `more than ${ROUTES_MAX} routes`);
    // ':id' matches one path segment; everything else is literal.
    const source = url
      .split('/')
      .map((part) => (part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/');
    const pattern = new RegExp(`^${source}$`);
    for (const method of [methods].flat()) this.#routes.push({ pattern, method });
  }

  /** The methods some route serves at `path` (no query), sorted; empty if none. */
  allowed(path: string): string[] {
    const methods = new Set<string>();
    for (const r of this.#routes) if (r.pattern.test(path)) methods.add(r.method);
    return [...methods].sort();
  }

  /** Records every route the app (and its plugins) adds from now on. */
  static track(app: FastifyInstance): RouteTable {
    const table = new RouteTable();
    app.addHook('onRoute', (route) => table.add(route.url, route.method));
    return table;
  }
}

/** Statuses Node's parser errors map to; anything else it raises is a 400. */
const PARSER_STATUS: Readonly<Record<string, number>> = {
  HPE_HEADER_OVERFLOW: 431,
  ERR_HTTP_REQUEST_TIMEOUT: 408,
};

/** The error body for a status, with the name fastify's handler uses too. */
export function errorBodyOf(statusCode: number, message: string): ErrorBody {
  const error = (STATUS_CODES[statusCode] ?? 'ERROR').toUpperCase().replace(/[^A-Z0-9]+/g, '_');
  return { error, message, statusCode };
}

/**
 * fastify's `clientErrorHandler`: the parser failed before any request
 * existed, so the reply is written on the socket by hand, then closed.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable) return; // the client is gone (ECONNRESET): nothing to answer
  const status = PARSER_STATUS[error.code ?? ''] ?? 400;
  const reason = STATUS_CODES[status] ?? 'Bad Request';
  const body = JSON.stringify(errorBodyOf(status, reason));
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}

/** Paths served before versioning, unprefixed: still answered, marked deprecated. */
const LEGACY_PREFIXES = ['/accounts/', '/block-orders/', '/consumer/stats'] as const;
const LEGACY = Symbol('blockfill.legacyPath');
const LINK_URL_CHARS_MAX = 200;

/**
 * fastify's `rewriteUrl`: an unversioned resource path (before `/api/v1`)
 * is served by its versioned route, so clients and scripts written against
 * it keep working; `legacyHeaders` then marks the reply deprecated.
 */
export function versionedUrlOf(prefix: string) {
  return (request: IncomingMessage): string => {
    const url = request.url ?? '/';
    if (!LEGACY_PREFIXES.some((p) => url.startsWith(p))) return url;
    (request as IncomingMessage & { [LEGACY]?: true })[LEGACY] = true;
    return `${prefix}${url}`;
  };
}

/** RFC 9745's Deprecation, and the successor's path, on a reply to an unversioned path. */
export function legacyHeaders(app: FastifyInstance, prefix: string): void {
  app.addHook('onRequest', async (request, reply) => {
    if (!(request.raw as IncomingMessage & { [LEGACY]?: true })[LEGACY]) return;
    reply.header('deprecation', 'true');
    // request.url is the rewritten (versioned) one already; a long one points at the prefix.
    const successor = request.url.length <= LINK_URL_CHARS_MAX ? request.url : prefix;
    reply.header('link', `<${successor}>; rel="successor-version"`);
  });
}
