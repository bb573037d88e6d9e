#include "lib/objhash/objhash.h"

#include <unistd.h>

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/base/status.h"

namespace ckpt::objhash {

namespace {

std::map<uint32_t, std::string>& KindNames() {
  static auto* names = new std::map<uint32_t, std::string>{
      {static_cast<uint32_t>(ObjKind::kPid), "PID"},   {static_cast<uint32_t>(ObjKind::kMm), "MM"},
      {static_cast<uint32_t>(ObjKind::kFiles), "FILES"}, {static_cast<uint32_t>(ObjKind::kFs), "FS"},
      {static_cast<uint32_t>(ObjKind::kSighand), "SIGHAND"},
      {static_cast<uint32_t>(ObjKind::kShm), "SHM"}};
  return *names;
}

}  // namespace

void RegisterObjKindName(ObjKind kind, const char* name) {
  KindNames()[static_cast<uint32_t>(kind)] = name;
}

std::string ObjKindName(ObjKind kind) {
  auto it = KindNames().find(static_cast<uint32_t>(kind));
  if (it != KindNames().end()) return it->second;
  return absl::StrCat("kind ", static_cast<uint32_t>(kind));
}

// Where `id` is, or would go, in a bucket kept in kcmp order: kcmp(2)
// orders objects by (obfuscated) kernel address, so a bucket of many
// objects (every process's mm, say) is binary-searched, not scanned.
absl::StatusOr<std::pair<size_t, bool>> ObjHash::Position(const std::vector<Entry*>& bucket,
                                                         const Identity& id) const {
  size_t lo = 0, hi = bucket.size();
  if (id.kcmp == kKcmpNone) return std::make_pair(size_t{0}, !bucket.empty());
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const Identity& m = bucket[mid]->id;
    ASSIGN_OR_RETURN(int order, Kcmp(id.pid, m.pid, id.kcmp, id.idx, m.idx));
    if (order == 0) return std::make_pair(mid, true);
    if (order == 1) {
      hi = mid;  // id < m
    } else if (order == 2) {
      lo = mid + 1;
    } else {
      return absl::InternalError("kcmp gave no order");
    }
  }
  return std::make_pair(lo, false);
}

absl::StatusOr<ObjHash::Entry*> ObjHash::Find(ObjKind kind, const Identity& id) const {
  auto it = buckets_.find({static_cast<uint32_t>(kind), id.key_hi, id.key_lo});
  if (it == buckets_.end()) return nullptr;
  ASSIGN_OR_RETURN(auto pos, Position(it->second, id));
  return pos.second ? it->second[pos.first] : nullptr;
}

absl::StatusOr<ObjHash::Found> ObjHash::LookupAdd(ObjKind kind, const Identity& id,
                                                  std::any data) {
  std::vector<Entry*>& bucket = buckets_[{static_cast<uint32_t>(kind), id.key_hi, id.key_lo}];
  ASSIGN_OR_RETURN(auto pos, Position(bucket, id));
  if (pos.second) {
    Entry* existing = bucket[pos.first];
    return Found{existing->objref, false, existing};
  }
  auto entry = std::make_unique<Entry>();
  entry->kind = kind;
  entry->objref = static_cast<uint32_t>(entries_.size() + 1);
  entry->id = id;
  entry->data = std::move(data);
  Entry* raw = entry.get();
  entries_.push_back(std::move(entry));
  bucket.insert(bucket.begin() + static_cast<std::ptrdiff_t>(pos.first), raw);
  return Found{raw->objref, true, raw};
}

absl::StatusOr<uint32_t> ObjHash::Lookup(ObjKind kind, const Identity& id) const {
  ASSIGN_OR_RETURN(Entry * e, Find(kind, id));
  return e ? e->objref : 0;
}

const ObjHash::Entry* ObjHash::Get(uint32_t objref) const {
  if (objref == 0 || objref > entries_.size()) return nullptr;
  return entries_[objref - 1].get();
}

RestoreTable::~RestoreTable() {
  for (auto& [objref, entry] : objects_) {
    if (entry.second.fd >= 0) ::close(entry.second.fd);
    if (entry.second.fd2 >= 0) ::close(entry.second.fd2);
  }
}

absl::Status RestoreTable::Insert(uint32_t objref, ObjKind kind, RestoredObject obj) {
  if (objref == 0) {
    if (obj.fd >= 0) ::close(obj.fd);
    if (obj.fd2 >= 0) ::close(obj.fd2);
    return absl::InvalidArgumentError(absl::StrCat(ObjKindName(kind), " object with objref 0"));
  }
  auto [it, inserted] = objects_.emplace(objref, std::make_pair(kind, obj));
  if (!inserted) {
    if (obj.fd >= 0) ::close(obj.fd);
    if (obj.fd2 >= 0) ::close(obj.fd2);
    return absl::InvalidArgumentError(absl::StrCat("objref ", objref, " (",
                                                   ObjKindName(kind), ") appears twice"));
  }
  return absl::OkStatus();
}

absl::StatusOr<const RestoredObject*> RestoreTable::Get(uint32_t objref, ObjKind kind) const {
  auto it = objects_.find(objref);
  if (it == objects_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("objref ", objref, " names no ",
                                                   ObjKindName(kind), " object of the image"));
  }
  if (it->second.first != kind) {
    return absl::InvalidArgumentError(absl::StrCat("objref ", objref, " is a ",
                                                   ObjKindName(it->second.first), ", not a ",
                                                   ObjKindName(kind)));
  }
  return &it->second.second;
}

std::vector<int> RestoreTable::Fds() const {
  std::vector<int> fds;
  for (const auto& [objref, entry] : objects_) {
    if (entry.second.fd >= 0) fds.push_back(entry.second.fd);
    if (entry.second.fd2 >= 0) fds.push_back(entry.second.fd2);
  }
  return fds;
}

}  // namespace ckpt::objhash
