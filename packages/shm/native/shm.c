/*
 * @switchyard/shm native seam: only what the operating system must provide.
 *
 *   map(path, size, create)            mmap a file MAP_SHARED (create: O_EXCL + posix_fallocate)
 *   unmap(buffer)                      detach the buffer now; the finalizer munmaps once
 *   msync(buffer, offset, length, sync)
 *   futexWait(buffer, offset, expected, timeoutMs) / futexWake(buffer, offset, count)
 *   fifoCreate(path) / fifoOpen(path) / eventfd() / ring(fd) / closeFd(fd)
 *   watch(fd, callback) / unwatch(handle) doorbell polled by the event loop (uv_poll)
 *
 * Every argument is validated in TypeScript before the call; the checks here only keep a bad
 * call from crashing the process (they throw a plain Error). System call failures are
 * returned as negative errno values (or thrown with `code`/`errno`/`syscall` for map), so the
 * TypeScript layer maps them to typed errors. Nothing here blocks on libuv's threadpool.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#define CHECK(env, call)                                                                       \
  do {                                                                                         \
    if ((call) != napi_ok) {                                                                   \
      napi_throw_error((env), NULL, "switchyard_shm: N-API call failed: " #call);             \
      return NULL;                                                                             \
    }                                                                                          \
  } while (0)

typedef napi_status (*create_external_sab_fn)(napi_env, void *, size_t, napi_finalize, void *,
                                              napi_value *);
/* Looked up at run time: Node 22+ may offer it; Node 20 does not. */
static create_external_sab_fn create_external_sab = NULL;

typedef struct {
  void *addr;
  size_t length;
} mapping_t;

static void mapping_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping_t *m = (mapping_t *)hint;
  if (m != NULL) {
    if (m->addr != NULL && m->length > 0) munmap(m->addr, m->length);
    free(m);
  }
}

static napi_value throw_errno(napi_env env, int err, const char *syscall_name, const char *path) {
  napi_value error, msg, code, errnum, sc;
  char text[512];
  snprintf(text, sizeof text, "%s %s: %s", syscall_name, path != NULL ? path : "", strerror(err));
  const char *name = "EUNKNOWN";
  switch (err) {
    case ENOENT: name = "ENOENT"; break;
    case EEXIST: name = "EEXIST"; break;
    case ENOSPC: name = "ENOSPC"; break;
    case EFBIG: name = "EFBIG"; break;
    case EACCES: name = "EACCES"; break;
    case EPERM: name = "EPERM"; break;
    case EINVAL: name = "EINVAL"; break;
    case ENOMEM: name = "ENOMEM"; break;
    case EISDIR: name = "EISDIR"; break;
    case ENOTDIR: name = "ENOTDIR"; break;
    case ENODEV: name = "ENODEV"; break;
    case EOPNOTSUPP: name = "EOPNOTSUPP"; break;
    case EMFILE: name = "EMFILE"; break;
    case ENFILE: name = "ENFILE"; break;
    case EROFS: name = "EROFS"; break;
    case EDQUOT: name = "EDQUOT"; break;
    default: break;
  }
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &error);
  napi_create_int32(env, -err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &sc);
  napi_set_named_property(env, error, "syscall", sc);
  napi_throw(env, error);
  return NULL;
}

static int get_path(napi_env env, napi_value value, char *out, size_t size) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, out, size, &len) != napi_ok) return -1;
  if (len + 1 >= size) return -1;
  return 0;
}

