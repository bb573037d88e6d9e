#include "lib/objhash/handlers.h"

#include <fcntl.h>

#include <cerrno>
#include <set>
#include <string>
#include <utility>

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

absl::Status CheckpointContext::Ensure(uint32_t objref) {
  if (object_writer == nullptr) {
    return absl::InternalError(absl::StrCat("object ", objref, " asked for outside the objects section"));
  }
  return object_writer->Ensure(*this, objref);
}

absl::Status RestoreContext::Later(LateStep step) {
  if (late == nullptr) return absl::InternalError("a late step left outside a restore");
  late->push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status RestoreContext::AtCommit(std::function<void()> fn) {
  if (commits == nullptr) return absl::InternalError("a commit step left outside a restore");
  commits->push_back(std::move(fn));
  return absl::OkStatus();
}

absl::Status HandlerTable::Register(const ObjectOps& ops) {
  if (ops.checkpoint == nullptr || ops.restore == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("handler '", ops.name, "' lacks a function"));
  }
  const bool has_links = ops.links.record_type != 0;
  if (has_links != (ops.links.checkpoint != nullptr) || has_links != (ops.links.restore != nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("handler '", ops.name, "' has links without both functions"));
  }
  for (const ObjectOps& o : ops_) {
    std::set<uint32_t> theirs = {o.record_type};
    if (o.links.record_type != 0) theirs.insert(o.links.record_type);
    if (o.kind == ops.kind || theirs.count(ops.record_type) ||
        (has_links && theirs.count(ops.links.record_type)) || ops.links.record_type == ops.record_type) {
      return absl::AlreadyExistsError(absl::StrCat("handler '", ops.name,
                                                   "' clashes with '", o.name, "'"));
    }
  }
  ops_.push_back(ops);
  return absl::OkStatus();
}

const ObjectOps* HandlerTable::ForLinkRecord(uint32_t record_type) const {
  for (const ObjectOps& o : ops_) {
    if (o.links.record_type != 0 && o.links.record_type == record_type) return &o;
  }
  return nullptr;
}

uint32_t ObjectWriter::nr_objects() const {
  uint32_t n = 0;
  for (const auto& e : objects_.entries()) n += handlers_.ForKind(e->kind) != nullptr;
  return n;
}

uint32_t ObjectWriter::nr_links() const {
  uint32_t n = 0;
  for (const auto& e : objects_.entries()) {
    const ObjectOps* ops = handlers_.ForKind(e->kind);
    n += ops != nullptr && ops->links.record_type != 0;
  }
  return n;
}

absl::Status ObjectWriter::Ensure(CheckpointContext& ctx, uint32_t objref) {
  const ObjHash::Entry* e = objects_.Get(objref);
  if (e == nullptr) return absl::InternalError(absl::StrCat("object ", objref, " was never met"));
  const ObjectOps* ops = handlers_.ForKind(e->kind);
  if (ops == nullptr) {
    return absl::InternalError(absl::StrCat("object ", objref, " (", ObjKindName(e->kind),
                                            ") is asked for but has no handler"));
  }
  State& state = state_[objref];
  if (state == State::kWritten) return absl::OkStatus();
  if (state == State::kWriting) {
    std::string chain;
    for (uint32_t ref : writing_) {
      const ObjHash::Entry* w = objects_.Get(ref);
      absl::StrAppend(&chain, ObjKindName(w->kind), " ", ref, " needs ");
    }
    return absl::InternalError(absl::StrCat(
        "objects that each need the other written first: ", chain, ObjKindName(e->kind), " ",
        objref, " (such a reference must be a link)"));
  }
  state = State::kWriting;
  writing_.push_back(objref);
  absl::Status st = ops->checkpoint(ctx, *e);
  writing_.pop_back();
  if (!st.ok()) return st;
  state_[objref] = State::kWritten;
  return absl::OkStatus();
}

absl::Status ObjectWriter::Write(CheckpointContext& ctx) {
  ctx.object_writer = this;
  absl::Status st;
  for (const auto& e : objects_.entries()) {
    if (handlers_.ForKind(e->kind) == nullptr) continue;
    st = Ensure(ctx, e->objref);
    if (!st.ok()) break;
  }
  for (const auto& e : objects_.entries()) {
    if (!st.ok()) break;
    const ObjectOps* ops = handlers_.ForKind(e->kind);
    if (ops == nullptr || ops->links.record_type == 0) continue;
    const uint64_t before = ctx.writer->records();
    st = ops->links.checkpoint(ctx, *e);
    if (st.ok() && ctx.writer->records() != before + 1) {
      st = absl::InternalError(absl::StrCat("the links of ", ObjKindName(e->kind), " ", e->objref,
                                            " took ", ctx.writer->records() - before,
                                            " records, not one"));
    }
  }
  ctx.object_writer = nullptr;
  return st;
}

absl::Status ReadObjects(RestoreContext& ctx, const HandlerTable& handlers, uint32_t nr_objects,
                         uint32_t nr_links) {
  image::Reader& r = *ctx.reader;
  uint32_t with_links = 0;
  for (uint32_t i = 0; i < nr_objects; ++i) {
    ASSIGN_OR_RETURN(image::Record rec, r.Next());
    const ObjectOps* ops = handlers.ForRecord(rec.type);
    if (ops == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(image::Reader::Where(rec),
                                                     ": not an object record (", i, " of ",
                                                     nr_objects, " objects read)"));
    }
    with_links += ops->links.record_type != 0;
    absl::StatusOr<RestoredObject> obj = ops->restore(ctx, rec);
    if (!obj.ok()) return obj.status();
    absl::Status st = ctx.objects->Insert(obj->objref, ops->kind, *obj);
    if (!st.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(image::Reader::Where(rec), ": field 'objref': ", st.message()));
    }
  }
  if (with_links != nr_links) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image record OBJECTS: field 'nr_links': ", nr_links, " link records for ", with_links,
        " objects whose kind has links"));
  }
  for (uint32_t i = 0; i < nr_links; ++i) {
    ASSIGN_OR_RETURN(image::Record rec, r.Next());
    const ObjectOps* ops = handlers.ForLinkRecord(rec.type);
    if (ops == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(image::Reader::Where(rec),
                                                     ": not a link record (", i, " of ", nr_links,
                                                     " links read)"));
    }
    RETURN_IF_ERROR(ops->links.restore(ctx, rec));
  }
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
