/**
 * API fuzz: thousands of random and malformed requests to every route the app
 * serves (wrong types, huge strings, bad cursors, injection strings, broken
 * JSON, wrong methods, odd headers), then a few hundred raw malformed HTTP
 * requests over a real socket. Asserts: no 5xx (503 only from /readyz), every
 * error is the one JSON error shape, every reply has X-Request-Id, malformed
 * input is refused with a 4xx, and the service still answers correctly
 * afterwards (the state the fuzz must not touch reads exactly as before).
 *
 * Routes are discovered at run time (the OpenAPI document for paths, methods
 * and schemas; `printRoutes` for the routes hidden from it), so a new route is
 * fuzzed without editing this file. Fault injection routes are left out.
 *
 * Reproducible: FUZZ_SEED (default below; printed), FUZZ_REQUESTS (default
 * 3000), FUZZ_RAW_REQUESTS (default 200). The summary is written to
 * os.tmpdir()/blockfill-fuzz-summary.json.
 */
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import t from 'tap';
import type { FastifyInstance } from 'fastify';
import {
  accountView,
  blockOrderView,
  confirmedThrough,
  smallSeed,
  startTestService,
} from './helpers/harness.ts';

const DEFAULT_SEED = 0x5eedb10c;
const SEED = parseSeed(process.env.FUZZ_SEED) ?? DEFAULT_SEED;
const REQUESTS = positiveInt(process.env.FUZZ_REQUESTS) ?? 3000;
const RAW_REQUESTS = positiveInt(process.env.FUZZ_RAW_REQUESTS) ?? 200;
const CONCURRENCY = 12;
const RAW_CONCURRENCY = 8;
/** A reply that has not ended by then is a hang (except on streaming routes). */
const REPLY_TIMEOUT_MS = 5_000;
const RAW_TIMEOUT_MS = 3_000;
/** How long a reply of a streaming route is read before the fuzz moves on. */
const STREAM_WAIT_MS = 300;
const SUMMARY_PATH = join(tmpdir(), 'blockfill-fuzz-summary.json');
/** Failures kept in full for the report (all are counted). */
const FAILURES_KEPT = 40;

/** Read freely, never written to by the fuzz: their views must not change. */
const PROTECTED_IDS: ReadonlySet<string> = new Set(['BUY1', 'A2', 'A3', 'F1', 'F2']);
const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
const READ_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);
const BODY_PARSED_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH']);

function parseSeed(text: string | undefined): number | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const n = Number(text.trim());
  if (!Number.isFinite(n)) throw new Error(`FUZZ_SEED must be a number, got ${text}`);
  return n >>> 0;
}

function positiveInt(text: string | undefined): number | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new Error(`expected a non-negative integer: ${text}`);
  return n;
}

// ---------------------------------------------------------------- randomness

/** mulberry32: tiny, fast, good enough for fuzzing, and the same everywhere. */
class Rng {
  #a: number;
  constructor(seed: number) {
    this.#a = seed >>> 0;
  }
  next(): number {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0;
    let x = this.#a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  between(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from nothing');
    return items[this.int(items.length)] as T;
  }
  weighted<T>(items: ReadonlyArray<readonly [T, number]>): T {
    const total = items.reduce((s, [, w]) => s + w, 0);
    let r = this.next() * total;
    for (const [item, w] of items) if ((r -= w) < 0) return item;
    return items[items.length - 1]![0];
  }
  alnum(length: number): string {
    const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    let s = '';
    for (let i = 0; i < length; i++) s += abc[this.int(abc.length)];
    return s;
  }
  /** Any UTF-16 code units, lone surrogates and controls included. */
  unicode(length: number): string {
    let s = '';
    for (let i = 0; i < length; i++) {
      s += this.chance(0.3)
        ? String.fromCharCode(this.int(0x20))
        : this.chance(0.2)
          ? String.fromCodePoint(0x1f300 + this.int(0x300))
          : String.fromCharCode(this.int(0xffff));
    }
    return s;
  }
  bytes(length: number): Buffer {
    const b = Buffer.alloc(length);
    for (let i = 0; i < length; i++) b[i] = this.int(256);
    return b;
  }
}

// ------------------------------------------------------------ hostile values

const HOSTILE_STRINGS: readonly string[] = [
  '',
  ' ',
  'x'.repeat(10_000),
  'x'.repeat(257),
  'A'.repeat(64),
  'A'.repeat(65),
  '../',
  '../../../../etc/passwd',
  '..',
  '.',
  '%00',
  '\u0000',
  'A1\u0000',
  "' OR 1=1 --",
  "A1' OR '1'='1",
  '"; DROP TABLE journal; --',
  'A1; SELECT pg_sleep(10)',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  '${jndi:ldap://x/a}',
  '{{7*7}}',
  '$(id)',
  '`id`',
  '| id',
  '0',
  '-1',
  '-0',
  '1.5',
  '1e309',
  '-1e309',
  '1e-400',
  '0x10',
  '9007199254740993',
  '99999999999999999999999999999999',
  '-99999999999999999999',
  'NaN',
  'Infinity',
  'null',
  'undefined',
  'true',
  'false',
  '[]',
  '{}',
  '[object Object]',
  '😀',
  '💣'.repeat(300),
  'Ａ１',
  'é',
  'A\u0301',
  '\u202eA1',
  '\ufeffA1',
  '\r\n',
  'A1\r\nX-Injected: 1',
  '\t',
  '\u0001\u0002\u001f',
  '\ud800',
  '%',
  '%%',
  '%ZZ',
  '%E0%A4%A',
  '%2e%2e%2f',
  '\\',
  '\\..\\..\\',
  '/',
  '//',
  '?',
  '#',
  '&',
  '=',
  ';',
  ',',
  '*',
  ':id',
  'A1 ',
  ' A1',
  'a1',
  'A1\n',
  'A1.json',
  'A-1',
  '_A1',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'A1',
  'A4',
  'BUY1',
  'SELL1',
  'SEC1',
  'NOPE1',
];

const BAD_CURSORS_FIXED: readonly string[] = [
  'null',
  '[]',
  '{}',
  '',
  '-1',
  '0',
  '1e309',
  '0x10',
  '%00',
  '=',
  '====',
  'AAAA',
  '!!!!',
  'eyJ9',
  'eyJzZXEiOi0xfQ',
  'eyJzZXEiOiIxZTMwOSJ9',
  'eyJfX3Byb3RvX18iOnsiYSI6MX19',
  'A'.repeat(5_000),
];

// ------------------------------------------------------------ loose JSON access

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const asObj = (v: unknown): Json => (isObj(v) ? v : {});
const asArr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const asStr = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const asNum = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

function truncate(text: string, max = 300): string {
  return text.length <= max ? text : `${text.slice(0, max)}…(${text.length} chars)`;
}

// ------------------------------------------------------------ route discovery

interface ParamSpec {
  name: string;
  in: 'path' | 'query' | 'header';
  required: boolean;
  schema: Json | undefined;
}

interface Operation {
  method: string;
  /** fastify's form: /api/v1/accounts/:id */
  template: string;
  segments: Array<{ literal: string } | { param: string; wildcard: boolean }>;
  params: ParamSpec[];
  body: Json | undefined;
  documented: boolean;
  stream: boolean;
  write: boolean;
}

