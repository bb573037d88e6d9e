// The options of an inet socket that INET_SOCK's own fields do not name:
// those that ask for control messages (IP_PKTINFO, IP_RECVERR,
// SO_TIMESTAMP, IPV6_RECVPKTINFO, ...), multicast sending, path MTU
// discovery, a raw socket's IP_HDRINCL, IPV6_CHECKSUM and ICMP filter, and
// TCP's and UDP's lesser settings. Each is read with getsockopt and saved
// when it differs from what a fresh socket of the same kind has (read in
// the same dump), so that most sockets save none. They go in one INET_OPTS
// record after their INET_SOCK; the restore sets them (before the socket
// is bound) from a fixed list of options it knows, nothing else.

#ifndef LIBCKPT_LIB_FS_INETOPTS_H_
#define LIBCKPT_LIB_FS_INETOPTS_H_

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/writer.h"

namespace ckpt::fs {

// A fresh socket's values, by (family, type, protocol), read once a dump.
class InetOptDefaults {
 public:
  // Empty when a fresh socket of the kind cannot be made (every readable
  // option is saved then).
  const std::vector<image::ckpt_sockopt>& For(int family, int type, int protocol);

 private:
  std::map<std::tuple<int, int, int>, std::vector<image::ckpt_sockopt>> by_kind_;
};

// The options of socket `fd` (of the kind given) that differ from the
// defaults.
std::vector<image::ckpt_sockopt> ReadInetOptions(int fd, int family, int type, int protocol,
                                                 InetOptDefaults& defaults);

absl::Status WriteInetOptions(image::Writer& writer, uint32_t objref,
                              const std::vector<image::ckpt_sockopt>& opts);

// The INET_OPTS record after INET_SOCK `objref`, checked: each option is
// one the list knows, for a socket of this kind, of its size.
absl::StatusOr<std::vector<image::ckpt_sockopt>> ReadInetOptionsRecord(image::Reader& reader, uint32_t objref,
                                                                       int family, int type, int protocol);

// Sets them on `fd`; an error names the option.
absl::Status SetInetOptions(int fd, const std::vector<image::ckpt_sockopt>& opts);

// "IP_PKTINFO", or "option 1234 of level 0".
std::string InetOptionName(int level, int name);

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_INETOPTS_H_
