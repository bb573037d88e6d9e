// Writes a small hand-built image to the path in argv[1] (or stdout with
// "-"): one record of each common kind, for `ckpt show` tests.

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "lib/image/format.h"
#include "lib/image/writer.h"

using namespace ckpt::image;

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  int fd = std::string(argv[1]) == "-" ? 1 : open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 1;
  FdSink sink(fd);
  Writer w(&sink);
  absl::Status st = w.WriteImageHeader(DefaultImageHeader());
  const char note[] = "hand-built \"sample\"";
  if (st.ok()) st = w.Append(CKPT_HDR_NOTE, note, strlen(note), kHdrSkippable);
  ckpt_tree tree{1, 1, 0, 0};
  if (st.ok()) st = w.AppendStruct(CKPT_HDR_TREE, tree);
  ckpt_pid pid{};
  pid.objref = 1;
  pid.nr_levels = 1;
  pid.nr[0] = 4242;
  if (st.ok()) st = w.AppendStruct(CKPT_HDR_PID, pid);
  ckpt_task_entry task{};
  task.pid_ref = 1;
  task.state = kTaskAlive;
  task.nr_threads = 1;
  if (st.ok()) st = w.AppendStruct(CKPT_HDR_TASK_ENTRY, task);
  ckpt_file file{};
  file.objref = 2;
  file.kind = kFileRegular;
  file.flags = 02001;  // O_WRONLY | O_APPEND
  const char path[] = "/var/log/sample.log";
  file.path_len = strlen(path);
  if (st.ok()) st = w.AppendStructWith(CKPT_HDR_FILE, file, path, strlen(path));
  ckpt_vma vma{};
  vma.start = 0x7f0000000000;
  vma.end = 0x7f0000004000;
  vma.prot = 3;
  vma.flags = 0x22;
  vma.kind = kVmaAnon;
  vma.nr_pages = 2;
  if (st.ok()) st = w.AppendStruct(CKPT_HDR_VMA, vma);
  ckpt_page_run run{0x7f0000000000, 2};
  if (st.ok()) st = w.Append(CKPT_HDR_PAGE_RUNS, &run, sizeof(run));
  static char pages[8192];
  memset(pages, 0xab, sizeof(pages));
  if (st.ok()) st = w.Append(CKPT_HDR_PAGE_DATA, pages, sizeof(pages));
  if (st.ok()) st = w.Finish();
  if (!st.ok()) {
    fprintf(stderr, "%s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}
