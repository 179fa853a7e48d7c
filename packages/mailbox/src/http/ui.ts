/**
 * The web UI: static ES modules and CSS from the package's `ui/` folder, served at `/` and
 * `/ui/*`, plus the chart library (uPlot) resolved from node_modules at run time, so there is no
 * build step. The page holds no data: everything it shows it fetches from `/v1/` with the
 * user's bearer token, so these routes need no token themselves.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES: Readonly<Record<string, string>> = Object.freeze({
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
});

/**
 * No inline script anywhere and nothing from another origin: even if a message value slipped
 * into the markup unescaped it could not run. Inline styles are allowed because uPlot sizes its
 * elements through `style`.
 */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Asset {
  readonly type: string;
  readonly data: Buffer;
}

/** The package's `ui/` folder (next to `dist/` and `src/`). */
export function uiDirectory(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'ui');
}

/** Loads the assets once: the folder is small and immutable for the life of the process. */
function loadAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const dir = uiDirectory();
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (type !== undefined) assets.set(name, { type, data: readFileSync(join(dir, name)) });
  }
  const uplotDir = dirname(createRequire(import.meta.url).resolve('uplot'));
  assets.set('vendor/uPlot.esm.js', {
    type: TYPES['.js']!,
    data: readFileSync(join(uplotDir, 'uPlot.esm.js')),
  });
  assets.set('vendor/uPlot.min.css', {
    type: TYPES['.css']!,
    data: readFileSync(join(uplotDir, 'uPlot.min.css')),
  });
  return assets;
}

function send(reply: FastifyReply, asset: Asset): FastifyReply {
  return reply
    .type(asset.type)
    .header('content-security-policy', CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-cache')
    .send(asset.data);
}

/** Registers `GET /` (the page) and `GET /ui/<file>` (its modules, styles and the chart library). */
export function registerUi(app: FastifyInstance): void {
  const assets = loadAssets();
  const index = assets.get('index.html');
  if (index === undefined) throw new Error(`the web UI is missing: no index.html in ${uiDirectory()}`);
  app.get('/', async (_req, reply) => send(reply, index));
  app.get<{ Params: { '*': string } }>('/ui/*', async (req, reply) => {
    // Only names from the map: no path ever reaches the file system.
    const asset = assets.get(req.params['*']);
    if (asset === undefined)
      return reply.code(404).send({
        error: {
          code: 'MAILBOX_ERR_NOT_FOUND',
          message: `no UI file ${JSON.stringify(req.params['*'].slice(0, 100))}`,
        },
      });
    return send(reply, asset);
  });
}
