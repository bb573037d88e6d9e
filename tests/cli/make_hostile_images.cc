// Writes images whose strings hold hostile bytes, for the tests of what
// `ckpt show` prints. For each variant of bytes (all 256 values in turn,
// quotes and backslashes, invalid UTF-8, NULs inside char arrays, terminal
// escapes, ...) DIR/N.img holds one record of every type in the record
// registry, every char array, path and note filled with that variant and
// every integer with an extreme value, and DIR/N.expect says what a reader
// of `ckpt show --json` must get back, a line each:
//
//   type INDEX NAME              record INDEX is of type NAME
//   chars INDEX FIELD SIZE HEX   a char array of SIZE bytes, all of them
//   bytes INDEX FIELD HEX        a path or a note
//   absent INDEX FIELD           a path whose length runs past the payload
//   number INDEX FIELD DECIMAL   an integer field
//
// Usage: make_hostile_images DIR (prints the number of images written).

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "lib/image/format.h"
#include "lib/image/records.h"
#include "lib/image/writer.h"

using namespace ckpt::image;

namespace {

std::vector<std::string> Variants() {
  std::string all(256, '\0');
  std::iota(all.begin(), all.end(), 0);  // wraps to every char value
  std::vector<std::string> v;
  for (size_t at = 0; at < all.size(); at += 16) v.push_back(all.substr(at, 16));
  v.push_back(all);
  v.push_back(std::string(all.rbegin(), all.rend()));
  v.push_back("\"\\\"\\\\'\n\r\t\b\f/");
  v.push_back("\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc\xed\xa0\x80\xc0\xaf\xff\xfe");
  v.push_back(std::string("a\0b\0\0c", 6));
  v.push_back("");
  v.push_back(std::string(100, 'X'));  // fills every char array, no NUL left
  v.push_back("\",\"x\":1}]}\\u0000\\x41");
  v.push_back("caf\xc3\xa9 \xe2\x98\x83");
  v.push_back("\x1b[2J\x1b]0;title\x07\r");
  v.push_back("\x7f\x80\x9b\x9c\xa0");  // DEL, C1 controls, NBSP
  return v;
}

// An extreme value of a `size`-byte integer: all ones (u64 max, -1), the
// sign bit alone (i64 min), 2^53 + 1 (the first integer a double loses).
uint64_t Extreme(int which, uint32_t size) {
  uint64_t mask = size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
  switch (which % 3) {
    case 0:
      return mask;
    case 1:
      return 1ull << (8 * size - 1);
    default:
      return size >= 8 ? (1ull << 53) + 1 : mask >> 1;
  }
}

void Store(uint8_t* p, uint64_t v, uint32_t size) { std::memcpy(p, &v, size); }  // little-endian

std::string Decimal(const FieldSpec& f, const uint8_t* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, f.size);
  if (f.kind == FieldKind::kUnsigned) return absl::StrCat(v);
  if (f.size < 8 && (v >> (8 * f.size - 1)) & 1) v |= ~0ull << (8 * f.size);
  return absl::StrCat(static_cast<int64_t>(v));
}

bool IsLength(const RecordSpec& spec, const FieldSpec& f) {
  absl::string_view name = f.name;
  return spec.tail == TailKind::kPaths && name.size() > 4 && absl::EndsWith(name, "_len");
}

absl::string_view Chars(const uint8_t* p, size_t n) {
  return absl::string_view(reinterpret_cast<const char*>(p), n);
}

struct Expectations {
  std::string text;

  void Fields(uint64_t index, const RecordSpec& spec, const std::vector<uint8_t>& payload) {
    absl::StrAppend(&text, "type ", index, " ", spec.name, "\n");
    for (const FieldSpec& f : spec.fields) {
      const uint8_t* p = payload.data() + f.offset;
      if (f.kind == FieldKind::kChars) {
        absl::StrAppend(&text, "chars ", index, " ", f.name, " ", f.size, " ",
                        absl::BytesToHexString(Chars(p, f.size)), "\n");
      } else if (f.count == 1 && (f.kind == FieldKind::kUnsigned || f.kind == FieldKind::kSigned)) {
        absl::StrAppend(&text, "number ", index, " ", f.name, " ", Decimal(f, p), "\n");
      }
    }
  }
  void Bytes(uint64_t index, absl::string_view field, absl::string_view bytes) {
    absl::StrAppend(&text, "bytes ", index, " ", field, " ", absl::BytesToHexString(bytes), "\n");
  }
};

// The fixed struct of `spec`: char arrays hold `chars` (cut or NUL-padded
// to their size), integers an extreme value, lengths 0.
std::vector<uint8_t> FixedPart(const RecordSpec& spec, const std::string& chars, int which) {
  std::vector<uint8_t> payload(spec.struct_size, 0);
  for (const FieldSpec& f : spec.fields) {
    uint8_t* p = payload.data() + f.offset;
    if (f.kind == FieldKind::kChars) {
      std::memcpy(p, chars.data(), std::min<size_t>(chars.size(), f.size));
    } else if (!IsLength(spec, f)) {
      for (uint32_t i = 0; i < f.count; ++i) Store(p + i * f.size, Extreme(which, f.size), f.size);
    }
  }
  return payload;
}

