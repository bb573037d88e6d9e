// The record specs of the whole library, as linked into the CLI.

#include <set>

#include "gtest/gtest.h"
#include "lib/image/format.h"
#include "lib/image/records.h"

namespace ckpt::image {
namespace {

// Every record spec, the stream's own (lib/image/records.cc) and those
// each kind registers from its own file, restates its struct's fields for
// `ckpt show` and the reader's checks: the two must not drift. Every
// spec's fields lie inside their struct, in offset order, without
// overlapping; no type has two specs.
TEST(RecordSpecsTest, FieldsAreInOrderInsideTheirStructAndDoNotOverlap) {
  std::set<uint32_t> types;
  for (const RecordSpec& spec : AllRecordSpecs()) {
    SCOPED_TRACE(spec.name);
    EXPECT_TRUE(types.insert(spec.type).second) << "type " << spec.type << " has two specs";
    EXPECT_LE(spec.struct_size, spec.max_len);
    uint64_t end = 0;
    for (const FieldSpec& f : spec.fields) {
      SCOPED_TRACE(f.name);
      EXPECT_GE(f.offset, end) << "overlaps the field before it, or is out of order";
      EXPECT_GT(f.size, 0u);
      EXPECT_GT(f.count, 0u);
      const uint64_t f_end = uint64_t{f.offset} + uint64_t{f.size} * f.count;
      EXPECT_LE(f_end, spec.struct_size) << "runs past the struct";
      if (f.kind != FieldKind::kChars) {
        EXPECT_TRUE(f.size == 1 || f.size == 2 || f.size == 4 || f.size == 8) << f.size;
      }
      end = f_end;
    }
  }
  EXPECT_GT(types.size(), 30u);
}

// Every record type that format.h names has a spec once the whole library
// is linked: a kind that forgot CKPT_RECORD would have its records refused
// by the reader as an unknown type.
TEST(RecordSpecsTest, EveryTypeOfFormatHHasASpec) {
  for (uint32_t type : {CKPT_HDR_IMAGE, CKPT_HDR_TAIL, CKPT_HDR_NOTE, CKPT_HDR_TREE, CKPT_HDR_PID,
                        CKPT_HDR_TASK_ENTRY, CKPT_HDR_IPC, CKPT_HDR_SHM, CKPT_HDR_MSQ,
                        CKPT_HDR_MSG, CKPT_HDR_SEM, CKPT_HDR_OBJECTS, CKPT_HDR_FILE,
                        CKPT_HDR_MAPPED_FILE, CKPT_HDR_PIPE, CKPT_HDR_GHOST,
                        CKPT_HDR_SHMEM, CKPT_HDR_TIMERFD, CKPT_HDR_UNIX_SOCK, CKPT_HDR_UNIX_QUEUE, CKPT_HDR_INET_SOCK, CKPT_HDR_TASK,
                        CKPT_HDR_CREDS, CKPT_HDR_RLIMITS, CKPT_HDR_FS, CKPT_HDR_FD, CKPT_HDR_LOCKS, CKPT_HDR_LOCK, CKPT_HDR_MM,
                        CKPT_HDR_VMA, CKPT_HDR_PAGE_RUNS, CKPT_HDR_PAGE_DATA, CKPT_HDR_INHERITED, CKPT_HDR_SIGHAND,
                        CKPT_HDR_THREAD, CKPT_HDR_XSTATE, CKPT_HDR_RESTART, CKPT_HDR_SIGINFO,
                        CKPT_HDR_SIGNALS, CKPT_HDR_POSIX_TIMER, CKPT_HDR_SECCOMP, CKPT_HDR_SECCOMP_FILTER, CKPT_HDR_SCHED,
                        CKPT_HDR_SCHED_THREAD}) {
    EXPECT_NE(FindRecordSpec(type), nullptr) << "type " << type;
  }
}

}  // namespace
}  // namespace ckpt::image
