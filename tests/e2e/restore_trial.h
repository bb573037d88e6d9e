// One restore of a (possibly corrupt) image, run in a forked child so that
// a crash or a hang of the library is caught rather than suffered, and
// judged: a clear error, a restored tree that passes its own check (or at
// least runs), or a failure (crash, hang, stray process, silent wrong).
//
// The calling process must be a child subreaper with no other children:
// whatever a dead trial leaves behind is reparented to it, and
// RunRestoreTrial ends and reaps it, by PID.
//
//   TrialSetup setup{.output = s.output};
//   TrialResult r = RunRestoreTrial(image_fd, setup);
//   if (IsFailure(r.outcome)) ADD_FAILURE() << r.detail;

#ifndef LIBCKPT_TESTS_E2E_RESTORE_TRIAL_H_
#define LIBCKPT_TESTS_E2E_RESTORE_TRIAL_H_

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <vector>

namespace ckpt::testing {

enum class Outcome {
  kRefused,          // a non-OK status with a message
  kRestoredPassed,   // restored; the subject checked itself and passed
  kRestoredRan,      // restored; the tree ran (differently, as its image said) and was killed
  // Failures:
  kCrashed,          // the restoring process died (a signal, a sanitizer report)
  kHung,             // the restore did not return in time
  kStray,            // a process (or a file) was left behind
  kSilentWrong,      // accepted what must be refused, a wrong root, an empty message
};

bool IsFailure(Outcome o);
const char* OutcomeName(Outcome o);

// What /proc says of a task: enough to tell a tree restored whole.
struct TaskShape {
  pid_t pid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  int threads = 0;     // 0: not compared
  bool alive = false;  // neither a zombie nor gone
  bool operator==(const TaskShape&) const = default;
};
TaskShape ShapeOf(pid_t pid);
std::string Describe(const TaskShape& shape);

struct TrialSetup {
  std::string output;       // the subject's output file (it appends)
  int go_signal = SIGUSR1;  // what starts the restored subject's check
  // The subject's own verdict means something when this process's child
  // restores it (not so for a subject that checks its root's parent, or
  // one that needs more from the harness than the go signal).
  bool verdict_usable = true;
  // Wait for the verdict of a mutant that need not pass (else: check
  // that the tree runs, then kill it).
  bool await_verdict = true;
  // Where the verdict is not usable, a restore that must pass is judged
  // by the tree's shape: these tasks, alive, with their groups, sessions
  // and thread counts.
  std::vector<TaskShape> shape;
  // A restore must hand back the tree intact: anything but PASS is a
  // failure (structural mutants).
  bool must_pass = false;
  bool must_refuse = false;  // any restore at all is a failure
  pid_t expected_root = 0;   // 0: not known
  int restore_timeout_ms = 5000;
  int verdict_timeout_ms = 5000;
  std::string watch_dir;     // a directory whose entries must not change ("" none)
};

struct TrialResult {
  Outcome outcome = Outcome::kCrashed;
  std::string detail;  // the error, the verdict, or what went wrong
};

// Restores from `image_fd` (positioned at 0) in a child of this process.
TrialResult RunRestoreTrial(int image_fd, const TrialSetup& setup);

}  // namespace ckpt::testing

#endif  // LIBCKPT_TESTS_E2E_RESTORE_TRIAL_H_
