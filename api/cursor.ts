/**
 * Opaque keyset cursors: a list's name and the key its page ended at, as
 * base64url JSON. Opaque so a client never builds one; checked so a cursor of
 * another list, or a tampered one, is a 400 naming `cursor`, never a 500.
 */
import { ValidationError } from '../actors/errors.ts';
import { ID_PATTERN } from './schemas.ts';

/** Longer than any cursor we make (an id is at most 64 characters). */
export const CURSOR_CHARS_MAX = 200;
export const CURSOR_PATTERN = `^[A-Za-z0-9_-]{1,${CURSOR_CHARS_MAX}}$`;

const RULE = 'must be a cursor this list returned (opaque, unaltered)';
const KEY_PATTERN = new RegExp(ID_PATTERN);

export function encodeCursor(list: string, after: string | number): string {
  return Buffer.from(JSON.stringify([list, after]), 'utf8').toString('base64url');
}

function parsed(text: string): unknown {
  try {
    return JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw new ValidationError('cursor', RULE);
  }
}

/** The key a cursor of `list` carries; `kind` says which type it must be. */
export function decodeCursor(list: string, text: string, kind: 'string'): string;
export function decodeCursor(list: string, text: string, kind: 'seq'): number;
export function decodeCursor(list: string, text: string, kind: 'string' | 'seq'): string | number {
  if (text.length > CURSOR_CHARS_MAX) throw new ValidationError('cursor', RULE);
  const value = parsed(text);
  if (!Array.isArray(value) || value.length !== 2 || value[0] !== list)
    throw new ValidationError('cursor', RULE);
  const after: unknown = value[1];
  // An id as the API makes them: no NUL or other byte the database refuses in a comparison.
  if (kind === 'string' && typeof after === 'string' && KEY_PATTERN.test(after)) return after;
  if (kind === 'seq' && typeof after === 'number' && Number.isSafeInteger(after) && after >= 0)
    return after;
  throw new ValidationError('cursor', RULE);
}