function segmentsOf(template: string): Operation['segments'] {
  return template.split('/').map((part) => {
    if (part === '*') return { param: '*', wildcard: true };
    if (part.startsWith(':')) return { param: part.slice(1).replace(/\(.*$/, ''), wildcard: false };
    return { literal: part };
  });
}

/** `app.printRoutes({ commonPrefix: false })`'s tree, as full paths with their methods. */
function parseRouteTree(text: string): Array<{ path: string; methods: string[] }> {
  const out: Array<{ path: string; methods: string[] }> = [];
  const stack: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^(.*?)(?:├── |└── )(.*)$/u.exec(line);
    if (!m) continue;
    const depth = Math.round([...(m[1] ?? '')].length / 4);
    const rest = (m[2] ?? '').trim();
    const r = /^(.*?)(?: \(([A-Z][A-Z, -]*)\))?(?: \{.*\})?$/u.exec(rest);
    const part = r?.[1] ?? rest;
    const path = `${depth > 0 ? (stack[depth - 1] ?? '') : ''}${part}`;
    stack[depth] = path;
    stack.length = depth + 1;
    const methods = (r?.[2] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (methods.length > 0) out.push({ path, methods });
  }
  return out;
}

function deref(doc: Json, schema: unknown, depth = 0): Json | undefined {
  if (!isObj(schema)) return undefined;
  const ref = asStr(schema.$ref);
  if (ref === undefined || depth > 20) return schema;
  const target = ref
    .replace(/^#\//, '')
    .split('/')
    .reduce<unknown>((node, key) => asObj(node)[key.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
  return deref(doc, target, depth + 1);
}

/** Every route but fault injection: the OpenAPI document's, plus the router's hidden ones. */
async function discoverOperations(app: FastifyInstance): Promise<{
  operations: Operation[];
  doc: Json;
}> {
  const res = await app.inject({ method: 'GET', url: '/docs/json' });
  const doc: Json = res.statusCode === 200 ? asObj(res.json()) : {};
  const byKey = new Map<string, Operation>();
  const excluded = (template: string) => /(^|\/)faults?(\/|$)/.test(template);

  for (const [oaPath, item] of Object.entries(asObj(doc.paths))) {
    const template = oaPath.replace(/\{([^}]+)\}/g, ':$1');
    if (excluded(template)) continue;
    const shared = asArr(asObj(item).parameters);
    for (const [method, rawOp] of Object.entries(asObj(item))) {
      if (!(ALL_METHODS as readonly string[]).includes(method.toUpperCase())) continue;
      const op = asObj(rawOp);
      const params: ParamSpec[] = [...shared, ...asArr(op.parameters)]
        .map((p) => deref(doc, p) ?? {})
        .filter((p) => ['path', 'query', 'header'].includes(String(p.in)))
        .map((p) => ({
          name: String(p.name),
          in: p.in as ParamSpec['in'],
          required: p.required === true,
          schema: deref(doc, p.schema),
        }));
      const content = asObj(asObj(deref(doc, op.requestBody)).content);
      const jsonType = Object.keys(content).find((ct) => /json/i.test(ct));
      const body = jsonType === undefined ? undefined : deref(doc, asObj(content[jsonType]).schema);
      const responses = JSON.stringify(op.responses ?? {});
      const upper = method.toUpperCase();
      byKey.set(`${upper} ${template}`, {
        method: upper,
        template,
        segments: segmentsOf(template),
        params,
        body,
        documented: true,
        stream: /stream/i.test(template) || /event-stream|websocket/i.test(responses),
        write: !READ_METHODS.has(upper),
      });
    }
  }

  const tree = app.printRoutes({ commonPrefix: false, includeHooks: false, includeMeta: false });
  for (const { path, methods } of parseRouteTree(tree)) {
    if (excluded(path)) continue;
    for (const method of methods) {
      const key = `${method} ${path}`;
      if (byKey.has(key) || !(ALL_METHODS as readonly string[]).includes(method)) continue;
      // HEAD of a documented GET: the GET's parameters.
      const twin = method === 'HEAD' ? byKey.get(`GET ${path}`) : undefined;
      byKey.set(key, {
        method,
        template: path,
        segments: segmentsOf(path),
        params: twin?.params ?? [],
        body: undefined,
        documented: twin?.documented ?? false,
        stream: twin?.stream ?? /stream/i.test(path),
        write: !READ_METHODS.has(method),
      });
    }
  }
  const operations = [...byKey.values()].sort((a, b) =>
    `${a.template} ${a.method}`.localeCompare(`${b.template} ${b.method}`),
  );
  return { operations, doc };
}

// ------------------------------------------------------------ schema-driven values

interface GenContext {
  rng: Rng;
  doc: Json;
  /** A write: never name a protected id. */
  write: boolean;
  /** Cursors lists returned, all of them (for tampering) and by route (for valid pages). */
  cursors: string[];
  cursorsByRoute: Map<string, string[]>;
  /** Ids seen in replies (dead letters, fills...), so valid requests find real things. */
  ids: string[];
}

/** Values that suit a field, by its name (and, for a path's `:id`, the segment before it). */
function hintsFor(name: string, ctx: GenContext): string[] {
  const n = name.toLowerCase();
  const ids = (all: string[]) => (ctx.write ? all.filter((id) => !PROTECTED_IDS.has(id)) : all);
  if (/block.?order|order/.test(n)) return ids(['BUY1', 'SELL1', 'NOPE1', 'FZ1']);
  if (/account|portfolio/.test(n)) return ids(['A1', 'A2', 'A3', 'A4', 'NOPE1']);
  if (/security|instrument/.test(n)) return ['SEC1', 'NOPE1'];
  if (/^(fill|amendment|execution|dead.?letter|booking|message)?_?id$|fillid|amendmentid/.test(n))
    return ids(['F1', 'F2', `FZ${ctx.rng.alnum(8)}`, '1', 'NOPE1', ...ctx.ids.slice(0, 8)]);
  if (/seq/.test(n)) return ['1', '2', '3', '4', '99'];
  if (/quantity|qty/.test(n)) return ['100', '10', '1000'];
  if (/price/.test(n)) return ['101.25', '101.250000', '99.5'];
  if (/venue/.test(n)) return ['XNYS', 'XNAS'];
  if (/side/.test(n)) return ['BUY', 'SELL'];
  if (/kind|type/.test(n)) return ['FILL', 'BUST', 'CORRECTION', 'CANCEL'];
  if (/date/.test(n)) return ['2026-11-20'];
  if (/ms$|time|at$/.test(n)) return ['1000', '2000'];
  if (/limit|size|count/.test(n)) return ['1', '2', '10', '100', '500'];
  if (/cursor|token/.test(n)) return ctx.cursors.slice(0, 8);
  if (/after|before|offset|page/.test(n)) return ['0', '1', '2'];
  if (/status|state/.test(n)) return ['NEW', 'PARTIALLY_FILLED', 'FILLED', 'CANCELLED', 'OPEN'];
  if (/actor/.test(n)) return ids(['A1', 'A4', 'SELL1', 'BUY1', 'account', 'block-order']);
  if (/id$/.test(n)) return ids(['1', '2', 'NOPE1', ...ctx.ids.slice(0, 8)]);
  return [];
}

const GENERIC_STRINGS = [
  'A1',
  'A4',
  'SELL1',
  'SEC1',
  'NOPE1',
  '0',
  '1',
  '2',
  '42',
  '100',
  '500',
  '101.250000',
  '101.25',
  '2026-11-20',
  '2026-11-20T00:00:00.000Z',
  'BUY',
  'SELL',
  'true',
  'x',
];

function unicodeLength(text: string): number {
  return [...text].length;
}

/** True when `value` (a string as the server sees it) certainly breaks `schema`. */
function stringViolates(schema: Json | undefined, value: string): boolean {
  if (schema === undefined) return false;
  const type = schema.type;
  if (type === 'integer' || type === 'number' || type === 'boolean') {
    // Query strings are not coerced (coerceTypes: false), but a schema may still say so: unsure.
    return false;
  }
  if (type !== undefined && type !== 'string') return false;
  const pattern = asStr(schema.pattern);
  if (pattern !== undefined) {
    try {
      if (!new RegExp(pattern, 'u').test(value)) return true;
    } catch {
      return false;
    }
  }
  const en = asArr(schema.enum);
  if (en.length > 0 && !en.includes(value)) return true;
  if (schema.const !== undefined && schema.const !== value) return true;
  const min = asNum(schema.minLength);
  const max = asNum(schema.maxLength);
  if (min !== undefined && unicodeLength(value) < min) return true;
  if (max !== undefined && unicodeLength(value) > max) return true;
  return false;
}

function validString(schema: Json, name: string, ctx: GenContext): string {
  const enumValues = asArr(schema.enum).filter((v): v is string => typeof v === 'string');
  if (enumValues.length > 0) return ctx.rng.pick(enumValues);
  if (typeof schema.const === 'string') return schema.const;
  const hinted = hintsFor(name, ctx);
  const candidates = [...hinted, ...GENERIC_STRINGS].filter(
    (c) => !(ctx.write && PROTECTED_IDS.has(c)) && !stringViolates(schema, c),
  );
  const preferred = candidates.filter((c) => hinted.includes(c));
  if (preferred.length > 0 && ctx.rng.chance(0.85)) return ctx.rng.pick(preferred);
  if (candidates.length > 0) return ctx.rng.pick(candidates);
  const min = asNum(schema.minLength) ?? 1;
  const max = Math.max(min, Math.min(asNum(schema.maxLength) ?? 12, 12));
  return ctx.rng.alnum(ctx.rng.between(min, max));
}

function validNumber(schema: Json, name: string, ctx: GenContext, integer: boolean): number {
  const min = asNum(schema.minimum) ?? asNum(schema.exclusiveMinimum) ?? 0;
  const max = asNum(schema.maximum) ?? asNum(schema.exclusiveMaximum) ?? min + 1000;
  const hinted = hintsFor(name, ctx)
    .map(Number)
    .filter((n) => Number.isFinite(n) && n >= min && n <= max && (!integer || Number.isInteger(n)));
  if (hinted.length > 0 && ctx.rng.chance(0.8)) return ctx.rng.pick(hinted);
  const lo = Math.ceil(min);
  const hi = Math.floor(Math.min(max, lo + 100));
  return hi >= lo ? ctx.rng.between(lo, hi) : lo;
}

/** A value the schema accepts, as far as can be told (patterns from a pool of candidates). */
function sampleValid(schemaIn: unknown, name: string, ctx: GenContext, depth = 0): unknown {
  const schema = deref(ctx.doc, schemaIn);
  if (schema === undefined || depth > 8) return validString({}, name, ctx);
  if (schema.const !== undefined) return schema.const;
  const en = asArr(schema.enum);
  if (en.length > 0) return ctx.rng.pick(en);
  const alternatives = asArr(schema.anyOf ?? schema.oneOf);
  if (alternatives.length > 0) {
    const nonNull = alternatives.filter((a) => asObj(deref(ctx.doc, a)).type !== 'null');
    return sampleValid(
      ctx.rng.pick(nonNull.length > 0 ? nonNull : alternatives),
      name,
      ctx,
      depth + 1,
    );
  }
  const all = asArr(schema.allOf);
  if (all.length > 0) {
    const merged: Json = {};
    for (const part of all) Object.assign(merged, deref(ctx.doc, part));
    return sampleValid(merged, name, ctx, depth + 1);
  }
  const types = [schema.type].flat().filter((x) => x !== 'null');
  const type =
    types.length > 0 ? String(ctx.rng.pick(types)) : isObj(schema.properties) ? 'object' : '';
  switch (type) {
    case 'string':
      return validString(schema, name, ctx);
    case 'integer':
      return validNumber(schema, name, ctx, true);
    case 'number':
      return validNumber(schema, name, ctx, false);
    case 'boolean':
      return ctx.rng.chance(0.5);
    case 'null':
      return null;
    case 'array': {
      const min = asNum(schema.minItems) ?? 0;
      const max = Math.max(min, Math.min(asNum(schema.maxItems) ?? 3, 3));
      return Array.from({ length: ctx.rng.between(Math.max(min, 1), max) }, () =>
        sampleValid(schema.items, name, ctx, depth + 1),
      );
    }
    case 'object': {
      const out: Json = {};
      const required = new Set(asArr(schema.required).map(String));
      for (const [key, sub] of Object.entries(asObj(schema.properties))) {
        if (required.has(key) || ctx.rng.chance(0.5))
          out[key] = sampleValid(sub, key, ctx, depth + 1);
      }
      if (isObj(schema.additionalProperties) && Object.keys(out).length === 0)
        out[ctx.rng.pick(['SEC1', 'A4', 'k'])] = sampleValid(
          schema.additionalProperties,
          'value',
          ctx,
          depth + 1,
        );
      return out;
    }
    default:
      // Unconstrained ("any JSON", checked by the handler): most likely an execution.
      return Object.keys(schema).every((k) => /^(description|title|default|examples?)$/.test(k)) &&
        ctx.rng.chance(0.7)
        ? executionLike(ctx, ctx.rng.chance(0.3))
        : validString(schema, name, ctx);
  }
}

/** An execution as a JSON producer would send it (system/execution-json.ts), never for BUY1. */
function executionLike(ctx: GenContext, mutate = true): Json {
  const { rng } = ctx;
  const kind = rng.weighted([
    [undefined, 6],
    ['BUST', 1],
    ['CORRECTION', 1],
    ['CANCEL', 1],
  ] as const);
  const e: Json = {
    ...(kind === undefined
      ? { fillId: `FZ${rng.alnum(8)}` }
      : { kind, amendmentId: `FZ${rng.alnum(8)}` }),
    blockOrderId: rng.pick(['SELL1', 'NOPE1', `FZ${rng.alnum(4)}`]),
    seq: rng.between(1, 5),
    quantity: rng.pick(['100', '10', 100, '1000']),
    price: rng.pick(['101.25', '101.250000', '99.5']),
    venue: rng.pick(['XNYS', 'XNAS']),
    executedAtMs: rng.between(1, 10_000),
  };
  if (kind === 'BUST' || kind === 'CORRECTION') e.fillId = `FZ${rng.alnum(8)}`;
  return mutate ? mutateObject(e, ctx) : e;
}

/** A few random edits: wrong types, extremes, missing and unknown fields. */
function mutateObject(input: Json, ctx: GenContext): Json {
  const { rng } = ctx;
  const out: Json = { ...input };
  const keys = Object.keys(out);
  for (let i = rng.int(3); i > 0; i--) {
    const key = rng.pick(keys.length > 0 ? keys : ['x']);
    switch (rng.int(7)) {
      case 0:
        delete out[key];
        break;
      case 1:
        out[key] = rng.pick<unknown>([null, true, [], {}, 1.5, -1, 0, 2 ** 64, -(2 ** 53) - 2, '']);
        break;
      case 2:
        out[key] = rng.pick(HOSTILE_STRINGS.filter((s) => !PROTECTED_IDS.has(s)));
        break;
      case 3:
        out[rng.pick(['extra', 'v', 'blockorderid', 'seq ', 'Quantity', rng.alnum(6)])] = 1;
        break;
      case 4:
        out[key] = String(out[key]).repeat(rng.between(2, 50));
        break;
      case 5:
        out[key] = rng.pick(['1e309', '-5', '0', '0.0000001', '101.1234567', '٣', '1_000']);
        break;
      default:
        out[key] = { nested: out[key] };
    }
  }
  return out;
}

// ------------------------------------------------------------ requests

interface FuzzRequest {
  n: number;
  /** For the per-route counts: "METHOD /template", or "* (unrouted)". */
  key: string;
  category: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string;
  /** Why the request must be refused with a 4xx; undefined: any status below 500. */
  reject?: string;
  stream: boolean;
  wrongMethod: boolean;
  echoRequestId?: string;
}

function encodeSegment(value: string, rng: Rng): { text: string; decoded?: string } {
  const mode = rng.weighted([
    ['encoded', 8],
    ['raw', 1.5],
    ['double', 0.5],
  ] as const);
  try {
    if (mode === 'encoded') return { text: encodeURIComponent(value), decoded: value };
    if (mode === 'double') {
      const once = encodeURIComponent(value);
      return { text: encodeURIComponent(once), decoded: once };
    }
  } catch {
    // a lone surrogate: not encodable, sent as it is
  }
  return /^[A-Za-z0-9_-]*$/.test(value) ? { text: value, decoded: value } : { text: value };
}

function hostileString(rng: Rng, write: boolean): string {
  const fixed = () => rng.pick(HOSTILE_STRINGS.filter((s) => !(write && PROTECTED_IDS.has(s))));
  return rng.weighted<() => string>([
    [fixed, 8],
    [() => rng.unicode(rng.between(1, 40)), 1],
    [() => rng.alnum(rng.between(60, 300)), 0.5],
    [() => String(rng.int(2 ** 31) - 2 ** 30), 0.5],
    [() => `${rng.next() * 1e6}`, 0.3],
  ])();
}

function badCursor(ctx: GenContext): string {
  const { rng } = ctx;
  const harvested = ctx.cursors.length > 0 ? rng.pick(ctx.cursors) : '1';
  return rng.weighted<() => string>([
    [() => rng.pick(BAD_CURSORS_FIXED), 4],
    [() => rng.bytes(rng.between(1, 48)).toString('base64'), 2],
    [() => rng.bytes(rng.between(1, 48)).toString('base64url'), 1],
    [() => harvested.slice(0, Math.max(0, harvested.length - rng.between(1, 4))), 1],
    [
      () => {
        const i = rng.int(Math.max(1, harvested.length));
        return `${harvested.slice(0, i)}${rng.alnum(1)}${harvested.slice(i + 1)}`;
      },
      1,
    ],
    [() => `${harvested}${rng.pick(['=', '==', '%3D', '.', 'x', '%00'])}`, 1],
    [
      () =>
        Buffer.from(JSON.stringify({ seq: rng.pick([-1, 1e308, 'x', null]) })).toString('base64'),
      1,
    ],
    [() => hostileString(rng, true), 1],
  ])();
}

function buildPath(
  op: Operation,
  ctx: GenContext,
  hostile: boolean,
): { path: string; reject?: string } {
  const { rng } = ctx;
  const paramSegments = op.segments.filter((s) => 'param' in s);
  const targets = new Set<string>();
  if (hostile && paramSegments.length > 0) {
    for (const s of paramSegments) if (rng.chance(0.3)) targets.add(s.param);
    if (targets.size === 0) targets.add(rng.pick(paramSegments).param);
  }
  let reject: string | undefined;
  const parts = op.segments.map((s, i) => {
    if ('literal' in s) return s.literal;
    const spec = op.params.find((p) => p.in === 'path' && p.name === s.param);
    const literal = op.segments
      .slice(0, i)
      .reverse()
      .find((x): x is { literal: string } => 'literal' in x && x.literal !== '');
    const hintName = literal ? `${literal.literal} ${s.param}` : s.param;
    if (!targets.has(s.param)) {
      if (s.wildcard)
        return rng.pick(['', 'index.html', 'static/index.html', 'json', 'swagger-initializer.js']);
      const value = spec?.schema
        ? String(sampleValid(spec.schema, hintName, ctx))
        : validString({}, hintName, ctx);
      return encodeURIComponent(value);
    }
    const value = hostileString(rng, ctx.write);
    const { text, decoded } = encodeSegment(value, rng);
    if (!s.wildcard) {
      if (text === '') reject ??= `empty path parameter ${s.param}`;
      else if (decoded !== undefined && stringViolates(spec?.schema, decoded))
        reject ??= `path parameter ${s.param} breaks its schema`;
    }
    return text;
  });
  return { path: parts.join('/') || '/', ...(reject ? { reject } : {}) };
}

function buildQuery(
  op: Operation,
  ctx: GenContext,
  hostile: boolean,
): { qs: string; reject?: string } {
  const { rng } = ctx;
  const declared = op.params.filter((p) => p.in === 'query');
  const pairs: Array<[string, string]> = [];
  for (const p of declared) {
    if (!p.required && !rng.chance(0.5)) continue;
    if (/cursor|token/i.test(p.name)) {
      const own = ctx.cursorsByRoute.get(op.template) ?? [];
      if (own.length > 0) pairs.push([p.name, rng.pick(own)]);
      else if (p.required) pairs.push([p.name, badCursor(ctx)]);
      continue;
    }
    pairs.push([p.name, String(sampleValid(p.schema, p.name, ctx))]);
  }
  if (!hostile) return { qs: pairs.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&') };

  let reject: string | undefined;
  const raw: string[] = [];
  for (let i = rng.between(1, 3); i > 0; i--) {
    const p = declared.length > 0 && rng.chance(0.7) ? rng.pick(declared) : undefined;
    const kind = rng.int(9);
    if (p && kind <= 2) {
      // a declared parameter with a hostile or wrongly typed value
      const value = rng.chance(0.5) ? hostileString(rng, ctx.write) : badCursor(ctx);
      const idx = pairs.findIndex(([k]) => k === p.name);
      if (idx >= 0) pairs.splice(idx, 1);
      pairs.push([p.name, value]);
      if (stringViolates(p.schema, value)) reject ??= `query ${p.name} breaks its schema`;
    } else if (p && kind === 3) {
      // repeated: an array where the schema wants one value
      const a = String(sampleValid(p.schema, p.name, ctx));
      raw.push(`${p.name}=${encodeURIComponent(a)}&${p.name}=${encodeURIComponent(a)}`);
      const idx = pairs.findIndex(([k]) => k === p.name);
      if (idx >= 0) pairs.splice(idx, 1);
      const type = asObj(p.schema).type;
      if (typeof type === 'string' && type !== 'array') reject ??= `query ${p.name} repeated`;
    } else if (p && kind === 4) {
      raw.push(p.name); // a key with no value and no '='
      if (!pairs.some(([k]) => k === p.name) && stringViolates(p.schema, ''))
        reject ??= `query ${p.name} empty`;
    } else if (kind <= 5) {
      pairs.push([
        rng.pick(['cursor', 'after', 'before', 'pageToken', 'page', 'offset', 'limit']),
        badCursor(ctx),
      ]);
    } else if (kind === 6) {
      pairs.push([
        rng.pick(['x', 'foo', 'sort', 'filter', 'fields', rng.alnum(8)]),
        hostileString(rng, true),
      ]);
    } else if (kind === 7) {
      raw.push(
        rng.pick([
          '__proto__[polluted]=1',
          '__proto__=x',
          'constructor[prototype][polluted]=1',
          'constructor=x',
          'a[b][c]=1',
          'a[]=1&a[]=2',
          '&&&',
          '=',
          '=x',
          '%ZZ=1',
          'x=%ZZ',
          `${'k'.repeat(5000)}=1`,
          `x=${'v'.repeat(10_000)}`,
          'x=1;y=2',
          'x=%00',
          'x=%0d%0aSet-Cookie:a=b',
        ]),
      );
    } else {
      raw.push(Array.from({ length: rng.between(50, 400) }, (_, j) => `k${j}=${j}`).join('&'));
    }
  }
  const qs = [...pairs.map(([k, v]) => `${encodeURIComponent(k)}=${safeEncode(v)}`), ...raw].join(
    '&',
  );
  return { qs, ...(reject ? { reject } : {}) };
}

function safeEncode(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return value;
  }
}

const BROKEN_JSON: readonly string[] = [
  '{',
  '}',
  '{"a":',
  '{"a" 1}',
  "{'a':1}",
  '{"a":1,}',
  '[1,2,',
  '{"a":NaN}',
  '{"a":undefined}',
  '{"a":0x10}',
  '{"a":.5}',
  '{"a":01}',
  '{a:1}',
  '"unterminated',
  'nul',
  'tru',
  '\u0000',
  '{"a":"\u0001"}',
  '// comment\n{}',
  '{"a":1}{"b":2}',
  '{"a":1} x',
  '<xml/>',
  'a=1&b=2',
  '\u0000{}',
];

function bodyFor(
  op: Operation,
  ctx: GenContext,
  hostile: boolean,
): { payload?: string; contentType?: string; reject?: string } {
  const { rng } = ctx;
  const json = 'application/json';
  const parsed = BODY_PARSED_METHODS.has(op.method);
  const valid = () => (op.body ? sampleValid(op.body, 'body', ctx) : executionLike(ctx));
  if (!hostile) {
    if (!op.body && rng.chance(0.5)) return {};
    return { payload: JSON.stringify(valid()), contentType: json };
  }
  const bodyType = asObj(op.body).type;
  const variant = rng.int(14);
  switch (variant) {
    case 0:
    case 1:
      return {
        payload: rng.pick(BROKEN_JSON),
        contentType: rng.pick([json, 'application/json; charset=utf-8']),
        ...(parsed ? { reject: 'broken JSON' } : {}),
      };
    case 2:
      return { payload: '', contentType: json, ...(parsed ? { reject: 'empty JSON body' } : {}) };
    case 3:
      return {
        payload: rng.chance(0.5) ? JSON.stringify(valid()) : '<a>1</a>',
        contentType: rng.pick([
          'application/xml',
          'multipart/form-data; boundary=x',
          'application/x-www-form-urlencoded',
          'image/png',
          'application/octet-stream',
        ]),
        ...(parsed ? { reject: 'unsupported content type' } : {}),
      };
    case 4:
      return {
        payload: rng.chance(0.5) ? JSON.stringify(valid()) : rng.pick(BROKEN_JSON),
        contentType: rng.pick([
          'text/plain',
          'application/json; charset=latin1',
          'application/json; charset=utf-16',
          'APPLICATION/JSON',
          'application/json;;;',
          'application/vnd.api+json',
          ';',
          'json',
          `application/json; x=${'y'.repeat(2000)}`,
        ]),
      };
    case 5: {
      const depth = rng.between(500, 7_000);
      const payload = rng.chance(0.5)
        ? `${'['.repeat(depth)}${']'.repeat(depth)}`
        : `${'{"a":'.repeat(Math.floor(depth / 2))}1${'}'.repeat(Math.floor(depth / 2))}`;
      return { payload, contentType: json };
    }
    case 6: {
      // more than 100 items: a batch too long, and past the body limit or not
      const items = Array.from({ length: rng.between(101, 400) }, () =>
        rng.chance(0.5) ? 1 : { seq: 1 },
      );
      const payload = JSON.stringify(rng.chance(0.5) ? items : { executions: items });
      return {
        payload,
        contentType: json,
        ...(parsed && payload.length > 64 * 1024 ? { reject: 'body too large' } : {}),
      };
    }
    case 7: {
      const payload = JSON.stringify({ x: 'x'.repeat(rng.between(70_000, 200_000)) });
      return { payload, contentType: json, ...(parsed ? { reject: 'body too large' } : {}) };
    }
    case 8:
      return {
        payload: rng.pick([
          '{"__proto__":{"polluted":"yes"}}',
          '{"constructor":{"prototype":{"polluted":"yes"}}}',
          `{"fillId":"F","blockOrderId":"SELL1","__proto__":{"isAdmin":true}}`,
          '[{"__proto__":{"polluted":"yes"}}]',
          '{"a":{"b":{"__proto__":{"polluted":"yes"}}}}',
          '{"constructor":"x","prototype":"y","toString":"z","hasOwnProperty":1}',
        ]),
        contentType: json,
      };
    case 9: {
      // a valid body, mutated where the schema says so clearly
      if (op.body && bodyType === 'object') {
        const sample = asObj(valid());
        const required = asArr(op.body.required).map(String);
        const props = asObj(op.body.properties);
        const typed = Object.keys(sample).filter(
          (k) => typeof asObj(deref(ctx.doc, props[k])).type === 'string',
        );
        const pick = rng.int(3);
        if (pick === 0 && required.length > 0) {
          const k = rng.pick(required);
          delete sample[k];
          return {
            payload: JSON.stringify(sample),
            contentType: json,
            ...(parsed ? { reject: `required ${k} missing` } : {}),
          };
        }
        if (pick === 1 && typed.length > 0) {
          const k = rng.pick(typed);
          const type = String(asObj(deref(ctx.doc, props[k])).type);
          sample[k] =
            type === 'string'
              ? rng.pick<unknown>([1, true, [], {}])
              : rng.pick<unknown>(['1', 'x', [], {}]);
          if (sample[k] !== null && type === 'object' && isObj(sample[k])) sample[k] = 'x';
          return {
            payload: JSON.stringify(sample),
            contentType: json,
            ...(parsed ? { reject: `${k} of a wrong type` } : {}),
          };
        }
        if (op.body.additionalProperties === false) {
          sample[`unknown_${rng.alnum(4)}`] = 1;
          return {
            payload: JSON.stringify(sample),
            contentType: json,
            ...(parsed ? { reject: 'unknown property' } : {}),
          };
        }
      }
      return { payload: JSON.stringify(mutateObject(asObj(valid()), ctx)), contentType: json };
    }
    case 10: {
      const payload = rng.pick(['null', '42', '"s"', 'true', '[]', '0', '-1', '1e309', '""']);
      // A nullable body (no body at all means the same) takes null.
      const nullable = payload === 'null' && asObj(op.body).nullable === true;
      const reject =
        parsed && op.body && bodyType === 'object' && !nullable
          ? 'a JSON scalar where an object is due'
          : undefined;
      return { payload, contentType: json, ...(reject ? { reject } : {}) };
    }
    case 11:
      return {
        payload: JSON.stringify(
          Array.from({ length: rng.between(1, 120) }, () => executionLike(ctx)),
        ),
        contentType: json,
      };
    case 12:
      return { payload: JSON.stringify(executionLike(ctx)), contentType: json };
    default: {
      const text = JSON.stringify(valid());
      // exact numbers that JSON cannot carry, spliced into a valid body
      return {
        payload: text.replace(
          /:(\d+)/,
          `:${rng.pick(['1e309', '-0', '9007199254740993', '1.0000000000000002', '-1e-400'])}`,
        ),
        contentType: json,
      };
    }
  }
}

function oddHeaders(rng: Rng): Record<string, string> {
  const h: Record<string, string> = {};
  for (let i = rng.between(1, 3); i > 0; i--) {
    switch (rng.int(12)) {
      case 0:
        h['x-fuzz'] = 'h'.repeat(rng.between(8_000, 64_000));
        break;
      case 1:
        h['x-request-id'] = rng.pick([
          '',
          ' ',
          'a\nb',
          'a\r\nX-Injected: 1',
          'x'.repeat(200),
          'x'.repeat(10_000),
          '../../etc',
          '<script>',
          '😀',
          '\u0000',
        ]);
        break;
      case 2:
        h.accept = rng.pick([
          'application/xml',
          'text/html',
          '*/*;q=0',
          'garbage',
          'x'.repeat(5000),
        ]);
        break;
      case 3:
        h.authorization = rng.pick([
          'Bearer ',
          'Bearer x',
          'Basic Og==',
          'x'.repeat(4000),
          'Bearer \u0000',
        ]);
        break;
      case 4:
        h['x-api-key'] = rng.pick(['', 'x', 'k'.repeat(300)]);
        break;
      case 5:
        h.cookie = rng.pick(['a=b', '=;=;', 'a='.repeat(1000), '__proto__=1']);
        break;
      case 6:
        h.host = rng.pick(['', 'evil.example', 'x'.repeat(300), 'localhost:99999', '[::1']);
        break;
      case 7:
        h['x-forwarded-for'] = rng.pick(['1.1.1.1, 2.2.2.2', 'not-an-ip', '999.999.999.999']);
        break;
      case 8:
        h.range = rng.pick([
          'bytes=0-0',
          'bytes=-1',
          'bytes=99999999-',
          'bytes=a-b',
          'bytes=0-1,0-1,0-1',
        ]);
        break;
      case 9:
        h['if-none-match'] = rng.pick(['*', '"x"', 'W/"', '']);
        h['if-modified-since'] = rng.pick(['garbage', 'Thu, 01 Jan 1970 00:00:00 GMT', '']);
        break;
      case 10:
        h.origin = rng.pick(['http://evil.example', 'null', '*']);
        break;
      default:
        h['accept-encoding'] = rng.pick(['gzip', 'br, *;q=0', 'identity;q=0', 'x'.repeat(1000)]);
    }
  }
  return h;
}

const JUNK_PATHS: readonly string[] = [
  '/',
  '//',
  '///',
  '/api',
  '/api/',
  '/api/v1',
  '/api/v1/',
  '/api/v2/accounts/A1',
  '/api/v0/accounts/A1',
  '/api/v1/../healthz',
  '/api/v1/%2e%2e/healthz',
  '/%2e%2e/%2e%2e/etc/passwd',
  '/healthz/',
  '/HEALTHZ',
  '/healthz?',
  '/healthz#x',
  '/healthz%00',
  '/readyz/x',
  '/accounts/A1',
  '/accounts/%',
  '/accounts/',
  '/accounts',
  '/block-orders/BUY1',
  '/block-orders/%ZZ',
  '/consumer/stats',
  '/consumer/stats/x',
  '/api/v1/accounts',
  '/api/v1/accounts/',
  '/api/v1/accounts/A1/',
  '/api/v1/accounts/A1/events/x',
  '/api/v1/accounts//events',
  '/api/v1/block-orders',
  '/docs/static/../../package.json',
  '/docs/static/%2e%2e%2f%2e%2e%2fpackage.json',
  '/docs/static/..%2f..%2fpackage.json',
  '/docs/static/',
  '/docs/static/nope.js',
  '/docs/%00',
  '/metrics/',
  '/*',
  '/%',
  '/%ZZ',
  '/\u0000',
  '/😀',
  '/.env',
  '/.git/config',
  '/server-status',
  '/wp-login.php',
  '/faults/../healthz',
  '/api/v1/execution/stream',
  '/api/v1/executions/stream',
];

function generateRequests(
  operations: Operation[],
  ctx: GenContext,
  first: number,
  count: number,
): FuzzRequest[] {
  const { rng } = ctx;
  const weighted = operations.map((op) => [op, op.documented ? 4 : 1] as const);
  const byTemplate = new Map<string, Set<string>>();
  for (const op of operations) {
    const set = byTemplate.get(op.template) ?? new Set<string>();
    set.add(op.method);
    byTemplate.set(op.template, set);
  }
  const out: FuzzRequest[] = [];
  for (let n = first; n < first + count; n++) {
    const requestId = rng.chance(0.5) ? `fuzz-${n}-${rng.alnum(6)}` : undefined;
    const baseHeaders: Record<string, string> = requestId ? { 'x-request-id': requestId } : {};
    if (rng.chance(0.05)) {
      // a path no route serves (or one a route should not serve this way)
      const path = rng.chance(0.7)
        ? rng.pick(JUNK_PATHS)
        : `/${Array.from({ length: rng.between(1, 5) }, () => encodeSegment(hostileString(rng, true), rng).text).join('/')}`;
      out.push({
        n,
        key: '* (unrouted)',
        category: 'junk-url',
        method: rng.pick(ALL_METHODS),
        url: path,
        headers: baseHeaders,
        stream: /stream/i.test(path),
        wrongMethod: false,
        ...(requestId ? { echoRequestId: requestId } : {}),
      });
      continue;
    }
    const op = rng.weighted(weighted);
    const hasPathParams = op.segments.some((s) => 'param' in s);
    const category = rng.weighted([
      ['valid', 15],
      ['path', hasPathParams ? 20 : 0],
      ['query', 18],
      ['body', op.write ? 25 : 3],
      ['method', 10],
      ['headers', 10],
    ] as const);
    const wctx = { ...ctx, write: op.write };
    let method = op.method;
    let wrongMethod = false;
    let reject: string | undefined;
    if (category === 'method') {
      const served = byTemplate.get(op.template) ?? new Set<string>();
      const others = ALL_METHODS.filter((m) => !served.has(m));
      if (others.length > 0) {
        method = rng.pick(others);
        wrongMethod = true;
        reject = `${method} is not served on ${op.template}`;
      }
    }
    const writeCtx = { ...wctx, write: wctx.write || !READ_METHODS.has(method) };
    const path = buildPath(op, writeCtx, category === 'path');
    const query = buildQuery(op, writeCtx, category === 'query');
    const headers = { ...baseHeaders, ...(category === 'headers' ? oddHeaders(rng) : {}) };
    const wantsBody = !READ_METHODS.has(method) || category === 'body';
    const body = wantsBody
      ? bodyFor({ ...op, method }, writeCtx, category === 'body' || category === 'method')
      : {};
    if (body.contentType !== undefined) headers['content-type'] = body.contentType;
    reject ??= path.reject ?? query.reject ?? body.reject;
    out.push({
      n,
      key: `${method} ${op.template}`,
      category,
      method,
      url: query.qs === '' ? path.path : `${path.path}?${query.qs}`,
      headers,
      ...(body.payload !== undefined ? { payload: body.payload } : {}),
      ...(reject ? { reject } : {}),
      stream: op.stream,
      wrongMethod,
      ...(requestId && headers['x-request-id'] === requestId ? { echoRequestId: requestId } : {}),
    });
  }
  return out;
}

// ------------------------------------------------------------ sending and checking

interface Outcome {
  /** not-sent: light-my-request itself refused the URL (no such request reaches a server). */
  status: number | 'timeout' | 'inject-error' | 'not-sent';
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
  ended: boolean;
  error?: string;
}

async function send(app: FastifyInstance, req: FuzzRequest): Promise<Outcome> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  // A streaming route (SSE, a WebSocket asked over plain HTTP) may never end: a short wait.
  const limitMs = req.stream ? STREAM_WAIT_MS : REPLY_TIMEOUT_MS;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), limitMs);
  });
  try {
    const injected = app.inject({
      method: req.method as 'GET',
      url: req.url,
      headers: req.headers,
      ...(req.payload !== undefined ? { payload: req.payload } : {}),
      payloadAsStream: true,
      signal: controller.signal,
    });
    const res = await Promise.race([injected, timeout]);
    if (res === 'timeout') {
      controller.abort();
      injected.catch(() => undefined);
      return { status: 'timeout', headers: {}, body: '', ended: false };
    }
    const streaming = /event-stream/i.test(String(res.headers['content-type'] ?? ''));
    if (streaming && !req.stream) {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), STREAM_WAIT_MS);
    }
    const stream = res.stream() as Readable;
    const chunks: Buffer[] = [];
    let size = 0;
    const ended = await Promise.race([
      new Promise<boolean>((resolve) => {
        stream.on('data', (chunk: Buffer) => {
          if (size < 256 * 1024) chunks.push(chunk);
          size += chunk.length;
        });
        stream.on('end', () => resolve(true));
        stream.on('error', () => resolve(false));
      }),
      timeout.then(() => false),
    ]);
    if (!ended) controller.abort();
    return {
      status: res.statusCode,
      headers: res.headers,
      body: Buffer.concat(chunks).toString('utf8'),
      ended: ended || streaming,
    };
  } catch (error) {
    const stack = String((error as Error)?.stack ?? error);
    const unsendable = /light-my-request\/lib\/(parse-url|request)\.js/.test(stack);
    return {
      status: unsendable ? 'not-sent' : 'inject-error',
      headers: {},
      body: '',
      ended: false,
      error: stack,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** The one error shape: `{ error: { code, message } }`, or today's `{ error, message, statusCode }`. */
function errorShapeProblem(text: string, status: number): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return 'error body is not JSON';
  }
  if (!isObj(body)) return 'error body is not a JSON object';
  const e = body.error;
  if (isObj(e)) {
    if (typeof e.code !== 'string' || typeof e.message !== 'string')
      return 'error.code and error.message must be strings';
  } else if (typeof e !== 'string' || typeof body.message !== 'string') {
    return 'no error object (error.code, error.message)';
  }
  const declared = body.statusCode ?? (isObj(e) ? e.statusCode : undefined);
  if (declared !== undefined && declared !== status)
    return `body says statusCode ${String(declared)}, the reply is ${status}`;
  return undefined;
}

