export { CLI_ERROR_CODES, CliError, CliInvalidArgumentError } from './errors.js';
export type { CliErrorCode } from './errors.js';
export { createProgram, main } from './program.js';
export type { CliIo } from './program.js';
