{
  "targets": [
    {
      "target_name": "switchyard_shm",
      "sources": ["native/shm.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [["OS!='linux'", {"sources!": ["native/shm.c"]}]]
    }
  ]
}