function problemsOf(req: FuzzRequest, out: Outcome): string[] {
  const problems: string[] = [];
  if (out.status === 'not-sent') return [];
  if (out.status === 'inject-error') return [`the request failed in the app: ${out.error ?? ''}`];
  if (out.status === 'timeout') {
    return req.stream ? [] : [`no reply within ${REPLY_TIMEOUT_MS} ms`];
  }
  const status = out.status;
  const readiness = req.url.split('?')[0] === '/readyz';
  if (status >= 500 && !(status === 503 && readiness)) problems.push(`status ${status}`);
  if (!out.ended && !req.stream)
    problems.push(`the reply did not end within ${REPLY_TIMEOUT_MS} ms`);
  const rid = out.headers['x-request-id'];
  if (typeof rid !== 'string' || rid === '') problems.push('no x-request-id header');
  else if (req.echoRequestId !== undefined && rid !== req.echoRequestId)
    problems.push(`x-request-id ${rid} is not the client's ${req.echoRequestId}`);
  if (req.reject !== undefined && (status < 400 || status >= 500))
    problems.push(`accepted malformed input (${req.reject}) with ${status}`);
  if (status >= 400 && req.method !== 'HEAD' && !(status === 503 && readiness)) {
    const shape = errorShapeProblem(out.body, status);
    if (shape) problems.push(shape);
    if (!/application\/json/.test(String(out.headers['content-type'] ?? '')))
      problems.push(`error content-type ${String(out.headers['content-type'])}`);
  }
  if (status === 405 && !out.headers.allow) problems.push('405 without Allow');
  return problems;
}

