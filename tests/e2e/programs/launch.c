/*
 * launch PROG ARGS...: closes every fd above 2, then execs PROG. Shell
 * tests start subjects through it so that nothing the test runner left
 * open leaks into them.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  close_range(3, ~0u, 0);
  execv(argv[1], argv + 1);
  perror("execv");
  return 127;
}
