// Phase timing for performance work: with CKPT_TRACE=1 in the
// environment, each Phase prints its wall time to stderr when it ends.
//
//   { Phase p("dump: collect"); ... }

#ifndef LIBCKPT_LIB_BASE_TRACE_H_
#define LIBCKPT_LIB_BASE_TRACE_H_

#include <time.h>

#include <cstdint>

namespace ckpt {

bool TraceEnabled();

// With CKPT_TRACE: prints a span measured elsewhere (CLOCK_MONOTONIC ns),
// in the same form as a Phase.
void TraceSpan(const char* name, int64_t start_ns, int64_t end_ns);

class Phase {
 public:
  explicit Phase(const char* name) : name_(name) {
    if (TraceEnabled()) clock_gettime(CLOCK_MONOTONIC, &start_);
  }
  ~Phase();
  Phase(const Phase&) = delete;
  Phase& operator=(const Phase&) = delete;

 private:
  const char* name_;
  struct timespec start_ {};
};

}  // namespace ckpt

#endif  // LIBCKPT_LIB_BASE_TRACE_H_