/** Cursors and ids from a successful reply, for valid pages, real ids and tampering. */
function harvest(text: string, ctx: GenContext, template: string): void {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return;
  }
  const add = (list: string[], value: string) => {
    if (value !== '' && list.length < 50 && !list.includes(value)) list.push(value);
  };
  const walk = (node: unknown, depth: number) => {
    if (depth > 4) return;
    if (Array.isArray(node)) node.slice(0, 10).forEach((x) => walk(x, depth + 1));
    else if (isObj(node))
      for (const [k, v] of Object.entries(node)) {
        const scalar = typeof v === 'string' || typeof v === 'number';
        if (scalar && /cursor|token/i.test(k)) {
          add(ctx.cursors, String(v));
          const own = ctx.cursorsByRoute.get(template) ?? [];
          add(own, String(v));
          ctx.cursorsByRoute.set(template, own);
        } else if (scalar && /(^id|Id)$/.test(k) && !PROTECTED_IDS.has(String(v)))
          add(ctx.ids, String(v));
        else walk(v, depth + 1);
      }
  };
  walk(body, 0);
}

/** Valid reads of every GET route (lists a row at a time, so they page), sequentially. */
async function harvestAll(app: FastifyInstance, operations: Operation[], ctx: GenContext) {
  for (const op of operations.filter((o) => o.method === 'GET' && !o.stream)) {
    const path = buildPath(op, ctx, false).path;
    const query = buildQuery(op, ctx, false).qs;
    const paged = op.params.some((p) => p.in === 'query' && p.name === 'limit');
    for (const url of [query ? `${path}?${query}` : path, ...(paged ? [`${path}?limit=1`] : [])]) {
      const res = await send(app, {
        n: -1,
        key: '',
        category: 'harvest',
        method: 'GET',
        url,
        headers: {},
        stream: op.stream,
        wrongMethod: false,
      });
      if (typeof res.status === 'number' && res.status < 300) harvest(res.body, ctx, op.template);
    }
  }
  ctx.cursors.sort();
  ctx.ids.sort();
}

