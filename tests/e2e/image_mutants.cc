#include "tests/e2e/image_mutants.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/base/fd.h"
#include "lib/base/status.h"
#include "lib/image/format.h"
#include "lib/image/reader.h"
#include "lib/image/records.h"
#include "lib/image/writer.h"

namespace ckpt::testing {
namespace {

using image::FieldKind;
using image::FieldSpec;
using image::RecordSpec;
using image::TailKind;

constexpr uint64_t kPage = 4096;

uint64_t Mask(uint32_t size) { return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1; }

uint64_t Load(const std::string& payload, uint32_t offset, uint32_t size) {
  uint64_t v = 0;
  std::memcpy(&v, payload.data() + offset, size);
  return v;
}

void Store(std::string* payload, uint32_t offset, uint32_t size, uint64_t v) {
  std::memcpy(payload->data() + offset, &v, size);
}

// One field of one record to mutate: a FieldSpec element, or an element
// of the record's variable tail.
struct Slot {
  std::string name;  // as Mutant::field
  uint32_t offset = 0;
  uint32_t size = 0;
  FieldKind kind = FieldKind::kUnsigned;
};

// A slot whose place depends on the record (tails): "runs[last].addr"
// is resolved against the payload it is tried in.
struct SlotTemplate {
  std::string name;
  // Fixed slots: offset and size; tail slots: resolved by Resolve().
  Slot fixed;
  bool tail = false;
};

bool Resolve(const SlotTemplate& t, const RecordSpec& spec, const std::string& payload,
             Slot* out) {
  if (!t.tail) {
    if (t.fixed.offset + t.fixed.size > payload.size()) return false;
    *out = t.fixed;
    return true;
  }
  const uint64_t tail_len = payload.size() > spec.struct_size ? payload.size() - spec.struct_size : 0;
  auto element = [&](uint32_t width, bool last, uint32_t within, uint32_t size) {
    uint64_t n = tail_len / width;
    if (n == 0 || (last && n == 1)) return false;
    uint64_t i = last ? n - 1 : 0;
    out->offset = static_cast<uint32_t>(spec.struct_size + i * width + within);
    out->size = size;
    return true;
  };
  out->name = t.name;
  out->kind = FieldKind::kHex;
  const bool last = absl::StrContains(t.name, "[last]");
  switch (spec.tail) {
    case TailKind::kPageRuns: {
      bool addr = absl::EndsWith(t.name, ".addr");
      out->kind = addr ? FieldKind::kHex : FieldKind::kUnsigned;
      return element(sizeof(image::ckpt_page_run), last,
                     addr ? offsetof(image::ckpt_page_run, addr)
                          : offsetof(image::ckpt_page_run, nr_pages),
                     8);
    }
    case TailKind::kU16Array:
      out->kind = FieldKind::kUnsigned;
      return element(2, last, 0, 2);
    case TailKind::kU32Array:
      out->kind = FieldKind::kUnsigned;
      return element(4, last, 0, 4);
    case TailKind::kU64Array:
      return element(8, last, 0, 8);
    case TailKind::kPaths:
      // The first byte of the first string.
      if (tail_len == 0) return false;
      out->offset = spec.struct_size;
      out->size = 1;
      return true;
    case TailKind::kRawBytes: {
      // The XSAVE header and MXCSR, which the kernel checks; the first
      // byte of anything else.
      if (spec.type == image::CKPT_HDR_XSTATE) {
        uint32_t at = t.name == "mxcsr" ? 24 : t.name == "xstate_bv" ? 512 : 520;
        uint32_t size = t.name == "mxcsr" ? 4 : 8;
        if (at + size > payload.size()) return false;
        out->offset = at;
        out->size = size;
        return true;
      }
      if (tail_len == 0) return false;
      out->offset = spec.struct_size;
      out->size = 1;
      return true;
    }
    default:
      return false;
  }
}

std::vector<SlotTemplate> Templates(const RecordSpec& spec) {
  std::vector<SlotTemplate> out;
  for (const FieldSpec& f : spec.fields) {
    if (f.kind == FieldKind::kChars) {
      out.push_back({f.name, {f.name, f.offset, f.size, f.kind}, false});
      continue;
    }
    // Arrays: the first element and the last.
    std::vector<uint32_t> elems = {0};
    if (f.count > 1) elems.push_back(f.count - 1);
    for (uint32_t e : elems) {
      std::string name = f.count > 1 ? absl::StrCat(f.name, "[", e, "]") : f.name;
      out.push_back({name, {name, f.offset + e * f.size, f.size, f.kind}, false});
    }
  }
  auto tail = [&](const char* name) { out.push_back({name, {}, true}); };
  switch (spec.tail) {
    case TailKind::kPageRuns:
      tail("runs[0].addr");
      tail("runs[0].nr_pages");
      tail("runs[last].addr");
      tail("runs[last].nr_pages");
      break;
    case TailKind::kU16Array:
    case TailKind::kU32Array:
    case TailKind::kU64Array:
      tail("values[0]");
      tail("values[last]");
      break;
    case TailKind::kPaths:
      tail("path[0]");
      break;
    case TailKind::kRawBytes:
      if (spec.type == image::CKPT_HDR_XSTATE) {
        tail("mxcsr");
        tail("xstate_bv");
        tail("xcomp_bv");
      } else {
        tail("bytes[0]");
      }
      break;
    default:
      break;
  }
  return out;
}

// The field's own name, without an index or a run prefix.
std::string BaseName(const std::string& field) {
  std::string n = field.substr(0, field.find('['));
  size_t dot = field.rfind('.');
  if (dot != std::string::npos) n = field.substr(dot + 1);
  return n;
}

bool IsRef(const std::string& base) { return base == "objref" || absl::EndsWith(base, "_ref"); }

// The record type that carries objref `ref` (0: none does).
uint32_t TypeOfObjref(const std::map<uint32_t, std::vector<uint32_t>>& refs, uint64_t ref) {
  for (const auto& [type, list] : refs) {
    if (std::find(list.begin(), list.end(), ref) != list.end()) return type;
  }
  return 0;
}

// Counts and lengths of what the stream carries, and references that no
// longer name an object of the kind they named: a restore that takes one
// must still give the tree back intact. A reference moved to another
// object of the same kind (fd 1 to the file of fd 0), the tree's shape
// (parent, group, session) and lengths the kernel is given (rseq, robust
// list) are the tree's state: a restore may take them and differ.
bool IsStructural(const std::string& field, uint64_t from, uint64_t to,
                  const std::map<uint32_t, std::vector<uint32_t>>& refs) {
  const std::string n = BaseName(field);
  if (n == "parent_ref" || n == "pgrp_ref" || n == "session_ref") return false;
  if (n == "rseq_len" || n == "robust_list_len") return false;
  if (IsRef(n)) {
    const uint32_t was = TypeOfObjref(refs, from);
    return was == 0 || was != TypeOfObjref(refs, to);
  }
  return absl::StartsWith(n, "nr_") || absl::EndsWith(n, "_len") || n == "len" ||
         n == "data_size" || n == "nsems";
}

bool IsAddress(const std::string& field) {
  const std::string n = BaseName(field);
  return n == "start" || n == "end" || n == "addr" || n == "pgoff" || n == "free_area";
}

// Every objref an object record or a PID record carries, by record type.
std::map<uint32_t, std::vector<uint32_t>> Objrefs(const HeldImage& image) {
  std::map<uint32_t, std::vector<uint32_t>> out;
  for (const HeldRecord& rec : image.records) {
    const RecordSpec* spec = image::FindRecordSpec(rec.type);
    if (spec == nullptr) continue;
    for (const FieldSpec& f : spec->fields) {
      if (std::string(f.name) != "objref" || f.offset + 4 > rec.payload.size()) continue;
      out[rec.type].push_back(static_cast<uint32_t>(Load(rec.payload, f.offset, 4)));
    }
  }
  return out;
}

std::vector<uint64_t> HostileValues(const Slot& s, uint64_t v, uint32_t own_type,
                                    const std::map<uint32_t, std::vector<uint32_t>>& refs) {
  std::vector<uint64_t> vals;
  if (s.size > 8) return {0x00, 0x41};  // chars: all NUL, or no NUL at all
  const uint64_t mask = Mask(s.size);
  const uint64_t top = 1ull << (8 * s.size - 1);
  vals = {0, mask, v + 1, v - 1};
  if (s.kind == FieldKind::kSigned) {
    vals.push_back(top - 1);  // max
    vals.push_back(top);      // min
  } else {
    vals.push_back(top);
  }
  if (IsAddress(s.name)) {
    vals.push_back(v + kPage);
    vals.push_back(v - kPage);
  }
  if (IsRef(BaseName(s.name))) {
    // Another record's objref (of another type first), and one past the
    // largest.
    uint32_t largest = 0;
    int others = 0;
    for (const auto& [type, list] : refs) {
      for (uint32_t r : list) largest = std::max(largest, r);
      if (type != own_type && !list.empty() && others < 2) {
        vals.push_back(list.front());
        ++others;
      }
    }
    vals.push_back(largest + 1u);
  }
  std::vector<uint64_t> out;
  for (uint64_t x : vals) {
    x &= mask;
    if (x == (v & mask) || std::find(out.begin(), out.end(), x) != out.end()) continue;
    out.push_back(x);
  }
  return out;
}

std::string Ordinal(uint32_t n) {
  const char* suffix = (n % 100 >= 11 && n % 100 <= 13) ? "th"
                       : n % 10 == 1                     ? "st"
                       : n % 10 == 2                     ? "nd"
                       : n % 10 == 3                     ? "rd"
                                                         : "th";
  return absl::StrCat(n, suffix);
}

Section SectionOf(uint32_t type, Section current) {
  switch (type) {
    case image::CKPT_HDR_IMAGE:
      return Section::kHeader;
    case image::CKPT_HDR_TREE:
      return Section::kTree;
    case image::CKPT_HDR_IPC:
      return Section::kIpc;
    case image::CKPT_HDR_OBJECTS:
      return Section::kObjects;
    case image::CKPT_HDR_TASK:
      return Section::kTasks;
    default:
      return current;
  }
}

absl::StatusOr<image::ckpt_tail> OriginalTail(const HeldImage& image) {
  int fd = memfd_create("fuzz-tail", MFD_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "memfd_create");
  UniqueFd owned(fd);
  RETURN_IF_ERROR(WriteImage(image, fd));
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoError(errno, "fstat");
  image::ckpt_tail tail;
  if (pread(fd, &tail, sizeof(tail), st.st_size - static_cast<off_t>(sizeof(tail))) !=
      static_cast<ssize_t>(sizeof(tail))) {
    return ErrnoError(errno, "pread of the tail");
  }
  return tail;
}

}  // namespace

absl::StatusOr<HeldImage> LoadImage(const std::string& path) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  image::FdSource source(fd.get());
  image::Reader r(&source);
  HeldImage image;
  ASSIGN_OR_RETURN(image::ckpt_image_header header, r.ReadImageHeader());
  HeldRecord first;
  first.type = image::CKPT_HDR_IMAGE;
  first.payload.assign(reinterpret_cast<const char*>(&header), sizeof(header));
  image.records.push_back(std::move(first));
  std::map<uint32_t, uint32_t> seen;
  Section section = Section::kHeader;
  for (;;) {
    ASSIGN_OR_RETURN(image::Record rec, r.Next());
    if (rec.type == image::CKPT_HDR_TAIL) break;
    HeldRecord h;
    h.type = rec.type;
    h.flags = rec.flags;
    h.payload.resize(rec.len);
    RETURN_IF_ERROR(r.ReadPayload(h.payload.data(), h.payload.size()));
    section = SectionOf(rec.type, section);
    h.section = section;
    h.occurrence = seen[rec.type]++;
    image.records.push_back(std::move(h));
  }
  return image;
}

