// PIPE objects: a pipe or FIFO, saved once with its capacity and the bytes
// it holds, however many descriptions (ends, dups, reopens) refer to it.
//
// Dump: the bytes are copied out with tee(2) through a read side of the
// pipe opened by this process, so the pipe keeps them (--leave-running
// leaves it intact). Restore: the restorer makes one pipe (or opens the
// FIFO), sets its capacity, writes the bytes back, and holds it; every
// description (a FILE of kind pipe) is then opened on it through
// /proc/self/fd.

#ifndef LIBCKPT_LIB_FS_PIPE_H_
#define LIBCKPT_LIB_FS_PIPE_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/objhash/handlers.h"
#include "lib/objhash/objhash.h"

namespace ckpt::fs {

inline constexpr objhash::ObjKind kObjPipe{3};

// Registers the pipe behind fd `fd` of task `pid` (inode `st`); `fifo_path`
// is empty for an anonymous pipe. Returns its objref.
absl::StatusOr<uint32_t> RegisterPipe(objhash::ObjHash& objects, pid_t pid, int fd,
                                      const struct stat& st, const std::string& fifo_path);

// One end of an anonymous pipe in the tree: where it was first met.
struct PipeEnd {
  pid_t pid = 0;
  int fd = -1;
};

// Of `pipes` (by inode), those that a process outside `tree` also holds:
// the ones named in `external` go into `external_inos`, every other one
// is a problem naming the task, the fd, the pipe and who holds it outside.
// An error for an `external` name that is no pipe of the tree.
absl::StatusOr<std::vector<std::string>> ExternalPipeProblems(
    const std::map<uint64_t, PipeEnd>& pipes, const std::set<pid_t>& tree,
    const std::vector<std::string>& external, std::set<uint64_t>* external_inos);

// The anonymous pipes of `objects` that a process outside `tree` (PIDs as
// this process sees them) also holds: each one named in `external` is
// marked external (saved by name, its bytes left where they are); every
// other one is an error, all of them in one message, naming the task, the
// fd, the pipe and the process outside that holds it.
// `checked` and `known_external`: pipes a pre-flight already looked at
// (and which of them it found external), so that only newer ones cost a
// scan of every process's fds.
absl::Status ResolveExternalPipes(objhash::ObjHash& objects, const std::set<pid_t>& tree,
                                  const std::vector<std::string>& external,
                                  const std::set<uint64_t>& checked = {},
                                  const std::set<uint64_t>& known_external = {});

// RestoredObject::data of a PIPE: whether the fd is the caller's, given for
// an external pipe (its ends are then dups of it, not new opens).
struct RestoredPipe {
  bool external = false;
};

absl::Status CheckpointPipe(objhash::CheckpointContext& ctx, const objhash::ObjHash::Entry& entry);
absl::StatusOr<objhash::RestoredObject> RestorePipe(objhash::RestoreContext& ctx,
                                                    const image::Record& rec);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_PIPE_H_