async function runPool<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++] as T);
    }),
  );
}

// ------------------------------------------------------------ raw HTTP

interface RawCase {
  name: string;
  data: Buffer;
  /** Statuses the first reply must have; undefined: any below 500. */
  expect?: (status: number) => boolean;
}

/**
 * One raw exchange: write, wait for the reply; half-close only if nothing came (so a request
 * cut short is finished by EOF), and stop once the server closes or falls quiet.
 */
function rawRequest(
  port: number,
  data: Buffer,
): Promise<{ statuses: number[]; text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    let done = false;
    let quiet: NodeJS.Timeout | undefined;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(halfClose);
      clearTimeout(quiet);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const statuses = [...text.matchAll(/HTTP\/\d\.\d (\d{3})[ \r]/g)].map((m) => Number(m[1]));
      resolve({ statuses, text, closed });
    };
    const timer = setTimeout(() => finish(false), RAW_TIMEOUT_MS);
    const halfClose = setTimeout(() => {
      if (chunks.length === 0) socket.end();
    }, RAW_TIMEOUT_MS / 3);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      clearTimeout(quiet);
      quiet = setTimeout(() => finish(false), 250);
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', () => socket.write(data));
  });
}

function rawCases(
  ops: Operation[],
  ctx: GenContext,
  count: number,
  requests: FuzzRequest[],
): RawCase[] {
  const { rng } = ctx;
  const b = (s: string) => Buffer.from(s, 'latin1');
  const get = ops.find((o) => o.method === 'GET' && !o.stream && o.documented) ?? ops[0];
  const sane = get ? buildPath(get, ctx, false).path : '/healthz';
  const post = ops.find((o) => o.method === 'POST') ?? get;
  const postPath = post
    ? buildPath(post, { ...ctx, write: true }, false).path
    : '/api/v1/executions';
  const ok = (s: number) => s >= 200 && s < 500;
  const is4xx = (s: number) => s >= 400 && s < 500;
  const fixed: RawCase[] = [
    {
      name: 'sane GET',
      data: b(`GET ${sane} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
      expect: ok,
    },
    {
      name: 'healthz',
      data: b('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'),
      expect: (s) => s === 200,
    },
    { name: 'garbage line', data: b('GARBAGE\r\n\r\n'), expect: is4xx },
    { name: 'bare method', data: b('GET\r\n\r\n'), expect: is4xx },
    {
      name: 'extra token',
      data: b('GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n'),
      expect: is4xx,
    },
    { name: 'HTTP/9.9', data: b('GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n') },
    { name: 'HTTP/0.9', data: b('GET /healthz\r\n\r\n') },
    { name: 'LF only', data: b('GET /healthz HTTP/1.1\nHost: x\n\n') },
    { name: 'binary', data: rng.bytes(64) },
    { name: 'NULs', data: Buffer.alloc(100) },
    { name: 'space in path', data: b('GET /he althz HTTP/1.1\r\nHost: x\r\n\r\n'), expect: is4xx },
    {
      name: 'lower-case method',
      data: b('get /healthz HTTP/1.1\r\nHost: x\r\n\r\n'),
      expect: is4xx,
    },
    { name: 'unknown method', data: b('FOO /healthz HTTP/1.1\r\nHost: x\r\n\r\n'), expect: is4xx },
    { name: 'h2 preface', data: b('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n') },
    { name: 'no Host', data: b('GET /healthz HTTP/1.1\r\n\r\n'), expect: is4xx },
    {
      // Node takes the first Host; not ours to refuse.
      name: 'two Hosts',
      data: b('GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'),
    },
    {
      name: 'header without colon',
      data: b('GET /healthz HTTP/1.1\r\nHost: x\r\nBroken\r\n\r\n'),
      expect: is4xx,
    },
    {
      name: 'space in header name',
      data: b('GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n'),
      expect: is4xx,
    },
    {
      name: 'NUL in header',
      data: b('GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n'),
      expect: is4xx,
    },
    { name: 'obs-fold', data: b('GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n') },
    {
      name: 'huge header',
      data: b(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`),
      expect: is4xx,
    },
    {
      name: 'many headers',
      data: b(
        `GET /healthz HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-${i}: 1\r\n`).join('')}\r\n`,
      ),
    },
    {
      name: 'huge URL',
      data: b(`GET /api/v1/accounts/${'a'.repeat(30_000)} HTTP/1.1\r\nHost: x\r\n\r\n`),
      expect: is4xx,
    },
    {
      name: 'CL abc',
      data: b(`POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}`),
      expect: is4xx,
    },
    {
      name: 'CL -1',
      data: b(`POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}`),
      expect: is4xx,
    },
    {
      name: 'CL list',
      data: b(`POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\n{}`),
      expect: is4xx,
    },
    {
      name: 'two CLs',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}`,
      ),
      expect: is4xx,
    },
    {
      name: 'CL huge',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999999999999\r\n\r\n{}`,
      ),
    },
    {
      name: 'CL over body limit',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{}`,
      ),
      expect: is4xx,
    },
    {
      name: 'CL short body',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"a":`,
      ),
    },
    {
      name: 'CL 0 with body',
      data: b(`POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nGARBAGE\r\n\r\n`),
    },
    {
      name: 'CL and TE',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      ),
      expect: is4xx,
    },
    {
      name: 'chunk garbage',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n`,
      ),
      expect: is4xx,
    },
    {
      name: 'chunk size overflow',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n`,
      ),
      expect: is4xx,
    },
    {
      name: 'chunk no end',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n`,
      ),
    },
    {
      name: 'chunk ext garbage',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2;\u0000=\u0001\r\n{}\r\n0\r\n\r\n`,
      ),
    },
    {
      name: 'chunked broken JSON',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n0\r\n\r\n`,
      ),
      expect: is4xx,
    },
    {
      name: 'TE gzip, chunked',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
      ),
    },
    {
      name: 'TE chunked, identity',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`,
      ),
      expect: is4xx,
    },
    {
      name: 'TE unknown',
      data: b(`POST ${postPath} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xyz\r\n\r\n{}`),
    },
    {
      name: 'Expect 100',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}`,
      ),
    },
    {
      name: 'Expect junk',
      data: b(
        `POST ${postPath} HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n{}`,
      ),
    },
    {
      name: 'pipelined + garbage',
      data: b(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n`),
    },
    { name: 'pipelined x3', data: b(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(3)) },
    {
      name: 'UTF-8 in path',
      data: Buffer.concat([
        b('GET /api/v1/accounts/'),
        Buffer.from('é😀', 'utf8'),
        b(' HTTP/1.1\r\nHost: x\r\n\r\n'),
      ]),
    },
    {
      name: 'bad percent',
      data: b('GET /api/v1/accounts/%E0%A4%A HTTP/1.1\r\nHost: x\r\n\r\n'),
      expect: is4xx,
    },
    { name: 'double slash', data: b('GET //api/v1//accounts HTTP/1.1\r\nHost: x\r\n\r\n') },
    {
      name: 'absolute form',
      data: b('GET http://evil.example/healthz HTTP/1.1\r\nHost: x\r\n\r\n'),
    },
    { name: 'asterisk form', data: b('OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n') },
    {
      name: 'CONNECT',
      data: b('CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n'),
    },
    { name: 'TRACE', data: b('TRACE /healthz HTTP/1.1\r\nHost: x\r\n\r\n') },
    { name: 'no path', data: b('GET  HTTP/1.1\r\nHost: x\r\n\r\n'), expect: is4xx },
    { name: 'CR only', data: b('GET /healthz HTTP/1.1\rHost: x\r\r') },
    {
      name: 'request id injection',
      data: b('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\u0001b\r\n\r\n'),
    },
  ];
  const out = [...fixed];
  // The rest: requests of the in-process fuzz, on the wire, some cut short or bent.
  while (out.length < count && requests.length > 0) {
    const req = rng.pick(requests);
    const payload = Buffer.from(req.payload ?? '', 'utf8');
    const headers = Object.entries(req.headers)
      .filter(([k]) => k !== 'host' && k !== 'content-length')
      .map(([k, v]) => `${k}: ${v.replace(/[\r\n]/g, '')}\r\n`)
      .join('');
    // Printable ASCII as it is (hostile but legal bytes), the rest percent-encoded as UTF-8.
    const url = req.url
      .replace(/[^\x21-\x7e]/gu, (c) =>
        [...Buffer.from(c, 'utf8')].map((x) => `%${x.toString(16).padStart(2, '0')}`).join(''),
      )
      .slice(0, 20_000);
    const bend = rng.int(6);
    const cl =
      bend === 0
        ? `Content-Length: ${payload.length + rng.between(1, 50)}\r\n`
        : bend === 1 && payload.length > 0
          ? `Content-Length: ${rng.int(payload.length)}\r\n`
          : `Content-Length: ${payload.length}\r\n`;
    const head = `${req.method} ${url || '/'} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}${cl}Connection: close\r\n\r\n`;
    const data = Buffer.concat([Buffer.from(head, 'latin1'), payload]);
    out.push({
      name: `wire #${req.n} ${req.method} ${truncate(req.url, 60)}${bend <= 1 ? ' (bad CL)' : ''}`,
      data,
    });
  }
  return out.slice(0, Math.max(count, 0));
}

