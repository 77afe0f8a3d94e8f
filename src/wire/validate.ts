/**
 * The building blocks of the wire schemas, on valibot: each block is a valibot schema that
 * answers in our words ("expected an integer 1..5000, got 5001"), and `parse` turns valibot's
 * first issue into a SchemaError naming the field ("params.ops[3].path: dot-dot segment").
 *
 * The rules: objects have exactly their keys (an unknown key or a missing required one is an
 * error), strings are bounded in UTF-8 bytes, integers are safe and in range, arrays and maps are
 * bounded, and their size is checked before any item is looked at.
 */
import * as v from 'valibot';
import { SyncError } from '../core/errors.js';

/** A value that does not fit its schema; `field` is where ("params.ops[3].path"). */
export class SchemaError extends SyncError {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super('INVALID_PARAMS', `${field}: ${reason}`);
  }
}

/** A schema from untrusted input to `T`. */
export type Schema<T> = v.GenericSchema<unknown, T>;

/** Stop at the first problem: one error names one field, and a hostile value costs no more. */
const FIRST_ISSUE_ONLY = { abortEarly: true } as const;

/**
 * Checks an untrusted value and returns it typed (objects are copied with only their known keys).
 * @throws SchemaError naming the field below `at` ("params", "result").
 */
export function parse<T>(schema: Schema<T>, value: unknown, at: string): T {
  const checked = v.safeParse(schema, value, FIRST_ISSUE_ONLY);
  if (checked.success) return checked.output;
  const issue = checked.issues[0];
  throw new SchemaError(fieldAt(at, issue.path), issue.message);
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `at.key`, or `at["odd key"]` when the key is not a plain identifier (cut at 64 characters). */
export function fieldOf(at: string, key: string): string {
  if (IDENTIFIER.test(key) && key.length <= 64) return `${at}.${key}`;
  const shown = key.length > 64 ? `${key.slice(0, 64)}…` : key;
  return `${at}[${JSON.stringify(shown)}]`;
}

function fieldAt(at: string, path: readonly { type: string; key: unknown }[] | undefined): string {
  let field = at;
  for (const item of path ?? []) field = item.type === 'array' ? `${field}[${String(item.key)}]` : fieldOf(field, String(item.key));
  return field;
}

/** "an array", "a string", "null": how a wrong value is named in messages. */
export function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const notAn = (what: string) => (issue: v.BaseIssue<unknown>) => `expected ${what}, got ${kindOf(issue.input)}`;

interface StringRules {
  min?: number;
  /** Maximum length in UTF-8 bytes. */
  maxBytes: number;
  pattern?: RegExp;
  /** Shown when `pattern` does not match. */
  patternHint?: string;
  /** Extra check: the reason the value is bad, or null. */
  problem?: (s: string) => string | null;
}

export function text(rules: StringRules): Schema<string> {
  const { min = 0, maxBytes, pattern, problem } = rules;
  const tooLong = `longer than ${maxBytes} bytes`;
  const checks: v.PipeItem<string, string, v.BaseIssue<unknown>>[] = [
    v.minLength<string, number, v.ErrorMessage<v.MinLengthIssue<string, number>>>(min, (issue) => (issue.input.length === 0 ? 'empty' : `shorter than ${min}`)),
    // UTF-16 length first: it never exceeds the UTF-8 length, and costs nothing on a huge string.
    v.maxLength<string, number, string>(maxBytes, tooLong),
    // valibot's maxBytes encodes the string to count; Buffer.byteLength counts without a copy.
    v.check<string, string>((s) => Buffer.byteLength(s, 'utf8') <= maxBytes, tooLong),
  ];
  if (pattern !== undefined) checks.push(v.regex<string, string>(pattern, rules.patternHint ?? `does not match ${pattern}`));
  if (problem !== undefined) checks.push(v.check<string, v.ErrorMessage<v.CheckIssue<string>>>((s) => problem(s) === null, (issue) => problem(issue.input) ?? ''));
  return v.pipe(v.string(notAn('a string')), ...checks);
}

export function int(min: number, max: number = Number.MAX_SAFE_INTEGER): Schema<number> {
  const outOfRange = (issue: v.BaseIssue<number>): string => `expected an integer ${min}..${max}, got ${issue.input}`;
  return v.pipe(
    v.number(notAn('an integer')),
    v.safeInteger((issue) => `expected an integer, got ${issue.input}`),
    v.minValue(min, outOfRange),
    v.maxValue(max, outOfRange),
  );
}

export const bool: Schema<boolean> = v.boolean(notAn('a boolean'));

export function oneOf<const T extends string | number>(...values: T[]): v.PicklistSchema<T[], string> {
  return v.picklist(values, `expected ${values.map((x) => JSON.stringify(x)).join(' | ')}`);
}

export const nullable = v.nullable;
export const optional = v.optional;

/** An array of `min`..`max` items; the count is checked before any item. */
export function arrayOf<S extends Schema<unknown>>(item: S, min: number, max: number) {
  const items = v.array(item);
  return v.pipe(
    v.custom<v.InferInput<typeof items>>(Array.isArray, notAn('an array')),
    v.check((a) => a.length >= min, (issue) => `expected at least ${min} item${min === 1 ? '' : 's'}, got ${(issue.input as unknown[]).length}`),
    v.check((a) => a.length <= max, (issue) => `expected at most ${max} items, got ${(issue.input as unknown[]).length}`),
    items,
  );
}

export function tuple<const S extends Schema<unknown>[]>(...items: S) {
  return v.strictTuple(items, `expected an array of ${items.length}`);
}

/** Names the problem of an exact object: not an object, a missing key, or an unknown key. */
function objectProblem(issue: v.BaseIssue<unknown>): string {
  if (issue.path === undefined) return `expected an object, got ${kindOf(issue.input)}`;
  return issue.expected === 'never' ? 'unknown key' : 'missing';
}

/** An object with exactly these keys: a missing required key or any unknown key is an error. */
export function obj<const S extends v.ObjectEntries>(shape: S) {
  const exact = v.strictObject(shape, objectProblem);
  return v.pipe(v.custom<v.InferInput<typeof exact>>(isPlainObject, notAn('an object')), exact);
}

type ExactOutput<S> = S extends v.ObjectEntries ? v.InferOutput<v.StrictObjectSchema<S, undefined>> : never;

/** One of several exact objects (given by their keys), chosen by the string value of `tag` in the input. */
export function union<const Tag extends string, const S extends readonly v.ObjectEntries[]>(tag: Tag, shapes: S): Schema<ExactOutput<S[number]>> {
  const names = shapes.map((shape) => shape[tag]?.expects).join(' | ');
  const chosen = v.variant(
    tag,
    shapes.map((shape) => v.strictObject(shape, objectProblem)) as unknown as v.VariantOptions<Tag>,
    `expected ${names}`,
  );
  return v.pipe(v.custom<unknown>(isPlainObject, notAn('an object')), chosen) as Schema<ExactOutput<S[number]>>;
}

/**
 * An object used as a map: every key checked by `key`, every value by `value`, at most `maxKeys`.
 * Not valibot's `record`, which drops the keys "__proto__", "constructor" and "prototype" without
 * a word: "constructor" is a legal folder name, and a map that loses it lies.
 */
export function record<T>(key: Schema<string>, value: Schema<T>, maxKeys: number): Schema<Record<string, T>> {
  return v.pipe(
    v.custom<Record<string, unknown>>(isPlainObject, notAn('an object')),
    v.check((o) => Object.keys(o).length <= maxKeys, (issue) => `expected at most ${maxKeys} keys, got ${Object.keys(issue.input as object).length}`),
    v.rawTransform(({ dataset, config, addIssue, NEVER }) => {
      const input = dataset.value;
      const out: Record<string, T> = Object.create(null) as Record<string, T>;
      const inner = config as v.Config<v.BaseIssue<unknown>>;
      for (const k of Object.keys(input)) {
        const keyChecked = v.safeParse(key, k, inner);
        const checked = keyChecked.success ? v.safeParse(value, input[k], inner) : keyChecked;
        if (!checked.success) {
          const first = checked.issues[0];
          addIssue({ message: first.message, path: [{ type: 'object', origin: 'value', input, key: k, value: input[k] }, ...(first.path ?? [])] });
          return NEVER;
        }
        out[k] = checked.output as T;
      }
      return { ...out };
    }),
  );
}

/** Any JSON object, not looked into (control-socket results, whose shape belongs to the daemon). */
export const anyObject: Schema<Record<string, unknown>> = v.custom<Record<string, unknown>>(isPlainObject, notAn('an object'));

/** Nothing: the result of a notification. */
export const nothing: Schema<void> = v.pipe(v.unknown(), v.transform(() => undefined));