/* map(path: string, size: number, create: boolean, populate: boolean): ArrayBuffer | SharedArrayBuffer */
static napi_value Map(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[PATH_MAX];
  int64_t size = 0;
  bool create = false, populate = false;
  if (argc < 4 || get_path(env, argv[0], path, sizeof path) != 0 ||
      napi_get_value_int64(env, argv[1], &size) != napi_ok ||
      napi_get_value_bool(env, argv[2], &create) != napi_ok ||
      napi_get_value_bool(env, argv[3], &populate) != napi_ok) {
    napi_throw_type_error(env, NULL, "map(path, size, create, populate): bad arguments");
    return NULL;
  }
  int fd;
  if (create) {
    if (size <= 0) {
      napi_throw_range_error(env, NULL, "map: size must be positive");
      return NULL;
    }
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return throw_errno(env, errno, "open", path);
    /* Reserve every block now: a full tmpfs fails here with ENOSPC, not with SIGBUS later. */
    int rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc != 0) {
      close(fd);
      unlink(path);
      return throw_errno(env, rc, "posix_fallocate", path);
    }
  } else {
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return throw_errno(env, errno, "open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
      int err = errno;
      close(fd);
      return throw_errno(env, err, "fstat", path);
    }
    if (!S_ISREG(st.st_mode)) {
      close(fd);
      return throw_errno(env, EINVAL, "fstat", path);
    }
    /* Map what the file holds now, never more: touching pages past the end is SIGBUS. */
    size = (int64_t)st.st_size;
    if (size <= 0) {
      close(fd);
      return throw_errno(env, EINVAL, "mmap", path);
    }
  }
  void *addr = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED | (populate ? MAP_POPULATE : 0),
                    fd, 0);
  int err = errno;
  close(fd);
  if (addr == MAP_FAILED) return throw_errno(env, err, "mmap", path);

  mapping_t *m = (mapping_t *)malloc(sizeof *m);
  if (m == NULL) {
    munmap(addr, (size_t)size);
    return throw_errno(env, ENOMEM, "malloc", path);
  }
  m->addr = addr;
  m->length = (size_t)size;
  napi_value result;
  napi_status status;
  if (create_external_sab != NULL)
    status = create_external_sab(env, addr, (size_t)size, mapping_finalize, m, &result);
  else
    status = napi_create_external_arraybuffer(env, addr, (size_t)size, mapping_finalize, m, &result);
  if (status != napi_ok) {
    munmap(addr, (size_t)size);
    free(m);
    napi_throw_error(env, NULL, "switchyard_shm: cannot wrap the mapping in an ArrayBuffer");
    return NULL;
  }
  /* Remember the mapping on the buffer so unmap() can release it before the collector does. */
  if (create_external_sab == NULL) napi_wrap(env, result, m, NULL, NULL, NULL);
  return result;
}

static int get_buffer(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  void *ptr = NULL;
  bool is_ab = false;
  if (napi_is_arraybuffer(env, value, &is_ab) == napi_ok && is_ab) {
    if (napi_get_arraybuffer_info(env, value, &ptr, length) != napi_ok) return -1;
    *data = (uint8_t *)ptr;
    return 0;
  }
  /* TypeScript passes a Uint8Array over the whole mapping, which also covers the Node 22+
     SharedArrayBuffer case (napi_is_arraybuffer is false for a SharedArrayBuffer). */
  bool is_ta = false;
  if (napi_is_typedarray(env, value, &is_ta) == napi_ok && is_ta) {
    napi_typedarray_type type;
    size_t count, offset;
    napi_value ab;
    if (napi_get_typedarray_info(env, value, &type, &count, &ptr, &ab, &offset) != napi_ok) return -1;
    if (type != napi_uint8_array) return -1;
    *data = (uint8_t *)ptr;
    *length = count;
    return 0;
  }
  return -1;
}

/* unmap(buffer): detach an ArrayBuffer mapping and munmap it now; true when done. Detaching
   first makes every view of it length 0, so no JavaScript can reach the unmapped pages; the
   finalizer then finds nothing left to unmap. */
