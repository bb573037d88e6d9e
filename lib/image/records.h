// The record type registry: for every record type, its name, its length
// bounds, its fields and what follows the fields. The Reader validates
// lengths against it; `ckpt show` decodes records with it.
//
//   const RecordSpec* spec = FindRecordSpec(CKPT_HDR_VMA);
//   for (const DecodedField& f : DecodeRecord(*spec, payload)) ...

#ifndef LIBCKPT_LIB_IMAGE_RECORDS_H_
#define LIBCKPT_LIB_IMAGE_RECORDS_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ckpt::image {

enum class FieldKind : uint8_t {
  kUnsigned,  // little-endian unsigned integer of 1, 2, 4 or 8 bytes
  kSigned,    // likewise, signed
  kHex,       // unsigned, shown in hex (addresses, masks)
  kOctal,     // unsigned, shown in octal (modes)
  kChars,     // fixed char array, NUL-padded
};

struct FieldSpec {
  const char* name;
  uint32_t offset;
  uint32_t size;   // of one element
  uint32_t count;  // elements (1 unless an array)
  FieldKind kind;
};

// What follows the fixed struct in the payload.
enum class TailKind : uint8_t {
  kNone,       // nothing (or fields a later minor version appended)
  kText,       // UTF-8 text
  kPaths,      // strings whose lengths are fields of the struct
  kU16Array,   // little-endian u16 values
  kU32Array,   // little-endian u32 values
  kU64Array,   // little-endian u64 values
  kPageRuns,   // ckpt_page_run[]
  kPageData,   // raw page contents
  kRawBytes,   // opaque bytes (xstate)
};

struct RecordSpec {
  uint32_t type;
  const char* name;
  uint32_t struct_size;  // fixed part; a payload shorter than this is corrupt
  uint64_t max_len;      // payload bytes at most
  std::span<const FieldSpec> fields;
  TailKind tail;
};

// nullptr for an unknown type.
const RecordSpec* FindRecordSpec(uint32_t type);
std::span<const RecordSpec> AllRecordSpecs();
// "VMA", or "type 1234" for an unknown type.
std::string RecordName(uint32_t type);

struct DecodedField {
  std::string name;
  std::string value;  // as text: "0x7f12...", "42", "cat"
  bool numeric;       // value is a JSON number (decimal) rather than a string
};

// Decodes the fields of a payload (which must be at least struct_size
// long) and a summary of its tail.
std::vector<DecodedField> DecodeRecord(const RecordSpec& spec, std::span<const uint8_t> payload);

}  // namespace ckpt::image

#endif  // LIBCKPT_LIB_IMAGE_RECORDS_H_
