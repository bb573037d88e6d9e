#include "lib/objhash/handlers.h"

#include "absl/strings/str_cat.h"

namespace ckpt::objhash {

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

}  // namespace ckpt::objhash