static napi_value Unmap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool is_ab = false;
  napi_value result;
  void *wrapped = NULL;
  if (argc < 1 || napi_is_arraybuffer(env, argv[0], &is_ab) != napi_ok || !is_ab ||
      napi_unwrap(env, argv[0], &wrapped) != napi_ok || wrapped == NULL) {
    /* A SharedArrayBuffer cannot be detached: its finalizer unmaps once it is collected. */
    napi_get_boolean(env, false, &result);
    return result;
  }
  mapping_t *m = (mapping_t *)wrapped;
  bool detached = false;
  if (napi_is_detached_arraybuffer(env, argv[0], &detached) != napi_ok) detached = false;
  if (detached || m->addr == NULL) {
    napi_get_boolean(env, true, &result);
    return result;
  }
  /* Take the range out of `m` before detaching: should a runtime run the finalizer (which
     frees `m`) during the detach, it then finds nothing to unmap and `m` is not touched again. */
  void *addr = m->addr;
  size_t length = m->length;
  m->addr = NULL;
  if (napi_detach_arraybuffer(env, argv[0]) != napi_ok) {
    m->addr = addr;
    napi_get_boolean(env, false, &result);
    return result;
  }
  munmap(addr, length);
  napi_get_boolean(env, true, &result);
  return result;
}

/* msync(view: Uint8Array, offset, length, sync): 0 or -errno */
static napi_value Msync(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *data;
  size_t length;
  int64_t offset = 0, count = 0;
  bool sync = true;
  if (argc < 4 || get_buffer(env, argv[0], &data, &length) != 0 ||
      napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &count) != napi_ok ||
      napi_get_value_bool(env, argv[3], &sync) != napi_ok || offset < 0 || count < 0 ||
      (uint64_t)offset + (uint64_t)count > length) {
    napi_throw_type_error(env, NULL, "msync(view, offset, length, sync): bad arguments");
    return NULL;
  }
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t start = (uintptr_t)(data + offset);
  uintptr_t aligned = start & ~((uintptr_t)page - 1);
  int rc = msync((void *)aligned, (size_t)(start - aligned) + (size_t)count, sync ? MS_SYNC : MS_ASYNC);
  napi_value result;
  napi_create_int32(env, rc == 0 ? 0 : -errno, &result);
  return result;
}

static int get_word(napi_env env, napi_value buf, napi_value off, uint32_t **word) {
  uint8_t *data;
  size_t length;
  int64_t offset;
  if (get_buffer(env, buf, &data, &length) != 0) return -1;
  if (napi_get_value_int64(env, off, &offset) != napi_ok) return -1;
  if (offset < 0 || (offset & 3) != 0 || (uint64_t)offset + 4 > length) return -1;
  *word = (uint32_t *)(data + offset);
  return 0;
}

/* futexWait(view, offset, expected, timeoutMs): 0 woken, 1 value differed, 2 timed out,
   3 interrupted. timeoutMs < 0 waits forever. Shared futex (no FUTEX_PRIVATE_FLAG), so a
   waiter in one process is woken by a waker in another. */
static napi_value FutexWait(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t *word;
  int32_t expected;
  double timeout_ms;
  if (argc < 4 || get_word(env, argv[0], argv[1], &word) != 0 ||
      napi_get_value_int32(env, argv[2], &expected) != napi_ok ||
      napi_get_value_double(env, argv[3], &timeout_ms) != napi_ok) {
    napi_throw_type_error(env, NULL, "futexWait(view, offset, expected, timeoutMs): bad arguments");
    return NULL;
  }
  struct timespec ts, *tsp = NULL;
  if (timeout_ms >= 0) {
    ts.tv_sec = (time_t)(timeout_ms / 1000);
    ts.tv_nsec = (long)((timeout_ms - (double)ts.tv_sec * 1000) * 1e6);
    tsp = &ts;
  }
  long rc = syscall(SYS_futex, word, FUTEX_WAIT, (uint32_t)expected, tsp, NULL, 0);
  int out = 0;
  if (rc != 0) {
    if (errno == EAGAIN) out = 1;
    else if (errno == ETIMEDOUT) out = 2;
    else if (errno == EINTR) out = 3;
    else out = -errno;
  }
  napi_value result;
  napi_create_int32(env, out, &result);
  return result;
}

