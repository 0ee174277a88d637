// Runtime checks of what the sidecar sends: every payload the extension reads goes through one of these instead
// of a cast, so a backend that speaks something else is caught at the border with the path of the first bad
// field, never deep in the UI (a gauge that silently stops updating). Each checker also describes itself, so a
// test can compare the checked fields with crashguard/sidecar/protocol.py. Pure: no 'vscode' import.

export class PayloadError extends Error {
  constructor(readonly path: string, readonly expected: string, readonly got: unknown) {
    super(`${path}: expected ${expected}, got ${describeValue(got)}`);
    this.name = 'PayloadError';
  }
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing (the field is missing)';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  return typeof value;
}

export type Kind = 'number' | 'integer' | 'string' | 'boolean' | 'enum' | 'array' | 'object' | 'record';

/** What a checker accepts, for tests that compare it with the Python side. */
export interface Description {
  kind: Kind;
  nullable: boolean;
  /** May be absent (an older sidecar does not send it); the checker then gives a fallback. */
  optional: boolean;
  name?: string;
  values?: readonly string[];
  of?: Description;
  shape?: Readonly<Record<string, Description>>;
}

/** What a checker left out instead of failing: the items of a list that failed their check (arrayOfValid). */
export type Drops = PayloadError[];

/** A payload about one run whose run failed its check (contained): that run's fault, never the sidecar's. */
export class ContainedError extends PayloadError {
  constructor(error: PayloadError) {
    super(error.path, error.expected, error.got);
    this.name = 'ContainedError';
  }
}

export interface Checker<T> {
  (value: unknown, path?: string, drops?: Drops): T;
  readonly description: Description;
}

export type Checked<C> = C extends Checker<infer T> ? T : never;

function checker<T>(description: Description, check: (value: unknown, path: string, drops: Drops | undefined) => T): Checker<T> {
  const fn = (value: unknown, path = '$', drops?: Drops): T => check(value, path, drops);
  return Object.assign(fn, { description });
}

const plain = (kind: Kind): Description => ({ kind, nullable: false, optional: false });

export const num = checker<number>(plain('number'), (v, path) => {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  throw new PayloadError(path, 'a finite number', v);
});

/** An integer JavaScript holds exactly (|n| <= 2^53 - 1): a 300-digit integer parses to an inexact 1e300. */
export const int = checker<number>(plain('integer'), (v, path) => {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  throw new PayloadError(path, 'an integer within ±(2^53 - 1)', v);
});

export const str = checker<string>(plain('string'), (v, path) => {
  if (typeof v === 'string') return v;
  throw new PayloadError(path, 'a string', v);
});

/** How many characters (code points) `s` has, as Python's len() counts them: a character beyond the BMP is two
 *  UTF-16 units in `s.length`. */
function codePoints(s: string): number {
  const surrogates = s.match(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g);
  return s.length - (surrogates?.length ?? 0);
}

/** A string of at most `max` characters, counted as the monitor counts them (code points; what a run's files say is
 *  bounded on the wire, C2). */
export function text(max: number): Checker<string> {
  return checker<string>(plain('string'), (v, path) => {
    if (typeof v === 'string' && (v.length <= max || codePoints(v) <= max)) return v;
    throw new PayloadError(path, `a string of at most ${max} characters`, v);
  });
}

export const bool = checker<boolean>(plain('boolean'), (v, path) => {
  if (typeof v === 'boolean') return v;
  throw new PayloadError(path, 'true or false', v);
});

export function oneOf<const V extends readonly string[]>(values: V): Checker<V[number]> {
  return checker<V[number]>({ ...plain('enum'), values }, (v, path) => {
    if (typeof v === 'string' && values.includes(v)) return v;
    throw new PayloadError(path, `one of ${values.join(', ')}`, v);
  });
}

export function nullable<T>(inner: Checker<T>): Checker<T | null> {
  return checker<T | null>({ ...inner.description, nullable: true },
    (v, path, drops) => (v === null ? null : inner(v, path, drops)));
}

