export { checkErrorRegistry, readErrorDocSection } from './errors.js';
export { repoRoot, makeTempDir } from './paths.js';
