#include "tools/ckpt/show.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "lib/image/io.h"
#include "lib/image/records.h"
#include "lib/image/walk.h"

namespace ckpt::cli {
namespace {

using image::FieldKind;
using image::FieldSpec;
using image::RecordSpec;
using image::TailKind;

// A string the image holds, byte for byte: DecodeRecord shows a char array
// only up to its first NUL and escapes paths and text for a terminal, so
// show takes these bytes from the payload itself.
struct ImageString {
  std::string name;                  // as DecodeRecord names the field
  std::optional<std::string> bytes;  // nullopt: the length runs past the payload
};

uint64_t LoadLength(const uint8_t* p, uint32_t size) {
  uint64_t v = 0;
  std::memcpy(&v, p, std::min<uint32_t>(size, sizeof(v)));  // little-endian, see format.h
  return v;
}

absl::string_view Chars(std::span<const uint8_t> bytes) {
  return absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// The char arrays (without their NUL padding; a NUL before the last other
// byte stays), the strings of a kPaths tail (each as long as the field
// `<name>_len` says, in field order) and a kText tail.
std::vector<ImageString> ImageStrings(const RecordSpec& spec, std::span<const uint8_t> payload) {
  std::vector<ImageString> out;
  if (payload.size() < spec.struct_size) return out;
  for (const FieldSpec& f : spec.fields) {
    if (f.kind != FieldKind::kChars) continue;
    absl::string_view chars = Chars(payload.subspan(f.offset, f.size));
    out.push_back({f.name, std::string(chars.substr(0, chars.find_last_not_of('\0') + 1))});
  }
  std::span<const uint8_t> tail = payload.subspan(spec.struct_size);
  if (spec.tail == TailKind::kText) out.push_back({"text", std::string(Chars(tail))});
  if (spec.tail != TailKind::kPaths) return out;
  for (const FieldSpec& f : spec.fields) {
    absl::string_view name = f.name;
    if (name.size() <= 4 || !absl::EndsWith(name, "_len")) continue;
    std::string string_name(name.substr(0, name.size() - 4));
    uint64_t len = LoadLength(payload.data() + f.offset, f.size);
    if (len > tail.size()) {
      out.push_back({string_name, std::nullopt});  // DecodeRecord stops here too
      break;
    }
    out.push_back({string_name, std::string(Chars(tail.first(len)))});
    tail = tail.subspan(len);
  }
  return out;
}

enum class ValueKind { kNumber, kString, kAbsent };

struct ShownField {
  std::string name;
  std::string value;  // kNumber: decimal digits; kString: any bytes; kAbsent: why, as text
  ValueKind kind;
};

std::vector<ShownField> ShownFields(const image::Record& rec, std::span<const uint8_t> payload) {
  if (rec.spec == nullptr) return {};
  if (rec.type == image::CKPT_HDR_PAGE_DATA) {
    return {{"bytes", absl::StrCat(rec.len), ValueKind::kNumber}};
  }
  std::vector<ImageString> strings = ImageStrings(*rec.spec, payload);
  std::vector<ShownField> out;
  for (image::DecodedField& f : image::DecodeRecord(*rec.spec, payload)) {
    auto s = std::find_if(strings.begin(), strings.end(),
                          [&](const ImageString& s) { return s.name == f.name; });
    if (s == strings.end()) {
      out.push_back({f.name, f.value, f.numeric ? ValueKind::kNumber : ValueKind::kString});
    } else if (s->bytes.has_value()) {
      out.push_back({f.name, *s->bytes, ValueKind::kString});
    } else {
      out.push_back({f.name, f.value, ValueKind::kAbsent});
    }
  }
  return out;
}

// Printable ASCII but for the escape character: what may reach a terminal
// or a JSON string as it is.
bool IsPlain(unsigned char c) { return c >= 0x20 && c < 0x7f && c != '\\'; }

// Text output: every other byte as \xNN (lowercase hex), as DecodeRecord
// escapes paths, so that no control character reaches the terminal.
std::string TextEscaped(absl::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    if (IsPlain(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    }
  }
  return out;
}

// A JSON string whose characters are the bytes of `bytes`, one code point
// U+0000-U+00FF a byte, in plain ASCII: '"' and '\' as \" and \\, every
// other byte outside 0x20-0x7e as \u00NN (docs/image-format.md).
std::string JsonString(absl::string_view bytes) {
  std::string out = "\"";
  for (unsigned char c : bytes) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (IsPlain(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppendFormat(&out, "\\u%04x", c);
    }
  }
  return out + "\"";
}

std::string JsonValue(const ShownField& f) {
  switch (f.kind) {
    case ValueKind::kNumber:
      return f.value;  // DecodeRecord's integers: plain decimal, exact to 64 bits
    case ValueKind::kString:
      return JsonString(f.value);
    case ValueKind::kAbsent:
      return "null";
  }
  return "null";
}

void PrintJsonRecord(const image::Record& rec, const std::vector<ShownField>& fields, bool first,
                     FILE* out) {
  std::vector<std::string> kv;
  for (const ShownField& f : fields) kv.push_back(absl::StrCat(JsonString(f.name), ": ", JsonValue(f)));
  std::fprintf(out,
               "%s  {\"index\": %llu, \"type\": %s, \"offset\": %llu, \"len\": %llu, "
               "\"flags\": %u, \"fields\": {%s}}",
               first ? "" : ",\n", static_cast<unsigned long long>(rec.index),
               JsonString(image::RecordName(rec.type)).c_str(),
               static_cast<unsigned long long>(rec.offset),
               static_cast<unsigned long long>(rec.len), rec.flags,
               absl::StrJoin(kv, ", ").c_str());
}

void PrintTextRecord(const image::Record& rec, const std::vector<ShownField>& fields, FILE* out) {
  std::vector<std::string> kv;
  for (const ShownField& f : fields) kv.push_back(absl::StrCat(f.name, "=", TextEscaped(f.value)));
  std::fprintf(out, "#%-5llu %-12s off=%-9llu len=%-7llu %s\n",
               static_cast<unsigned long long>(rec.index),
               TextEscaped(image::RecordName(rec.type)).c_str(),
               static_cast<unsigned long long>(rec.offset),
               static_cast<unsigned long long>(rec.len), absl::StrJoin(kv, " ").c_str());
}

}  // namespace

absl::Status ShowImage(int fd, bool json, FILE* out) {
  image::FdSource source(fd);
  bool first = true;
  if (json) std::fputs("{\"records\": [\n", out);
  absl::Status st = image::WalkImage(
      &source, [&](const image::Record& rec, std::span<const uint8_t> payload) {
        std::vector<ShownField> fields = ShownFields(rec, payload);
        if (json) {
          PrintJsonRecord(rec, fields, first, out);
        } else {
          PrintTextRecord(rec, fields, out);
        }
        first = false;
        return absl::OkStatus();
      });
  if (json) {
    // The records before a bad one still make a whole document; "error"
    // says that the list stops short.
    std::fputs("\n]", out);
    if (!st.ok()) std::fprintf(out, ", \"error\": %s", JsonString(st.message()).c_str());
    std::fputs("}\n", out);
  }
  std::fflush(out);
  return st;
}

}  // namespace ckpt::cli
