// Pseudo-terminals (PTY objects): a pair the tree made (/dev/ptmx and
// /dev/pts/N), the terminal the dump's caller gave the tree (--shell-job),
// or one whose master a process outside the tree holds (--external
// tty:[MAJOR:MINOR]); and the sessions they are the controlling terminal
// of. See pty.cc.

#ifndef LIBCKPT_LIB_FS_PTY_H_
#define LIBCKPT_LIB_FS_PTY_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "lib/objhash/objhash.h"

namespace ckpt::fs {

// One live task of the tree, as /proc/PID/stat shows its terminal.
struct TtyOfTask {
  pid_t pid = 0;
  pid_t sid = 0;
  uint32_t tty_nr = 0;  // its controlling terminal (the kernel's encoding; 0: none)
  pid_t tpgid = 0;      // that terminal's foreground process group
  uint32_t pid_ref = 0; // its pid objref
};

// The kind of the PTY objects (FdKindOps::target_kind of the terminal fd
// kinds).
objhash::ObjKind PtyObjKind();

// "tty:[136:3]": the name --external and --inherit-fd give a terminal.
bool IsTtyName(const std::string& name);

// Once every fd of the tree is collected: decides what each terminal is
// (the tree's own pair, the caller's with --shell-job, or external when
// `external` names it), refuses a terminal the tree cannot take along,
// and records which session each is the controlling terminal of, with
// its foreground group (`pgrp_refs`: group number -> pid objref).
absl::Status ResolvePtys(objhash::ObjHash& objects, const std::vector<TtyOfTask>& tasks,
                         const std::map<pid_t, uint32_t>& pgrp_refs,
                         const std::vector<std::string>& external, uint32_t dump_flags);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_PTY_H_