// ------------------------------------------------------------ the test

const FAILURE_CLASSES = ['5xx', 'hang', 'request-id', 'error-shape', 'accepted-malformed'] as const;
type FailureClass = (typeof FAILURE_CLASSES)[number];
const FAILURE_TITLES: Record<FailureClass, string> = {
  '5xx': 'no 5xx (503 only from /readyz)',
  hang: 'every request gets a whole reply in time',
  'request-id': 'every reply has X-Request-Id (the client’s when sane)',
  'error-shape': 'every error is the one JSON error shape',
  'accepted-malformed': 'malformed input is refused with a 4xx',
};

function classOf(problem: string): FailureClass {
  if (/^status \d/.test(problem)) return '5xx';
  if (/x-request-id/i.test(problem)) return 'request-id';
  if (/^accepted malformed/.test(problem)) return 'accepted-malformed';
  if (/within|failed in the app/.test(problem)) return 'hang';
  return 'error-shape';
}

/** Keys that may change between two reads of unchanged state (times of serving, not of data). */
const VOLATILE_KEYS = /^(generatedAt|servedAt|asOf|now|requestId|elapsedMs)$/;

/** A view as JSON, without its volatile keys. */
function stable(view: unknown): unknown {
  return JSON.parse(JSON.stringify(view), (key, value: unknown) =>
    VOLATILE_KEYS.test(key) ? undefined : value,
  );
}

