#!/usr/bin/env node
// The one test runner: runs every package's compiled tests (packages/*/dist-test/test/**/*.test.js)
// with node:test. Node 20's `node --test` does not expand globs, so this lists the files.
//
//   node scripts/test.mjs                 every package
//   node scripts/test.mjs wire mailbox    only those packages
//   node scripts/test.mjs wire/codec      only test files whose path contains "codec" in wire
//
// SWITCHYARD_TEST_CONCURRENCY sets how many test files run at once (default 2).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..');

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) walk(full, out);
    else if (name.endsWith('.test.js')) out.push(full);
  }
  return out;
}

const filters = process.argv.slice(2).map((arg) => {
  const [pkg, part] = arg.split('/', 2);
  return { pkg, part };
});
const files = [];
for (const pkg of readdirSync(join(root, 'packages')).sort()) {
  const testDir = join(root, 'packages', pkg, 'dist-test', 'test');
  if (!existsSync(testDir)) continue;
  const wanted = filters.filter((f) => f.pkg === pkg);
  if (filters.length > 0 && wanted.length === 0) continue;
  for (const file of walk(testDir, []).sort()) {
    const rel = relative(testDir, file);
    if (wanted.length === 0 || wanted.some((f) => f.part === undefined || rel.includes(f.part)))
      files.push(file);
  }
}
if (files.length === 0) {
  console.error(
    `no test files matched ${JSON.stringify(process.argv.slice(2))}; did the build run (npm run build)?`,
  );
  process.exit(1);
}

const concurrency = process.env.SWITCHYARD_TEST_CONCURRENCY ?? '2';
const child = spawn(
  process.execPath,
  ['--test', `--test-concurrency=${concurrency}`, ...files.map((f) => relative(root, f))],
  { cwd: root, stdio: 'inherit' },
);
const forward = (signal) => child.kill(signal);
process.on('SIGINT', forward);
process.on('SIGTERM', forward);
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