std::vector<Mutant> EnumerateMutants(const HeldImage& image, const MutantPlan& plan) {
  std::vector<Mutant> all;
  const auto refs = Objrefs(image);
  for (const MutantPlan::Selector& sel : plan.selectors) {
    const RecordSpec* spec = image::FindRecordSpec(sel.type);
    if (spec == nullptr) continue;
    std::vector<size_t> occ;
    for (size_t i = 0; i < image.records.size(); ++i) {
      const HeldRecord& rec = image.records[i];
      if (rec.type == sel.type && (sel.section == Section::kHeader || rec.section == sel.section)) {
        occ.push_back(i);
      }
    }
    if (occ.empty()) continue;
    const std::vector<SlotTemplate> templates = Templates(*spec);
    const size_t per_field = std::min<size_t>(std::max<uint32_t>(sel.records_per_field, 1), occ.size());
    for (size_t j = 0; j < templates.size(); ++j) {
      for (size_t k = 0; k < per_field; ++k) {
        const size_t index = occ[(j * per_field + k) % occ.size()];
        const HeldRecord& rec = image.records[index];
        Slot slot;
        if (!Resolve(templates[j], *spec, rec.payload, &slot)) continue;
        const uint64_t v = slot.size > 8 ? 0 : Load(rec.payload, slot.offset, slot.size);
        for (uint64_t value : HostileValues(slot, v, rec.type, refs)) {
          Mutant m;
          m.kind = MutantKind::kField;
          m.record = index;
          m.field = slot.name;
          m.offset = slot.offset;
          m.size = slot.size;
          m.value = value;
          m.original = v;
          if (slot.size > 8) {
            m.original_text = rec.payload.substr(slot.offset, slot.size);
            m.original_text.resize(strnlen(m.original_text.c_str(), slot.size));
          }
          m.structural = IsStructural(slot.name, v, value, refs);
          m.must_refuse = rec.type == image::CKPT_HDR_IMAGE &&
                          (slot.name == "magic" || slot.name == "major" || slot.name == "arch" ||
                           slot.name == "page_size");
          all.push_back(m);
        }
      }
    }
    if (!plan.lengths || sel.type == image::CKPT_HDR_IMAGE) continue;
    // Lengths, in the first selected record: shorter than its struct, its
    // variable part gone, one byte or one run short, longer by 8.
    const HeldRecord& rec = image.records[occ.front()];
    const uint64_t len = rec.payload.size(), fixed = spec->struct_size;
    std::vector<uint64_t> lens;
    if (fixed > 0) lens.push_back(fixed - 1);
    if (len > fixed) lens.push_back(fixed);
    if (len > 0) lens.push_back(len - 1);
    if (spec->tail == TailKind::kPageRuns && len >= 2 * sizeof(image::ckpt_page_run)) {
      lens.push_back(len - sizeof(image::ckpt_page_run));
    }
    lens.push_back(len + 8);
    std::vector<uint64_t> done;
    for (uint64_t l : lens) {
      if (l == len || std::find(done.begin(), done.end(), l) != done.end()) continue;
      done.push_back(l);
      Mutant m;
      m.kind = MutantKind::kLength;
      m.record = occ.front();
      m.field = "len";
      m.original = len;
      m.length = l;
      m.structural = true;
      all.push_back(m);
    }
  }
  if (plan.tail) {
    absl::StatusOr<image::ckpt_tail> tail = OriginalTail(image);
    const RecordSpec* spec = image::FindRecordSpec(image::CKPT_HDR_TAIL);
    if (tail.ok() && spec != nullptr) {
      std::string payload(reinterpret_cast<const char*>(&*tail), sizeof(*tail));
      for (const FieldSpec& f : spec->fields) {
        Slot slot{f.name, f.offset, f.size, f.kind};
        const uint64_t v = Load(payload, f.offset, f.size);
        for (uint64_t value : HostileValues(slot, v, image::CKPT_HDR_TAIL, {})) {
          Mutant m;
          m.kind = MutantKind::kTail;
          m.field = f.name;
          m.offset = f.offset;
          m.size = f.size;
          m.value = value;
          m.original = v;
          m.structural = true;
          m.must_refuse = true;
          all.push_back(m);
        }
      }
    }
  }
  std::vector<Mutant> kept;
  const uint32_t stride = std::max<uint32_t>(plan.stride, 1);
  for (size_t i = 0; i < all.size(); ++i) {
    if (i % stride == plan.phase % stride) kept.push_back(std::move(all[i]));
  }
  return kept;
}

