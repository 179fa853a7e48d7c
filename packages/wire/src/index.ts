export { WIRE_ERROR_CODES, WireError, WireInvalidArgumentError } from './errors.js';
export type { WireErrorCode } from './errors.js';
