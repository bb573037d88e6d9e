// Image mutants for the restore fuzz test: an image held in memory record
// by record, and every one-field change of it worth trying, enumerated
// from the field-spec registry (lib/image/records.h) rather than from
// hand-written offsets. Each mutant sets one field (or a page run, a tail
// element, a payload length) to a hostile value: 0, all ones, the signed
// extremes, the value plus or minus one (or one page), another record's
// objref.
//
//   ASSIGN_OR_RETURN(HeldImage image, LoadImage(path));
//   for (const Mutant& m : EnumerateMutants(image, plan)) {
//     HeldImage bad = ApplyMutant(image, m);
//     RETURN_IF_ERROR(WriteImage(bad, fd, m));
//   }

#ifndef LIBCKPT_TESTS_E2E_IMAGE_MUTANTS_H_
#define LIBCKPT_TESTS_E2E_IMAGE_MUTANTS_H_

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ckpt::testing {

// Where a record sits in the stream (docs/image-format.md, "Order").
enum class Section { kHeader, kTree, kIpc, kObjects, kTasks };

struct HeldRecord {
  uint32_t type = 0;
  uint32_t flags = 0;
  std::string payload;
  Section section = Section::kHeader;
  uint32_t occurrence = 0;  // among the records of its type, from 0
};

// records[0] is the image header; the tail is not held (it is written
// afresh, with the record count and the checksum of what precedes it).
struct HeldImage {
  std::vector<HeldRecord> records;
};

absl::StatusOr<HeldImage> LoadImage(const std::string& path);

enum class MutantKind {
  kField,   // `size` bytes at `offset` of the record's payload become `value`
  kLength,  // the payload is cut or zero-extended to `length` bytes
  kTail,    // a field of the tail record, patched after it is written
};

struct Mutant {
  MutantKind kind = MutantKind::kField;
  size_t record = 0;   // index in HeldImage::records (not used by kTail)
  std::string field;   // "start", "runs[0].nr_pages", "len", ...
  uint32_t offset = 0;
  uint32_t size = 0;
  uint64_t value = 0;
  uint64_t original = 0;
  std::string original_text;  // a char array's value, as text
  uint64_t length = 0;
  // A count, a length or an objref the stream's framing depends on: a
  // restore that takes the mutant must give back the tree intact (PASS),
  // since nothing in the process's own state changed.
  bool structural = false;
  // The image must be refused: the tail's count or checksum, the
  // header's magic, major version, arch or page size.
  bool must_refuse = false;
  // "record #57 (VMA, 3rd of its type) field 'start' 0x7f00 -> 0x0"
  std::string Describe(const HeldImage& image) const;
  // "VMA.start", "TAIL.checksum", "PIPE.len"
  std::string Where(const HeldImage& image) const;
};

// Which records to mutate.
struct MutantPlan {
  struct Selector {
    uint32_t type;
    // Records of the type in this section only (kHeader: any section).
    Section section = Section::kHeader;
    // How many of the type's records each field is tried in: the field's
    // mutants go to different records in turn, so that every record of
    // the type gets some.
    uint32_t records_per_field = 1;
  };
  std::vector<Selector> selectors;
  bool lengths = true;     // also cut and extend each selected type's payload
  bool tail = false;       // also the tail record's fields
  // Keep one mutant in `stride`, starting at `phase` (a cheaper run).
  uint32_t stride = 1;
  uint32_t phase = 0;
};

std::vector<Mutant> EnumerateMutants(const HeldImage& image, const MutantPlan& plan);

// A copy of `image` with `m` applied (kTail mutants change nothing here).
HeldImage ApplyMutant(const HeldImage& image, const Mutant& m);

// Writes the image and its tail to `fd` (a fresh, empty file), then
// applies `m` if it is a kTail mutant; leaves the offset at 0.
absl::Status WriteImage(const HeldImage& image, int fd, const Mutant* m = nullptr);

// The PID (in the dumper's namespace) the image's root task would get:
// its first TASK_ENTRY's pid object, nr[0]; 0 when the image does not say.
pid_t ImageRootPid(const HeldImage& image);

}  // namespace ckpt::testing

#endif  // LIBCKPT_TESTS_E2E_IMAGE_MUTANTS_H_
