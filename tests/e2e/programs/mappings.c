/*
 * Mappings of every common shape: read-only anonymous memory, PROT_NONE
 * guard pages (empty, and holding data), executable anonymous code, a
 * private file mapping that was written (its copy-on-write pages must
 * come back) and one that was only read (its pages must not be saved),
 * a shared file mapping, and stack growth after the restore.
 *
 * argv[1]: a directory for the files. Prints "FILEPAGES n" for the pages
 * of the read-only file mapping it touched, so the harness can check the
 * dump skipped them.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>

#include "subject.h"

#define PAGE 4096
#define FILE_PAGES 64

static char *make_file(const char *dir, const char *name, int *fd_out) {
  static char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) exit(2);
  char page[PAGE];
  for (int p = 0; p < FILE_PAGES; p++) {
    memset(page, 'a' + p % 26, PAGE);
    if (write(fd, page, PAGE) != PAGE) exit(2);
  }
  *fd_out = fd;
  return path;
}

static int depth_sum(int n) {
  volatile char pad[1024];
  pad[0] = (char)n;
  return n == 0 ? pad[0] : pad[0] + depth_sum(n - 1);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/tmp";

  /* Read-only anonymous memory with contents. */
  char *ro = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  for (int i = 0; i < 4 * PAGE; i++) ro[i] = (char)(i * 13);
  mprotect(ro, 4 * PAGE, PROT_READ);

  /* A guard region, never touched, and one that holds data behind PROT_NONE. */
  char *guard = mmap(NULL, 16 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *hidden = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(hidden, 0x3c, 2 * PAGE);
  mprotect(hidden, 2 * PAGE, PROT_NONE);

  /* Executable anonymous memory: mov eax, 42; ret. */
  unsigned char *code = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const unsigned char fn[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3};
  memcpy(code, fn, sizeof(fn));
  mprotect(code, PAGE, PROT_READ | PROT_EXEC);

  /* Private file mappings: one written (copy-on-write), one only read. */
  int wfd, rfd, sfd;
  make_file(dir, "written.dat", &wfd);
  make_file(dir, "readonly.dat", &rfd);
  make_file(dir, "shared.dat", &sfd);
  char *written = mmap(NULL, FILE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, wfd, 0);
  for (int p = 0; p < FILE_PAGES; p += 2) written[p * PAGE + 7] = 'W';
  char *readonly = mmap(NULL, FILE_PAGES * PAGE, PROT_READ, MAP_PRIVATE, rfd, 0);
  volatile long sum = 0;
  for (int p = 0; p < FILE_PAGES; p++) sum += readonly[p * PAGE];
  char *shared = mmap(NULL, FILE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
  shared[5] = 'S';
  close(wfd);
  close(rfd);

  printf("FILEPAGES %d\n", FILE_PAGES);
  subject_ready();
  subject_wait();

  for (int i = 0; i < 4 * PAGE; i++) {
    if (ro[i] != (char)(i * 13)) {
      subject_fail("read-only byte %d", i);
      break;
    }
  }
  /* The protections are as they were. */
  FILE *maps = fopen("/proc/self/maps", "r");
  char line[512];
  int saw_ro = 0, saw_guard = 0, saw_hidden = 0, saw_code = 0;
  while (fgets(line, sizeof(line), maps)) {
    unsigned long start, end;
    char perms[5];
    if (sscanf(line, "%lx-%lx %4s", &start, &end, perms) != 3) continue;
    if (start <= (unsigned long)ro && (unsigned long)ro < end) saw_ro = !strcmp(perms, "r--p");
    if (start <= (unsigned long)guard && (unsigned long)guard < end) saw_guard = !strcmp(perms, "---p");
    if (start <= (unsigned long)hidden && (unsigned long)hidden < end) saw_hidden = !strcmp(perms, "---p");
    if (start <= (unsigned long)code && (unsigned long)code < end) saw_code = !strcmp(perms, "r-xp");
  }
  fclose(maps);
  SUBJECT_CHECK(saw_ro, "read-only mapping lost its protection");
  SUBJECT_CHECK(saw_guard, "guard mapping lost its protection");
  SUBJECT_CHECK(saw_hidden, "PROT_NONE mapping with data lost its protection");
  SUBJECT_CHECK(saw_code, "code mapping lost its protection");
  mprotect(hidden, 2 * PAGE, PROT_READ);
  SUBJECT_CHECK(hidden[0] == 0x3c && hidden[2 * PAGE - 1] == 0x3c, "data behind PROT_NONE lost");
  int (*f)(void) = (int (*)(void))code;
  SUBJECT_CHECK(f() == 42, "anonymous code returned %d", f());

  for (int p = 0; p < FILE_PAGES; p++) {
    char want = (p % 2 == 0) ? 'W' : (char)('a' + p % 26);
    SUBJECT_CHECK(written[p * PAGE + 7] == want, "written mapping page %d: %c, want %c", p,
                  written[p * PAGE + 7], want);
    SUBJECT_CHECK(written[p * PAGE] == 'a' + p % 26, "written mapping page %d lost file data", p);
    SUBJECT_CHECK(readonly[p * PAGE + 100] == 'a' + p % 26, "read-only mapping page %d", p);
  }
  /* The shared mapping still writes through to the file. */
  SUBJECT_CHECK(shared[5] == 'S', "shared mapping lost its write");
  shared[6] = 'T';
  msync(shared, PAGE, MS_SYNC);
  char c = 0;
  SUBJECT_CHECK(pread(sfd, &c, 1, 6) == 1 && c == 'T', "shared mapping no longer shared: %c", c);
  /* The stack still grows. */
  SUBJECT_CHECK(depth_sum(2000) != -1, "deep recursion");
  return subject_verdict();
}
