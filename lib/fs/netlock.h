// The network lock: while a TCP connection's socket is gone (dumped, the
// tree killed, not yet restored), the kernel would answer its peer's
// packets with a reset. The lock drops them instead: an nftables table
// "inet ckpt_lock_<16 hex digits>" with one rule per direction of each
// locked connection, on input and output, made with Debian's `nft`
// (package nftables). The peer retransmits once the lock is lifted.

#ifndef LIBCKPT_LIB_FS_NETLOCK_H_
#define LIBCKPT_LIB_FS_NETLOCK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace ckpt::fs {

// One TCP connection: addresses in network order (IPv4 in the first 4
// bytes), ports in host order.
struct LockedConn {
  int family = 0;
  uint8_t src[16] = {};
  uint8_t dst[16] = {};
  uint16_t sport = 0;
  uint16_t dport = 0;
};

class NetLock {
 public:
  NetLock();  // a fresh id
  // Lifts the lock unless Keep() was called.
  ~NetLock();
  NetLock(const NetLock&) = delete;
  NetLock& operator=(const NetLock&) = delete;

  uint64_t id() const { return id_; }
  // Drops the connections' packets both ways from now on (one nft run).
  absl::Status Add(const std::vector<LockedConn>& conns);
  // Drops new clients' SYNs to a listener (`addr` null: any address).
  absl::Status AddListener(int family, const uint8_t* addr, uint16_t port);
  // Leaves the table in place when this object goes (the restore lifts it).
  void Keep() { keep_ = true; }
  absl::Status Lift();

  // Deletes the table of lock `id` if it is there.
  static absl::Status LiftById(uint64_t id);
  // "inet ckpt_lock_0123456789abcdef"
  static std::string TableName(uint64_t id);

 private:
  // The table and its chains, the first time.
  std::string Prologue() const;

  uint64_t id_;
  bool made_ = false;
  bool keep_ = false;
};

}  // namespace ckpt::fs

#endif  // LIBCKPT_LIB_FS_NETLOCK_H_
