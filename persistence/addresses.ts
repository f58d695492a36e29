/**
 * Server addresses fit for an error message or a log line, and the errnos
 * that say a server cannot be reached at all. No dependencies: the database
 * handle and the configuration (NATS_URL too) both use it.
 */

/** Query parameters of a PostgreSQL URL that carry secrets. */
const SECRET_PARAMS = ['password', 'sslpassword'];

/**
 * Any text with credentials hidden, changing nothing else: the whole
 * user-info of a URL (a NATS user may be a token) and secret parameters.
 */
export function redactSecrets(value: string): string {
  return value
    .replace(/\/\/[^/@\s]*@/g, '//***@')
    .replace(
      /\b(ssl)?password=[^&\s]*/gi,
      (_, ssl: string | undefined) => `${ssl ?? ''}password=***`,
    );
}

/** One database URL with its password (and secret query parameters) as `***`; the role stays. */
function redactOne(value: string): string {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    return redactSecrets(value);
  }
  if (parsed.password) parsed.password = '***';
  for (const name of SECRET_PARAMS) {
    if (parsed.searchParams.has(name)) parsed.searchParams.set(name, '***');
  }
  return parsed.toString();
}

/**
 * A database URL, or a comma-separated list of them, fit for a log line:
 * the role stays (it says which role was refused), the password becomes
 * `***` (postgres://user:***@host:port/db), and so do secret parameters.
 */
export function redactUrl(value: string): string {
  return value.split(',').map(redactOne).join(',');
}

/** errno codes of a server that cannot be reached at all (nothing listens, no such host). */
export const UNREACHABLE_ERRNOS: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** An error's string `code` (an errno or a SQLSTATE), if it has one. */
export function errnoOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
