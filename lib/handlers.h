// The one table of object handlers, filled once from every layer that
// owns an object kind.

#ifndef LIBCKPT_LIB_HANDLERS_H_
#define LIBCKPT_LIB_HANDLERS_H_

#include "absl/status/statusor.h"
#include "lib/objhash/handlers.h"

namespace ckpt {

absl::StatusOr<const objhash::HandlerTable*> Handlers();

}  // namespace ckpt

#endif  // LIBCKPT_LIB_HANDLERS_H_