/* futexWake(view, offset, count): how many waiters were woken, or -errno. */
static napi_value FutexWake(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t *word;
  int32_t count;
  if (argc < 3 || get_word(env, argv[0], argv[1], &word) != 0 ||
      napi_get_value_int32(env, argv[2], &count) != napi_ok) {
    napi_throw_type_error(env, NULL, "futexWake(view, offset, count): bad arguments");
    return NULL;
  }
  long rc = syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
  napi_value result;
  napi_create_int32(env, rc >= 0 ? (int32_t)rc : -errno, &result);
  return result;
}

static napi_value int_result(napi_env env, int value) {
  napi_value result;
  napi_create_int32(env, value, &result);
  return result;
}

/* fifoCreate(path): mkfifo 0600 and open it O_RDWR|O_NONBLOCK (so it never sees EOF and the
   open never blocks); the fd or -errno. */
static napi_value FifoCreate(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[PATH_MAX];
  if (argc < 1 || get_path(env, argv[0], path, sizeof path) != 0) {
    napi_throw_type_error(env, NULL, "fifoCreate(path): bad arguments");
    return NULL;
  }
  if (mkfifo(path, 0600) != 0) return int_result(env, -errno);
  int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    unlink(path);
    return int_result(env, -err);
  }
  return int_result(env, fd);
}

/* fifoOpen(path): open the write side without blocking; ENXIO when nobody reads it. */
static napi_value FifoOpen(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[PATH_MAX];
  if (argc < 1 || get_path(env, argv[0], path, sizeof path) != 0) {
    napi_throw_type_error(env, NULL, "fifoOpen(path): bad arguments");
    return NULL;
  }
  struct stat st;
  if (lstat(path, &st) != 0) return int_result(env, -errno);
  if (!S_ISFIFO(st.st_mode)) return int_result(env, -EINVAL);
  int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  return int_result(env, fd >= 0 ? fd : -errno);
}

/* eventfd(): an in-process doorbell (worker threads share the fd); the fd or -errno. */
static napi_value Eventfd(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return int_result(env, fd >= 0 ? fd : -errno);
}

static int get_fd(napi_env env, napi_callback_info info, int *fd) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return -1;
  if (napi_get_value_int32(env, argv[0], fd) != napi_ok || *fd < 0) return -1;
  return 0;
}

/* ring(fd): 0, or -errno. A full pipe (EAGAIN) already holds a pending ring: success. */
static napi_value Ring(napi_env env, napi_callback_info info) {
  int fd;
  if (get_fd(env, info, &fd) != 0) {
    napi_throw_type_error(env, NULL, "ring(fd): bad arguments");
    return NULL;
  }
  uint64_t one = 1;
  ssize_t n = write(fd, &one, sizeof one);
  if (n < 0 && errno != EAGAIN) return int_result(env, -errno);
  return int_result(env, 0);
}

static napi_value CloseFd(napi_env env, napi_callback_info info) {
  int fd;
  if (get_fd(env, info, &fd) != 0) {
    napi_throw_type_error(env, NULL, "closeFd(fd): bad arguments");
    return NULL;
  }
  return int_result(env, close(fd) == 0 ? 0 : -errno);
}

/* The doorbell watcher: a uv_poll on the fd in this thread's event loop. On readable it
   drains the fd and calls back into JavaScript. */
typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  int fd;
  int active;
  int closing;
} watcher_t;

static void watcher_closed(uv_handle_t *handle) { free(handle->data); }

static void watcher_stop(watcher_t *w) {
  if (w->closing) return;
  w->closing = 1;
  if (w->active) uv_poll_stop(&w->poll);
  w->active = 0;
  if (w->callback != NULL) {
    napi_delete_reference(w->env, w->callback);
    w->callback = NULL;
  }
  uv_close((uv_handle_t *)&w->poll, watcher_closed);
}