// One record of `spec` whose tail carries `s`: the paths (s, then s
// reversed, in turn) and the bytes after them, the note, the raw bytes, or
// a few extreme array elements. With `overlong`, the first path claims a
// byte more than the payload holds.
absl::Status AppendRecord(Writer* w, Expectations* expect, uint64_t index, const RecordSpec& spec,
                          const std::string& s, int which, bool overlong) {
  std::vector<uint8_t> payload = FixedPart(spec, s, which);
  std::string tail;
  std::vector<std::pair<std::string, std::string>> paths;
  switch (spec.tail) {
    case TailKind::kPaths:
      for (const FieldSpec& f : spec.fields) {
        if (!IsLength(spec, f)) continue;
        std::string path = paths.size() % 2 == 0 ? s : std::string(s.rbegin(), s.rend());
        Store(payload.data() + f.offset, path.size(), f.size);
        paths.emplace_back(std::string(absl::string_view(f.name).substr(0, strlen(f.name) - 4)), path);
        tail += path;
      }
      tail += s;  // what follows the paths (a pipe's bytes)
      break;
    case TailKind::kU16Array:
      tail.assign(3 * 2, '\xff');
      break;
    case TailKind::kU32Array:
      tail.assign(3 * 4, '\xff');
      break;
    case TailKind::kU64Array:
    case TailKind::kPageRuns:
      tail.assign(2 * 16, '\xff');
      break;
    case TailKind::kNone:  // fields a later minor version appended
    case TailKind::kText:
    case TailKind::kPageData:
    case TailKind::kRawBytes:
      tail = s;
      break;
  }
  if (overlong) {
    if (paths.empty()) return absl::OkStatus();
    const FieldSpec& first = *std::find_if(spec.fields.begin(), spec.fields.end(),
                                           [&](const FieldSpec& f) { return IsLength(spec, f); });
    Store(payload.data() + first.offset, tail.size() + 1, first.size);
  }
  expect->Fields(index, spec, payload);
  if (spec.tail == TailKind::kText) expect->Bytes(index, "text", s);
  for (const auto& [name, path] : paths) {
    if (overlong) {
      absl::StrAppend(&expect->text, "absent ", index, " ", name, "\n");
      break;
    }
    expect->Bytes(index, name, path);
  }
  payload.insert(payload.end(), tail.begin(), tail.end());
  return w->Append(spec.type, payload.data(), payload.size());
}

absl::Status WriteImage(const std::string& dir, int which, const std::string& s) {
  std::string base = absl::StrCat(dir, "/", which);
  int fd = open((base + ".img").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, base);
  FdSink sink(fd);
  Writer w(&sink);
  Expectations expect;

  ckpt_image_header h = DefaultImageHeader();
  std::memset(h.kernel_release, 0, sizeof(h.kernel_release));
  std::memcpy(h.kernel_release, s.data(), std::min(s.size(), sizeof(h.kernel_release)));
  h.created_realtime_ns = Extreme(which, 8);
  h.created_boottime_ns = Extreme(which + 1, 8);
  std::vector<uint8_t> bytes(sizeof(h));
  std::memcpy(bytes.data(), &h, sizeof(h));
  expect.Fields(0, *FindRecordSpec(CKPT_HDR_IMAGE), bytes);
  absl::Status st = w.WriteImageHeader(h);

  uint64_t index = 1;
  for (const RecordSpec& spec : AllRecordSpecs()) {
    if (spec.type == CKPT_HDR_IMAGE || spec.type == CKPT_HDR_TAIL) continue;
    for (bool overlong : {false, true}) {
      if (overlong && spec.tail != TailKind::kPaths) continue;
      if (st.ok()) st = AppendRecord(&w, &expect, index++, spec, s, which, overlong);
    }
  }
  if (st.ok()) st = w.Finish();
  close(fd);
  absl::StrAppend(&expect.text, "type ", index, " TAIL\nnumber ", index, " nr_records ", index, "\n");
  FILE* f = fopen((base + ".expect").c_str(), "w");
  if (f == nullptr) return absl::ErrnoToStatus(errno, base);
  fputs(expect.text.c_str(), f);
  fclose(f);
  return st;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  // Every kind's records, registered from their own files, are linked in:
  // fewer would leave records out of the test unnoticed.
  if (AllRecordSpecs().size() < 35) {
    fprintf(stderr, "make_hostile_images: only %zu record types are linked in\n",
            AllRecordSpecs().size());
    return 1;
  }
  std::vector<std::string> variants = Variants();
  for (size_t i = 0; i < variants.size(); ++i) {
    absl::Status st = WriteImage(argv[1], static_cast<int>(i), variants[i]);
    if (!st.ok()) {
      fprintf(stderr, "make_hostile_images: %s\n", std::string(st.message()).c_str());
      return 1;
    }
  }
  printf("%zu\n", variants.size());
  return 0;
}
