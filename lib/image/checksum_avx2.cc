#define CKPT_CHECKSUM_NAME ChecksumAvx2
#include "lib/image/checksum_xxh3.inc"
