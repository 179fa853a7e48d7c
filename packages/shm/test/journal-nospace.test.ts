import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createJournal, openJournal, ShmChannelFullError, ShmNoSpaceError } from '@switchyard/shm';
import { makeTempDir } from '@switchyard/testkit';
import { Child } from './helpers.js';

/** A fresh 256 KiB tmpfs (the same file system as /dev/shm), or why there is none. */
function smallTmpfs(): { path: string; unmount: () => void } | string {
  const path = mkdtempSync(join(tmpdir(), 'switchyard-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', path], { stdio: 'pipe' });
  } catch (error) {
    rmSync(path, { recursive: true, force: true });
    return `cannot mount a tmpfs here (${(error as Error).message.split('\n')[0]})`;
  }
  return {
    path,
    unmount: () => {
      // Lazily if a failed assertion left a mapping open: never leave the mount behind.
      execFileSync('umount', ['-l', path]);
      rmSync(path, { recursive: true, force: true });
    },
  };
}

const mount = process.platform === 'linux' ? smallTmpfs() : 'not Linux';

test(
  'a full tmpfs gives ShmNoSpaceError at create (posix_fallocate), never SIGBUS later',
  { skip: typeof mount === 'string' ? mount : false },
  () => {
    if (typeof mount === 'string') return;
    try {
      const big = join(mount.path, 'big');
      assert.throws(
        () =>
          createJournal(big, {
            writerId: 1,
            channelId: 1,
            capacity: 1 << 20,
            maxMessageLength: 1024,
            timeout: 1000,
          }),
        (e: unknown) => e instanceof ShmNoSpaceError && /ENOSPC/.test(e.message),
      );
      assert.equal(existsSync(big), false, 'the failed file is removed');
      // A journal that fits is usable to its last byte; the next one no longer fits.
      const path = join(mount.path, 'fits');
      const writer = createJournal(path, {
        writerId: 1,
        channelId: 1,
        capacity: 200 * 1024,
        maxMessageLength: 1024,
        timeout: 1000,
      });
      let written = 0;
      for (;;) {
        try {
          written += writer.write(new Uint8Array(1000).fill(1));
        } catch (error) {
          assert.ok(error instanceof ShmChannelFullError);
          break;
        }
      }
      assert.ok(written > 190 * 1024);
      assert.throws(
        () =>
          createJournal(join(mount.path, 'second'), {
            writerId: 1,
            channelId: 2,
            capacity: 128 * 1024,
            maxMessageLength: 64,
            timeout: 1000,
          }),
        ShmNoSpaceError,
      );
      writer.close();
      const reader = openJournal(path);
      let n = 0;
      while (reader.tryRead() !== null) n++;
      assert.equal(n, Math.floor(written / 1008));
      assert.equal(reader.ended, true);
      reader.close();
    } finally {
      mount.unmount();
    }
  },
);

test('a file size limit (RLIMIT_FSIZE, EFBIG) gives ShmNoSpaceError too, in a child process', async () => {
  using dir = makeTempDir();
  // SIGXFSZ ignored, as a server would: posix_fallocate then fails with EFBIG.
  const child = new Child(['create', join(dir.path, 'j'), String(4 << 20)], {
    shell: "ulimit -f 1024; trap '' XFSZ;",
  });
  const outcome = await child.message<{ error?: string; message?: string }>('error');
  assert.equal(outcome.error, 'SHM_ERR_NO_SPACE', outcome.message);
  assert.match(outcome.message ?? '', /EFBIG/);
  assert.equal(await child.exit(), 0);
  assert.equal(existsSync(join(dir.path, 'j')), false);
});
