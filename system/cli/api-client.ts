/**
 * A thin client of the service's REST API (`/api/v1`): global fetch with a
 * timeout, the API key as a Bearer token on every call, and every non-2xx answer
 * turned into an ApiError carrying the one error shape
 * `{ error: CODE, message, field?, rule?, statusCode }` (api/schemas.ts ErrorBody).
 */
import { loadConfig } from '../config.ts';
import { httpUrl, stringOption, wholeNumber, type OptionSpec, type Parsed } from './args.ts';
import { CliFailure } from './output.ts';

export const API_PREFIX = '/api/v1';
export const DEFAULT_TIMEOUT_MS = 15_000;
const TIMEOUT_MS_MAX = 600_000;

export interface ApiClientOptions {
  /** Without a trailing slash: `http://127.0.0.1:3000`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer` on every call; null: none. */
  apiKey: string | null;
  timeoutMs: number;
}

export interface ApiErrorBody {
  code: string;
  message: string;
  field?: string;
  rule?: string;
}

export class ApiError extends CliFailure {
  readonly status: number;
  readonly error: ApiErrorBody;
  constructor(status: number, error: ApiErrorBody) {
    super(describeApiError(status, error), { code: error.code, json: { status, error } });
    this.name = 'ApiError';
    this.status = status;
    this.error = error;
  }
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface ApiRequest {
  method: 'GET' | 'POST';
  /** Under /api/v1, path segments already encoded: `/dead-letters/abc`. */
  path: string;
  query?: Query;
  /** POST: sent as JSON (`{}` when absent). */
  body?: unknown;
  /** How to read a 2xx body; default json. */
  accept?: 'json' | 'text';
}

export interface ApiResponse {
  status: number;
  body: unknown;
}

/** Options every API-backed command takes. */
export const API_OPTIONS: Record<string, OptionSpec> = {
  api: {
    type: 'string',
    valueName: 'url',
    description: 'API base URL (default $BLOCKFILL_API or http://127.0.0.1:$PORT)',
  },
  'timeout-ms': {
    type: 'string',
    valueName: 'ms',
    description: `give up on a request after this long (default ${DEFAULT_TIMEOUT_MS})`,
  },
};

/** `HTTP 409 BOOKING_EMPTY: nothing to book (field tradeDate: must be ...)` */
export function describeApiError(status: number, error: ApiErrorBody): string {
  const where =
    error.field || error.rule ? ` (field ${error.field ?? '-'}: ${error.rule ?? '-'})` : '';
  return `HTTP ${status} ${error.code}: ${error.message}${where}`;
}

/** The request URL: base + /api/v1 + path + the query's defined values. */
export function apiUrl(baseUrl: string, path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query))
    if (value !== undefined) params.set(key, String(value));
  const search = params.size > 0 ? `?${params.toString()}` : '';
  return `${baseUrl}${API_PREFIX}${path}${search}`;
}

/** One path segment, encoded (ids may hold characters a path cannot). */
export const segment = (value: string): string => encodeURIComponent(value);

/** The client options from the command line and the environment (loadConfig's variables). */
export function apiClientOptions(
  command: string,
  parsed: Parsed,
  env: Record<string, string | undefined>,
): ApiClientOptions {
  const config = loadConfig(env);
  const option = stringOption(parsed, 'api');
  const fromEnv = env.BLOCKFILL_API === '' ? undefined : env.BLOCKFILL_API;
  const baseUrl =
    option !== undefined
      ? httpUrl(command, '--api', option)
      : fromEnv !== undefined
        ? httpUrl(command, 'BLOCKFILL_API', fromEnv)
        : `http://127.0.0.1:${config.httpPort}`;
  const timeoutText = stringOption(parsed, 'timeout-ms');
  const timeoutMs =
    timeoutText === undefined
      ? DEFAULT_TIMEOUT_MS
      : wholeNumber(command, 'timeout-ms', timeoutText, 1, TIMEOUT_MS_MAX);
  return { baseUrl, apiKey: config.apiKey, timeoutMs };
}

/** What went wrong before any answer: unreachable, timed out. */
function transportFailure(error: unknown, url: string, options: ApiClientOptions): CliFailure {
  const e = error as { name?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError')
    return new CliFailure(
      `no answer from ${url} within ${options.timeoutMs} ms (--timeout-ms to wait longer)`,
      { code: 'TIMEOUT' },
    );
  const why = e.cause?.code ?? e.cause?.message ?? String(error);
  return new CliFailure(
    `cannot reach the API at ${options.baseUrl} (${why}): is the service running? ` +
      'Set --api or BLOCKFILL_API to its address',
    { code: 'API_UNREACHABLE', cause: error },
  );
}

/** The error shape of a non-2xx body, or one made from the status when the body is not it. */
function errorBodyOf(status: number, statusText: string, text: string): ApiErrorBody {
  try {
    // The API's one error shape: { error: CODE, message, field?, rule?, statusCode }.
    const e = JSON.parse(text) as {
      error?: unknown;
      message?: unknown;
      field?: unknown;
      rule?: unknown;
    };
    if (typeof e.error === 'string' && typeof e.message === 'string') {
      return {
        code: e.error,
        message: e.message,
        ...(typeof e.field === 'string' ? { field: e.field } : {}),
        ...(typeof e.rule === 'string' ? { rule: e.rule } : {}),
      };
    }
  } catch {
    // not JSON: described from the status below
  }
  const excerpt = text.trim().slice(0, 200);
  return { code: `HTTP_${status}`, message: excerpt || statusText || 'no message' };
}

/** Sends one request; a 2xx body as JSON (or text); anything else throws ApiError or CliFailure. */
export async function apiRequest(
  options: ApiClientOptions,
  request: ApiRequest,
): Promise<ApiResponse> {
  const url = apiUrl(options.baseUrl, request.path, request.query);
  const headers: Record<string, string> = {
    accept: request.accept === 'text' ? 'text/csv, text/plain, */*' : 'application/json',
  };
  // On every call: with API_KEY_READS=on the service asks for it on reads too.
  if (options.apiKey !== null) headers.authorization = `Bearer ${options.apiKey}`;
  let body: string | undefined;
  if (request.method === 'POST') {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(request.body ?? {});
  }
  let response: Response;
  let text: string;
  try {
    const signal = AbortSignal.timeout(options.timeoutMs);
    response = await fetch(url, { method: request.method, headers, body, signal });
    text = await response.text();
  } catch (error) {
    throw transportFailure(error, url, options);
  }
  if (!response.ok)
    throw new ApiError(response.status, errorBodyOf(response.status, response.statusText, text));
  if (request.accept === 'text') return { status: response.status, body: text };
  try {
    return { status: response.status, body: text === '' ? null : (JSON.parse(text) as unknown) };
  } catch {
    throw new CliFailure(`${request.method} ${url}: the answer is not JSON: ${text.slice(0, 200)}`);
  }
}
