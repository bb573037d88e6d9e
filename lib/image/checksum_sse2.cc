#define CKPT_CHECKSUM_NAME ChecksumSse2
#include "lib/image/checksum_xxh3.inc"
