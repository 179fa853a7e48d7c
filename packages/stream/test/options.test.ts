import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CLIENT_DEFAULTS,
  DEFAULT_MAX_FRAME_SIZE,
  SERVER_DEFAULTS,
  StreamClient,
  StreamInvalidArgumentError,
  StreamServer,
  resolveClientOptions,
  resolveServerOptions,
  type ClientOptions,
  type ServerOptions,
} from '@switchyard/stream';

test('defaults carry chanserv’s values', () => {
  assert.equal(DEFAULT_MAX_FRAME_SIZE, 100 * 1024 * 1024);
  assert.equal(CLIENT_DEFAULTS.dialTimeoutMs, 10_000);
  assert.equal(CLIENT_DEFAULTS.frameBufferSize, 1024);
  assert.equal(CLIENT_DEFAULTS.sourceBufferSize, 128);
  assert.equal(CLIENT_DEFAULTS.maxFrameSize, DEFAULT_MAX_FRAME_SIZE);
  assert.equal(SERVER_DEFAULTS.chanAcceptTimeoutMs, 30_000);
  assert.equal(SERVER_DEFAULTS.maxFrameSize, DEFAULT_MAX_FRAME_SIZE);
  assert.equal(SERVER_DEFAULTS.useCompression, false);
  assert.ok(Object.isFrozen(CLIENT_DEFAULTS) && Object.isFrozen(SERVER_DEFAULTS));
  const resolved = resolveClientOptions({ frameBufferSize: 7 });
  assert.equal(resolved.frameBufferSize, 7);
  assert.equal(resolved.sourceBufferSize, 128);
});

test('the frame window per source is derived from the byte window unless given', () => {
  assert.equal(CLIENT_DEFAULTS.streamWindowFrames, 0);
  assert.equal(CLIENT_DEFAULTS.streamWindowBytes, 4 * 1024 * 1024);
  // 4 MiB / 64 B: frames of 64 bytes and more are bounded by the byte window.
  assert.equal(resolveClientOptions({}).streamWindowFrames, 65_536);
  assert.equal(resolveClientOptions({ streamWindowBytes: 640_000 }).streamWindowFrames, 10_000);
  // Never below frameBufferSize.
  assert.equal(resolveClientOptions({ streamWindowBytes: 1000 }).streamWindowFrames, 1024);
  assert.equal(resolveClientOptions({ frameBufferSize: 100_000 }).streamWindowFrames, 100_000);
  // Given: taken as it is.
  assert.equal(resolveClientOptions({ streamWindowFrames: 5 }).streamWindowFrames, 5);
});

test('bad client options are refused, naming the option', () => {
  const cases: [ClientOptions, RegExp][] = [
    [{ dialTimeoutMs: -1 }, /"dialTimeoutMs"/],
    [{ frameBufferSize: 0 }, /"frameBufferSize"/],
    [{ streamWindowFrames: -1 }, /"streamWindowFrames"/],
    [{ streamWindowFrames: 2 ** 31 }, /"streamWindowFrames"/],
    [{ sourceBufferSize: 1.5 }, /"sourceBufferSize"/],
    [{ maxFrameSize: 0 }, /"maxFrameSize"/],
    [{ streamWindowBytes: '1' as unknown as number }, /"streamWindowBytes"/],
    [{ directory: {} as never }, /"directory"/],
    [{ onError: 1 as never }, /"onError"/],
    [{ dial: 'x' as never }, /"dial"/],
    [{ nope: 1 } as never, /unknown option "nope"/],
  ];
  for (const [options, message] of cases) {
    assert.throws(
      () => new StreamClient(options),
      (e) => e instanceof StreamInvalidArgumentError && message.test(e.message),
    );
  }
});

test('bad server options are refused, naming the option', () => {
  const cases: [ServerOptions, RegExp][] = [
    [{ chanAcceptTimeoutMs: -5 }, /"chanAcceptTimeoutMs"/],
    [{ maxErrorMass: 0 }, /"maxErrorMass"/],
    [{ useCompression: 1 as never }, /"useCompression"/],
    [{ errorBackoffBaseMs: 100, errorBackoffMaxMs: 10 }, /"errorBackoffMaxMs"/],
    [{ onMaxErrorMass: {} as never }, /"onMaxErrorMass"/],
    [{ keepaliveTimeoutMs: Number.NaN }, /"keepaliveTimeoutMs"/],
  ];
  for (const [options, message] of cases) {
    assert.throws(
      () => new StreamServer(options),
      (e) => e instanceof StreamInvalidArgumentError && message.test(e.message),
    );
  }
  assert.equal(resolveServerOptions({ maxErrorMass: 2 }).maxErrorMass, 2);
});

test('bad arguments to post and listen are refused before anything is sent', async () => {
  const client = new StreamClient();
  assert.throws(() => client.post('', new Uint8Array()), StreamInvalidArgumentError);
  assert.throws(() => client.post('tcp://127.0.0.1:1', 'text' as never), StreamInvalidArgumentError);
  assert.throws(
    () => client.post('tcp://127.0.0.1:1', new Uint8Array(), { tags: { a: 1 as never } }),
    StreamInvalidArgumentError,
  );
  assert.throws(
    () => client.post('tcp://127.0.0.1:1', new Uint8Array(), { signal: {} as never }),
    StreamInvalidArgumentError,
  );
  const small = new StreamClient({ maxFrameSize: 10 });
  assert.throws(() => small.post('tcp://127.0.0.1:1', new Uint8Array(11)), StreamInvalidArgumentError);
  const server = new StreamServer();
  await assert.rejects(server.listen('tcp://127.0.0.1:0', 'x' as never), StreamInvalidArgumentError);
  await assert.rejects(
    server.listen('nonsense', async function* () {}),
    StreamInvalidArgumentError,
  );
  await client.close();
  await small.close();
  await server.close();
});

test('close is idempotent and asyncDispose closes', async () => {
  const server = new StreamServer();
  await server.listen('tcp://127.0.0.1:0', async function* () {});
  await Promise.all([server.close(), server.close()]);
  await server[Symbol.asyncDispose]();
  const client = new StreamClient();
  await client.close();
  await client.close();
  await client[Symbol.asyncDispose]();
});
