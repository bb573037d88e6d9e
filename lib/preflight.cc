#include "lib/preflight.h"

#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/fs/fs.h"
#include "lib/fs/pipe.h"
#include "lib/fs/pty.h"
#include "lib/fs/inetsock.h"
#include "lib/fs/unixsock.h"
#include "lib/mm/maps.h"
#include "lib/mm/mm.h"
#include "lib/objhash/identity.h"
#include "lib/task/proc.h"

namespace ckpt {

absl::Status CheckSharedResources(objhash::ObjHash& objects, pid_t pid, pid_t parent,
                                  bool parent_alive, bool* shares_parent_files,
                                  pid_t* files_sibling, bool* files_grandparent,
                                  const std::function<pid_t(pid_t)>& parent_of) {
  struct {
    objhash::ObjKind kind;
    objhash::KcmpType kcmp;
    const char* what;
  } const checks[] = {
      {objhash::ObjKind::kMm, objhash::kKcmpVm, "its address space (CLONE_VM or vfork)"},
      {objhash::ObjKind::kFiles, objhash::kKcmpFiles, "its fd table (CLONE_FILES)"},
      {objhash::ObjKind::kFs, objhash::kKcmpFs, "its cwd and root (CLONE_FS)"},
  };
  *shares_parent_files = false;
  *files_sibling = 0;
  *files_grandparent = false;
  for (const auto& c : checks) {
    ASSIGN_OR_RETURN(objhash::ObjHash::Found f,
                     objects.LookupAdd(c.kind, objhash::Identity::OfTaskResource(c.kcmp, pid)));
    if (f.first) continue;
    // An fd table shared with the parent is restored shared: the child is
    // made with CLONE_FILES (the parent may have it from its own parent).
    pid_t owner = f.entry->id.pid;
    if (c.kind == objhash::ObjKind::kFiles && parent_alive &&
        (owner == parent || syscall(SYS_kcmp, pid, parent, KCMP_FILES, 0, 0) == 0)) {
      *shares_parent_files = true;
      continue;
    }
    // One shared with an earlier sibling that the parent no longer has
    // (clone with CLONE_FILES, then unshare in the parent): the restore
    // makes the siblings with CLONE_FILES and has the parent unshare.
    if (c.kind == objhash::ObjKind::kFiles && parent_alive && owner != parent &&
        parent_of(owner) == parent) {
      *files_sibling = owner;
      continue;
    }
    // Or its grandparent's, which its parent had when it made it and then
    // gave up: the restore makes the parent with CLONE_FILES too.
    const pid_t grandparent = parent_alive ? parent_of(parent) : 0;
    if (c.kind == objhash::ObjKind::kFiles && grandparent > 0 &&
        syscall(SYS_kcmp, pid, grandparent, KCMP_FILES, 0, 0) == 0) {
      *files_grandparent = true;
      continue;
    }
    return absl::UnimplementedError(absl::StrCat("task ", pid, " shares ", c.what, " with task ",
                                                 owner, owner == parent ? "" : " (not its parent)",
                                                 ": not supported yet"));
  }
  return absl::OkStatus();
}

absl::Status CheckTaskState(pid_t pid, const task::ProcStatus& st, const task::ProcStat& stat) {
  if (stat.flags & task::kPfKthread) {
    return absl::FailedPreconditionError(absl::StrCat("task ", pid, " is a kernel thread"));
  }
  if (st.state == 'Z' || st.state == 'X') {
    // The main thread gone, the others still running: /proc shows the
    // process as a zombie, but it is not one.
    if (st.threads > 1) {
      return absl::UnimplementedError(absl::StrCat(
          "task ", pid, ": its main thread has exited while ", st.threads - 1,
          " other threads run: not supported"));
    }
    return absl::OkStatus();
  }
  if (st.tracer_pid != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("task ", pid, " is already traced by process ", st.tracer_pid));
  }
  if (pid == getpid() || st.tgid == getpid()) {
    return absl::InvalidArgumentError("the tree contains the dumping process");
  }
  return absl::OkStatus();
}

