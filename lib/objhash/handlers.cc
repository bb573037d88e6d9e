#include "lib/objhash/handlers.h"

#include <fcntl.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "lib/base/status.h"

namespace ckpt::objhash {

absl::StatusOr<int> MoveHigh(const RestoreContext& ctx, int fd, absl::string_view what) {
  int high = fcntl(fd, F_DUPFD_CLOEXEC, ctx.high_fd_base);
  if (high < 0) return ErrnoError(errno, "moving ", what, " to fd ", ctx.high_fd_base, " or above");
  return high;
}

absl::StatusOr<RestoredObject> HoldAt(const RestoreContext& ctx, uint32_t objref, int fd,
                                      absl::string_view what) {
  ASSIGN_OR_RETURN(int high, MoveHigh(ctx, fd, what));
  RestoredObject obj;
  obj.objref = objref;
  obj.fd = high;
  return obj;
}

absl::Status HandlerTable::Register(const ObjectOps& ops) {
  if (ops.checkpoint == nullptr || ops.restore == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("handler '", ops.name, "' lacks a function"));
  }
  for (const ObjectOps& o : ops_) {
    if (o.kind == ops.kind || o.record_type == ops.record_type) {
      return absl::AlreadyExistsError(absl::StrCat("handler '", ops.name,
                                                   "' clashes with '", o.name, "'"));
    }
  }
  ops_.push_back(ops);
  return absl::OkStatus();
}

const ObjectOps* HandlerTable::ForKind(ObjKind kind) const {
  for (const ObjectOps& o : ops_) {
    if (o.kind == kind) return &o;
  }
  return nullptr;
}

const ObjectOps* HandlerTable::ForRecord(uint32_t record_type) const {
  for (const ObjectOps& o : ops_) {
    if (o.record_type == record_type) return &o;
  }
  return nullptr;
}

namespace {

struct Registry {
  HandlerTable table;
  absl::Status error;
};

Registry& TheRegistry() {
  static Registry* r = new Registry;
  return *r;
}

}  // namespace

bool RegisterHandler(const ObjectOps& ops) {
  Registry& r = TheRegistry();
  absl::Status st = r.table.Register(ops);
  if (!st.ok() && r.error.ok()) r.error = st;
  RegisterObjKindName(ops.kind, ops.name);
  return st.ok();
}

absl::StatusOr<const HandlerTable*> GlobalHandlers() {
  Registry& r = TheRegistry();
  if (!r.error.ok()) return r.error;
  return &r.table;
}

}  // namespace ckpt::objhash
