#include "lib/handlers.h"

namespace ckpt {

// Every object kind registered its handler from its own file (the
// libraries that hold them are linked whole).
absl::StatusOr<const objhash::HandlerTable*> Handlers() { return objhash::GlobalHandlers(); }

}  // namespace ckpt
