import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './paths.js';

/**
 * The codes listed in `docs/errors.md` under the heading `## <packageName>`: every table
 * row whose first cell is a code in backticks.
 */
export function readErrorDocSection(packageName: string): string[] {
  const text = readFileSync(join(repoRoot(), 'docs', 'errors.md'), 'utf8');
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === `## ${packageName}`);
  assert.notEqual(start, -1, `docs/errors.md has no section "## ${packageName}"`);
  const codes: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('## ')) break;
    const match = /^\|\s*`([A-Z0-9_]+)`\s*\|/.exec(line);
    if (match?.[1] !== undefined) codes.push(match[1]);
  }
  return codes;
}

type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * Asserts that a package's error registry, its exported error classes and its section of
 * `docs/errors.md` agree: the same set of codes everywhere, every class a subclass of the
 * base with a registered static `code`, and every code carried by exactly one class.
 */
export function checkErrorRegistry(options: {
  packageName: string;
  prefix: string;
  registry: Readonly<Record<string, string>>;
  base: ErrorClass;
  exports: Readonly<Record<string, unknown>>;
}): void {
  const { packageName, prefix, registry, base, exports } = options;
  const codes = Object.keys(registry);
  assert.ok(codes.length > 0, 'the registry lists no code');
  for (const code of codes) {
    assert.match(code, new RegExp(`^${prefix}_ERR_[A-Z0-9_]+$`), `bad code name ${code}`);
    assert.ok((registry[code] ?? '').length > 10, `${code} has no description`);
  }

  const classCodes = new Map<string, string>();
  for (const [exportName, value] of Object.entries(exports)) {
    if (typeof value !== 'function' || value === base) continue;
    if (!(value.prototype instanceof Error)) continue;
    assert.ok(
      Object.prototype.isPrototypeOf.call(base.prototype, value.prototype),
      `${exportName} is an Error but does not extend ${base.name}`,
    );
    assert.equal(value.name, exportName, `class ${value.name} is exported as ${exportName}`);
    const code = (value as unknown as { code?: unknown }).code;
    assert.equal(typeof code, 'string', `${exportName} has no static code`);
    assert.ok(codes.includes(code as string), `${exportName}.code ${String(code)} is not registered`);
    assert.ok(!classCodes.has(code as string), `${String(code)} is carried by two classes`);
    classCodes.set(code as string, exportName);
  }
  assert.deepEqual([...classCodes.keys()].sort(), [...codes].sort(), 'registry codes without a class');
  assert.deepEqual(
    readErrorDocSection(packageName).sort(),
    [...codes].sort(),
    'docs/errors.md differs from the registry',
  );
}
