#!/usr/bin/env node
'use strict';
// npm runs `node-gyp` from a dependency's install script through PATH, and the
// project's node_modules/.bin comes first, so this shim sees every native build
// (better-sqlite3, @switchyard/shm). It adds --nodedir pointing at the running Node's
// install prefix when that prefix carries Node's headers, so node-gyp never tries to
// download them. This replaces the `nodedir` .npmrc key, which npm has announced it
// will drop. It then runs the node-gyp that ships with npm.
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

function realNodeGyp() {
  const candidates = [];
  if (process.env.npm_execpath) {
    const npmRoot = path.dirname(path.dirname(fs.realpathSync(process.env.npm_execpath)));
    candidates.push(path.join(npmRoot, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  const prefix = path.dirname(path.dirname(process.execPath));
  candidates.push(
    path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  );
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) {
    console.error(
      'offline-node-gyp: cannot find the node-gyp bundled with npm; looked in:\n  ' + candidates.join('\n  '),
    );
    process.exit(1);
  }
  return found;
}

const args = process.argv.slice(2);
const prefix = path.dirname(path.dirname(process.execPath));
const hasHeaders = fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'));
if (hasHeaders && !args.some((a) => a === '--nodedir' || a.startsWith('--nodedir='))) {
  args.push(`--nodedir=${prefix}`);
}
const result = spawnSync(process.execPath, [realNodeGyp(), ...args], { stdio: 'inherit' });
process.exit(result.status ?? 1);
