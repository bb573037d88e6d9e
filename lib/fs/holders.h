// Who holds a file: every process's /proc/PID/fd links, since no other
// interface lists the holders of a pipe or a socket.

#ifndef LIBCKPT_LIB_FS_HOLDERS_H_
#define LIBCKPT_LIB_FS_HOLDERS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace ckpt::fs {

// Of the inodes `inos` whose fd links read "<kind>:[INO]" ("pipe",
// "socket"), who holds each (pid, fd), among every process but `skip`.
std::map<uint64_t, std::vector<std::pair<pid_t, int>>> FdHolders(const std::string& kind,
                                                                 const std::set<uint64_t>& inos,
                                                                 const std::set<pid_t>& skip);

// /proc/PID/comm, or "?".
std::string ProcComm(pid_t pid);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_HOLDERS_H_
