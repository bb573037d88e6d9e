#include "lib/fs/fdkind.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ckpt::fs {
namespace {

std::vector<const FdKindOps*>& Kinds() {
  static auto* kinds = new std::vector<const FdKindOps*>;
  return *kinds;
}

std::string& Clash() {
  static auto* clash = new std::string;
  return *clash;
}

}  // namespace

bool RegisterFdKind(const FdKindOps* ops) {
  std::vector<const FdKindOps*>& kinds = Kinds();
  for (const FdKindOps* k : kinds) {
    if (k->file_kind == ops->file_kind) {
      if (Clash().empty()) {
        Clash() = absl::StrCat("fd kinds '", k->name, "' and '", ops->name,
                               "' both claim file kind ", ops->file_kind);
      }
      return false;
    }
  }
  kinds.insert(std::upper_bound(kinds.begin(), kinds.end(), ops,
                                [](const FdKindOps* a, const FdKindOps* b) { return a->order < b->order; }),
               ops);
  return true;
}

std::vector<const FdKindOps*> FdKinds() { return Kinds(); }

absl::Status FdKindsStatus() {
  if (Clash().empty()) return absl::OkStatus();
  return absl::InternalError(Clash());
}

const FdKindOps* FdKindOfFile(uint32_t file_kind) {
  for (const FdKindOps* k : Kinds()) {
    if (k->file_kind == file_kind) return k;
  }
  return nullptr;
}

absl::Status CheckFileType(const image::ckpt_file& rec, const std::string& path,
                           const struct stat& st) {
  if ((st.st_mode & S_IFMT) != (rec.mode & S_IFMT)) {
    return absl::FailedPreconditionError(absl::StrCat("file ", path, " changed type since the dump"));
  }
  return absl::OkStatus();
}

}  // namespace ckpt::fs
