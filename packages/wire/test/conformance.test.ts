import { transportConformance } from '@switchyard/wire';
import { memoryPair, tcpPair, unixPair } from './helpers/pairs.js';

await transportConformance('TCP', tcpPair);
await transportConformance('Unix socket', unixPair);
await transportConformance('in-memory pair', memoryPair);
