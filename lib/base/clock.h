// CLOCK_MONOTONIC in nanoseconds, and conversions between nanoseconds and
// the kernel's timespec / timeval.
//
//   const int64_t start = MonotonicNs();
//   struct timespec left = NsToTimespec(deadline - MonotonicNs());

#ifndef LIBCKPT_LIB_BASE_CLOCK_H_
#define LIBCKPT_LIB_BASE_CLOCK_H_

#include <sys/time.h>
#include <time.h>

#include <cstdint>

namespace ckpt {

inline constexpr int64_t kNsPerSec = 1000000000;

inline int64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

inline int64_t TimespecToNs(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}
inline int64_t TimevalToNs(const struct timeval& tv) {
  return static_cast<int64_t>(tv.tv_sec) * kNsPerSec + static_cast<int64_t>(tv.tv_usec) * 1000;
}
// `ns` >= 0.
inline struct timespec NsToTimespec(int64_t ns) {
  return {static_cast<time_t>(ns / kNsPerSec), static_cast<long>(ns % kNsPerSec)};
}
inline struct timeval NsToTimeval(int64_t ns) {
  return {static_cast<time_t>(ns / kNsPerSec), static_cast<suseconds_t>((ns % kNsPerSec) / 1000)};
}

}  // namespace ckpt

#endif  // LIBCKPT_LIB_BASE_CLOCK_H_