HeldImage ApplyMutant(const HeldImage& image, const Mutant& m) {
  HeldImage out = image;
  if (m.kind == MutantKind::kTail) return out;
  std::string& p = out.records[m.record].payload;
  if (m.kind == MutantKind::kLength) {
    p.resize(m.length, '\0');
  } else if (m.size > 8) {
    std::memset(p.data() + m.offset, static_cast<int>(m.value), m.size);
  } else {
    Store(&p, m.offset, m.size, m.value);
  }
  return out;
}

absl::Status WriteImage(const HeldImage& image, int fd, const Mutant* m) {
  if (image.records.empty() || image.records[0].payload.size() != sizeof(image::ckpt_image_header)) {
    return absl::InvalidArgumentError("the held image has no image header");
  }
  {
    image::FdSink sink(fd);
    image::Writer w(&sink);
    image::ckpt_image_header header;
    std::memcpy(&header, image.records[0].payload.data(), sizeof(header));
    RETURN_IF_ERROR(w.WriteImageHeader(header));
    for (size_t i = 1; i < image.records.size(); ++i) {
      const HeldRecord& rec = image.records[i];
      RETURN_IF_ERROR(w.Append(rec.type, rec.payload.data(), rec.payload.size(), rec.flags));
    }
    RETURN_IF_ERROR(w.Finish());
  }
  if (m != nullptr && m->kind == MutantKind::kTail) {
    struct stat st;
    if (fstat(fd, &st) != 0) return ErrnoError(errno, "fstat of the image");
    off_t at = st.st_size - static_cast<off_t>(sizeof(image::ckpt_tail)) + m->offset;
    if (pwrite(fd, &m->value, m->size, at) != static_cast<ssize_t>(m->size)) {
      return ErrnoError(errno, "patching the tail");
    }
  }
  if (lseek(fd, 0, SEEK_SET) != 0) return ErrnoError(errno, "lseek of the image");
  return absl::OkStatus();
}

