// The record type registry: for every record type, its name, its length
// bounds, its fields and what follows the fields. The Reader validates
// lengths against it; `ckpt show` decodes records with it.
//
//   const RecordSpec* spec = FindRecordSpec(CKPT_HDR_VMA);
//   for (const DecodedField& f : DecodeRecord(*spec, payload)) ...

#ifndef LIBCKPT_LIB_IMAGE_RECORDS_H_
#define LIBCKPT_LIB_IMAGE_RECORDS_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
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
// Every registered spec: the stream's own (image, tree, tasks) and those
// the kinds registered from their own files.
std::span<const RecordSpec> AllRecordSpecs();

// Adds the spec of a record type, at static initialization, from the file
// of the kind that writes the record (through CKPT_RECORD below). A type
// registered twice aborts the program: that is a build mistake.
bool RegisterRecordSpec(const RecordSpec& spec);

// Bytes a later minor version may append to a fixed struct.
inline constexpr uint64_t kRecordGrowth = 1024;

template <typename M>
constexpr uint32_t FieldElemSize() {
  return sizeof(std::remove_extent_t<M>);
}
template <typename M>
constexpr uint32_t FieldElemCount() {
  return sizeof(M) / sizeof(std::remove_extent_t<M>);
}

// A field of struct S: CKPT_FIELD(ckpt_pipe, capacity, kUnsigned); arrays
// are counted from their type.
#define CKPT_FIELD(S, f, k)                                                             \
  ::ckpt::image::FieldSpec {                                                            \
    #f, static_cast<uint32_t>(offsetof(S, f)), ::ckpt::image::FieldElemSize<decltype(S::f)>(), \
        ::ckpt::image::FieldElemCount<decltype(S::f)>(), ::ckpt::image::FieldKind::k    \
  }
// A NUL-padded char array field.
#define CKPT_CHARS(S, f)                                                               \
  ::ckpt::image::FieldSpec {                                                           \
    #f, static_cast<uint32_t>(offsetof(S, f)), sizeof(S::f), 1, ::ckpt::image::FieldKind::kChars \
  }
// The spec of a record whose payload is struct S, its `fields`, then at
// most `max_tail` bytes of `tail`.
#define CKPT_RECORD_SPEC(type, name, S, fields, max_tail, tail)                            \
  ::ckpt::image::RecordSpec {                                                               \
    type, name, sizeof(S), sizeof(S) + ::ckpt::image::kRecordGrowth + (max_tail), fields,   \
        ::ckpt::image::TailKind::tail                                                       \
  }
// Registers a record's spec from the kind's own file (namespace scope):
//   constexpr image::FieldSpec kPipeFields[] = {CKPT_FIELD(ckpt_pipe, objref, kUnsigned), ...};
//   CKPT_RECORD(CKPT_HDR_PIPE, "PIPE", ckpt_pipe, kPipeFields, kMaxPathLen, kPaths);
#define CKPT_RECORD_CAT2(a, b) a##b
#define CKPT_RECORD_CAT(a, b) CKPT_RECORD_CAT2(a, b)
#define CKPT_RECORD(type, name, S, fields, max_tail, tail)             \
  [[maybe_unused]] static const bool CKPT_RECORD_CAT(ckpt_record_registered_, __COUNTER__) = \
      ::ckpt::image::RegisterRecordSpec(CKPT_RECORD_SPEC(type, name, S, fields, max_tail, tail))
// Likewise for a record without a fixed struct (only a tail).
#define CKPT_RECORD_TAIL(type, name, max_len, tail)                                     \
  [[maybe_unused]] static const bool CKPT_RECORD_CAT(ckpt_record_registered_, __COUNTER__) =            \
      ::ckpt::image::RegisterRecordSpec(                                                \
          ::ckpt::image::RecordSpec{type, name, 0, max_len, {}, ::ckpt::image::TailKind::tail})
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