absl::StatusOr<TreeReport> Preflight(pid_t root, const DumpOptions& options,
                                     PreflightDepth depth, PipeCheck* pipe_check) {
  if (root <= 0) return absl::InvalidArgumentError(absl::StrCat("bad PID ", root));
  if (root == getpid()) {
    return absl::InvalidArgumentError("the dumping process cannot dump itself");
  }
  absl::StatusOr<task::ProcStatus> root_st = task::ReadProcStatus(root);
  if (!root_st.ok()) {
    if (absl::IsNotFound(root_st.status())) {
      return absl::NotFoundError(absl::StrCat("task ", root, " does not exist"));
    }
    return root_st.status();
  }
  if (root_st->tgid != root) {
    return absl::InvalidArgumentError(absl::StrCat("task ", root, " is a thread of process ",
                                                   root_st->tgid, "; dump the process"));
  }
  if (root_st->state == 'Z' || root_st->state == 'X') {
    RETURN_IF_ERROR(CheckTaskState(root, *root_st, task::ProcStat{}));
    return absl::FailedPreconditionError(absl::StrCat("task ", root, " is a zombie"));
  }

  TreeReport report;
  const uint32_t dump_flags = options.shell_job ? objhash::kDumpShellJob : 0u;
  objhash::ObjHash shared;
  objhash::ObjHash terminals;  // the pseudo-terminals the tree uses
  std::vector<fs::TtyOfTask> ttys;
  std::map<pid_t, uint32_t> groups;  // group -> a stand-in for its pid objref
  std::map<uint64_t, fs::PipeEnd> pipes;
  std::map<uint64_t, fs::PipeEnd> sockets;  // unix sockets
  std::set<pid_t> tree;
  std::map<pid_t, bool> alive;  // pid -> a live task of the tree
  std::map<pid_t, pid_t> parents;  // pid -> its parent
  std::vector<std::pair<pid_t, pid_t>> queue = {{root, 0}};
  // A task that exits meanwhile (the tree may be busy) is not a problem:
  // whatever of it was read is dropped.
  auto problem = [&](const absl::Status& st) {
    if (!absl::IsNotFound(st)) report.problems.push_back(st);
  };
  for (size_t qi = 0; qi < queue.size(); ++qi) {
    auto [pid, parent] = queue[qi];
    absl::StatusOr<task::ProcStatus> st = task::ReadProcStatus(pid);
    absl::StatusOr<task::ProcStat> stat = task::ReadProcStat(pid);
    if (!st.ok() || !stat.ok()) continue;  // gone since its parent listed it
    tree.insert(pid);
    ++report.tasks;
    const bool zombie = st->state == 'Z' || st->state == 'X';
    alive[pid] = !zombie;
    absl::Status state = CheckTaskState(pid, *st, *stat);
    if (!state.ok()) problem(state);
    if (zombie) continue;
    report.threads += static_cast<uint64_t>(std::max(st->threads, 1));
    ttys.push_back({pid, stat->session, static_cast<uint32_t>(stat->tty_nr), stat->tpgid,
                    static_cast<uint32_t>(pid)});
    groups.emplace(stat->pgrp, static_cast<uint32_t>(stat->pgrp));
    // The foreground group may change any moment in a running tree (a job
    // ends): only the dump, on the stopped tree, checks it.
    if (stat->tpgid > 0) groups.emplace(stat->tpgid, static_cast<uint32_t>(stat->tpgid));

    bool shares_parent_files = false;
    pid_t files_sibling = 0;
    bool files_grandparent = false;
    parents[pid] = parent;
    absl::Status sharing = CheckSharedResources(
        shared, pid, parent, parent != 0 && alive[parent], &shares_parent_files, &files_sibling,
        &files_grandparent, [&](pid_t p) { return parents.count(p) ? parents[p] : 0; });
    if (!sharing.ok()) problem(sharing);

    if (!shares_parent_files && files_sibling == 0 && !files_grandparent) {
      absl::StatusOr<std::vector<int>> fds = fs::ListFds(pid);
      if (!fds.ok()) {
        problem(fds.status());
      } else {
        for (int fd : *fds) {
          absl::StatusOr<fs::ClassifiedFd> c = fs::ClassifyFd(pid, fd, dump_flags);
          if (!c.ok()) {
            // An fd closed meanwhile (the tree runs) is no problem: the
            // dump looks again once the tree is stopped.
            if (!ReadLink(absl::StrCat("/proc/", pid, "/fd/", fd)).ok()) continue;
            problem(c.status());
            continue;
          }
          if (absl::StartsWith(c->file.path, "pipe:[")) {  // an anonymous pipe
            pipes.emplace(c->file.st.st_ino, fs::PipeEnd{pid, fd});
          }
          if (S_ISSOCK(c->file.st.st_mode)) sockets.emplace(c->file.st.st_ino, fs::PipeEnd{pid, fd});
          if (c->kind->target_kind == fs::PtyObjKind()) {
            absl::StatusOr<uint32_t> ref = c->kind->register_target(terminals, c->probe, c->file);
            if (!ref.ok()) problem(ref.status());
          }
        }
      }
    }
    absl::StatusOr<std::vector<mm::Vma>> vmas =
        depth == PreflightDepth::kThorough
            ? mm::ReadVmas(pid)
            : [&]() -> absl::StatusOr<std::vector<mm::Vma>> {
                ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", pid, "/maps")));
                return mm::ParseMaps(text);
              }();
    if (!vmas.ok()) {
      problem(vmas.status());
    } else {
      for (const mm::Vma& v : *vmas) {
        if (v.name == "[vsyscall]") continue;
        absl::Status refused = mm::RefuseVma(pid, v, /*deleted_files_ok=*/true);
        if (!refused.ok()) report.problems.push_back(refused);
      }
    }
    absl::StatusOr<std::string> exe = ReadLink(absl::StrCat("/proc/", pid, "/exe"));
    if (exe.ok() && absl::EndsWith(*exe, " (deleted)")) {
      report.problems.push_back(absl::UnimplementedError(absl::StrCat(
          "task ", pid, ": its executable ", *exe, " was deleted: not supported yet")));
    }

    absl::StatusOr<std::vector<pid_t>> children = task::ListChildren(pid);
    if (children.ok()) {
      for (pid_t c : *children) queue.push_back({c, pid});
    }
  }

  std::vector<std::string> pipe_names, unix_names, tty_names;
  for (const std::string& name : options.external) {
    (fs::IsUnixName(name) ? unix_names : fs::IsTtyName(name) ? tty_names : pipe_names).push_back(name);
  }
  // Terminals: what the dump decides of them, on what the tree holds now.
  absl::Status terminal = fs::ResolvePtys(terminals, ttys, groups, tty_names, dump_flags);
  if (!terminal.ok()) problem(terminal);
  absl::StatusOr<std::vector<std::string>> unix_outside =
      fs::UnixPeerProblems(sockets, tree, unix_names);
  if (!unix_outside.ok()) {
    report.problems.push_back(unix_outside.status());
  } else {
    for (const std::string& p : *unix_outside) {
      report.problems.push_back(absl::FailedPreconditionError(p));
    }
  }
  for (const std::string& p : fs::InetPreflightProblems(sockets, tree)) {
    report.problems.push_back(absl::UnimplementedError(p));
  }
  std::set<uint64_t> external;
  absl::StatusOr<std::vector<std::string>> outside =
      fs::ExternalPipeProblems(pipes, tree, pipe_names, &external);
  if (pipe_check != nullptr && outside.ok()) {
    for (const auto& [ino, end] : pipes) pipe_check->checked.insert(ino);
    pipe_check->external = external;
  }
  if (!outside.ok()) {
    report.problems.push_back(outside.status());
  } else {
    for (const std::string& p : *outside) {
      report.problems.push_back(absl::FailedPreconditionError(p));
    }
  }
  return report;
}

}  // namespace ckpt