static void watcher_ready(uv_poll_t *handle, int status, int events) {
  (void)events;
  watcher_t *w = (watcher_t *)handle->data;
  if (w->closing) return;
  /* One read drains every pending ring (each is 8 bytes); a ring that lands after it makes
     the fd readable again and polls again: level-triggered, nothing is lost. */
  char drain[512];
  ssize_t ignored = read(w->fd, drain, sizeof drain);
  (void)ignored;
  napi_handle_scope scope;
  if (napi_open_handle_scope(w->env, &scope) != napi_ok) return;
  napi_value callback, global, arg;
  if (napi_get_reference_value(w->env, w->callback, &callback) == napi_ok && callback != NULL) {
    napi_get_global(w->env, &global);
    napi_create_int32(w->env, status, &arg);
    napi_value result;
    /* An exception thrown by the callback surfaces as an uncaught exception. */
    if (napi_call_function(w->env, global, callback, 1, &arg, &result) != napi_ok) {
      bool pending = false;
      napi_is_exception_pending(w->env, &pending);
      if (pending) {
        napi_value exc;
        napi_get_and_clear_last_exception(w->env, &exc);
        napi_fatal_exception(w->env, exc);
      }
    }
  }
  napi_close_handle_scope(w->env, scope);
}

/* watch(fd, callback): an external handle; the loop stays alive while it is watched. */
static napi_value Watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  napi_valuetype type;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_typeof(env, argv[1], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, NULL, "watch(fd, callback): bad arguments");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(env, napi_get_uv_event_loop(env, &loop));
  watcher_t *w = (watcher_t *)calloc(1, sizeof *w);
  if (w == NULL) return throw_errno(env, ENOMEM, "calloc", NULL);
  w->env = env;
  w->fd = fd;
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc != 0) {
    free(w);
    return throw_errno(env, -rc, "uv_poll_init", NULL);
  }
  w->poll.data = w;
  if (napi_create_reference(env, argv[1], 1, &w->callback) != napi_ok) {
    watcher_stop(w);
    napi_throw_error(env, NULL, "watch: cannot reference the callback");
    return NULL;
  }
  rc = uv_poll_start(&w->poll, UV_READABLE, watcher_ready);
  if (rc != 0) {
    watcher_stop(w);
    return throw_errno(env, -rc, "uv_poll_start", NULL);
  }
  w->active = 1;
  napi_value handle;
  CHECK(env, napi_create_external(env, w, NULL, NULL, &handle));
  return handle;
}

/* setWatchRef(handle, ref): whether a watch keeps the event loop alive. A reader keeps its
   doorbell watched for its whole life and only refs it while parked: no epoll_ctl per park. */
static napi_value SetWatchRef(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data = NULL;
  bool ref = false;
  if (argc < 2 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL ||
      napi_get_value_bool(env, argv[1], &ref) != napi_ok) {
    napi_throw_type_error(env, NULL, "setWatchRef(handle, ref): bad arguments");
    return NULL;
  }
  watcher_t *w = (watcher_t *)data;
  if (!w->closing) {
    if (ref) uv_ref((uv_handle_t *)&w->poll);
    else uv_unref((uv_handle_t *)&w->poll);
  }
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

/* unwatch(handle): stop polling and release the handle (idempotent). */
static napi_value Unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "unwatch(handle): bad arguments");
    return NULL;
  }
  watcher_t *w = (watcher_t *)data;
  watcher_stop(w);
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

static napi_value Init(napi_env env, napi_value exports) {
  create_external_sab =
      (create_external_sab_fn)dlsym(RTLD_DEFAULT, "node_api_create_external_sharedarraybuffer");
  napi_property_descriptor props[] = {
      {"map", NULL, Map, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unmap", NULL, Unmap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"msync", NULL, Msync, NULL, NULL, NULL, napi_enumerable, NULL},
      {"futexWait", NULL, FutexWait, NULL, NULL, NULL, napi_enumerable, NULL},
      {"futexWake", NULL, FutexWake, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fifoCreate", NULL, FifoCreate, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fifoOpen", NULL, FifoOpen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventfd", NULL, Eventfd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ring", NULL, Ring, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, CloseFd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"watch", NULL, Watch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unwatch", NULL, Unwatch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setWatchRef", NULL, SetWatchRef, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  napi_value flag;
  napi_get_boolean(env, create_external_sab != NULL, &flag);
  napi_set_named_property(env, exports, "sharedArrayBuffer", flag);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
