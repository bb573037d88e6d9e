/*
 * renamed HEX: sets its own comm with prctl(PR_SET_NAME) to the bytes HEX
 * spells (at most 15), prints READY and waits to be checkpointed.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
  char name[16] = {0};
  if (argc != 2 || strlen(argv[1]) % 2 != 0 || strlen(argv[1]) / 2 >= sizeof(name)) return 2;
  for (size_t i = 0; argv[1][2 * i] != '\0'; ++i) {
    unsigned byte;
    if (sscanf(argv[1] + 2 * i, "%2x", &byte) != 1) return 2;
    name[i] = (char)byte;
  }
  if (prctl(PR_SET_NAME, name) != 0) {
    perror("prctl");
    return 1;
  }
  printf("READY\n");
  fflush(stdout);
  for (;;) pause();
}
