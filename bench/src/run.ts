// `npm run bench -- <name> [args…]` runs bench/dist/benchmarks/<name>.js, whose default export
// takes the remaining arguments. `npm run bench` alone lists the benchmarks.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('./benchmarks/', import.meta.url));
const available = readdirSync(dir)
  .filter((f) => f.endsWith('.js') && !f.includes('.worker.') && !f.includes('.child.'))
  .map((f) => f.slice(0, -3))
  .sort();

const [name, ...args] = process.argv.slice(2);
if (name === undefined || !available.includes(name)) {
  if (name !== undefined) console.error(`unknown benchmark "${name}"`);
  console.error(`usage: npm run bench -- <name> [args]\nbenchmarks: ${available.join(', ')}`);
  process.exit(name === undefined ? 0 : 2);
}
const mod = (await import(new URL(`./benchmarks/${name}.js`, import.meta.url).href)) as {
  default: (args: string[]) => Promise<void>;
};
await mod.default(args);