/** A field an older sidecar may not send: absent, it reads as `fallback`. */
export function optional<T>(inner: Checker<T>, fallback: T): Checker<T> {
  return checker<T>({ ...inner.description, optional: true },
    (v, path, drops) => (v === undefined ? fallback : inner(v, path, drops)));
}

/** A field an older sidecar may not send, where absent means "unknown" (not a default). */
export function maybe<T>(inner: Checker<T>): Checker<T | undefined> {
  return checker<T | undefined>({ ...inner.description, optional: true },
    (v, path, drops) => (v === undefined ? undefined : inner(v, path, drops)));
}

export function arrayOf<T>(inner: Checker<T>, max = 100_000): Checker<T[]> {
  return checker<T[]>({ ...plain('array'), of: inner.description }, (v, path, drops) => {
    if (!Array.isArray(v)) throw new PayloadError(path, 'a list', v);
    if (v.length > max) throw new PayloadError(path, `at most ${max} items`, v);
    return v.map((item, i) => inner(item, `${path}[${i}]`, drops));
  });
}

/** A list whose bad items are left out and recorded in `drops`, not fatal to the payload: one run with a bad field
 *  is that run's problem (C2), the sample and the other runs still apply. The list itself must be a list. */
export function arrayOfValid<T>(inner: Checker<T>, max = 100_000): Checker<T[]> {
  return checker<T[]>({ ...plain('array'), of: inner.description }, (v, path, drops) => {
    if (!Array.isArray(v)) throw new PayloadError(path, 'a list', v);
    if (v.length > max) throw new PayloadError(path, `at most ${max} items`, v);
    const out: T[] = [];
    v.forEach((item, i) => {
      try {
        out.push(inner(item, `${path}[${i}]`, drops));
      } catch (error) {
        if (!(error instanceof PayloadError)) throw error;
        drops?.push(error);
      }
    });
    return out;
  });
}

/** A payload about one run (a run event): a bad field in it throws ContainedError, which drops that payload
 *  without taking the sidecar for an incompatible one. */
export function contained<T>(inner: Checker<T>): Checker<T> {
  return checker<T>(inner.description, (v, path, drops) => {
    try {
      return inner(v, path, drops);
    } catch (error) {
      if (error instanceof PayloadError && !(error instanceof ContainedError)) throw new ContainedError(error);
      throw error;
    }
  });
}

/** A JSON object of any keys with values of one kind (e.g. a report's free-form detail). */
export function recordOf<T>(inner: Checker<T>): Checker<Record<string, T>> {
  return checker<Record<string, T>>({ ...plain('record'), of: inner.description }, (v, path, drops) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new PayloadError(path, 'an object', v);
    const out: Record<string, T> = {};
    for (const [key, item] of Object.entries(v)) out[key] = inner(item, `${path}.${key}`, drops);
    return out;
  });
}

export type Shape = Record<string, Checker<unknown>>;
export type ObjectOf<S extends Shape> = { [K in keyof S]: Checked<S[K]> };

/** An object with these fields (others are dropped: code downstream only ever sees checked values). */
export function object<S extends Shape>(name: string, shape: S): Checker<ObjectOf<S>> & { readonly shape: S } {
  const fields: Record<string, Description> = {};
  for (const [key, c] of Object.entries(shape)) fields[key] = c.description;
  const c = checker<ObjectOf<S>>({ ...plain('object'), name, shape: fields }, (v, path, drops) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new PayloadError(path, `an object (${name})`, v);
    const source = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [key, fieldCheck] of Object.entries(shape)) out[key] = fieldCheck(source[key], `${path}.${key}`, drops);
    return out as ObjectOf<S>;
  });
  return Object.assign(c, { shape });
}

/** One of two object shapes, told apart by `isFirst` (e.g. a cleanup's result or a stop's). */
export function either<A, B>(isFirst: (value: Record<string, unknown>) => boolean, first: Checker<A>,
  second: Checker<B>): Checker<A | B> {
  const name = `${first.description.name ?? '?'} | ${second.description.name ?? '?'}`;
  return checker<A | B>({ ...plain('object'), name }, (v, path, drops) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new PayloadError(path, `an object (${name})`, v);
    return isFirst(v as Record<string, unknown>) ? first(v, path, drops) : second(v, path, drops);
  });
}
