/**
 * Records keyed by ids: read only own properties, so an id such as
 * "constructor" or "toString" never finds Object.prototype's member.
 */
export function own<V>(record: Readonly<Record<string, V>>, key: string): V | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}
