/** Calendar dates in queries: the pattern is the schema's, that the day exists is checked here. */
import { ValidationError } from '../actors/errors.ts';

export const DATE_PATTERN = '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$';

/** Epoch ms of a YYYY-MM-DD (already matching DATE_PATTERN) at 00:00 UTC; 400 for 2026-02-30. */
export function realDateMs(field: string, text: string): number {
  const ms = Date.parse(`${text}T00:00:00Z`);
  if (!Number.isFinite(ms) || new Date(ms).toISOString().slice(0, 10) !== text)
    throw new ValidationError(field, 'must be a real date (YYYY-MM-DD)');
  return ms;
}
