// nact keeps its registry of running systems here; our host reads mailbox
// sizes and children through it. Untyped upstream.
declare module 'nact/lib/system-map.js' {
  const systemMap: { find(systemName: string, reference?: unknown): unknown };
  export default systemMap;
}
