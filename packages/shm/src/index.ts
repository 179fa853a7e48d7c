export { SHM_ERROR_CODES, ShmError, ShmInvalidArgumentError } from './errors.js';
export type { ShmErrorCode } from './errors.js';