interface Failure {
  n: number;
  category: string;
  method: string;
  url: string;
  headers: string;
  payload: string;
  status: string;
  response: string;
  problems: string[];
}

t.test('fuzz: random and malformed requests to every route', async (t) => {
  const started = Date.now();
  t.comment(
    `FUZZ_SEED=${SEED} (0x${SEED.toString(16)}) FUZZ_REQUESTS=${REQUESTS} FUZZ_RAW_REQUESTS=${RAW_REQUESTS}`,
  );
  const { service } = await startTestService(t, {
    seed: smallSeed(),
    config: { FAULT_INJECTION: 'off', API_KEY: '', RATE_LIMIT_PER_MINUTE: '0', CORS_ORIGINS: '' },
  });
  const app = service.app;

  // Real state first: two fills on BUY1, allocated and confirmed.
  const fills = [
    {
      fillId: 'F1',
      blockOrderId: 'BUY1',
      seq: 1,
      quantity: 500n,
      price: 101_250_000n,
      venue: 'XNYS',
      executedAtMs: 1_000,
    },
    {
      fillId: 'F2',
      blockOrderId: 'BUY1',
      seq: 2,
      quantity: 500n,
      price: 101_750_000n,
      venue: 'XNAS',
      executedAtMs: 2_000,
    },
  ];
  for (const f of fills) await service.publisher.publishFill(f);
  const confirmed = await confirmedThrough(service, 'BUY1', 2);
  t.equal(confirmed.filledQuantity, '1000', 'both fills allocated before the fuzz');
  const before = {
    order: stable(await blockOrderView(service, 'BUY1')),
    a2: stable(await accountView(service, 'A2')),
    a3: stable(await accountView(service, 'A3')),
  };

  const { operations, doc } = await discoverOperations(app);
  t.ok(operations.length > 0, 'routes discovered');
  t.ok(
    operations.some((o) => o.documented),
    'the OpenAPI document lists routes',
  );
  t.comment(
    `routes fuzzed (${operations.length}): ${operations.map((o) => `${o.method} ${o.template}`).join(', ')}`,
  );

  const rng = new Rng(SEED);
  const ctx: GenContext = {
    rng,
    doc,
    write: false,
    cursors: [],
    cursorsByRoute: new Map(),
    ids: [],
  };
  const statuses: Record<string, number> = {};
  const perRoute: Record<string, Record<string, number>> = {};
  const byCategory: Record<string, Record<string, number>> = {};
  const failures = new Map<FailureClass, { count: number; samples: Failure[] }>(
    FAILURE_CLASSES.map((c) => [c, { count: 0, samples: [] }]),
  );
  const count = (into: Record<string, number>, key: string) => (into[key] = (into[key] ?? 0) + 1);
  const requests: FuzzRequest[] = [];
  const slowest: Array<{ ms: number; request: string; status: string }> = [];
  const fuzzStarted = Date.now();
  // Two rounds, each after a harvest of valid reads: the second finds what the first made
  // (dead letters, executions), so valid requests name real things.
  for (const round of [0, 1]) {
    await harvestAll(app, operations, ctx);
    const first = round === 0 ? 0 : Math.floor(REQUESTS / 2);
    const size = round === 0 ? first + Math.floor(REQUESTS / 2) : REQUESTS - first;
    const batch = generateRequests(operations, ctx, first, size);
    requests.push(...batch);
    await runPool(batch, CONCURRENCY, async (req) => {
      const sentAt = Date.now();
      const out = await send(app, req);
      const ms = Date.now() - sentAt;
      if (slowest.length < 10 || ms > slowest[slowest.length - 1]!.ms) {
        slowest.push({
          ms,
          request: `${req.method} ${truncate(req.url, 120)}`,
          status: String(out.status),
        });
        slowest.sort((a, b) => b.ms - a.ms);
        slowest.length = Math.min(slowest.length, 10);
      }
      const status = String(out.status);
      count(statuses, status);
      count((perRoute[req.key] ??= {}), status);
      count((byCategory[req.category] ??= {}), status);
      const problems = problemsOf(req, out);
      for (const cls of new Set(problems.map(classOf))) {
        const entry = failures.get(cls)!;
        entry.count++;
        if (entry.samples.length < FAILURES_KEPT)
          entry.samples.push({
            n: req.n,
            category: req.category,
            method: req.method,
            url: truncate(req.url, 400),
            headers: truncate(JSON.stringify(req.headers), 300),
            payload: truncate(req.payload ?? '', 300),
            status,
            response: truncate(out.error ?? out.body, 600),
            problems,
          });
      }
    });
  }
  const fuzzMs = Date.now() - fuzzStarted;

  // Over a real socket: what inject cannot send.
  if (!app.server.listening) await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : Number(address);
  const raw = rawCases(operations, ctx, RAW_REQUESTS, requests);
  const rawStatuses: Record<string, number> = {};
  const rawFailures: Array<{ name: string; request: string; response: string; problem: string }> =
    [];
  const rawOutcomes: Record<string, string> = {};
  const rawStarted = Date.now();
  await runPool(raw, RAW_CONCURRENCY, async (c) => {
    const res = await rawRequest(port, c.data);
    // The first final reply (a 100 Continue is not one).
    const first = res.statuses.find((x) => x >= 200);
    rawOutcomes[c.name] =
      res.statuses.length > 0 ? res.statuses.join(',') : res.closed ? 'closed' : 'timeout';
    const label = first === undefined ? (res.closed ? 'closed' : 'timeout') : String(first);
    rawStatuses[label] = (rawStatuses[label] ?? 0) + 1;
    const bad = res.statuses.filter((s) => s >= 500);
    const problem =
      bad.length > 0
        ? `status ${bad.join(', ')}`
        : c.expect && (first === undefined || !c.expect(first))
          ? `unexpected ${label}`
          : undefined;
    if (problem && rawFailures.length < FAILURES_KEPT)
      rawFailures.push({
        name: c.name,
        request: truncate(c.data.toString('latin1'), 300),
        response: truncate(res.text, 600),
        problem,
      });
  });
  const rawMs = Date.now() - rawStarted;

  // The service still answers, and what the fuzz must not touch is as it was.
  const health = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(health.statusCode, 200, '/healthz answers 200 after the fuzz');
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(
    ready.statusCode,
    200,
    `/readyz answers 200 after the fuzz: ${truncate(ready.body, 300)}`,
  );
  t.same(stable(await blockOrderView(service, 'BUY1')), before.order, 'BUY1 as before the fuzz');
  t.same(stable(await accountView(service, 'A2')), before.a2, 'A2 reads as before the fuzz');
  t.same(stable(await accountView(service, 'A3')), before.a3, 'A3 reads as before the fuzz');
  const polluted = Object.keys(Object.prototype).concat(Object.keys(Array.prototype));
  t.same(polluted, [], 'no prototype was polluted');

  const summary = {
    seed: SEED,
    reproduce: `FUZZ_SEED=${SEED} FUZZ_REQUESTS=${REQUESTS} FUZZ_RAW_REQUESTS=${RAW_REQUESTS} npx tap test/api-fuzz.test.ts`,
    requests: requests.length,
    mustBeRefused: requests.filter((r) => r.reject !== undefined).length,
    rawRequests: raw.length,
    fuzzMs,
    rawMs,
    totalMs: Date.now() - started,
    routes: operations.map((o) => `${o.method} ${o.template}${o.documented ? '' : ' (hidden)'}`),
    statuses,
    rawStatuses,
    perRoute,
    byCategory,
    slowest,
    harvested: { cursors: ctx.cursors.length, ids: ctx.ids },
    failures: Object.fromEntries(failures),
    rawOutcomes,
    rawFailures,
  };
  writeFileSync(SUMMARY_PATH, `${JSON.stringify(summary, null, 2)}\n`);
  t.comment(`sent ${requests.length} requests in ${fuzzMs} ms, ${raw.length} raw in ${rawMs} ms`);
  t.comment(`statuses: ${JSON.stringify(statuses)}`);
  t.comment(`raw statuses: ${JSON.stringify(rawStatuses)}`);
  for (const [category, counts] of Object.entries(byCategory).sort())
    t.comment(`  ${category}: ${JSON.stringify(counts)}`);
  for (const [route, counts] of Object.entries(perRoute).sort())
    t.comment(
      `  ${route}: ${Object.values(counts).reduce((a, b) => a + b, 0)} ${JSON.stringify(counts)}`,
    );
  t.comment(`summary: ${SUMMARY_PATH}`);

  for (const [cls, { count, samples }] of failures)
    t.equal(count, 0, `${FAILURE_TITLES[cls]} (${requests.length} requests)`, { samples });
  t.same(rawFailures, [], `no 5xx or unexpected reply in ${raw.length} raw requests`);
});
