/* `madvise` for miri: `scripts/miri.sh` hands this library to miri (`-Zmiri-native-lib`) so that
 * the crate's one `unsafe` call reaches the kernel. Only this symbol: miri keeps its own shims for
 * the rest of the C library. */
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>

int madvise(void *addr, size_t len, int advice) { return (int)syscall(SYS_madvise, addr, len, advice); }
