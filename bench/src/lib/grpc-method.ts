// The one gRPC method of the stream benchmark, served by stream.child.js and called by
// stream.js: server streaming of raw Buffers (no serialization cost on either side).
const passthrough = (b: Buffer): Buffer => b;

export const GRPC_METHOD = {
  path: '/bench.Bench/Stream',
  requestStream: false,
  responseStream: true,
  requestSerialize: passthrough,
  requestDeserialize: passthrough,
  responseSerialize: passthrough,
  responseDeserialize: passthrough,
} as const;
