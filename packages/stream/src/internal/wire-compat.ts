// The codec shapes come from @switchyard/wire; re-exported here so the codec module has one import site.
export { INCOMPLETE, INSUFFICIENT_BUFFER, incomplete } from '@switchyard/wire';
export type { Codec, Decoded, Incomplete } from '@switchyard/wire';
