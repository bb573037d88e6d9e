#include "lib/base/trace.h"

#include <cstdio>
#include <cstdlib>

namespace ckpt {

bool TraceEnabled() {
  static const bool enabled = [] {
    const char* v = getenv("CKPT_TRACE");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return enabled;
}

void TraceSpan(const char* name, int64_t start_ns, int64_t end_ns) {
  if (!TraceEnabled()) return;
  fprintf(stderr, "ckpt trace: %-32s %9.3f ms\n", name, static_cast<double>(end_ns - start_ns) / 1e6);
}

Phase::~Phase() {
  if (!TraceEnabled()) return;
  struct timespec end;
  clock_gettime(CLOCK_MONOTONIC, &end);
  double ms = (end.tv_sec - start_.tv_sec) * 1e3 + (end.tv_nsec - start_.tv_nsec) / 1e6;
  fprintf(stderr, "ckpt trace: %-32s %9.3f ms\n", name_, ms);
}

}  // namespace ckpt
