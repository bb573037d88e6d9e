#include "tools/ckpt/show.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/image/io.h"
#include "lib/image/records.h"
#include "lib/image/walk.h"

namespace ckpt::cli {
namespace {

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrCat("\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
        } else {
          out.push_back(c);
        }
    }
  }
  return out + "\"";
}

}  // namespace

absl::Status ShowImage(int fd, bool json, FILE* out) {
  image::FdSource source(fd);
  bool first = true;
  if (json) std::fputs("{\"records\": [\n", out);
  absl::Status st = image::WalkImage(
      &source, [&](const image::Record& rec, std::span<const uint8_t> payload) {
        std::vector<image::DecodedField> fields;
        if (rec.spec != nullptr) {
          if (rec.type == image::CKPT_HDR_PAGE_DATA) {
            fields.push_back({"bytes", absl::StrCat(rec.len), true});
          } else {
            fields = image::DecodeRecord(*rec.spec, payload);
          }
        }
        std::string name = image::RecordName(rec.type);
        if (json) {
          std::vector<std::string> kv;
          for (const auto& f : fields) {
            kv.push_back(absl::StrCat(JsonString(f.name), ": ",
                                      f.numeric ? f.value : JsonString(f.value)));
          }
          std::fprintf(out,
                       "%s  {\"index\": %llu, \"type\": %s, \"offset\": %llu, \"len\": %llu, "
                       "\"flags\": %u, \"fields\": {%s}}",
                       first ? "" : ",\n", static_cast<unsigned long long>(rec.index),
                       JsonString(name).c_str(), static_cast<unsigned long long>(rec.offset),
                       static_cast<unsigned long long>(rec.len), rec.flags,
                       absl::StrJoin(kv, ", ").c_str());
        } else {
          std::vector<std::string> kv;
          for (const auto& f : fields) kv.push_back(absl::StrCat(f.name, "=", f.value));
          std::fprintf(out, "#%-5llu %-12s off=%-9llu len=%-7llu %s\n",
                       static_cast<unsigned long long>(rec.index), name.c_str(),
                       static_cast<unsigned long long>(rec.offset),
                       static_cast<unsigned long long>(rec.len), absl::StrJoin(kv, " ").c_str());
        }
        first = false;
        return absl::OkStatus();
      });
  if (json) std::fputs(st.ok() ? "\n]}\n" : "\n]}\n", out);
  std::fflush(out);
  return st;
}

}  // namespace ckpt::cli
