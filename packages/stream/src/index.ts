export { STREAM_ERROR_CODES, StreamError, StreamInvalidArgumentError } from './errors.js';
export type { StreamErrorCode } from './errors.js';
