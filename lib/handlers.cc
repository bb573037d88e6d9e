#include "lib/handlers.h"

#include "lib/base/status.h"
#include "lib/fs/fs.h"
#include "lib/mm/mm.h"

namespace ckpt {

absl::StatusOr<const objhash::HandlerTable*> Handlers() {
  static const absl::StatusOr<objhash::HandlerTable*> table =
      []() -> absl::StatusOr<objhash::HandlerTable*> {
    auto* t = new objhash::HandlerTable;
    RETURN_IF_ERROR(mm::RegisterMmHandlers(*t));
    RETURN_IF_ERROR(fs::RegisterFsHandlers(*t));
    return t;
  }();
  if (!table.ok()) return table.status();
  return *table;
}

}  // namespace ckpt