std::string Mutant::Describe(const HeldImage& image) const {
  auto show = [&](uint64_t v) {
    if (size > 8) return v == 0 ? std::string("all NUL") : absl::StrFormat("all 0x%02x", v);
    return absl::StrFormat("0x%x", v);
  };
  if (kind == MutantKind::kTail) {
    return absl::StrCat("tail field '", field, "' ", show(original), " -> ", show(value));
  }
  const HeldRecord& rec = image.records[record];
  std::string where = absl::StrCat("record #", record, " (", image::RecordName(rec.type), ", ",
                                   Ordinal(rec.occurrence + 1), " of its type)");
  if (kind == MutantKind::kLength) {
    return absl::StrCat(where, " payload length ", original, " -> ", length);
  }
  const std::string was = size > 8 ? absl::StrCat("'", original_text, "'") : show(original);
  return absl::StrCat(where, " field '", field, "' at +", offset, " ", was, " -> ", show(value));
}

std::string Mutant::Where(const HeldImage& image) const {
  if (kind == MutantKind::kTail) return absl::StrCat("TAIL.", field);
  return absl::StrCat(image::RecordName(image.records[record].type), ".", field);
}

pid_t ImageRootPid(const HeldImage& image) {
  uint32_t pid_ref = 0;
  for (const HeldRecord& rec : image.records) {
    if (rec.type == image::CKPT_HDR_TASK_ENTRY && rec.payload.size() >= sizeof(image::ckpt_task_entry)) {
      pid_ref = static_cast<uint32_t>(Load(rec.payload, offsetof(image::ckpt_task_entry, pid_ref), 4));
      break;
    }
  }
  if (pid_ref == 0) return 0;
  for (const HeldRecord& rec : image.records) {
    if (rec.type != image::CKPT_HDR_PID || rec.payload.size() < sizeof(image::ckpt_pid)) continue;
    image::ckpt_pid pid;
    std::memcpy(&pid, rec.payload.data(), sizeof(pid));
    if (pid.objref == pid_ref && pid.nr_levels >= 1) return pid.nr[0];
  }
  return 0;
}

}  // namespace ckpt::testing
